//! The last step of a path: applying the change to one association of the rows reached,
//! by association kind.

use futures_util::future::BoxFuture;

use super::order::insert_ordered;
use super::SyncCtx;
use crate::capture::Op;
use crate::error::SyncError;
use crate::graph::Reached;
use crate::load::related_sql::hops;
use crate::load::PreloadTree;
use crate::schema::{
    Assoc, AssocDef, AssocField, AssocKind, AssocValue, AssocVisitor, Key, Schema, Value,
};

type Rows<'a, P> = Vec<(usize, &'a mut P)>;

pub(crate) fn last_step<'a, P: Schema, C: Schema, T: AssocValue<C>>(
    ctx: &'a SyncCtx,
    rows: Rows<'a, P>,
    def: &'static AssocDef,
    field: AssocField<P, T>,
    subtree: &'a PreloadTree,
    reached: Reached,
) -> BoxFuture<'a, Result<Vec<usize>, SyncError>> {
    Box::pin(async move {
        let step = Step {
            ctx,
            def,
            field,
            subtree,
        };
        match (reached, &def.kind) {
            (Reached::Through, _) => step.reload(rows).await,
            (Reached::JoinTable, AssocKind::ManyToMany { join_keys, .. }) => {
                step.link(rows, join_keys).await
            }
            (Reached::Related, AssocKind::HasMany { .. } | AssocKind::HasOne { .. }) => {
                step.child(rows).await
            }
            (Reached::Related, AssocKind::BelongsTo { .. }) => step.parent(rows).await,
            (Reached::Related, AssocKind::ManyToMany { .. } | AssocKind::Through { .. }) => {
                step.related(rows).await
            }
            _ => Ok(Vec::new()),
        }
    })
}

struct Step<'a, P, T> {
    ctx: &'a SyncCtx,
    def: &'static AssocDef,
    field: AssocField<P, T>,
    subtree: &'a PreloadTree,
}

impl<'a, P: Schema, T> Step<'a, P, T> {
    fn matches_filter<C: Schema>(&self, row: &C) -> bool {
        match self.def.filter {
            Some(filter) => filter().matches(&|c| row.value_of(c)),
            None => true,
        }
    }

    /// The row to hold for the changed row: loaded with the shape inserted rows get.
    async fn inserted<C: Schema>(&self, key: Key) -> Result<Option<C>, SyncError> {
        let shape = self.ctx.options.shape_for::<C>(self.subtree)?;
        let row = self.ctx.load::<C>(key, &shape).await?;
        Ok(row.filter(|r| self.matches_filter(r)))
    }

    /// Puts `row` into `list` at its place, recording its topics.
    fn add<C: Schema>(&self, list: &mut Vec<C>, row: C) -> Result<(), SyncError> {
        self.ctx.track(&row, self.subtree)?;
        insert_ordered(list, row, self.def.order_by);
        Ok(())
    }

    fn remove<C: Schema>(&self, list: &mut Vec<C>, at: usize) -> Result<(), SyncError> {
        let old = list.remove(at);
        self.ctx.untrack(&old, self.subtree)
    }

    /// Replaces the changed row at `at` with its state now, keeping its loaded associations
    /// and its place in the order; drops it when it is gone or `keep` rejects it (it stopped
    /// matching the filter, or points elsewhere now).
    async fn refresh<C: Schema>(
        &self,
        list: &mut Vec<C>,
        at: usize,
        keep: impl Fn(&C) -> bool,
    ) -> Result<(), SyncError> {
        match replacement(self.ctx, &mut list[at], self.subtree).await? {
            Some(new) if keep(&new) => {
                self.ctx.track(&new, self.subtree)?;
                list[at] = new;
                // an update may move it within the order
                if !self.def.order_by.is_empty() {
                    let row = list.remove(at);
                    insert_ordered(list, row, self.def.order_by);
                }
            }
            // already untracked by `replacement`
            Some(_) => {
                list.remove(at);
            }
            None => self.remove(list, at)?,
        }
        Ok(())
    }
}

impl<'a, P: Schema, T> Step<'a, P, T> {
    /// has_many / has_one: a child inserted, updated (maybe moved or filtered in or out),
    /// or deleted.
    async fn child<C: Schema>(self, rows: Rows<'a, P>) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let change = &self.ctx.change;
        let (steps, _) = hops(P::meta(), self.def)?;
        let (owner_column, fk) = (steps[0].from_column, steps[0].to_column);
        let new_fk = change.column(fk).cloned().unwrap_or(Value::Null);
        let mut touched = Vec::new();
        for (root, row) in rows {
            let owner = row.value_of(owner_column).unwrap_or(Value::Null);
            let Some(held) = (self.field.get_mut)(row).loaded_mut() else {
                continue;
            };
            let mut list = held.take_rows();
            let at = list
                .iter()
                .position(|c| self.ctx.is_changed_row(&c.primary_key()));
            let belongs = !owner.is_null() && owner == new_fk && change.op != Op::Deleted;
            let mut changed = false;
            let result = async {
                match (at, belongs) {
                    (Some(i), false) => {
                        self.remove(&mut list, i)?;
                        changed = true;
                    }
                    (Some(i), true) => {
                        changed = true;
                        self.refresh(&mut list, i, |new| self.matches_filter(new))
                            .await?;
                    }
                    (None, true) => {
                        if let Some(new) = self.inserted::<C>(change.key.clone()).await? {
                            self.add(&mut list, new)?;
                            changed = true;
                        }
                    }
                    (None, false) => {}
                }
                Ok::<(), SyncError>(())
            }
            .await;
            *held = T::from_rows(list);
            result?;
            if changed {
                touched.push(root);
            }
        }
        Ok(touched)
    }

