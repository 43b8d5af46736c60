//! belongs_to: the changed row is the parent the owner points at.

use super::{Rows, Step};
use crate::change::Op;
use crate::error::SyncError;
use crate::graph::hops;
use crate::schema::{AssocValue, Schema, Value};

impl<'a, P: Schema, T> Step<'a, P, T> {
    /// belongs_to: the parent row updated, deleted, or inserted late.
    pub(super) async fn parent<C: Schema>(self, rows: Rows<'a, P>) -> Result<Vec<usize>, SyncError>
    where
        T: AssocValue<C>,
    {
        let change = &self.ctx.change;
        let chain = hops(P::meta(), self.def)?;
        let steps = &chain.steps;
        let (fk, referenced) = (steps[0].from_column, steps[0].to_column);
        let mut touched = Vec::new();
        for (root, row) in rows {
            let fk_value = row.value_of(fk).unwrap_or(Value::Null);
            let Some(held) = (self.field.get_mut)(row).loaded_mut() else {
                continue;
            };
            let mut list = held.take_rows();
            let at = match self.ctx.changed_position(&mut list, self.subtree) {
                Ok(at) => at,
                Err(e) => {
                    *held = T::from_rows(list);
                    return Err(e);
                }
            };
            let result = async {
                match (self.ctx.op(), at) {
                    (Op::Deleted, Some(i)) => self.remove(&mut list, i).map(|_| true),
                    (Op::Updated | Op::Inserted, Some(i)) => {
                        let still = |new: &C| new.value_of(referenced).as_ref() == Some(&fk_value);
                        self.refresh(&mut list, i, still).await?;
                        Ok(true)
                    }
                    // a parent inserted late, or (under a context) one the context comes
                    // to see
                    (op, None)
                        if (op == Op::Inserted
                            || (op == Op::Updated && self.ctx.loader.restricted()))
                            && list.is_empty()
                            && !fk_value.is_null()
                            && self.ctx.column(referenced).as_ref() == Some(&fk_value) =>
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
}
