//! The change of a root row: insert into a list, replace, remove.

use super::apply::replacement;
use super::{Changes, Held, Membership, SyncCtx};
use crate::change::Op;
use crate::error::SyncError;
use crate::graph::PreloadTree;
use crate::schema::Schema;

pub(crate) async fn apply_root<S: Schema, H: Held<S>>(
    ctx: &SyncCtx,
    data: &mut H,
    tree: &PreloadTree,
    changes: &mut Changes,
) -> Result<(), SyncError> {
    let change = &ctx.change;
    if change.op == Op::Deleted {
        return remove(ctx, data, tree, &change.key, changes);
    }
    // one pass over the held rows (cold memory when a thousand subscribers hold them)
    let changed: Vec<&mut S> = data
        .rows_mut()
        .into_iter()
        .filter(|r| ctx.is_changed(&**r))
        .collect();
    let held = !changed.is_empty();
    match change.op {
        Op::Deleted => {}
        Op::Updated if held => {
            let mut gone = Vec::new();
            for row in changed {
                match replacement(ctx, row, tree).await? {
                    Some(new) if ctx.admits(&new.row) => {
                        if new.routes_changed {
                            ctx.track(&new.row, tree)?;
                        }
                        *row = new.row;
                        changes.updated.push(row.primary_key());
                    }
                    // stopped matching: untracked below unless `replacement` already did
                    Some(dropped) => {
                        let untracked = dropped.routes_changed;
                        *row = dropped.row;
                        gone.push((row.primary_key(), !untracked));
                    }
                    // updated, then deleted before we read it: the delete follows
                    None => gone.push((row.primary_key(), true)),
                }
            }
            for (key, needs_untrack) in gone {
                for removed in data.remove_key(&key) {
                    if needs_untrack {
                        ctx.untrack(&removed, tree)?;
                    }
                    changes.deleted.push(key.clone());
                }
            }
        }
        Op::Updated | Op::Inserted => {
            // a row not held that may start to belong: inserted, or updated into a filter
            let follows_updates = matches!(ctx.membership, Membership::Query { .. });
            if held || !data.can_add() || (change.op == Op::Updated && !follows_updates) {
                return Ok(());
            }
            if let Membership::Keys(keys) = &ctx.membership {
                if !keys.contains(&change.key) {
                    return Ok(());
                }
            }
            let shape = ctx.options.shape_for::<S>(tree)?;
            let Some(row) = ctx.load::<S>(change.key.clone(), &shape).await? else {
                return Ok(());
            };
            if !ctx.admits(&row) {
                return Ok(());
            }
            let key = row.primary_key();
            ctx.track(&row, tree)?;
            let added = match &ctx.membership {
                Membership::Query { order_by, .. } => data.add_ordered(row, order_by),
                _ => data.add(row),
            };
            if added {
                changes.inserted.push(key);
            }
        }
    }
    Ok(())
}

fn remove<S: Schema, H: Held<S>>(
    ctx: &SyncCtx,
    data: &mut H,
    tree: &PreloadTree,
    key: &crate::schema::Key,
    changes: &mut Changes,
) -> Result<(), SyncError> {
    for removed in data.remove_key(key) {
        ctx.untrack(&removed, tree)?;
        changes.deleted.push(removed.primary_key());
    }
    // why: a followed key stays subscribed, so a row inserted again under it returns
    if let Membership::Keys(keys) = &ctx.membership {
        if keys.contains(key) {
            ctx.track_key::<S>(key);
        }
    }
    Ok(())
}
