//! What one sync needs: the change, a loader through the shared cache, options, and the
//! topics its edits add and remove.

use std::any::Any;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cache::Loader;
use crate::change::{Change, Op};
use crate::error::{SchemaError, SyncError};
use crate::graph::PreloadTree;
use crate::hash::{HashMap, HashMapExt, HashSet};
use crate::route::{topics_for_rows, Topic};
use crate::schema::{Filter, Key, OrderBy, Schema, SchemaMeta, SharedImage, Value};

/// Options of a sync, e.g. the shape rows of a schema get when sync inserts them
/// (EctoSync's `preloads: %{Tag => [:posts]}`).
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    preloads: HashMap<&'static str, Vec<String>>,
}

impl SyncOptions {
    /// Default options: inserted rows get the shape their siblings have.
    pub fn new() -> Self {
        SyncOptions::default()
    }

    /// Rows of `S` that sync inserts get `paths` preloaded.
    pub fn preload<S: Schema>(mut self, paths: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.preloads.insert(
            S::meta().name,
            paths.into_iter().map(|p| p.as_ref().to_owned()).collect(),
        );
        self
    }

    /// The options as text, the same for equal options (for keying what they shape).
    pub(crate) fn key(&self) -> String {
        let sorted: std::collections::BTreeMap<_, _> = self.preloads.iter().collect();
        format!("{sorted:?}")
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.preloads.is_empty()
    }

    /// The shape rows of `S` get: `default` (their siblings' shape) with the option's paths
    /// added (merged, never replacing what is held).
    pub(crate) fn shape_for<S: Schema>(
        &self,
        default: &PreloadTree,
    ) -> Result<PreloadTree, SchemaError> {
        match self.preloads.get(S::meta().name) {
            Some(paths) => Ok(default.union(&PreloadTree::parse(S::meta(), paths)?)),
            None => Ok(default.clone()),
        }
    }

    /// `tree` (held under `root`) with the option's paths added wherever a schema they
    /// name sits in it: the shape data has once the options applied.
    pub(crate) fn grow(
        &self,
        root: &'static SchemaMeta,
        tree: &PreloadTree,
    ) -> Result<PreloadTree, SchemaError> {
        let mut grown = match self.preloads.get(root.name) {
            Some(paths) => tree.union(&PreloadTree::parse(root, paths)?),
            None => tree.clone(),
        };
        let children: Vec<(usize, PreloadTree)> = grown
            .children()
            .iter()
            .map(|node| {
                let related = (root.assocs[node.assoc].related)();
                self.grow(related, &node.tree).map(|t| (node.assoc, t))
            })
            .collect::<Result<_, _>>()?;
        for (assoc, below) in children {
            grown = grown.with_subtree(assoc, below);
        }
        Ok(grown)
    }
}

/// Topics added and removed by one sync.
#[derive(Debug, Default)]
pub(crate) struct TopicDelta {
    pub added: Vec<Topic>,
    pub removed: Vec<Topic>,
}

/// Which root rows belong to the held data.
#[derive(Debug, Clone, Default)]
pub(crate) enum Membership {
    /// Rows inserted into the root table belong; updates replace held rows (EctoSync's
    /// behaviour for data synced outside a subscription).
    #[default]
    Any,
    /// Exactly these keys (`subscribe(&rows)`, `live().get(pk)`): a row deleted and inserted
    /// again under one of them returns.
    Keys(Arc<KeySet>),
    /// The rows a query selects (`subscribe_table`, `live().all()`): rows inserted or updated
    /// into matching the filter join, in the query's order; rows that stop matching leave.
    Query {
        // why shared: every sync clones the membership, and a filter is a tree
        filter: Option<Arc<Filter>>,
        order_by: Arc<[OrderBy]>,
    },
}

/// The keys a [`Membership::Keys`] follows.
///
/// why one key apart: most such holders follow one row (`live().get(pk)`), and a set of one
/// is ~200 bytes (a table of four slots) where the key alone is 24.
#[derive(Debug)]
pub(crate) enum KeySet {
    One(Key),
    Many(HashSet<Key>),
}

impl KeySet {
    /// Whether `key` is followed.
    pub fn contains(&self, key: &Key) -> bool {
        match self {
            KeySet::One(one) => one == key,
            KeySet::Many(keys) => keys.contains(key),
        }
    }

