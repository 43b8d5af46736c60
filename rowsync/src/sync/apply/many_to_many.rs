//! many_to_many: the related row itself, or a link row of the join table, changed.

use super::{Rows, Step};
use crate::change::Op;
use crate::error::SyncError;
use crate::graph::hops;
use crate::schema::Key;
use crate::schema::{column_index, AssocValue, Schema, Value};

impl<'a, P: Schema, T> Step<'a, P, T> {
    /// many_to_many (or the end of a through): the related row updated or deleted, wherever
    /// it is held.
    pub(super) async fn related<C: Schema>(self, rows: Rows<'a, P>) -> Result<Vec<usize>, SyncError>
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
            // why look before taking: most held lists do not hold the changed row
            let Some(i) = held.position(|c| self.ctx.is_changed(c)) else {
                continue;
            };
            let mut list = held.take_rows();
            let result = async {
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
    pub(super) async fn link<C: Schema>(
        self,
        rows: Rows<'a, P>,
        join_keys: &[&'static str; 2],
    ) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let change = &self.ctx.change;
        let chain = hops(P::meta(), self.def)?;
        let steps = &chain.steps;
        let owner_column = steps[0].from_column;
        let related_column = steps[1].to_column;
        let [owner_side, related_side] = *join_keys;
        let value = |c: &str| change.column(c).cloned().unwrap_or(Value::Null);
        let old = |c: &str| change.old_column(c).cloned().unwrap_or_else(|| value(c));
        let (new_owner, new_related) = (value(owner_side), value(related_side));
        let (old_owner, old_related) = (old(owner_side), old(related_side));
        let owner_index = column_index(P::meta(), owner_column)?;
        let related_index = column_index(C::meta(), related_column)?;
        let mut touched = Vec::new();
        for (root, row) in rows {
            // why compare in place first: a link row concerns one or two of the held owners
            let is_new_owner = !new_owner.is_null() && row.column_eq(owner_index, &new_owner);
            let is_old_owner = !old_owner.is_null() && row.column_eq(owner_index, &old_owner);
            if !is_new_owner && !is_old_owner {
                continue;
            }
            let owner = row.value_of(owner_column).unwrap_or(Value::Null);
            let Some(held) = (self.field.get_mut)(row).loaded_mut() else {
                continue;
            };
            let mut list = held.take_rows();
            let result = async {
                let position = |list: &Vec<C>, key: &Value| {
                    list.iter().position(|c| c.column_eq(related_index, key))
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
}