    /// belongs_to: the parent row updated, deleted, or inserted late.
    async fn parent<C: Schema>(self, rows: Rows<'a, P>) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let change = &self.ctx.change;
        let (steps, _) = hops(P::meta(), self.def)?;
        let (fk, referenced) = (steps[0].from_column, steps[0].to_column);
        let mut touched = Vec::new();
        for (root, row) in rows {
            let fk_value = row.value_of(fk).unwrap_or(Value::Null);
            let Some(held) = (self.field.get_mut)(row).loaded_mut() else {
                continue;
            };
            let mut list = held.take_rows();
            let at = list
                .iter()
                .position(|c| self.ctx.is_changed_row(&c.primary_key()));
            let result = async {
                match (change.op, at) {
                    (Op::Deleted, Some(i)) => self.remove(&mut list, i).map(|_| true),
                    (Op::Updated, Some(i)) => {
                        let still = |new: &C| new.value_of(referenced).as_ref() == Some(&fk_value);
                        self.refresh(&mut list, i, still).await?;
                        Ok(true)
                    }
                    (Op::Inserted, None)
                        if list.is_empty()
                            && !fk_value.is_null()
                            && change.column(referenced) == Some(&fk_value) =>
                    {
                        match self.inserted::<C>(change.key.clone()).await? {
                            Some(new) => self.add(&mut list, new).map(|_| true),
                            None => Ok(false),
                        }
                    }
                    _ => Ok(false),
                }
            }
            .await;
            *held = T::from_rows(list);
            if result? {
                touched.push(root);
            }
        }
        Ok(touched)
    }

    /// many_to_many (or the end of a through): the related row updated or deleted, wherever
    /// it is held.
    async fn related<C: Schema>(self, rows: Rows<'a, P>) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let change = &self.ctx.change;
        if change.op == Op::Inserted {
            return Ok(Vec::new());
        }
        let mut touched = Vec::new();
        for (root, row) in rows {
            let Some(held) = (self.field.get_mut)(row).loaded_mut() else {
                continue;
            };
            let mut list = held.take_rows();
            let at = list
                .iter()
                .position(|c| self.ctx.is_changed_row(&c.primary_key()));
            let result = async {
                let Some(i) = at else { return Ok(false) };
                if change.op == Op::Deleted {
                    self.remove(&mut list, i)?;
                    return Ok(true);
                }
                self.refresh(&mut list, i, |new| self.matches_filter(new))
                    .await?;
                Ok::<bool, SyncError>(true)
            }
            .await;
            *held = T::from_rows(list);
            if result? {
                touched.push(root);
            }
        }
        Ok(touched)
    }

    /// many_to_many: a link row inserted, deleted, or moved.
    async fn link<C: Schema>(
        self,
        rows: Rows<'a, P>,
        join_keys: &[&'static str; 2],
    ) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let change = &self.ctx.change;
        let (steps, _) = hops(P::meta(), self.def)?;
        let owner_column = steps[0].from_column;
        let related_column = steps[1].to_column;
        let [owner_side, related_side] = *join_keys;
        let value = |c: &str| change.column(c).cloned().unwrap_or(Value::Null);
        let old = |c: &str| change.old_column(c).cloned().unwrap_or_else(|| value(c));
        let (new_owner, new_related) = (value(owner_side), value(related_side));
        let (old_owner, old_related) = (old(owner_side), old(related_side));
        let mut touched = Vec::new();
        for (root, row) in rows {
            let owner = row.value_of(owner_column).unwrap_or(Value::Null);
            if owner.is_null() || (owner != new_owner && owner != old_owner) {
                continue;
            }
            let Some(held) = (self.field.get_mut)(row).loaded_mut() else {
                continue;
            };
            let mut list = held.take_rows();
            let result = async {
                let position = |list: &Vec<C>, key: &Value| {
                    list.iter()
                        .position(|c| c.value_of(related_column).as_ref() == Some(key))
                };
                let mut changed = false;
                let unlink = match change.op {
                    Op::Deleted => owner == new_owner,
                    Op::Updated => {
                        owner == old_owner && (old_owner != new_owner || old_related != new_related)
                    }
                    Op::Inserted => false,
                };
                if unlink {
                    let gone = if change.op == Op::Deleted {
                        &new_related
                    } else {
                        &old_related
                    };
                    if let Some(i) = position(&list, gone) {
                        self.remove(&mut list, i)?;
                        changed = true;
                    }
                }
                let link = change.op != Op::Deleted && owner == new_owner && !new_related.is_null();
                if link && position(&list, &new_related).is_none() {
                    if let Some(new) = self.inserted::<C>(Key(vec![new_related.clone()])).await? {
                        self.add(&mut list, new)?;
                        changed = true;
                    }
                }
                Ok::<bool, SyncError>(changed)
            }
            .await;
            *held = T::from_rows(list);
            if result? {
                touched.push(root);
            }
        }
        Ok(touched)
    }

