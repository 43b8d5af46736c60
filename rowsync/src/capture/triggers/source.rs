//! The trigger capture source: the listener's notifications, decoded against the capture plan
//! into [`CaptureEvent`]s and numbered in the order they arrive (commit order).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::listen::{ListenEvent, Listener, ListenerConfig};
use super::payload::{decode, Decoded, PayloadError};
use crate::capture::plan::CapturePlan;
use crate::capture::{CaptureEvent, CaptureStats, Carried};
use crate::change::ResyncReason;
use crate::error::ListenError;

/// The listener and the task decoding what it hears.
pub(crate) struct TriggerSource {
    listener: Listener,
    decoder: JoinHandle<()>,
}

/// Notifications waiting to be decoded, at most.
const QUEUE: usize = 16 * 1024;

impl TriggerSource {
    /// LISTENs on the configured channels and decodes every notification into `events`;
    /// returns once changes committed from now on will be heard.
    pub async fn start(
        config: ListenerConfig,
        plan: Arc<CapturePlan>,
        events: mpsc::Sender<CaptureEvent>,
        stats: Arc<CaptureStats>,
    ) -> Result<TriggerSource, ListenError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let listener = Listener::start(config, tx).await?;
        let decoder = tokio::spawn(decode_all(rx, plan, events, stats));
        Ok(TriggerSource { listener, decoder })
    }

    /// The backend pid of the listening connection (`None` while reconnecting).
    pub fn process_id(&self) -> Option<i32> {
        self.listener.process_id()
    }

    /// Stops listening; returns when everything heard has been handed on.
    pub async fn shutdown(self) {
        self.listener.shutdown().await;
        let _ = self.decoder.await;
    }
}

async fn decode_all(
    mut heard: mpsc::Receiver<ListenEvent>,
    plan: Arc<CapturePlan>,
    events: mpsc::Sender<CaptureEvent>,
    stats: Arc<CaptureStats>,
) {
    let mut seq = 0u64;
    while let Some(event) = heard.recv().await {
        let decoded = match event {
            ListenEvent::Notification { payload, .. } => {
                seq += 1;
                decode_one(&payload, &plan, seq, &stats)
            }
            ListenEvent::Listening { reconnect: true } => {
                CaptureStats::count(&stats.reconnects);
                tracing::warn!("listener reconnected; every subscriber must resync");
                Some(CaptureEvent::Resync {
                    table: None,
                    reason: ResyncReason::Reconnected,
                })
            }
            ListenEvent::Listening { reconnect: false } => None,
            ListenEvent::Disconnected { error } => {
                tracing::warn!(%error, "listener disconnected; reconnecting");
                None
            }
        };
        if let Some(event) = decoded {
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// One payload as an event; `None` for what concerns no holder of this hub.
fn decode_one(
    payload: &str,
    plan: &CapturePlan,
    seq: u64,
    stats: &CaptureStats,
) -> Option<CaptureEvent> {
    match decode(payload.as_bytes(), plan, seq) {
        Ok(Decoded::Change(change)) => {
            CaptureStats::count(&stats.changes);
            Some(CaptureEvent::Change {
                change,
                row: Carried::Nothing,
            })
        }
        Ok(Decoded::Overflow { table, xid }) => {
            CaptureStats::count(&stats.overflows);
            tracing::warn!(%table, xid, "change too large for a notification; resyncing the table's subscribers");
            Some(CaptureEvent::Resync {
                table: Some(table),
                reason: ResyncReason::Overflow { table },
            })
        }
        Err(PayloadError::UnknownTable { schema, table }) => {
            CaptureStats::count(&stats.unknown_table);
            tracing::debug!(schema, table, "change of an unwatched table ignored");
            None
        }
        Err(error) => {
            CaptureStats::count(&stats.malformed);
            tracing::warn!(%error, payload = %truncate(payload), "malformed change payload ignored");
            None
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