    /// Every key followed.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        let (one, many) = match self {
            KeySet::One(one) => (Some(one), None),
            KeySet::Many(keys) => (None, Some(keys.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl FromIterator<Key> for KeySet {
    fn from_iter<I: IntoIterator<Item = Key>>(keys: I) -> KeySet {
        let mut keys: HashSet<Key> = keys.into_iter().collect();
        match keys.len() {
            1 => KeySet::One(keys.drain().next().expect("one key")),
            _ => KeySet::Many(keys),
        }
    }
}

impl Membership {
    /// Whether a root row (as loaded now) belongs.
    pub fn admits<S: Schema>(&self, row: &S) -> bool {
        match self {
            Membership::Any => true,
            Membership::Keys(keys) => keys.contains(&row.primary_key()),
            Membership::Query { filter, .. } => filter
                .as_ref()
                .is_none_or(|f| f.matches(&|c| row.value_of(c))),
        }
    }
}

pub(crate) struct SyncCtx {
    pub change: Arc<Change>,
    /// The changed row as the database holds it as of this change (read once per change
    /// through the shared cache): the truth the change is a hint about.
    truth: Truth,
    /// Whether to compute the topics edits add and remove (not for data held outside a
    /// subscription, which has no topics to follow).
    pub follow_topics: bool,
    /// Which root rows belong.
    pub membership: Membership,
    pub loader: Loader,
    pub options: SyncOptions,
    pub delta: Mutex<TopicDelta>,
    /// The position rows are read at: the change's own, or a newer one when the holder
    /// applied a newer change already (see `Versions::read_position`).
    pub read_seq: u64,
    /// The changed row decoded bare, once per sync: every place holding it (a tag held under
    /// 1,000 posts) gets a clone instead of a cache look-up and a decode of its own.
    bare: Mutex<Option<Box<dyn Any + Send + Sync>>>,
}

/// What the database says of the changed row.
enum Truth {
    /// Its table has no schema here (a join table known by name): only the change says.
    Unknown,
    /// It does not exist (any more).
    Gone,
    /// It exists, as this image of `meta`'s columns.
    Row {
        image: SharedImage,
        meta: &'static SchemaMeta,
    },
}

impl SyncCtx {
    /// The context of syncing `change`; the changed row is read first (through the cache)
    /// when its table has a schema, so that every decision follows the database, not the
    /// notification: a forged or replayed change costs a read, never a wrong value.
    pub async fn new(
        change: Arc<Change>,
        meta: Option<&'static SchemaMeta>,
        loader: Loader,
        options: SyncOptions,
        read_seq: u64,
    ) -> Result<SyncCtx, SyncError> {
        let truth = match meta {
            None => Truth::Unknown,
            Some(meta) => match loader.image(meta, change.key.clone(), read_seq).await? {
                // a row outside the holder's scope is, to it, a row that is not there
                Some(image) if !loader.sees(meta, &image) => Truth::Gone,
                Some(image) => Truth::Row { image, meta },
                None => Truth::Gone,
            },
        };
        Ok(SyncCtx {
            change,
            truth,
            follow_topics: true,
            membership: Membership::Any,
            loader,
            options,
            delta: Mutex::new(TopicDelta::default()),
            read_seq,
            bare: Mutex::new(None),
        })
    }

    /// What happened to the changed row, as the database tells: gone is a delete whatever
    /// the change said, present after a delete is an update (the row came back, or the
    /// delete was not real).
    pub fn op(&self) -> Op {
        match (&self.truth, self.change.op) {
            (Truth::Unknown, op) => op,
            (Truth::Gone, _) => Op::Deleted,
            (Truth::Row { .. }, Op::Inserted) => Op::Inserted,
            (Truth::Row { .. }, _) => Op::Updated,
        }
    }

    /// The value of a column of the changed row: as the database holds it when known, else
    /// as the change carried it (a routing column); `None` for a row that is gone.
    pub fn column(&self, name: &str) -> Option<Value> {
        match &self.truth {
            Truth::Row { image, meta } => meta
                .column_index(name)
                .and_then(|i| image.values.get(i).cloned()),
            Truth::Gone => None,
            Truth::Unknown => self.change.column(name).cloned(),
        }
    }

    /// Whether `row` is the changed row (by its key, or its key before the update).
    pub fn is_changed<C: Schema>(&self, row: &C) -> bool {
        row.has_key(&self.change.key)
            || self.change.old_key.as_ref().is_some_and(|k| row.has_key(k))
    }

    /// The position in `list` of the changed row. When the list holds it under its new key
    /// already (the new row was taken in by an earlier change) and under its old key too,
    /// the stale copy under the old key is removed (untracked with `tree`) first.
    pub fn changed_position<C: Schema>(
        &self,
        list: &mut Vec<C>,
        tree: &PreloadTree,
    ) -> Result<Option<usize>, SyncError> {
        let at_key = list.iter().position(|c| c.has_key(&self.change.key));
        let at_old = self
            .change
            .old_key
            .as_ref()
            .filter(|old| **old != self.change.key)
            .and_then(|old| list.iter().position(|c| c.has_key(old)));
        Ok(match (at_key, at_old) {
            (Some(key), Some(old)) => {
                let stale = list.remove(old);
                self.untrack(&stale, tree)?;
                Some(if old < key { key - 1 } else { key })
            }
            (key, old) => key.or(old),
        })
    }

    /// Whether a root row (as loaded now) belongs to the held data.
    pub fn admits<S: Schema>(&self, row: &S) -> bool {
        match &self.membership {
            // why: the row sync asks about is almost always the changed row, whose key is at
            // hand; building and hashing the row's own key is then wasted
            Membership::Keys(keys) if row.has_key(&self.change.key) => {
                keys.contains(&self.change.key)
            }
            membership => membership.admits(row),
        }
    }

    /// The row of `C` with `key` as of this change, loaded through the shared cache with
    /// `tree` (a row held in many places is read once).
    pub async fn load<C: Schema>(
        &self,
        key: Key,
        tree: &PreloadTree,
    ) -> Result<Option<C>, SyncError> {
        Ok(self
            .loader
            .row::<C>(key, self.read_seq, self.change.xid, tree)
            .await?)
    }

    /// The changed row of `C` as of this change, without associations: what
    /// `load(change.key, bare)` returns, decoded on the first call and cloned after.
    ///
    /// why the same answer as a load: the image is read at `read_seq` through the same
    /// loader (scope included) whichever holder asks first, so a clone of the first answer
    /// is what every later load would decode.
    pub async fn changed_row<C: Schema>(&self) -> Result<Option<C>, SyncError> {
        if let Some(row) = self
            .bare
            .lock()
            .as_ref()
            .and_then(|row| row.downcast_ref::<Option<C>>())
        {
            return Ok(row.clone());
        }
        let row = self
            .load::<C>(self.change.key.clone(), &PreloadTree::default())
            .await?;
        *self.bare.lock() = Some(Box::new(row.clone()));
        Ok(row)
    }

    /// `rows` without those outside the holder's scope (pruned at every depth).
    pub fn scoped<C: Schema>(&self, rows: Vec<C>) -> Vec<C> {
        match &self.loader.scope {
            Some(scope) => crate::load::scope::keep_in_scope(rows, scope),
            None => rows,
        }
    }

    /// Records that `row` (held with `tree`) is now held.
    pub fn track<C: Schema>(&self, row: &C, tree: &PreloadTree) -> Result<(), SyncError> {
        self.record(row, tree, true)
    }

    /// Records that `row` (held with `tree`) is no longer held.
    pub fn untrack<C: Schema>(&self, row: &C, tree: &PreloadTree) -> Result<(), SyncError> {
        self.record(row, tree, false)
    }

    fn record<C: Schema>(&self, row: &C, tree: &PreloadTree, held: bool) -> Result<(), SyncError> {
        if !self.follow_topics {
            return Ok(());
        }
        let topics = topics_for_rows(&[row], tree)?;
        let mut delta = self.delta.lock();
        let list = if held {
            &mut delta.added
        } else {
            &mut delta.removed
        };
        list.extend(topics);
        Ok(())
    }

    /// Records that the row of `S` with `key` is followed even while absent.
    pub fn track_key<S: Schema>(&self, key: &Key) {
        self.delta.lock().added.push(Topic {
            table: S::meta().table,
            selector: crate::route::Selector::Row(key.clone()),
        });
    }

    /// The topics added and removed, with holds that were removed and added back (a row
    /// replaced by a row with the same keys) cancelled out.
    pub fn take_delta(&self) -> TopicDelta {
        let delta = std::mem::take(&mut *self.delta.lock());
        if delta.added.is_empty() || delta.removed.is_empty() {
            return delta;
        }
        let mut net: HashMap<Topic, isize> = HashMap::new();
        for topic in delta.added {
            *net.entry(topic).or_default() += 1;
        }
        for topic in delta.removed {
            *net.entry(topic).or_default() -= 1;
        }
        let mut out = TopicDelta::default();
        for (topic, count) in net {
            let list = if count > 0 {
                &mut out.added
            } else {
                &mut out.removed
            };
            list.extend(std::iter::repeat_n(topic, count.unsigned_abs()));
        }
        out
    }
}
