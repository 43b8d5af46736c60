//! The hub's one task between capture and routing: payloads in, changes routed, in the
//! order PostgreSQL committed them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::cache::Loader;
use crate::capture::listen::ListenEvent;
use crate::capture::payload::{decode, Decoded, PayloadError};
use crate::capture::CapturePlan;
use crate::change::{Change, Op};
use crate::route::router::Router;
use crate::route::ResyncReason;
use crate::schema::{Key, TableName};

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

/// Events taken from the listener's queue at once, at most.
const MAX_BURST: usize = 1024;

pub(crate) async fn run(
    mut events: mpsc::Receiver<ListenEvent>,
    plan: Arc<CapturePlan>,
    router: Arc<Router>,
    loader: Loader,
    counters: Arc<PumpCounters>,
) {
    let mut seq: u64 = 0;
    let mut burst = Vec::new();
    let mut changes: Vec<Arc<Change>> = Vec::new();
    while let Some(first) = events.recv().await {
        // why take what is queued: the changes of a burst can share one read (prefetch.rs);
        // nothing waits for a burst to fill
        burst.push(first);
        while burst.len() < MAX_BURST {
            match events.try_recv() {
                Ok(event) => burst.push(event),
                Err(_) => break,
            }
        }
        for event in burst.drain(..) {
            let ListenEvent::Notification { payload, .. } = event else {
                // everything before a reconnect is routed before the resync it causes
                route(&mut changes, &router, &loader);
                handle_listener_event(event, &router, &counters);
                continue;
            };
            seq += 1;
            counters.last_seq.store(seq, Ordering::Release);
            match decode(payload.as_bytes(), &plan, seq) {
                Ok(Decoded::Change(change)) => {
                    counters.changes.fetch_add(1, Ordering::Relaxed);
                    changes.push(Arc::new(change));
                }
                Ok(Decoded::Overflow { table, xid }) => {
                    route(&mut changes, &router, &loader);
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
        route(&mut changes, &router, &loader);
    }
}

/// Routes `changes` in order, after offering one batched read per table of the rows their
/// syncs would read one by one: updated rows somebody holds, inserted rows somebody's
/// collection or list takes in.
fn route(changes: &mut Vec<Arc<Change>>, router: &Router, loader: &Loader) {
    if changes.len() < 2 {
        for change in changes.drain(..) {
            router.dispatch(change);
        }
        return;
    }
    let routed: Vec<_> = changes
        .drain(..)
        .map(|change| (router.matching(&change), change))
        .collect();
    let mut wanted: HashMap<TableName, Vec<(Key, u64)>> = HashMap::new();
    for (subscribers, change) in &routed {
        let read_by_sync = match change.op {
            Op::Updated => router.holds_row(change.table, &change.key),
            Op::Inserted => !subscribers.is_empty(),
            Op::Deleted => false,
        };
        if read_by_sync {
            wanted
                .entry(change.table)
                .or_default()
                .push((change.key.clone(), change.seq));
        }
    }
    for (table, wanted) in wanted {
        loader.prefetch(&table, wanted);
    }
    for (subscribers, change) in routed {
        router.deliver(&subscribers, change);
    }
}

fn handle_listener_event(event: ListenEvent, router: &Router, counters: &PumpCounters) {
    match event {
        ListenEvent::Listening { reconnect: true } => {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("listener reconnected; every subscriber must resync");
            router.resync_all(ResyncReason::Reconnected);
        }
        ListenEvent::Listening { reconnect: false } | ListenEvent::Notification { .. } => {}
        ListenEvent::Disconnected { error } => {
            tracing::warn!(%error, "listener disconnected; reconnecting");
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
