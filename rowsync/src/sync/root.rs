//! The change of a root row: insert into a list, replace, remove.

use super::apply::replacement;
use super::{Changes, Held, SyncCtx};
use crate::capture::Op;
use crate::error::SyncError;
use crate::load::PreloadTree;
use crate::schema::Schema;

pub(crate) async fn apply_root<S: Schema, H: Held<S>>(
    ctx: &SyncCtx,
    data: &mut H,
    tree: &PreloadTree,
    changes: &mut Changes,
) -> Result<(), SyncError> {
    let change = &ctx.change;
    match change.op {
        Op::Deleted => {
            for removed in data.remove_key(&change.key) {
                ctx.untrack(&removed, tree)?;
                changes.deleted.push(removed.primary_key());
            }
            // why: a followed key stays subscribed, so a row inserted again under it returns
            if ctx
                .root_keys
                .as_ref()
                .is_some_and(|k| k.contains(&change.key))
            {
                ctx.track_key::<S>(&change.key);
            }
        }
        Op::Updated => {
            let mut gone = Vec::new();
            for row in data.rows_mut() {
                if !ctx.is_changed_row(&row.primary_key()) {
                    continue;
                }
                match replacement(ctx, row, tree).await? {
                    Some(new) => {
                        ctx.track(&new, tree)?;
                        *row = new;
                        changes.updated.push(row.primary_key());
                    }
                    None => gone.push(row.primary_key()),
                }
            }
            // a row updated and then deleted before we read it: the delete follows
            for key in gone {
                for removed in data.remove_key(&key) {
                    ctx.untrack(&removed, tree)?;
                    changes.deleted.push(key.clone());
                }
            }
        }
        Op::Inserted => {
            if !data.can_add()
                || !ctx.root_may_hold(&change.key)
                || data.rows().iter().any(|r| r.primary_key() == change.key)
            {
                return Ok(());
            }
            let shape = ctx.options.shape_for::<S>(tree)?;
            if let Some(row) = ctx.load::<S>(change.key.clone(), &shape).await? {
                let key = row.primary_key();
                ctx.track(&row, tree)?;
                data.add(row);
                changes.inserted.push(key);
            }
        }
    }
    Ok(())
}
