//! The last step of a path: applying the change to one association of the rows reached,
//! one file per association kind; shared helpers here.

mod belongs_to;
mod has_many;
mod many_to_many;
mod through;

use futures_util::future::BoxFuture;

use super::order::{insert_ordered, reposition};
use super::SyncCtx;
use crate::error::SyncError;
use crate::graph::hops;
use crate::graph::PreloadTree;
use crate::graph::Reached;
use crate::schema::{
    column_index, Assoc, AssocDef, AssocField, AssocKind, AssocValue, AssocVisitor, Key, Schema,
    Value,
};

pub(super) type Rows<'a, P> = Vec<(usize, &'a mut P)>;

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

pub(super) struct Step<'a, P, T> {
    ctx: &'a SyncCtx,
    def: &'static AssocDef,
    field: AssocField<P, T>,
    subtree: &'a PreloadTree,
}

impl<'a, P: Schema, T> Step<'a, P, T> {
    pub(super) fn matches_filter<C: Schema>(&self, row: &C) -> bool {
        match self.def.filter {
            Some(filter) => filter().matches(&|c| row.value_of(c)),
            None => true,
        }
    }

    /// The row to hold for the changed row: loaded with the shape inserted rows get.
    pub(super) async fn inserted<C: Schema>(&self, key: Key) -> Result<Option<C>, SyncError> {
        let shape = self.ctx.options.shape_for::<C>(self.subtree)?;
        let row = self.ctx.load::<C>(key, &shape).await?;
        Ok(row.filter(|r| self.matches_filter(r)))
    }

    /// Puts `row` into `list` at its place, recording its topics.
    pub(super) fn add<C: Schema>(&self, list: &mut Vec<C>, row: C) -> Result<(), SyncError> {
        self.ctx.track(&row, self.subtree)?;
        insert_ordered(list, row, self.def.order_by);
        Ok(())
    }

    pub(super) fn remove<C: Schema>(&self, list: &mut Vec<C>, at: usize) -> Result<(), SyncError> {
        let old = list.remove(at);
        self.ctx.untrack(&old, self.subtree)
    }

    /// Replaces the changed row at `at` with its state now, keeping its loaded associations
    /// and its place in the order; drops it when it is gone or `keep` rejects it (it stopped
    /// matching the filter, or points elsewhere now).
    pub(super) async fn refresh<C: Schema>(
        &self,
        list: &mut Vec<C>,
        at: usize,
        keep: impl Fn(&C) -> bool,
    ) -> Result<(), SyncError> {
        match replacement(self.ctx, &mut list[at], self.subtree).await? {
            Some(new) if keep(&new.row) => {
                if new.routes_changed {
                    self.ctx.track(&new.row, self.subtree)?;
                }
                // an update may move it within the order (an order column or its key, which
                // orders rows last, changed); why look first: comparing with the neighbours
                // builds their keys, per holder of a row held in a thousand lists
                let may_move = new.routes_changed
                    || self.def.order_by.iter().any(|term| {
                        list[at].value_of(term.column) != new.row.value_of(term.column)
                    });
                list[at] = new.row;
                if may_move {
                    reposition(list, at, self.def.order_by);
                }
            }
            Some(dropped) => {
                if !dropped.routes_changed {
                    self.ctx.untrack(&dropped.row, self.subtree)?;
                }
                list.remove(at);
            }
            None => self.remove(list, at)?,
        }
        Ok(())
    }
}

/// The changed row, as of now, to hold in place of `existing`: loaded bare, with the
/// associations `existing` had loaded carried over, and belongs_to parents whose foreign key
/// changed loaded again. `None` when the row no longer exists (`existing` untouched).
///
/// When `routes_changed`, `existing`'s topics are already recorded as removed (its
/// associations move out) and the caller tracks the new row if it keeps it; otherwise the
/// new row routes exactly like the old one, and only dropping it needs an untrack.
pub(crate) async fn replacement<C: Schema>(
    ctx: &SyncCtx,
    existing: &mut C,
    tree: &PreloadTree,
) -> Result<Option<Replaced<C>>, SyncError> {
    let Some(mut new) = ctx.changed_row::<C>().await? else {
        return Ok(None);
    };
    // why compare first: most updates change no key, so the held rows' topics stay as they
    // are, and recomputing them for every holder of a hot row is the cost of a broadcast
    let moved = what_moved(&*existing, &new, &ctx.change.key, tree)?;
    let routes_changed = moved != Moved::Nothing;
    if routes_changed {
        ctx.untrack(&*existing, tree)?;
    }
    // why reload whole: a column the row's children join on (a has_many `references` column,
    // the key a join table points at) changed, so the children held are another row's; a
    // load with the shape brings the ones it points at now
    // a row that lacks an association of the shape (options added it, or it was held
    // shallower) gains it, keeping everything it holds
    let lacking = tree
        .children()
        .iter()
        .any(|n| C::visit_assoc(n.assoc, IsLoaded { row: &*existing }) == Some(false));
    if moved == Moved::Children || lacking {
        let shape = tree.union(&PreloadTree::of_rows(&[&*existing]));
        let shaped = ctx.load::<C>(ctx.change.key.clone(), &shape).await?;
        return Ok(shaped.map(|row| Replaced {
            row,
            routes_changed,
        }));
    }
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
    Ok(Some(Replaced {
        row: new,
        routes_changed,
    }))
}

/// A row loaded to replace a held one.
pub(crate) struct Replaced<C> {
    pub row: C,
    /// Whether its topics differ from the held row's (key or a join column changed).
    pub routes_changed: bool,
}

/// What changed between two versions of a row that routing or its held associations
/// depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// Nothing: the new row routes exactly like the old one.
    Nothing,
    /// The key, or a belongs_to foreign key: topics change, the children held stay.
    Routes,
    /// A column children are found by: the children held are another row's.
    Children,
}

/// Compares two versions of a row held with `tree` under it; `new` was loaded by `key`.
fn what_moved<C: Schema>(
    old: &C,
    new: &C,
    key: &Key,
    tree: &PreloadTree,
) -> Result<Moved, SyncError> {
    let mut moved = if old.has_key(key) {
        Moved::Nothing
    } else {
        Moved::Routes
    };
    for node in tree.children() {
        let def = &C::meta().assocs[node.assoc];
        let chain = hops(C::meta(), def)?;
        let column = column_index(C::meta(), chain.steps[0].from_column)?;
        if !old.column_eq(column, &new.column_value(column)) {
            if !matches!(def.kind, AssocKind::BelongsTo { .. }) {
                return Ok(Moved::Children);
            }
            moved = Moved::Routes;
        }
    }
    Ok(moved)
}

/// Whether an association of `row` is loaded.
struct IsLoaded<'a, C> {
    row: &'a C,
}

impl<C: Schema> AssocVisitor<C> for IsLoaded<'_, C> {
    type Output = bool;

    fn visit<R: Schema, T: AssocValue<R>>(
        self,
        _: &'static AssocDef,
        field: AssocField<C, T>,
    ) -> bool {
        (field.get)(self.row).is_loaded()
    }
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
            let chain = hops(C::meta(), def)?;
            let steps = &chain.steps;
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
