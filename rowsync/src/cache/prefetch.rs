//! Batched reads: the rows a burst of changes will have syncs read, read with one query
//! instead of one query per change.
//!
//! why: under load notifications arrive faster than one read each can follow. The pump takes
//! what is queued at once and names, per table, the changed rows some subscriber will read
//! (`WHERE pk = ANY($1)`); each change's cache entry is a share of that read. Subscribers ask
//! the cache exactly as before and find the load in flight. Rows are read as images, so no
//! Rust type needs to be known here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::FutureExt;

use super::{read_image, Loader, RowKey};
use crate::error::LoadError;
use crate::load::image::images;
use crate::load::ReadConn;
use crate::schema::{Key, SchemaMeta, SharedImage};

/// Fewer changes than this are read one by one (a batch of one is the same read).
const SMALLEST_BATCH: usize = 2;

/// Offers one batched read of the rows of `meta`'s table changed by `wanted` (key, change
/// seq, syncs expected to ask); nothing happens for too few changes.
pub(super) fn start(loader: &Loader, meta: &'static SchemaMeta, wanted: Vec<(Key, u64, u32)>) {
    if wanted.len() < SMALLEST_BATCH {
        return;
    }
    let mut seen = HashSet::new();
    let keys: Vec<Key> = wanted
        .iter()
        .filter(|(key, _, _)| seen.insert(key))
        .map(|(key, _, _)| key.clone())
        .collect();
    drop(seen);
    let (db, cache, access) = (
        loader.db.clone(),
        loader.cache.clone(),
        loader.access.clone(),
    );
    // lazy: the read runs when the first subscriber asks, after the changes committed
    let batch = async move {
        cache.counts.load();
        let conn = ReadConn::open(&db, access.as_ref()).await?;
        let rows = images(conn.exec(), meta, &keys).await?;
        conn.finish().await?;
        Ok::<_, LoadError>(Arc::new(
            rows.into_iter()
                .map(|image| (image.key(meta), Arc::new(image)))
                .collect::<HashMap<Key, SharedImage>>(),
        ))
    }
    .map(|r| r.map_err(Arc::new))
    .boxed()
    .shared();
    let alone = Arc::new(Alone {
        db: loader.db.clone(),
        cache: loader.cache.clone(),
        access: loader.access.clone(),
    });
    let offers = wanted.into_iter().map(|(key, seq, claims)| {
        let (batch, alone) = (batch.clone(), alone.clone());
        let wanted_key = key.clone();
        // why small: one of these is built per change; the read of its own is boxed apart,
        // so that the share of a batch that succeeds allocates a few words, not kilobytes
        let flight = async move {
            match batch.await {
                Ok(rows) => Ok(rows.get(&wanted_key).cloned()),
                // why a read of its own: a failed batch (a key type the array cannot carry, a
                // dropped connection) must not fail every sync that joined it
                Err(error) => {
                    tracing::debug!(%error, "batched read failed; reading the row alone");
                    alone.cache.counts.load();
                    Box::pin(read_image(
                        &alone.db,
                        alone.access.as_ref(),
                        meta,
                        wanted_key,
                    ))
                    .await
                    .map_err(Arc::new)
                }
            }
        }
        .boxed()
        .shared();
        let row = RowKey {
            table: meta.table,
            key,
            seq,
            access: loader.access.clone(),
        };
        (row, flight, claims)
    });
    // why collected first: the futures are built before the map is locked, not under it
    let offers: Vec<_> = offers.collect();
    loader.cache.images.offer(offers);
}

/// What a share of a failed batch needs to read its row alone (one for the whole batch).
struct Alone {
    db: crate::load::Db,
    cache: Arc<super::RowCache>,
    access: Option<crate::load::Access>,
}
