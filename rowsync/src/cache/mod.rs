//! The row cache: each changed row is read at most once per change, however many
//! subscribers ask for it, and a load racing a newer change never serves stale data.
//!
//! Rows are cached as [`RowImage`]s (column values in schema order), so that a read is
//! shared by every Rust type holding the row, a batch of changes can be read together
//! without knowing those types (`prefetch.rs`), and a capture source that carries the rows
//! can fill the cache with no read at all. Rows loaded with associations (what sync inserts)
//! are cached per Rust type and shape.
//!
//! why keyed by the change's sequence number: moka lets an `invalidate` that happens while a
//! load is in flight be overwritten by that load. Rather than invalidate, every change gets
//! a new key `(table, key, seq)`: asking for change N can only be answered by a load started
//! for change N (which ran after N committed), and older entries just age out.

mod flight;
mod prefetch;

use std::any::{Any, TypeId};
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

pub(crate) use flight::{Flight, Loaded, SingleFlight};
use flight::{Found, Slot};

use crate::error::LoadError;
use crate::graph::PreloadTree;
use crate::hash::HashMap;
use crate::load::{fetch_related_of, Access, Db, ReadConn, Related};
use crate::schema::{
    AssocDef, Filter, Key, RowImage, Schema, SchemaMeta, SharedImage, TableName, Value,
};

/// How long a read waits for the transaction of its change to become visible.
const VISIBLE_PATIENCE: Duration = Duration::from_secs(5);

/// Limits of the shared row cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Entries kept at most.
    pub max_entries: u64,
    /// How long an entry lives after it was loaded.
    pub time_to_live: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            time_to_live: Duration::from_secs(60),
        }
    }
}

/// The row of a table with a key, as of one change, as one access context sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RowKey {
    pub table: TableName,
    pub key: Key,
    /// The change this load serves.
    pub seq: u64,
    /// Who reads it (`None`: the hub's own role): holders sharing a context share the read,
    /// and no context sees a row read under another.
    pub access: Option<Access>,
}

/// A row loaded with associations, as of one change, decoded as one Rust type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ShapedKey {
    pub row: RowKey,
    /// The preload paths loaded with the row.
    pub shape: Arc<str>,
    /// The Rust type the row was decoded into.
    pub type_id: TypeId,
}

/// A key that names the change its load serves.
trait Versioned {
    fn seq(&self) -> u64;
}

impl Versioned for RowKey {
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl Versioned for ShapedKey {
    fn seq(&self) -> u64 {
        self.row.seq
    }
}

/// A typed row behind a type-erased entry (the shaped cache holds rows of many types).
type Entry = Arc<dyn Any + Send + Sync>;

/// Entries a front map keeps before its finished entries are dropped.
const RECENT_CAPACITY: usize = 4096;

/// Recent loads, finished or in flight, in front of a bounded store.
///
/// why a front map: when one change touches a thousand subscribers they all ask for the row
/// at once, and most arrive while its load is in flight; they wait on one `Shared` future.
/// The store (moka: bound + time to live) serves the stragglers after the map was emptied.
///
/// why unclaimed entries stay: a batched read's share of rows, or a row its change carried,
/// is filed before any subscriber asks; under a backlog of thousands of changes, dropping
/// them at `RECENT_CAPACITY` made the subscribers that came later read those rows again
/// (1.06-1.27 rows per change measured). They stay until claimed, up to the store's bound.
struct Fronted<K, V> {
    front: SingleFlight<K, V>,
    store: Cache<K, V>,
    /// The newest change whose entries left the front map: newer ones are in the store only
    /// if they are in the front map too.
    dropped_through: AtomicU64,
    /// The map's size from which `make_room` runs (grows with what it had to keep, so a map
    /// full of unclaimed entries is not scanned at every insert).
    room_at: AtomicUsize,
    /// Unclaimed entries kept at most; the oldest changes' go first.
    max_unclaimed: usize,
}

impl<K, V> Fronted<K, V>
where
    K: Versioned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new(config: CacheConfig) -> Self {
        Fronted {
            front: SingleFlight::default(),
            store: Cache::builder()
                .max_capacity(config.max_entries)
                .time_to_live(config.time_to_live)
                .build(),
            dropped_through: AtomicU64::new(0),
            room_at: AtomicUsize::new(RECENT_CAPACITY),
            max_unclaimed: usize::try_from(config.max_entries)
                .unwrap_or(usize::MAX)
                .max(RECENT_CAPACITY),
        }
    }

