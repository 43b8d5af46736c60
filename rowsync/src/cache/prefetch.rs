//! Batched reads: the rows a burst of changes will have syncs read, read with one query
//! instead of one query per change.
//!
//! why: under load notifications arrive faster than one read each can follow. The pump takes
//! what is queued at once and names, per table, the changed rows some subscriber will read
//! (`WHERE pk = ANY($1)`); each change's cache entry is a share of that read. Subscribers ask
//! the cache exactly as before and find the load in flight. Rows are read as images, so no
//! Rust type needs to be known here.
//!
//! why a read starts when offered, even for one change: started by the first subscriber to
//! ask, the read of change N+1 waited until that subscriber had applied change N, so one
//! read's round trip per change sat on every subscriber's path in turn. With a thousand
//! subscribers of each change at 200 changes/s, a round trip longer than 5 ms (a busy server)
//! made them fall further behind with every change (p50 of 300-600 ms measured on a loaded
//! machine, against 2-20 ms with the read under way while they apply the change before).

use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt};

use super::{read_image, Loader, RowKey};
use crate::error::LoadError;
use crate::hash::{HashMap, HashSet, HashSetExt};
use crate::load::image::images;
use crate::load::ReadConn;
use crate::schema::{Key, SchemaMeta, SharedImage};

/// Offers one batched read of the rows of `meta`'s table changed by `wanted` (key, change
/// seq, syncs expected to ask): each change's share of it goes to the cache. With `now`,
/// the read starts at once (the changes' transactions are visible to other sessions: the
/// trigger source hears of a change only then); without, it runs when the first caller asks
/// (a replication stream can hand a change over a moment before its transaction is visible,
/// see `hub/told.rs`). Returns, for a read started now, a future that ends when it ends (in
/// success or not), for waking its subscribers only then.
pub(super) fn start(
    loader: &Loader,
    meta: &'static SchemaMeta,
    wanted: Vec<(Key, u64, u32)>,
    now: bool,
) -> Option<BoxFuture<'static, ()>> {
    if wanted.is_empty() {
        return None;
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
    let done = now.then(|| {
        // the read runs now, whoever asks for its rows and whenever
        tokio::spawn(batch.clone().map(drop));
        batch.clone().map(drop).boxed()
    });
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
    done
}

/// What a share of a failed batch needs to read its row alone (one for the whole batch).
struct Alone {
    db: crate::load::Db,
    cache: Arc<super::RowCache>,
    access: Option<crate::load::Access>,
}