    /// through: a change in an intermediate table; the association is loaded again (through
    /// the cache, one read per owner and change).
    async fn reload<C: Schema>(self, rows: Rows<'a, P>) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let mut paths = vec![self.def.name.to_owned()];
        paths.extend(
            self.subtree
                .paths()
                .into_iter()
                .map(|p| format!("{}.{p}", self.def.name)),
        );
        let shape = PreloadTree::parse(P::meta(), &paths)?;
        let mut touched = Vec::new();
        for (root, row) in rows {
            if !(self.field.get)(row).is_loaded() {
                continue;
            }
            let Some(mut fresh) = self.ctx.load::<P>(row.primary_key(), &shape).await? else {
                continue;
            };
            let new = std::mem::take((self.field.get_mut)(&mut fresh));
            let old = std::mem::replace((self.field.get_mut)(row), new);
            let now = (self.field.get)(row);
            if let (Assoc::Loaded(old), Assoc::Loaded(now)) = (&old, now) {
                let (old_keys, new_keys): (Vec<Key>, Vec<Key>) = (
                    old.rows().iter().map(|r| r.primary_key()).collect(),
                    now.rows().iter().map(|r| r.primary_key()).collect(),
                );
                for r in old.rows() {
                    self.ctx.untrack(r, self.subtree)?;
                }
                for r in now.rows() {
                    self.ctx.track(r, self.subtree)?;
                }
                if old_keys != new_keys {
                    touched.push(root);
                }
            }
        }
        Ok(touched)
    }
}

/// The changed row, as of now, to hold in place of `existing`: loaded bare, with the
/// associations `existing` had loaded carried over, and belongs_to parents whose foreign key
/// changed loaded again. `None` when the row no longer exists (`existing` untouched).
///
/// On `Some`, `existing`'s topics are already recorded as removed (its associations move
/// out); the caller tracks the new row if it keeps it.
pub(crate) async fn replacement<C: Schema>(
    ctx: &SyncCtx,
    existing: &mut C,
    tree: &PreloadTree,
) -> Result<Option<C>, SyncError> {
    let Some(mut new) = ctx
        .load::<C>(ctx.change.key.clone(), &PreloadTree::default())
        .await?
    else {
        return Ok(None);
    };
    ctx.untrack(&*existing, tree)?;
    for i in 0..C::meta().assocs.len() {
        C::visit_assoc(
            i,
            Carry {
                from: &mut *existing,
                to: &mut new,
            },
        );
    }
    for node in tree.children() {
        let def = &C::meta().assocs[node.assoc];
        if let AssocKind::BelongsTo { foreign_key, .. } = def.kind {
            if existing.value_of(foreign_key) != new.value_of(foreign_key) {
                let reload = C::visit_assoc(
                    node.assoc,
                    ReloadParent {
                        ctx,
                        row: &mut new,
                        subtree: &node.tree,
                    },
                );
                if let Some(future) = reload {
                    future.await?;
                }
            }
        }
    }
    Ok(Some(new))
}

/// Moves every loaded association of `from` into `to` (which was loaded bare).
struct Carry<'a, C> {
    from: &'a mut C,
    to: &'a mut C,
}

impl<C: Schema> AssocVisitor<C> for Carry<'_, C> {
    type Output = ();

    fn visit<R: Schema, T: AssocValue<R>>(self, _: &'static AssocDef, field: AssocField<C, T>) {
        let source = (field.get_mut)(self.from);
        if source.is_loaded() {
            *(field.get_mut)(self.to) = std::mem::take(source);
        }
    }
}

/// Loads the parent a changed foreign key now points at (topics are re-derived by the
/// caller, which untracks the old row and tracks the new one whole).
struct ReloadParent<'a, C> {
    ctx: &'a SyncCtx,
    row: &'a mut C,
    subtree: &'a PreloadTree,
}

impl<'a, C: Schema> AssocVisitor<C> for ReloadParent<'a, C> {
    type Output = BoxFuture<'a, Result<(), SyncError>>;

    fn visit<R: Schema, T: AssocValue<R>>(
        self,
        def: &'static AssocDef,
        field: AssocField<C, T>,
    ) -> Self::Output {
        Box::pin(async move {
            let (steps, _) = hops(C::meta(), def)?;
            let fk = self
                .row
                .value_of(steps[0].from_column)
                .unwrap_or(Value::Null);
            let parent = if fk.is_null() {
                None
            } else {
                self.ctx.load::<R>(Key(vec![fk]), self.subtree).await?
            };
            *(field.get_mut)(self.row) = Assoc::Loaded(T::from_rows(parent.into_iter().collect()));
            Ok(())
        })
    }
}
