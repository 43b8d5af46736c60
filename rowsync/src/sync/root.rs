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
    only: Option<&[usize]>,
) -> Result<(), SyncError> {
    let change = &ctx.change;
    let op = ctx.op();
    if op == Op::Deleted {
        // held under its key before the change too, if the change moved it
        if let Some(old) = &change.old_key {
            remove(ctx, data, tree, old, changes)?;
        }
        return remove(ctx, data, tree, &change.key, changes);
    }
    // a copy under the old key is stale when the row is held under its new key already
    if let Some(old) = change.old_key.as_ref().filter(|old| **old != change.key) {
        let both = data.rows().iter().any(|r| r.has_key(&change.key))
            && data.rows().iter().any(|r| r.has_key(old));
        if both {
            for stale in data.remove_key(old) {
                ctx.untrack(&stale, tree)?;
                changes.deleted.push(old.clone());
            }
        }
    }
    // one pass over the held rows (cold memory when a thousand subscribers hold them), or
    // straight to the rows an index names
    let candidates: Vec<&mut S> = match only {
        Some(at) => data.rows_at_mut(at).into_iter().map(|(_, r)| r).collect(),
        None => data.rows_mut(),
    };
    let changed: Vec<&mut S> = candidates
        .into_iter()
        .filter(|r| ctx.is_changed(&**r))
        .collect();
    let held = !changed.is_empty();
    match op {
        Op::Deleted => {}
        // held already: an insert means the row came back (a delete and an insert, the
        // delete not applied yet) and is refreshed like an update
        Op::Updated | Op::Inserted if held => {
            let mut gone = Vec::new();
            let mut moved = Vec::new();
            for row in changed {
                match replacement(ctx, row, tree).await? {
                    Some(new) if ctx.admits(&new.row) => {
                        if new.routes_changed {
                            ctx.track(&new.row, tree)?;
                        }
                        *row = new.row;
                        let key = row.primary_key();
                        changes.updated.push(key.clone());
                        moved.push(key);
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
            // an update may move a row within the query's order (its key or an order
            // column changed): it goes where a fresh load puts it
            if let Membership::Query { order_by, .. } = &ctx.membership {
                for key in &moved {
                    data.reposition(key, order_by);
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
            // a row not held that may start to belong: one the query selects (inserted, or
            // updated into its filter), a followed key that exists, or (data held outside
            // a subscription) an inserted row
            let may_join = match &ctx.membership {
                Membership::Query { .. } => true,
                Membership::Keys(keys) => keys.contains(&change.key),
                Membership::Any => op == Op::Inserted,
            };
            if held || !data.can_add() || !may_join {
                return Ok(());
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
