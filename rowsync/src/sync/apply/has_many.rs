//! has_many / has_one: the changed row is a child holding the foreign key.

use super::{Rows, Step};
use crate::change::Op;
use crate::error::SyncError;
use crate::graph::hops;
use crate::schema::{column_index, AssocValue, Schema, Value};

impl<'a, P: Schema, T> Step<'a, P, T> {
    /// has_many / has_one: a child inserted, updated (maybe moved or filtered in or out),
    /// or deleted.
    pub(super) async fn child<C: Schema>(self, rows: Rows<'a, P>) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let change = &self.ctx.change;
        let chain = hops(P::meta(), self.def)?;
        let steps = &chain.steps;
        let (owner_column, fk) = (steps[0].from_column, steps[0].to_column);
        let new_fk = self.ctx.column(fk).unwrap_or(Value::Null);
        let op = self.ctx.op();
        let owner_index = column_index(P::meta(), owner_column)?;
        let mut touched = Vec::new();
        for (root, row) in rows {
            let belongs =
                !new_fk.is_null() && op != Op::Deleted && row.column_eq(owner_index, &new_fk);
            let Some(held) = (self.field.get_mut)(row).loaded_mut() else {
                continue;
            };
            // why look before taking: most held lists neither hold nor gain the changed row
            let at = held.position(|c| self.ctx.is_changed(c));
            if at.is_none() && !belongs {
                continue;
            }
            let mut list = held.take_rows();
            let at = match self.ctx.changed_position(&mut list, self.subtree) {
                Ok(at) => at,
                Err(e) => {
                    *held = T::from_rows(list);
                    return Err(e);
                }
            };
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
}
