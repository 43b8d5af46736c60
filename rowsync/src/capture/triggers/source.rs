//! The trigger capture source: the listener's notifications, decoded against the capture plan
//! into [`CaptureEvent`]s and numbered in the order they arrive (commit order). Whatever hints
//! that the installed capture may no longer serve the plan (a reconnect, a payload lacking a
//! column, one of another format, a DDL hint) also asks for a catalog check.
//!
//! Where a transaction ends: PostgreSQL delivers each transaction's notifications together,
//! in commit order, but says nothing when the last one is sent. The first notification of
//! another transaction ends the one before; and when nothing more is queued while a
//! transaction is open, the source sends a sync point of its own (a notification on its
//! channel, committed after that transaction): when it comes back, nothing of the open
//! transaction can follow.

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::ddl;
use super::listen::{ListenEvent, Listener, ListenerConfig};
use super::payload::{decode, Decoded, PayloadError};
use crate::capture::plan::CapturePlan;
use crate::capture::{sync_point_token, CaptureEvent, CaptureStats, Carried, SYNC_POINT};
use crate::change::ResyncReason;
use crate::error::ListenError;
use crate::load::Db;

/// The listener and the task decoding what it hears.
pub(crate) struct TriggerSource {
    listener: Listener,
    decoder: JoinHandle<()>,
    ticker: SyncPoints,
}

/// Sends sync point notifications on the hub's channel, one at a time, in the order asked.
#[derive(Clone)]
pub(crate) struct SyncPoints {
    asks: mpsc::UnboundedSender<u64>,
}

impl SyncPoints {
    fn start(db: Db, channel: String) -> SyncPoints {
        let (asks, mut asked) = mpsc::unbounded_channel::<u64>();
        tokio::spawn(async move {
            while let Some(token) = asked.recv().await {
                let payload = format!("{SYNC_POINT}:{token}");
                let sent = async {
                    let conn = db.pool().get().await.map_err(|e| e.to_string())?;
                    conn.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
                        .await
                        .map_err(|e| crate::error::describe(&e))
                }
                .await;
                if let Err(error) = sent {
                    // why only logged: a lost sync point is asked for again by whoever
                    // waits for one (the decoder at its next quiet moment, a caller's retry)
                    tracing::warn!(%error, "could not send a sync point");
                }
            }
        });
        SyncPoints { asks }
    }

    /// Asks for sync point `token`.
    pub fn ask(&self, token: u64) {
        let _ = self.asks.send(token);
    }
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
        db: Db,
    ) -> Result<TriggerSource, ListenError> {
        let channel = config.channels.first().cloned().unwrap_or_default();
        if !config.channels.iter().any(|c| c == ddl::CHANNEL) {
            config.channels.push(ddl::CHANNEL.to_owned());
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let listener = Listener::start(config, tx).await?;
        let ticker = SyncPoints::start(db, channel);
        let decoder = tokio::spawn(
            Decoder {
                plan,
                events,
                stats,
                check,
                ticker: ticker.clone(),
                seq: 0,
                open: None,
                tick: None,
            }
            .run(rx),
        );
        Ok(TriggerSource {
            listener,
            decoder,
            ticker,
        })
    }

    /// Asks for sync point `token` (see `CaptureEvent::Reached`).
    pub fn sync_point(&self, token: u64) {
        self.ticker.ask(token);
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

/// The decoding task's state.
struct Decoder {
    plan: Arc<CapturePlan>,
    events: mpsc::Sender<CaptureEvent>,
    stats: Arc<CaptureStats>,
    check: Arc<Notify>,
    ticker: SyncPoints,
    seq: u64,
    /// The transaction whose changes are being sent.
    open: Option<u64>,
    /// The sync point asked for to end the open transaction, not back yet.
    tick: Option<u64>,
}

impl Decoder {
    async fn run(mut self, mut heard: mpsc::Receiver<ListenEvent>) {
        while let Some(event) = heard.recv().await {
            if self.hear(event).await.is_err() {
                return;
            }
            // a quiet moment with a transaction open: ask when it is surely whole
            if heard.is_empty() && self.open.is_some() && self.tick.is_none() {
                let token = crate::capture::new_token();
                self.tick = Some(token);
                self.ticker.ask(token);
            }
        }
    }

    async fn hear(&mut self, event: ListenEvent) -> Result<(), ()> {
        match event {
            ListenEvent::Notification { channel, .. } if channel == ddl::CHANNEL => {
                tracing::debug!("DDL hint; checking the capture");
                self.check.notify_one();
                Ok(())
            }
            ListenEvent::Notification { payload, .. } => {
                if let Some(token) = sync_point_token(&payload) {
                    if self.tick == Some(token) {
                        self.tick = None;
                    }
                    self.end_open().await?;
                    return self.send(CaptureEvent::Reached { token }).await;
                }
                self.seq += 1;
                match decode_one(&payload, &self.plan, self.seq, &self.stats, &self.check) {
                    Some(CaptureEvent::Change { change, row }) => {
                        if self.open != Some(change.xid) {
                            self.end_open().await?;
                            self.open = Some(change.xid);
                        }
                        self.send(CaptureEvent::Change { change, row }).await
                    }
                    Some(event) => self.send(event).await,
                    None => Ok(()),
                }
            }
            ListenEvent::Listening { reconnect: true } => {
                CaptureStats::count(&self.stats.reconnects);
                tracing::warn!("listener reconnected; every subscriber must resync");
                // why check too: what happened while we were away may include DDL
                self.check.notify_one();
                // the rest of the open transaction, if any, is lost with the gap
                self.open = None;
                self.tick = None;
                self.send(CaptureEvent::Resync {
                    table: None,
                    reason: ResyncReason::Reconnected,
                })
                .await
            }
            ListenEvent::Listening { reconnect: false } => Ok(()),
            ListenEvent::Disconnected { error } => {
                tracing::warn!(%error, "listener disconnected; reconnecting");
                Ok(())
            }
        }
    }

    /// Ends the open transaction: nothing of it can follow.
    async fn end_open(&mut self) -> Result<(), ()> {
        match self.open.take() {
            Some(xid) => self.send(CaptureEvent::Committed { xid, lsn: None }).await,
            None => Ok(()),
        }
    }

    async fn send(&self, event: CaptureEvent) -> Result<(), ()> {
        self.events.send(event).await.map_err(|_| ())
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
