//! Batched reads: the rows a burst of updates changed, read with one query instead of one
//! query per change.
//!
//! why: under load notifications arrive faster than one read each can follow. The pump takes
//! what is queued at once; the updated rows that somebody holds are then read together with
//! `WHERE pk = ANY($1)`, and each change's cache entry is a share of that read. Subscribers
//! ask the cache exactly as before and find the load in flight.
//!
//! The pump knows tables, not Rust types, and a cache entry is typed. So the type is learnt:
//! the first time sync loads a bare row of a table, the loader remembers that type for the
//! table. A table loaded under several types gets batches for the first one only; the others
//! read one by one, as before.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::RwLock;

use futures_util::future::FutureExt;

use super::{cache_key, Entry, Loader};
use crate::error::LoadError;
use crate::load::query::by_keys;
use crate::schema::{Key, Schema, TableName};

/// Fewer changes than this are read one by one (a batch of one is the same read).
const SMALLEST_BATCH: usize = 2;

/// The learnt row type of each table.
#[derive(Default)]
pub(crate) struct Prefetchers {
    by_table: RwLock<HashMap<TableName, Arc<dyn Prefetch>>>,
}

impl Prefetchers {
    /// Rows of `S`'s table are loaded as `S`; the first type learnt for a table stays.
    pub fn learn<S: Schema>(&self) {
        let table = S::meta().table;
        if S::meta().primary_key.len() != 1 || self.by_table.read().contains_key(&table) {
            return;
        }
        self.by_table
            .write()
            .entry(table)
            .or_insert_with(|| Arc::new(Typed::<S>(PhantomData)));
    }

    /// Offers one batched read of the rows of `table` changed by `wanted` (key, change seq).
    /// Nothing happens for a table no type was learnt for, or for too few changes.
    pub fn start(&self, loader: &Loader, table: &TableName, wanted: Vec<(Key, u64)>) {
        if wanted.len() < SMALLEST_BATCH {
            return;
        }
        let prefetch = self.by_table.read().get(table).cloned();
        if let Some(prefetch) = prefetch {
            prefetch.start(loader, wanted);
        }
    }
}

/// A batched read for one row type.
trait Prefetch: Send + Sync {
    fn start(&self, loader: &Loader, wanted: Vec<(Key, u64)>);
}

struct Typed<S>(PhantomData<fn() -> S>);

impl<S: Schema> Prefetch for Typed<S> {
    fn start(&self, loader: &Loader, wanted: Vec<(Key, u64)>) {
        let mut seen = HashSet::new();
        let keys: Vec<_> = wanted
            .iter()
            .filter(|(key, _)| key.0.len() == 1 && seen.insert(key.clone()))
            .map(|(key, _)| key.0[0].clone())
            .collect();
        let (db, cache) = (loader.db.clone(), loader.cache.clone());
        // lazy: the read runs when the first subscriber asks, after the changes committed
        let batch = async move {
            cache.count_load();
            let rows = by_keys::<S>(&db, keys).await?;
            Ok::<_, LoadError>(Arc::new(
                rows.into_iter()
                    .map(|row| (row.primary_key(), row))
                    .collect::<HashMap<Key, S>>(),
            ))
        }
        .map(|r| r.map_err(Arc::new))
        .boxed()
        .shared();
        for (key, seq) in wanted {
            let batch = batch.clone();
            let (db, cache) = (loader.db.clone(), loader.cache.clone());
            let wanted_key = key.clone();
            let flight = async move {
                let row: Option<S> = match batch.await {
                    Ok(rows) => rows.get(&wanted_key).cloned(),
                    // why a read of its own: a failed batch (a key type the array cannot
                    // carry, a dropped connection) must not fail every sync that joined it
                    Err(error) => {
                        tracing::debug!(%error, "batched read failed; reading the row alone");
                        cache.count_load();
                        db.query::<S>().get(wanted_key).await.map_err(Arc::new)?
                    }
                };
                Ok(Arc::new(row) as Entry)
            }
            .boxed()
            .shared();
            loader
                .cache
                .offer_flight(cache_key::<S>(key, seq, &[]), flight);
        }
    }
}
