//! The row cache: each changed row is read at most once per change, however many
//! subscribers ask for it, and a load racing a newer change never serves stale data.
//!
//! why keyed by the change's sequence number: moka lets an `invalidate` that happens while a
//! load is in flight be overwritten by that load. Rather than invalidate, every change gets
//! a new key `(table, key, seq)`: asking for change N can only be answered by a load started
//! for change N (which ran after N committed), and older entries just age out.
//!
//! Changes that arrive together share one read (`prefetch.rs`: batched reads).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use moka::future::Cache;

use crate::error::LoadError;
use crate::schema::{Key, TableName};

mod prefetch;
pub(crate) use prefetch::Prefetchers;

/// What identifies one cached load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub table: TableName,
    pub key: Key,
    /// The change this load serves.
    pub seq: u64,
    /// The preload paths loaded with the row (empty for the bare row).
    pub shape: Arc<str>,
    /// The Rust type the row was decoded into.
    pub type_id: TypeId,
}

type Entry = Arc<dyn Any + Send + Sync>;

/// Limits of the cache.
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

/// A bounded, single-flight cache of loaded rows shared by every subscription of a hub.
pub(crate) struct RowCache {
    /// Every load, bounded in entries and age.
    cache: Cache<CacheKey, Entry>,
    /// The most recent loads, finished or in flight, in front of moka.
    ///
    /// why our own single flight here rather than moka's `try_get_with`: when one change
    /// touches a thousand subscribers they all ask for the row at once, and most arrive while
    /// its load is in flight. Waiting in moka (a lock and an event listener per waiter) was a
    /// quarter of their sync CPU; waiting on one `Shared` future is a waker in a list. Keys
    /// carry the change's `seq`, so this never serves anything moka would not; finished
    /// entries are dropped when the map is full, loads in flight are kept.
    recent: Mutex<HashMap<CacheKey, Slot>>,
    /// The newest change whose entries left the front map: newer ones are in moka only if
    /// they are in the front map too.
    dropped_through: AtomicU64,
    loads: AtomicU64,
    hits: AtomicU64,
}

type Loaded = Result<Entry, Arc<LoadError>>;

/// A load for one key, finished or in flight.
enum Slot {
    Ready(Entry),
    Loading(Shared<BoxFuture<'static, Loaded>>),
}

impl Slot {
    /// The slot as a future of its value.
    fn flight(&self) -> Shared<BoxFuture<'static, Loaded>> {
        match self {
            Slot::Loading(flight) => flight.clone(),
            Slot::Ready(entry) => {
                let entry = entry.clone();
                async move { Ok(entry) }.boxed().shared()
            }
        }
    }
}

/// Entries the front map keeps before its finished entries are dropped.
const RECENT_CAPACITY: usize = 4096;