    /// The value for `key`, loading it with `load` unless it is cached or being loaded by
    /// another caller (then this one waits for that load, and shares its error too).
    async fn get_or_load<F>(&self, key: K, load: F, counts: &Counts) -> Loaded<V>
    where
        F: Future<Output = Result<V, LoadError>> + Send + 'static,
    {
        match self.front.find(&key) {
            Some(Found::Ready(value)) => {
                counts.hit();
                return Ok(value);
            }
            Some(Found::Loading(flight)) => {
                counts.hit();
                return self.settle(&key, flight.await).await;
            }
            None => {}
        }
        // aged out of the front map, still in the store (only a change at or before the
        // newest one the front map dropped can be: the store is filled through the map)
        if key.seq() <= self.dropped_through.load(Ordering::Relaxed) {
            if let Some(value) = self.store.get(&key).await {
                counts.hit();
                self.front
                    .insert_ready(key, value.clone(), 0, |slots| self.make_room(slots));
                return Ok(value);
            }
        }
        let mut load = Some(load);
        let (flight, started) = self.front.join_or_start(
            key.clone(),
            || load.take().expect("the load is taken once"),
            |slots| self.make_room(slots),
        );
        if started {
            counts.started();
        } else {
            counts.hit();
        }
        self.settle(&key, flight.await).await
    }

    /// The value for `key` if it was loaded recently, without waiting: the followers of a
    /// change ask here first and never build the future of a load.
    fn recent(&self, key: &K, counts: &Counts) -> Option<Loaded<V>> {
        let found = self.front.peek(key)?;
        counts.hit();
        Some(found)
    }

    /// Files a finished load: the first caller to see it finish stores it.
    async fn settle(&self, key: &K, loaded: Loaded<V>) -> Loaded<V> {
        if self.front.settle(key, &loaded) {
            if let Ok(value) = &loaded {
                self.store.insert(key.clone(), value.clone()).await;
            }
        }
        loaded
    }

    fn offer(&self, offers: impl IntoIterator<Item = (K, Flight<V>, u32)>) {
        self.front.offer(offers, |slots| self.make_room(slots));
    }

    /// Empties a full front map of everything but the loads someone still waits for (a
    /// load every caller gave up on holds only the map's own handle, and goes too) and the
    /// entries no one claimed yet (the oldest of those past `max_unclaimed` go), noting the
    /// newest change dropped.
    fn make_room(&self, slots: &mut HashMap<K, Slot<V>>) {
        if slots.len() < self.room_at.load(Ordering::Relaxed) {
            return;
        }
        let mut unclaimed: Vec<u64> = slots
            .iter()
            .filter(|(_, slot)| slot.unclaimed())
            .map(|(key, _)| key.seq())
            .collect();
        // the oldest unclaimed entries past the bound go: those of changes up to `cut`
        let cut = if unclaimed.len() > self.max_unclaimed {
            let excess = unclaimed.len() - self.max_unclaimed;
            let (_, nth, _) = unclaimed.select_nth_unstable(excess - 1);
            Some(*nth)
        } else {
            None
        };
        let mut newest = 0;
        slots.retain(|key, slot| {
            let keep =
                slot.awaited() || (slot.unclaimed() && cut.is_none_or(|cut| key.seq() > cut));
            if !keep {
                newest = newest.max(key.seq());
            }
            keep
        });
        self.dropped_through.fetch_max(newest, Ordering::Relaxed);
        self.room_at
            .store(RECENT_CAPACITY.max(slots.len() * 2), Ordering::Relaxed);
    }
}

