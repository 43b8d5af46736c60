//! The hub's one task between capture and routing: payloads in, changes routed, in the
//! order PostgreSQL committed them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::capture::listen::ListenEvent;
use crate::capture::payload::{decode, Decoded, PayloadError};
use crate::capture::CapturePlan;
use crate::route::router::Router;
use crate::route::ResyncReason;

/// Counters kept by the pump.
#[derive(Default)]
pub(crate) struct PumpCounters {
    pub changes: AtomicU64,
    pub malformed: AtomicU64,
    pub unknown_table: AtomicU64,
    pub overflows: AtomicU64,
    pub reconnects: AtomicU64,
    /// The `seq` of the last payload received.
    pub last_seq: AtomicU64,
}

pub(crate) async fn run(
    mut events: mpsc::Receiver<ListenEvent>,
    plan: Arc<CapturePlan>,
    router: Arc<Router>,
    counters: Arc<PumpCounters>,
) {
    let mut seq: u64 = 0;
    while let Some(event) = events.recv().await {
        match event {
            ListenEvent::Notification { payload, .. } => {
                seq += 1;
                counters.last_seq.store(seq, Ordering::Release);
                match decode(payload.as_bytes(), &plan, seq) {
                    Ok(Decoded::Change(change)) => {
                        counters.changes.fetch_add(1, Ordering::Relaxed);
                        router.dispatch(Arc::new(change));
                    }
                    Ok(Decoded::Overflow { table, xid }) => {
                        counters.overflows.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%table, xid, "change too large for a notification; resyncing the table's subscribers");
                        router.resync_table(table);
                    }
                    Err(PayloadError::UnknownTable { schema, table }) => {
                        counters.unknown_table.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(schema, table, "change of an unwatched table ignored");
                    }
                    Err(error) => {
                        counters.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, payload = %truncate(&payload), "malformed change payload ignored");
                    }
                }
            }
            ListenEvent::Listening { reconnect: true } => {
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("listener reconnected; every subscriber must resync");
                router.resync_all(ResyncReason::Reconnected);
            }
            ListenEvent::Listening { reconnect: false } => {}
            ListenEvent::Disconnected { error } => {
                tracing::warn!(%error, "listener disconnected; reconnecting");
            }
        }
    }
}

fn truncate(payload: &str) -> &str {
    let mut end = payload.len().min(200);
    while !payload.is_char_boundary(end) {
        end -= 1;
    }
    &payload[..end]
}
