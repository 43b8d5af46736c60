//! many_to_many: the related row itself, or a link row of the join table, changed.

use super::{Rows, Step};
use crate::change::Op;
use crate::error::SyncError;
use crate::load::owner_index;
use crate::schema::{AssocValue, Key, Schema, Value};

impl<'a, P: Schema, T> Step<'a, P, T> {
    /// many_to_many (or the end of a through): the related row updated or deleted, wherever
    /// it is held.
    pub(super) async fn related<C: Schema>(self, rows: Rows<'a, P>) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        // an insert reaches held copies only when the row came back under a key held
        // still (its delete not applied yet): they are refreshed like after an update
        let op = self.ctx.op();
        // a row a context could not see is linked but not held, so a list that lacks a row
        // the context sees now may have to take it in: the links decide (a row held in one
        // list proves nothing of another's, it may have been taken in by another path)
        let (rows, lacking) = if self.ctx.loader.restricted() && op != Op::Deleted {
            rows.into_iter().partition(|(_, row)| {
                (self.field.get)(row)
                    .loaded()
                    .is_none_or(|held| held.position(|c| self.ctx.is_changed(c)).is_some())
            })
        } else {
            (rows, Vec::new())
        };
        let mut touched = Vec::new();
        for (root, row) in rows {
            let Some(held) = (self.field.get_mut)(row).loaded_mut() else {
                continue;
            };
            // why look before taking: most held lists do not hold the changed row
            if held.position(|c| self.ctx.is_changed(c)).is_none() {
                continue;
            }
            let mut list = held.take_rows();
            let i = match self.ctx.changed_position(&mut list, self.subtree) {
                Ok(Some(i)) => i,
                other => {
                    *held = T::from_rows(list);
                    other?;
                    continue;
                }
            };
            let result = async {
                if op == Op::Deleted {
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
        if !lacking.is_empty() {
            let owner_index = owner_index::<P>(self.def)?;
            let mut owners: Vec<Value> = lacking
                .iter()
                .map(|(_, row)| row.column_value(owner_index))
                .filter(|v| !v.is_null())
                .collect();
            owners.sort_by(crate::schema::compare_values);
            owners.dedup();
            touched.extend(self.relink(lacking, owners).await?);
        }
        Ok(touched)
    }

    /// many_to_many: a link row inserted, deleted, or moved. The owners it names (before
    /// and after) get their related rows read again, in one query shared by every sync of
    /// the change: the database, not the notification, says which rows they link to now.
    pub(super) async fn link<C: Schema>(
        self,
        rows: Rows<'a, P>,
        join_keys: &[&'static str; 2],
    ) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let change = &self.ctx.change;
        let owner_side = join_keys[0];
        let mut owners: Vec<Value> = [
            change.column(owner_side),
            change.old_column(owner_side),
            self.ctx.column(owner_side).as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter(|v| !v.is_null())
        .cloned()
        .collect();
        owners.dedup();
        self.relink(rows, owners).await
    }

    /// The rows of `rows` whose owner column holds one of `owners` get their related rows
    /// read again (one query shared by every sync of the change under the same context).
    async fn relink<C: Schema>(
        self,
        rows: Rows<'a, P>,
        owners: Vec<Value>,
    ) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let change = &self.ctx.change;
        let owner_index = owner_index::<P>(self.def)?;
        let held: Vec<(usize, &'a mut P)> = rows
            .into_iter()
            .filter(|(_, row)| {
                (self.field.get)(row).is_loaded()
                    && owners.iter().any(|o| row.column_eq(owner_index, o))
            })
            .collect();
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let related = self
            .ctx
            .loader
            .related::<P, C>(self.def, owners, change, self.ctx.read_seq, self.subtree)
            .await?;
        let mut touched = Vec::new();
        for (root, row) in held {
            let now: Vec<C> = self.ctx.scoped(
                related
                    .by_owner
                    .get(&row.column_value(owner_index))
                    .map(|at| at.iter().map(|&i| related.children[i].clone()).collect())
                    .unwrap_or_default(),
            );
            let Some(list) = (self.field.get_mut)(row).loaded_mut() else {
                continue;
            };
            let before: Vec<Key> = list.rows().iter().map(|r| r.primary_key()).collect();
            let after: Vec<Key> = now.iter().map(|r| r.primary_key()).collect();
            // the same links: what they link to changes by changes of its own
            if before == after {
                continue;
            }
            for old in list.rows() {
                self.ctx.untrack(old, self.subtree)?;
            }
            for new in &now {
                self.ctx.track(new, self.subtree)?;
            }
            *list = T::from_rows(now);
            touched.push(root);
        }
        Ok(touched)
    }
}
