//! Watching the slot: how much WAL it holds back and how late the acknowledgements are,
//! for [`HubStats`](crate::HubStats); past the configured bound (or when the server has
//! invalidated the slot) the source is asked to replace it.

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{watch, Notify};

use super::config::ReplicationConfig;
use crate::capture::CaptureStats;
use crate::load::Tls;

/// What one look at the slot found.
struct Seen {
    lag_bytes: Option<u64>,
    lag_millis: Option<u64>,
    lost: bool,
}

async fn look(
    client: &tokio_postgres::Client,
    slot: &str,
) -> Result<Option<Seen>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT (pg_current_wal_lsn() - s.confirmed_flush_lsn)::int8, \
                    coalesce(s.wal_status = 'lost', false), \
                    (SELECT (extract(epoch FROM r.flush_lag) * 1000)::int8 \
                     FROM pg_stat_replication r WHERE r.pid = s.active_pid) \
             FROM pg_replication_slots s WHERE s.slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|row| Seen {
        lag_bytes: row.get::<_, Option<i64>>(0).map(i64::unsigned_abs),
        lost: row.get(1),
        lag_millis: row.get::<_, Option<i64>>(2).map(i64::unsigned_abs),
    }))
}

/// Looks at the slot every `lag_check_interval` until `stop`; notifies `reset` when it holds
/// back more than `max_lag_bytes` or was invalidated.
pub(crate) async fn monitor(
    url: String,
    tls: Tls,
    config: ReplicationConfig,
    stats: Arc<CaptureStats>,
    reset: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(pg) = tokio_postgres::Config::from_str(&url) else {
        return;
    };
    let mut connection = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.lag_check_interval) => {}
            _ = stop.changed() => return,
        }
        if connection.is_none() {
            match tls.connect_spawned(&pg).await {
                Ok(opened) => connection = Some(opened),
                Err(error) => {
                    tracing::debug!(%error, "replication: cannot measure the slot's lag now");
                    continue;
                }
            }
        }
        let Some((client, _)) = &connection else {
            continue;
        };
        let seen = match look(client, &config.slot).await {
            Ok(seen) => seen,
            Err(error) => {
                tracing::debug!(%error, "replication: measuring the slot's lag failed");
                if let Some((_, driver)) = connection.take() {
                    driver.abort();
                }
                continue;
            }
        };
        let Some(seen) = seen else {
            // between a drop and the next create, or a temporary slot between sessions
            continue;
        };
        let store = |counter: &std::sync::atomic::AtomicU64, value: Option<u64>| {
            counter.store(value.unwrap_or(crate::capture::UNKNOWN), Ordering::Relaxed);
        };
        store(&stats.slot_lag_bytes, seen.lag_bytes);
        store(&stats.slot_lag_millis, seen.lag_millis);
        let over = config
            .max_lag_bytes
            .zip(seen.lag_bytes)
            .is_some_and(|(max, lag)| lag > max);
        if over || seen.lost {
            tracing::warn!(
                slot = %config.slot,
                lag_bytes = seen.lag_bytes,
                lost = seen.lost,
                "replication: the slot holds back too much WAL; replacing it and resyncing every subscriber"
            );
            reset.notify_one();
        }
    }
}
