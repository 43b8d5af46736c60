//! The row cache: each changed row is read at most once per change, however many
//! subscribers ask for it, and a load racing a newer change never serves stale data.
//!
//! why keyed by the change's sequence number: moka lets an `invalidate` that happens while a
//! load is in flight be overwritten by that load. Rather than invalidate, every change gets
//! a new key `(table, key, seq)`: asking for change N can only be answered by a load started
//! for change N (which ran after N committed), and older entries just age out.

use std::any::{Any, TypeId};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::error::LoadError;
use crate::schema::{Key, TableName};

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
    cache: Cache<CacheKey, Entry>,
    /// The most recent loads, in front of moka.
    ///
    /// why: when one change touches a thousand subscribers, 999 of them ask for a row just
    /// loaded; moka's hit path (frequency sketch, read recording) was a quarter of their sync
    /// time, a plain map under a mutex is a fraction of it. Keys carry the change's `seq`, so
    /// this never serves anything moka would not; it is cleared when full.
    recent: std::sync::Mutex<std::collections::HashMap<CacheKey, Entry>>,
    loads: AtomicU64,
    hits: AtomicU64,
}

/// Entries the front map keeps before it is cleared.
const RECENT_CAPACITY: usize = 4096;

impl RowCache {
    pub fn new(config: CacheConfig) -> RowCache {
        RowCache {
            cache: Cache::builder()
                .max_capacity(config.max_entries)
                .time_to_live(config.time_to_live)
                .build(),
            recent: Default::default(),
            loads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// The value for `key`, loading it with `load` unless it is cached or being loaded by
    /// another caller (then this one waits for that load, and shares its error too).
    pub async fn get_or_load<T, F>(&self, key: CacheKey, load: F) -> Result<Arc<T>, Arc<LoadError>>
    where
        T: Any + Send + Sync,
        F: Future<Output = Result<T, LoadError>>,
    {
        debug_assert_eq!(key.type_id, TypeId::of::<T>());
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(entry) = recent {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return downcast(entry);
        }
        let ran = AtomicBool::new(false);
        let entry = self
            .cache
            .try_get_with(key.clone(), async {
                ran.store(true, Ordering::Relaxed);
                self.loads.fetch_add(1, Ordering::Relaxed);
                load.await.map(|v| Arc::new(v) as Entry)
            })
            .await?;
        if !ran.load(Ordering::Relaxed) {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() >= RECENT_CAPACITY {
                recent.clear();
            }
            recent.insert(key, entry.clone());
        }
        downcast(entry)
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

    #[tokio::test]
    async fn concurrent_requests_for_one_change_load_once() {
        let cache = Arc::new(RowCache::new(CacheConfig::default()));
        let leader = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load(key(1), async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Some("row".to_owned()))
                    })
                    .await
            })
        };
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
}

impl Loader {
    /// The row of `S` with `key` as of change `seq`, with `tree` preloaded; one read per
    /// (row, change, shape) however many callers ask.
    pub async fn row<S: crate::schema::Schema>(
        &self,
        key: Key,
        seq: u64,
        tree: &crate::load::PreloadTree,
    ) -> Result<Option<S>, Arc<LoadError>> {
        let paths = tree.paths();
        let cache_key = CacheKey {
            table: S::meta().table,
            key: key.clone(),
            seq,
            shape: Arc::from(paths.join(",")),
            type_id: TypeId::of::<Option<S>>(),
        };
        let db = &self.db;
        let row = self
            .cache
            .get_or_load(cache_key, async move {
                db.query::<S>().preload(paths).get(key).await
            })
            .await?;
        Ok(Option::clone(&row))
    }
}