/// Reads and hits, for stats.
#[derive(Default)]
struct Counts {
    /// Database reads of rows (a batch counts once).
    loads: AtomicU64,
    /// Loads started under a key (a row's shaped load reads its row through the image cache,
    /// where that read is counted).
    started: AtomicU64,
    hits: AtomicU64,
}

impl Counts {
    fn load(&self) {
        self.loads.fetch_add(1, Ordering::Relaxed);
    }

    fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }
}

/// A bounded, single-flight cache of loaded rows shared by every subscription of a hub.
pub(crate) struct RowCache {
    images: Fronted<RowKey, Option<SharedImage>>,
    shaped: Fronted<ShapedKey, Entry>,
    counts: Counts,
    /// Whether reads of what a change does not carry (associations, link lists) wait until
    /// its transaction is visible: set for a source that hands changes over earlier.
    reads_wait_visible: AtomicBool,
}

impl RowCache {
    pub fn new(config: CacheConfig) -> RowCache {
        RowCache {
            images: Fronted::new(config),
            shaped: Fronted::new(config),
            counts: Counts::default(),
            reads_wait_visible: AtomicBool::new(false),
        }
    }

    /// Makes reads of what changes do not carry wait until their transactions are visible
    /// (a replication source hands a change over a moment before other sessions see it).
    pub fn set_reads_wait_visible(&self, wait: bool) {
        self.reads_wait_visible.store(wait, Ordering::Relaxed);
    }

    /// Waits until transaction `xid` is visible, when reads must (see
    /// [`set_reads_wait_visible`](Self::set_reads_wait_visible)).
    async fn wait_visible(&self, db: &Db, xid: u64) -> Result<(), LoadError> {
        if !self.reads_wait_visible.load(Ordering::Relaxed)
            || crate::load::wait_visible(db, &[xid], VISIBLE_PATIENCE).await
        {
            return Ok(());
        }
        Err(LoadError::NotVisible { xid })
    }

    /// Loads run so far (each one a database read).
    pub fn loads(&self) -> u64 {
        self.counts.loads.load(Ordering::Relaxed)
    }

    /// Requests answered without a load of their own.
    pub fn hits(&self) -> u64 {
        self.counts.hits.load(Ordering::Relaxed)
    }

    /// Entries held now (after pending evictions ran): those of the bounded store, and those
    /// of the front maps (rows filed or loading for the syncs of recent changes, which never
    /// enter the store), a key in both counted twice.
    pub async fn len(&self) -> u64 {
        self.images.store.run_pending_tasks().await;
        self.shaped.store.run_pending_tasks().await;
        let front = self.images.front.len() + self.shaped.front.len();
        self.images.store.entry_count() + self.shaped.store.entry_count() + front as u64
    }
}

/// Loads changed rows through the cache: what sync and [`Hub::get`](crate::Hub::get) use.
#[derive(Clone)]
pub(crate) struct Loader {
    pub cache: Arc<RowCache>,
    pub db: Db,
    /// The access context every read of this loader runs under (its role and settings).
    pub access: Option<Access>,
    /// The scope rows this loader gives must pass (checked in memory, after the read).
    pub scope: Option<Arc<Filter>>,
}

impl Loader {
    pub fn new(config: CacheConfig, db: Db) -> Loader {
        Loader {
            cache: Arc::new(RowCache::new(config)),
            db,
            access: None,
            scope: None,
        }
    }

    /// This loader's cache, reading under `access`: its role and settings decide the reads
    /// (and key them in the cache), its scope filters what they give.
    pub fn under(&self, access: Option<Access>) -> Loader {
        Loader {
            cache: self.cache.clone(),
            db: self.db.clone(),
            access: access.as_ref().and_then(Access::reads_as),
            scope: access.and_then(|a| a.scope_arc()),
        }
    }

