//! The trigger capture source: the listener's notifications, decoded against the capture plan
//! into [`CaptureEvent`]s and numbered in the order they arrive (commit order). Whatever hints
//! that the installed capture may no longer serve the plan (a reconnect, a payload lacking a
//! column, one of another format, a DDL hint) also asks for a catalog check.

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::ddl;
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
    /// LISTENs on the configured channels and on the DDL hint channel, and decodes every
    /// notification into `events`; returns once changes committed from now on will be heard.
    /// `check` is notified whenever the capture should be checked against the catalog.
    pub async fn start(
        mut config: ListenerConfig,
        plan: Arc<CapturePlan>,
        events: mpsc::Sender<CaptureEvent>,
        stats: Arc<CaptureStats>,
        check: Arc<Notify>,
    ) -> Result<TriggerSource, ListenError> {
        if !config.channels.iter().any(|c| c == ddl::CHANNEL) {
            config.channels.push(ddl::CHANNEL.to_owned());
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let listener = Listener::start(config, tx).await?;
        let decoder = tokio::spawn(decode_all(rx, plan, events, stats, check));
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
    check: Arc<Notify>,
) {
    let mut seq = 0u64;
    while let Some(event) = heard.recv().await {
        let decoded = match event {
            ListenEvent::Notification { channel, .. } if channel == ddl::CHANNEL => {
                tracing::debug!("DDL hint; checking the capture");
                check.notify_one();
                None
            }
            ListenEvent::Notification { payload, .. } => {
                seq += 1;
                decode_one(&payload, &plan, seq, &stats, &check)
            }
            ListenEvent::Listening { reconnect: true } => {
                CaptureStats::count(&stats.reconnects);
                tracing::warn!("listener reconnected; every subscriber must resync");
                // why check too: what happened while we were away may include DDL
                check.notify_one();
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
    check: &Notify,
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
        Ok(Decoded::Truncated { table, xid }) => {
            tracing::info!(%table, xid, "table truncated; resyncing its subscribers");
            Some(CaptureEvent::Resync {
                table: Some(table),
                reason: ResyncReason::Truncated { table },
            })
        }
        Ok(Decoded::MissingColumns {
            table,
            xid,
            columns,
        }) => {
            let detail = format!(
                "a change of {table} arrived without column(s) {} that changes are routed by \
                 (renamed or dropped, or the trigger function was replaced)",
                columns.join(", ")
            );
            tracing::error!(%table, xid, ?columns, "{detail}; resyncing the table's subscribers");
            check.notify_one();
            Some(CaptureEvent::Resync {
                table: Some(table),
                reason: ResyncReason::SchemaChanged { table, detail },
            })
        }
        Err(PayloadError::UnknownTable { schema, table }) => {
            CaptureStats::count(&stats.unknown_table);
            tracing::debug!(schema, table, "change of an unwatched table ignored");
            None
        }
        Err(
            error @ PayloadError::UnsupportedVersion {
                version, watched, ..
            },
        ) => {
            CaptureStats::count(&stats.unsupported);
            // why version 1 is only counted: it comes from a trigger an older rowsync
            // installed next to ours (which a restart of that hub put back); ours, checked
            // against the catalog, still sends every change, so nothing is lost.
            if version == 1 {
                tracing::warn!(%error, "version 1 payload ignored");
                return None;
            }
            tracing::error!(%error, "payload of an unknown format");
            check.notify_one();
            let table = watched?;
            Some(CaptureEvent::Resync {
                table: Some(table),
                reason: ResyncReason::Unreadable {
                    table,
                    error: error.to_string(),
                },
            })
        }
        Err(error @ PayloadError::Value { table, .. }) => {
            CaptureStats::count(&stats.malformed);
            tracing::error!(%error, "a change could not be decoded; resyncing the table's subscribers");
            check.notify_one();
            Some(CaptureEvent::Resync {
                table: Some(table),
                reason: ResyncReason::Unreadable {
                    table,
                    error: error.to_string(),
                },
            })
        }
        // why no resync: any role may NOTIFY anything on any channel; garbage that names no
        // watched table concerns no holder
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
