//! Where a large held list holds each row: for every row held at any depth (the root rows
//! too), the positions of the root rows holding it. A change of a row the data holds then
//! visits only those root rows instead of walking the whole list (a tag held by 1,000 of
//! 10,000 posts: 1,000 posts looked at, not 100,000 tags).
//!
//! Kept in step by being rebuilt: a sync that changes which rows are held (topics added or
//! removed), or inserts, removes or reloads root rows, drops it, and the next change that
//! can use it builds it again. Each use checks the root rows it names still sit where it
//! says (a list reordered by hand is caught there), and drops it if not.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Held;
use crate::change::{Change, Op};
use crate::error::SchemaError;
use crate::graph::{PreloadTree, Reached, TreePath};
use crate::hash::{HashMap, HashMapExt};
use crate::route::{topics_for_rows, Selector};
use crate::schema::{AssocKind, Key, Schema, SchemaMeta, TableName};

/// Root rows below which a held list is walked whole (an index costs more than it saves).
///
/// why not 64: indexing lists of 64 rows and more, with subscribers woken only after their
/// row's read, brought a broadcast's tail back (1,000 holders of 100 rows: p99 58-175 ms
/// against 9-55 ms with both undone, BENCHMARKS.md "a tail that came back"); not bisected
/// further yet.
static INDEXED_FROM: AtomicUsize = AtomicUsize::new(256);

/// Whether data holding `rows` root rows is worth an index.
pub(crate) fn worth_an_index(rows: usize) -> bool {
    rows >= INDEXED_FROM.load(Ordering::Relaxed)
}

/// Sets the number of root rows from which held lists are indexed (tests use 0 to run
/// every sync through the index).
pub fn set_indexed_from(rows: usize) {
    INDEXED_FROM.store(rows, Ordering::Relaxed);
}

/// Rows held by a list, by table and key, with the root positions holding each.
#[derive(Debug, Default)]
pub(crate) struct HeldIndex {
    held: HashMap<(TableName, Key), Vec<u32>>,
    /// The key of the root row at each position, to check positions before using them.
    roots: Vec<Key>,
}

impl HeldIndex {
    /// The index of `rows` held with `tree` under each.
    pub fn build<S: Schema>(rows: &[&S], tree: &PreloadTree) -> Result<HeldIndex, SchemaError> {
        let mut held: HashMap<(TableName, Key), Vec<u32>> = HashMap::new();
        let mut roots = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            roots.push(row.primary_key());
            for topic in topics_for_rows(std::slice::from_ref(row), tree)? {
                if let Selector::Row(key) = topic.selector {
                    let at = held.entry((topic.table, key)).or_default();
                    if at.last() != Some(&(i as u32)) {
                        at.push(i as u32);
                    }
                }
            }
        }
        Ok(HeldIndex { held, roots })
    }

    /// The root positions `change` can touch in data of root `root` held with `paths` to
    /// the changed table, in order; `None` when they cannot be told from the rows held
    /// (an insert, a changed key, or a path that takes in rows not held yet): walk all.
    pub fn positions(
        &self,
        root: &'static SchemaMeta,
        change: &Change,
        paths: &[TreePath],
    ) -> Option<Vec<usize>> {
        if change.op == Op::Inserted || change.old_key.is_some() {
            return None;
        }
        let reaches_held_only = paths
            .iter()
            .all(|path| path.reached == Reached::Related && ends_in_copies(root, &path.assocs));
        if !reaches_held_only {
            return None;
        }
        let mut at: Vec<usize> = self
            .held
            .get(&(change.table, change.key.clone()))
            .map(|at| at.iter().map(|&i| i as usize).collect())
            .unwrap_or_default();
        at.sort_unstable();
        at.dedup();
        Some(at)
    }

    /// Whether `data`'s root rows at `positions` are those the index was built with.
    pub fn still_holds<S: Schema, H: Held<S>>(&self, data: &H, positions: &[usize]) -> bool {
        data.held_count() == self.roots.len()
            && positions
                .iter()
                .all(|&i| data.row_at(i).is_some_and(|r| r.has_key(&self.roots[i])))
    }
}

/// Whether the last association of `assocs` (from `root`) holds copies of rows that live
/// on their own (belongs_to, many_to_many, through): a change of such a row only updates or
/// removes the copies held, never adds one. A has_many or has_one child can move into a
/// collection that does not hold it yet.
fn ends_in_copies(root: &'static SchemaMeta, assocs: &[usize]) -> bool {
    let mut meta = root;
    let mut last = None;
    for &i in assocs {
        let Some(def) = meta.assocs.get(i) else {
            return false;
        };
        last = Some(def);
        meta = (def.related)();
    }
    last.is_some_and(|def| {
        matches!(
            def.kind,
            AssocKind::BelongsTo { .. } | AssocKind::ManyToMany { .. } | AssocKind::Through { .. }
        )
    })
}