    /// Whether this loader sees less than the hub's own role does.
    pub fn restricted(&self) -> bool {
        self.access.is_some() || self.scope.is_some()
    }

    /// Whether a row image of `meta` that this loader read passes its scope (no scope: it
    /// does); what row-level security hides is not read at all.
    pub fn sees(&self, meta: &'static SchemaMeta, image: &SharedImage) -> bool {
        self.scope.as_ref().is_none_or(|scope| {
            scope.matches(&|c| {
                meta.column_index(c)
                    .and_then(|i| image.values.get(i).cloned())
            })
        })
    }

    /// `row` as this loader's scope lets it be held: `None` outside it, its associations
    /// pruned inside it.
    fn scoped<S: Schema>(&self, row: Option<S>) -> Option<S> {
        match (&self.scope, row) {
            (Some(scope), Some(row)) => crate::load::scope::keep_in_scope(vec![row], scope).pop(),
            (_, row) => row,
        }
    }

    /// The image of the row of `meta`'s table with `key` as of change `seq` (`None`: it no
    /// longer exists); one read per (row, change) however many callers ask.
    pub async fn image(
        &self,
        meta: &'static SchemaMeta,
        key: Key,
        seq: u64,
    ) -> Loaded<Option<SharedImage>> {
        let row_key = RowKey {
            table: meta.table,
            key,
            seq,
            access: self.access.clone(),
        };
        if let Some(found) = self.cache.images.recent(&row_key, &self.cache.counts) {
            return found;
        }
        let (db, access) = (self.db.clone(), self.access.clone());
        let key = row_key.key.clone();
        // why boxed: the load future (the query and its connection checkout) is kilobytes,
        // and living inline it would be moved with every caller's future even on a hit
        let cache = self.cache.clone();
        Box::pin(self.cache.images.get_or_load(
            row_key,
            async move {
                cache.counts.load();
                read_image(&db, access.as_ref(), meta, key).await
            },
            &self.cache.counts,
        ))
        .await
    }

    /// The row of `S` with `key` as of change `seq`, with `tree` preloaded; one read per
    /// (row, change), plus one per association level and shape, however many callers ask.
    ///
    /// `xid` is the transaction of the change: on a source that hands changes over before
    /// they are visible, the read of what the change does not carry waits for it.
    pub async fn row<S: Schema>(
        &self,
        key: Key,
        seq: u64,
        xid: u64,
        tree: &PreloadTree,
    ) -> Loaded<Option<S>> {
        if tree.is_empty() {
            let image = self.image(S::meta(), key, seq).await?;
            return self.decoded::<S>(image.as_ref());
        }
        let shaped_key = ShapedKey {
            row: RowKey {
                table: S::meta().table,
                key,
                seq,
                access: self.access.clone(),
            },
            shape: Arc::from(tree.paths().join(",")),
            type_id: TypeId::of::<Option<S>>(),
        };
        let entry = match self.cache.shaped.recent(&shaped_key, &self.cache.counts) {
            Some(found) => found?,
            None => {
                let loader = self.clone();
                let (key, tree) = (shaped_key.row.key.clone(), tree.clone());
                Box::pin(self.cache.shaped.get_or_load(
                    shaped_key,
                    async move {
                        loader.wait_visible(xid).await?;
                        let row = loader.row_with::<S>(key, seq, &tree).await?;
                        Ok(Arc::new(row) as Entry)
                    },
                    &self.cache.counts,
                ))
                .await?
            }
        };
        entry
            .downcast::<Option<S>>()
            .map(|row| self.scoped(Option::clone(&row)))
            .map_err(|_| unexpected_entry())
    }

    async fn wait_visible(&self, xid: u64) -> Result<(), LoadError> {
        self.cache.wait_visible(&self.db, xid).await
    }

