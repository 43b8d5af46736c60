//! Applying a change to in-memory data (EctoSync's `sync/3`): a struct, a `Vec`, an
//! `Option`, nested associations of every kind, walking only the paths of the preload shape
//! that lead to the changed table.

mod apply;
mod context;
mod held;
mod index;
pub(crate) mod order;
mod root;
mod versions;
mod walk;

pub use context::SyncOptions;
pub(crate) use context::{KeySet, Membership, SyncCtx};
pub use held::Held;
pub use index::set_indexed_from;
pub(crate) use index::{worth_an_index, HeldIndex};
pub(crate) use versions::{Verdict, Versions};

use crate::error::SyncError;
use crate::graph::PreloadTree;
use crate::graph::TreePath;
use crate::hash::HashSet;
use crate::schema::{Key, Schema};

/// What a sync changed at the top level of the held data, for a UI to patch only those rows.
/// `{:?}` reads as `Changes { inserted: [#3], updated: [#1], .. }`; name the rows with
/// [`describe`](Changes::describe): `inserted Post #3; updated Post #1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Changes {
    /// Root rows added.
    pub inserted: Vec<Key>,
    /// Root rows replaced, or changed somewhere inside.
    pub updated: Vec<Key>,
    /// Root rows removed.
    pub deleted: Vec<Key>,
    /// Whether the whole value was reloaded (after a resync).
    pub reloaded: bool,
}

impl Changes {
    /// Adds what `other` changed (a later change of the same data).
    pub fn merge(&mut self, other: Changes) {
        for key in other.inserted {
            // deleted and inserted again: replaced
            if let Some(at) = self.deleted.iter().position(|k| *k == key) {
                self.deleted.remove(at);
                if !self.updated.contains(&key) {
                    self.updated.push(key);
                }
            } else if !self.inserted.contains(&key) {
                self.inserted.push(key);
            }
        }
        for key in other.updated {
            if !self.updated.contains(&key) && !self.inserted.contains(&key) {
                self.updated.push(key);
            }
        }
        for key in other.deleted {
            self.inserted.retain(|k| *k != key);
            self.updated.retain(|k| *k != key);
            if !self.deleted.contains(&key) {
                self.deleted.push(key);
            }
        }
        self.reloaded |= other.reloaded;
    }

    /// What changed, with the rows named by their schema: `inserted Post #3; deleted
    /// Post #1`, or `reloaded`, or `nothing`.
    pub fn describe<'a>(&'a self, schema: &'a str) -> impl std::fmt::Display + 'a {
        Described {
            changes: self,
            schema,
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.inserted.is_empty()
            && self.updated.is_empty()
            && self.deleted.is_empty()
            && !self.reloaded
    }
}

/// `inserted #3; deleted #1` (name the schema with [`Changes::describe`]).
impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.describe("").fmt(f)
    }
}

struct Described<'a> {
    changes: &'a Changes,
    schema: &'a str,
}

impl std::fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.changes;
        let mut first = true;
        for (what, keys) in [
            ("inserted", &c.inserted),
            ("updated", &c.updated),
            ("deleted", &c.deleted),
        ] {
            if keys.is_empty() {
                continue;
            }
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            f.write_str(what)?;
            for (i, key) in keys.iter().enumerate() {
                f.write_str(if i == 0 { " " } else { ", " })?;
                if self.schema.is_empty() {
                    write!(f, "#{key}")?;
                } else {
                    write!(f, "{}", key.of(self.schema))?;
                }
            }
        }
        if c.reloaded {
            f.write_str(if first { "reloaded" } else { "; reloaded" })?;
            first = false;
        }
        if first {
            f.write_str("nothing")?;
        }
        Ok(())
    }
}

/// Applies `ctx.change` to `data` held in shape `tree`; `paths` are the shape's paths to
/// the changed table; `only`: the root positions the change can touch, when known (see
/// [`HeldIndex`]), else every root row is looked at.
pub(crate) async fn apply<S: Schema, H: Held<S>>(
    ctx: &SyncCtx,
    data: &mut H,
    tree: &PreloadTree,
    paths: &[TreePath],
    only: Option<&[usize]>,
) -> Result<Changes, SyncError> {
    let mut changes = Changes::default();
    if ctx.change.table == S::meta().table {
        root::apply_root(ctx, data, tree, &mut changes, only).await?;
    }
    let mut touched = Vec::new();
    for path in paths {
        let rows: Vec<(usize, &mut S)> = match only {
            Some(at) => data.rows_at_mut(at),
            None => data.rows_mut().into_iter().enumerate().collect(),
        };
        touched.extend(walk::apply_path(ctx, rows, tree, &path.assocs, path.reached).await?);
    }
    touched.sort_unstable();
    touched.dedup();
    if !touched.is_empty() {
        // why a set of the root's own changes only: thousands of root rows can be touched by
        // one change (a tag held under many posts), each once (`touched` holds distinct
        // rows); only a row the root change already listed must not be listed twice
        let listed: HashSet<Key> = changes
            .updated
            .iter()
            .chain(&changes.inserted)
            .cloned()
            .collect();
        // why by position: listing every held row to name a few is linear in the list
        for i in touched {
            if let Some(row) = data.row_at(i) {
                let key = row.primary_key();
                if listed.is_empty() || !listed.contains(&key) {
                    changes.updated.push(key);
                }
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod describe_tests {
    use super::Changes;
    use crate::schema::Key;

    #[test]
    fn changes_name_their_rows() {
        let changes = Changes {
            inserted: vec![Key::from(3i64)],
            deleted: vec![Key::from(1i64), Key::from(2i64)],
            ..Changes::default()
        };
        assert_eq!(
            changes.describe("Post").to_string(),
            "inserted Post #3; deleted Post #1, Post #2"
        );
        assert_eq!(
            format!("{changes:?}"),
            "Changes { inserted: [#3], updated: [], deleted: [#1, #2], reloaded: false }"
        );
        assert_eq!(changes.to_string(), "inserted #3; deleted #1, #2");
        assert_eq!(Changes::default().describe("Post").to_string(), "nothing");
    }
}