impl RowCache {
    pub fn new(config: CacheConfig) -> RowCache {
        RowCache {
            cache: Cache::builder()
                .max_capacity(config.max_entries)
                .time_to_live(config.time_to_live)
                .build(),
            recent: Default::default(),
            dropped_through: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// The value for `key`, loading it with `load` unless it is cached or being loaded by
    /// another caller (then this one waits for that load, and shares its error too).
    pub async fn get_or_load<T, F>(&self, key: CacheKey, load: F) -> Result<Arc<T>, Arc<LoadError>>
    where
        T: Any + Send + Sync,
        F: Future<Output = Result<T, LoadError>> + Send + 'static,
    {
        debug_assert_eq!(key.type_id, TypeId::of::<T>());
        match self.front(&key) {
            Some(Slot::Ready(entry)) => return downcast(entry),
            Some(Slot::Loading(flight)) => return self.finish(&key, flight.await).await,
            None => {}
        }
        // aged out of the front map, still in moka (only a change at or before the newest
        // one the front map dropped can be: moka is filled through the front map)
        let maybe_in_moka = key.seq <= self.dropped_through.load(Ordering::Relaxed);
        if maybe_in_moka {
            if let Some(entry) = self.cache.get(&key).await {
                self.hits.fetch_add(1, Ordering::Relaxed);
                self.set_ready(&key, entry.clone());
                return downcast(entry);
            }
        }
        self.lead(key, load).await
    }

    /// Starts the load of `key` (or joins one another caller just started) and files it.
    async fn lead<T, F>(&self, key: CacheKey, load: F) -> Result<Arc<T>, Arc<LoadError>>
    where
        T: Any + Send + Sync,
        F: Future<Output = Result<T, LoadError>> + Send + 'static,
    {
        let flight = {
            let mut front = self.lock_front();
            match front.get(&key) {
                // another caller started between our two looks
                Some(slot) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    slot.flight()
                }
                None => {
                    let loads = &self.loads;
                    loads.fetch_add(1, Ordering::Relaxed);
                    let flight =
                        async move { load.await.map(|v| Arc::new(v) as Entry).map_err(Arc::new) }
                            .boxed()
                            .shared();
                    self.make_room(&mut front);
                    front.insert(key.clone(), Slot::Loading(flight.clone()));
                    flight
                }
            }
        };
        self.finish(&key, flight.await).await
    }

    /// The value for `key` if it was loaded recently, without waiting: the followers of a
    /// change ask here first and never build the future of a load.
    pub fn recent<T: Any + Send + Sync>(
        &self,
        key: &CacheKey,
    ) -> Option<Result<Arc<T>, Arc<LoadError>>> {
        let front = self.lock_front();
        match front.get(key)? {
            Slot::Ready(entry) => {
                let entry = entry.clone();
                drop(front);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(downcast(entry))
            }
            Slot::Loading(flight) => {
                let done = flight.peek().cloned()?;
                drop(front);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(done.and_then(downcast))
            }
        }
    }

    /// What the front map holds for `key` (a hit counted), a flight to join or a value.
    fn front(&self, key: &CacheKey) -> Option<Slot> {
        let slot = match self.lock_front().get(key)? {
            Slot::Ready(entry) => Slot::Ready(entry.clone()),
            Slot::Loading(flight) => Slot::Loading(flight.clone()),
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(slot)
    }

    /// Files a finished load: the first caller to see it finish marks it ready and stores it
    /// in moka; a failed load is forgotten, so a later caller tries again.
    async fn finish<T: Any + Send + Sync>(
        &self,
        key: &CacheKey,
        loaded: Loaded,
    ) -> Result<Arc<T>, Arc<LoadError>> {
        let first = {
            let mut front = self.lock_front();
            let in_flight = matches!(front.get(key), Some(Slot::Loading(_)));
            if in_flight {
                match &loaded {
                    Ok(entry) => front.insert(key.clone(), Slot::Ready(entry.clone())),
                    Err(_) => front.remove(key),
                };
            }
            in_flight
        };
        if let (true, Ok(entry)) = (first, &loaded) {
            self.cache.insert(key.clone(), entry.clone()).await;
        }
        loaded.and_then(downcast)
    }

    fn set_ready(&self, key: &CacheKey, entry: Entry) {
        let mut front = self.lock_front();
        self.make_room(&mut front);
        front.entry(key.clone()).or_insert(Slot::Ready(entry));
    }

    /// Files `flight` as the load of `key` unless the key is loaded or being loaded already.
    fn offer_flight(&self, key: CacheKey, flight: Shared<BoxFuture<'static, Loaded>>) {
        let mut front = self.lock_front();
        if !front.contains_key(&key) {
            self.make_room(&mut front);
            front.insert(key, Slot::Loading(flight));
        }
    }

    /// Counts a database read.
    fn count_load(&self) {
        self.loads.fetch_add(1, Ordering::Relaxed);
    }

    /// Empties a full front map of everything but the loads someone still waits for (a
    /// load every caller gave up on holds only the map's own handle, and goes too), noting
    /// the newest change dropped.
    fn make_room(&self, front: &mut HashMap<CacheKey, Slot>) {
        if front.len() < RECENT_CAPACITY {
            return;
        }
        let mut newest = 0;
        front.retain(|key, slot| {
            let keep = match slot {
                Slot::Loading(flight) => flight.strong_count().is_some_and(|n| n > 1),
                Slot::Ready(_) => false,
            };
            if !keep {
                newest = newest.max(key.seq);
            }
            keep
        });
        self.dropped_through.fetch_max(newest, Ordering::Relaxed);
    }

    fn lock_front(&self) -> parking_lot::MutexGuard<'_, HashMap<CacheKey, Slot>> {
        self.recent.lock()
    }

    /// Loads run so far (each one a database read).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Requests answered without a load of their own.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Entries held now (approximate, as moka counts lazily).
    pub async fn len(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: u64) -> CacheKey {
        CacheKey {
            table: TableName {
                schema: None,
                name: "posts",
            },
            key: Key::from(1i64),
            seq,
            shape: Arc::from(""),
            type_id: TypeId::of::<Option<String>>(),
        }
    }

    /// A task loading `key(1)` for 50 ms, to be joined or cancelled meanwhile.
    fn slow_leader(
        cache: &Arc<RowCache>,
    ) -> tokio::task::JoinHandle<Result<Arc<Option<String>>, Arc<LoadError>>> {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load(key(1), async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some("row".to_owned()))
                })
                .await
        })
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_change_load_once() {
        let cache = Arc::new(RowCache::new(CacheConfig::default()));
        let leader = slow_leader(&cache);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut followers = Vec::new();
        for _ in 0..100 {
            let cache = cache.clone();
            followers.push(tokio::spawn(async move {
                cache
                    .get_or_load::<Option<String>, _>(key(1), async {
                        unreachable!("followers never load")
                    })
                    .await
            }));
        }
        assert_eq!(leader.await.unwrap().unwrap().as_deref(), Some("row"));
        for f in followers {
            assert_eq!(f.await.unwrap().unwrap().as_deref(), Some("row"));
        }
        assert_eq!(cache.loads(), 1);
        assert_eq!(cache.hits(), 100);
    }

    #[tokio::test]
    async fn a_newer_change_never_gets_an_older_load() {
        let cache = RowCache::new(CacheConfig::default());
        let old = cache
            .get_or_load(key(1), async { Ok(Some("old".to_owned())) })
            .await
            .unwrap();
        let new = cache
            .get_or_load(key(2), async { Ok(Some("new".to_owned())) })
            .await
            .unwrap();
        assert_eq!(old.as_deref(), Some("old"));
        assert_eq!(new.as_deref(), Some("new"));
        assert_eq!(cache.loads(), 2);
    }

    #[tokio::test]
    async fn a_failed_load_is_shared_by_its_waiters_then_tried_again() {
        let cache = Arc::new(RowCache::new(CacheConfig::default()));
        let failing = |cache: Arc<RowCache>| async move {
            cache
                .get_or_load::<Option<String>, _>(key(1), async {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Err(LoadError::MultipleRows {
                        table: "posts".into(),
                        count: 2,
                    })
                })
                .await
        };
        let (a, b) = tokio::join!(failing(cache.clone()), failing(cache.clone()));
        assert!(a.is_err() && b.is_err());
        assert_eq!(cache.loads(), 1, "the waiter shared the failed load");
        let again = cache
            .get_or_load(key(1), async { Ok(Some("row".to_owned())) })
            .await
            .unwrap();
        assert_eq!(again.as_deref(), Some("row"));
        assert_eq!(cache.loads(), 2, "an error is not cached");
    }

    #[tokio::test]
    async fn waiters_finish_the_load_when_its_leader_is_cancelled() {
        let cache = Arc::new(RowCache::new(CacheConfig::default()));
        let leader = slow_leader(&cache);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let follower = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load::<Option<String>, _>(key(1), async {
                        unreachable!("the follower joins the leader's load")
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort();
        let row = follower.await.unwrap().unwrap();
        assert_eq!(row.as_deref(), Some("row"));
        assert_eq!(cache.loads(), 1);
    }

    #[tokio::test]
    async fn a_load_that_left_the_front_map_is_served_by_moka() {
        let cache = RowCache::new(CacheConfig::default());
        for seq in 0..(RECENT_CAPACITY as u64 + 10) {
            cache
                .get_or_load(key(seq), async { Ok(Some(String::new())) })
                .await
                .unwrap();
        }
        assert!(cache.dropped_through.load(Ordering::Relaxed) > 0);
        assert!(cache.recent::<Option<String>>(&key(0)).is_none());
        let loads = cache.loads();
        let old = cache
            .get_or_load::<Option<String>, _>(key(0), async { unreachable!("still in moka") })
            .await
            .unwrap();
        assert_eq!(old.as_deref(), Some(""));
        assert_eq!(cache.loads(), loads);
    }

    #[tokio::test]
    async fn entries_stay_within_the_bound() {
        let cache = RowCache::new(CacheConfig {
            max_entries: 100,
            time_to_live: Duration::from_secs(60),
        });
        for seq in 0..2_000 {
            cache
                .get_or_load(key(seq), async { Ok(Some(String::new())) })
                .await
                .unwrap();
        }
        assert!(cache.len().await <= 100, "{}", cache.len().await);
    }
}

// why not unwrap: the key holds the TypeId, so a mismatch cannot happen; if it ever did, a
// clear error beats a panic in a subscriber's task.
fn downcast<T: Any + Send + Sync>(entry: Entry) -> Result<Arc<T>, Arc<LoadError>> {
    entry.downcast::<T>().map_err(|_| {
        Arc::new(LoadError::Schema(crate::error::SchemaError::Invalid(vec![
            "row cache entry of an unexpected type".to_owned(),
        ])))
    })
}

/// Loads changed rows through the cache: what sync and [`Hub::get`](crate::Hub::get) use.
#[derive(Clone)]
pub(crate) struct Loader {
    pub cache: Arc<RowCache>,
    pub db: crate::load::Db,
    /// The row type learnt for each table, for batched reads.
    pub prefetch: Arc<Prefetchers>,
}

impl Loader {
    /// The row of `S` with `key` as of change `seq`, with `tree` preloaded; one read per
    /// (row, change, shape) however many callers ask.
    pub async fn row<S: crate::schema::Schema>(
        &self,
        key: Key,
        seq: u64,
        tree: &crate::graph::PreloadTree,
    ) -> Result<Option<S>, Arc<LoadError>> {
        let paths = tree.paths();
        let cache_key = cache_key::<S>(key.clone(), seq, &paths);
        if let Some(found) = self.cache.recent::<Option<S>>(&cache_key) {
            return found.map(|row| Option::clone(&row));
        }
        // learnt off the hot path: the first bare load of a type always gets here
        if paths.is_empty() {
            self.prefetch.learn::<S>();
        }
        // why boxed: the load future (moka's single-flight and the query) is kilobytes, and
        // living inline it would be moved with every caller's future even on a cache hit
        let db = self.db.clone();
        let row = Box::pin(self.cache.get_or_load(cache_key, async move {
            db.query::<S>().preload(paths).get(key).await
        }))
        .await?;
        Ok(Option::clone(&row))
    }
}

impl Loader {
    /// Offers one batched read of the rows of `table` that changes `wanted` (key, seq) updated.
    pub fn prefetch(&self, table: &TableName, wanted: Vec<(Key, u64)>) {
        self.prefetch.start(self, table, wanted);
    }
}

fn cache_key<S: crate::schema::Schema>(key: Key, seq: u64, paths: &[String]) -> CacheKey {
    CacheKey {
        table: S::meta().table,
        key,
        seq,
        shape: Arc::from(paths.join(",")),
        type_id: TypeId::of::<Option<S>>(),
    }
}