    /// The row of `S` in `image` as this loader gives it (its scope applied): what
    /// [`row`](Self::row) gives for that image with nothing preloaded.
    pub fn decoded<S: Schema>(&self, image: Option<&SharedImage>) -> Loaded<Option<S>> {
        image
            .map(|image| image.decode::<S>())
            .transpose()
            .map(|row| self.scoped(row))
            .map_err(|cause| decode_error::<S>(cause))
    }

    /// The row's image through the cache, decoded, with `tree` preloaded on a connection of
    /// the pool.
    async fn row_with<S: Schema>(
        &self,
        key: Key,
        seq: u64,
        tree: &PreloadTree,
    ) -> Result<Option<S>, LoadError> {
        let image = self.image(S::meta(), key, seq).await.map_err(unshare)?;
        let Some(image) = image else {
            return Ok(None);
        };
        let mut rows = vec![image.decode::<S>().map_err(|cause| LoadError::Decode {
            table: S::meta().table.to_string(),
            cause,
        })?];
        let conn = ReadConn::open(&self.db, self.access.as_ref()).await?;
        crate::load::preload(&mut rows, tree, conn.exec()).await?;
        conn.finish().await?;
        Ok(rows.pop())
    }

    /// The rows association `def` of `P` relates to the owners whose owner column holds one
    /// of `owners`, as of `change`, with `tree` preloaded under them: one query for all of
    /// them, shared by every sync of this change that asks for the same owners.
    pub async fn related<P: Schema, C: Schema>(
        &self,
        def: &'static AssocDef,
        mut owners: Vec<Value>,
        change: &crate::change::Change,
        seq: u64,
        tree: &PreloadTree,
    ) -> Loaded<Arc<Related<C>>> {
        owners.sort_by(crate::schema::compare_values);
        owners.dedup();
        let xid = change.xid;
        let key = ShapedKey {
            row: RowKey {
                table: change.table,
                key: change.key.clone(),
                seq,
                access: self.access.clone(),
            },
            shape: Arc::from(format!(
                "{}.{} of {owners:?} with {}",
                P::meta().name,
                def.name,
                tree.paths().join(",")
            )),
            type_id: TypeId::of::<Related<C>>(),
        };
        let entry = match self.cache.shaped.recent(&key, &self.cache.counts) {
            Some(found) => found?,
            None => {
                let (db, cache, tree) = (self.db.clone(), self.cache.clone(), tree.clone());
                let access = self.access.clone();
                Box::pin(self.cache.shaped.get_or_load(
                    key,
                    async move {
                        cache.wait_visible(&db, xid).await?;
                        cache.counts.load();
                        let conn = ReadConn::open(&db, access.as_ref()).await?;
                        let related =
                            fetch_related_of::<P, C>(owners, def, &tree, conn.exec()).await?;
                        conn.finish().await?;
                        Ok(Arc::new(Arc::new(related)) as Entry)
                    },
                    &self.cache.counts,
                ))
                .await?
            }
        };
        entry
            .downcast::<Arc<Related<C>>>()
            .map(|related| Arc::clone(&*related))
            .map_err(|_| unexpected_entry())
    }

    /// Files the row `change` left, as its capture source delivered it (`None`: deleted), so
    /// that none of the `claims` syncs of this change expected to ask reads it.
    ///
    /// A row the source carried is what the hub's own role sees: file it only on the hub's
    /// own loader (holders with a context read theirs). A row deleted is gone for every
    /// context, so its absence may be filed under any.
    pub fn file(&self, change: &crate::change::Change, row: Option<RowImage>, claims: u32) {
        // why a guard: a carried row filed under a context would reach its holders unchecked
        if row.is_some() && self.access.is_some() {
            return;
        }
        let key = RowKey {
            table: change.table,
            key: change.key.clone(),
            seq: change.seq,
            access: self.access.clone(),
        };
        let images = &self.cache.images;
        images
            .front
            .insert_ready(key, row.map(Arc::new), claims, |slots| {
                images.make_room(slots)
            });
    }

