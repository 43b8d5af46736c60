//! has_many through: a change in an intermediate table reloads the association.

use super::{Rows, Step};
use crate::error::SyncError;
use crate::graph::PreloadTree;
use crate::schema::{Assoc, Key};
use crate::schema::{AssocValue, Schema};

impl<'a, P: Schema, T> Step<'a, P, T> {
    /// through: a change in an intermediate table; the association is loaded again (through
    /// the cache, one read per owner and change).
    pub(super) async fn reload<C: Schema>(self, rows: Rows<'a, P>) -> Result<Vec<usize>, SyncError>
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