    /// Offers one batched read of the rows of `meta`'s table that changes `wanted`
    /// (key, seq, syncs expected to ask) will have syncs read, under this loader's context.
    /// `now`: start the read at once (see `prefetch::start`), and get a future that ends
    /// when the read does.
    pub fn prefetch(
        &self,
        meta: &'static SchemaMeta,
        wanted: Vec<(Key, u64, u32)>,
        now: bool,
    ) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        prefetch::start(self, meta, wanted, now)
    }
}

/// One row's image, read on a connection of the pool under `access`.
async fn read_image(
    db: &Db,
    access: Option<&Access>,
    meta: &'static SchemaMeta,
    key: Key,
) -> Result<Option<SharedImage>, LoadError> {
    let conn = ReadConn::open(db, access).await?;
    let mut found =
        crate::load::image::images(conn.exec(), meta, std::slice::from_ref(&key)).await?;
    conn.finish().await?;
    Ok(found.pop().map(Arc::new))
}

/// A cache entry whose type is not the one its key names.
// why no unwrap: the key holds the TypeId, so a mismatch cannot happen; if it ever did, a
// clear error beats a panic in a subscriber's task
fn unexpected_entry() -> Arc<LoadError> {
    Arc::new(LoadError::Schema(crate::error::SchemaError::Invalid(vec![
        "row cache entry of an unexpected type".to_owned(),
    ])))
}

fn decode_error<S: Schema>(cause: crate::error::DecodeError) -> Arc<LoadError> {
    Arc::new(LoadError::Decode {
        table: S::meta().table.to_string(),
        cause,
    })
}

/// A shared error as an owned one, for a load that wraps another.
// why: `LoadError` holds driver errors that are not `Clone`; the inner load's error is
// shared, so the outer one says so and keeps it as its source.
fn unshare(error: Arc<LoadError>) -> LoadError {
    match Arc::try_unwrap(error) {
        Ok(error) => error,
        Err(shared) => LoadError::Shared(shared),
    }
}

#[cfg(test)]
mod tests {
    use super::{CacheConfig, Fronted, Versioned, RECENT_CAPACITY};

    impl Versioned for u64 {
        fn seq(&self) -> u64 {
            *self
        }
    }

    fn fronted(max_entries: u64) -> Fronted<u64, u64> {
        Fronted::new(CacheConfig {
            max_entries,
            ..CacheConfig::default()
        })
    }

    fn file(cache: &Fronted<u64, u64>, seq: u64, unclaimed: bool) {
        cache
            .front
            .insert_ready(seq, seq, u32::from(unclaimed), |slots| {
                cache.make_room(slots)
            });
    }

    #[test]
    fn unclaimed_rows_outlive_a_full_front_map() {
        let cache = fronted(100_000);
        let backlog = 3 * RECENT_CAPACITY as u64;
        for seq in 1..=backlog {
            file(&cache, seq, true);
        }
        // every row filed for the backlog is there for the subscriber that comes last
        for seq in 1..=backlog {
            assert_eq!(cache.front.peek(&seq).map(Result::ok), Some(Some(seq)));
        }
        // claimed now: the next full map lets them go
        for seq in backlog + 1..=backlog + 2 * backlog {
            file(&cache, seq, false);
        }
        assert!(cache.front.peek(&1).is_none());
    }

    #[test]
    fn unclaimed_rows_are_bounded_oldest_first() {
        let bound = RECENT_CAPACITY as u64 * 2;
        let cache = fronted(bound);
        for seq in 1..=bound * 3 {
            file(&cache, seq, true);
        }
        assert!(cache.front.peek(&1).is_none());
        assert!(cache.front.peek(&(bound * 3)).is_some());
    }
}
