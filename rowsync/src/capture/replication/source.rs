//! The replication capture source: sessions on the slot, one after another, feeding the
//! [`Stream`] and sending its events to the pump; the slot acknowledged up to what the pump
//! has routed.
//!
//! # Acknowledgement
//!
//! The pump publishes the end position of the last transaction it routed into every
//! subscriber's queue ([`Acknowledged`]); this task reports it to the server (standby
//! status updates, at most every `status_interval`). Between transactions, once everything
//! sent is routed, the position of a keepalive is reported too, so a slot whose tables are
//! quiet does not hold back the WAL other databases write.
//!
//! # Reconnects
//!
//! A broken session is followed by another, from the end of the last transaction emitted
//! ([`Stream::delivered`]); the stream skips what is sent again. No subscriber resyncs. A
//! temporary slot dies with its session: the new one starts later, so every subscriber
//! resyncs (`Reconnected`), as after a slot that was replaced.

use std::str::FromStr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::config::ReplicationConfig;
use super::session::{self, Session, SessionError};
use super::stream::Stream;
use super::{lag, slot};
use crate::capture::{Acknowledged, CaptureEvent, CaptureStats};
use crate::change::ResyncReason;
use crate::error::ReplicationError;
use crate::load::Tls;

/// Longest wait between two attempts to open a session.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long the first session waits for a slot another process still holds.
const FIRST_SESSION_WAIT: Duration = Duration::from_secs(10);

/// How long a stopping session may take to end cleanly.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// What the source needs: where to connect, what to stream, and where it starts.
pub(crate) struct Start {
    pub url: String,
    pub tls: Tls,
    pub config: ReplicationConfig,
    pub stream: Stream,
    /// The slot's confirmed position (permanent slot) after skipping ahead.
    pub confirmed: u64,
}

/// The running source.
pub(crate) struct ReplicationSource {
    tasks: Option<(JoinHandle<()>, JoinHandle<()>)>,
    stop: watch::Sender<bool>,
    pid: Arc<AtomicI32>,
}

impl ReplicationSource {
    /// Opens the first session and starts streaming into `events`; returns once changes
    /// committed from now on will be streamed.
    pub async fn start(
        start: Start,
        events: mpsc::Sender<CaptureEvent>,
        stats: Arc<CaptureStats>,
        acknowledged: Acknowledged,
    ) -> Result<ReplicationSource, ReplicationError> {
        let wire = session::wire_config(&start.url, &start.tls, &start.config)?;
        let first = first_session(&wire, &start).await?;
        let (stop, stopped) = watch::channel(false);
        let reset = Arc::new(Notify::new());
        let pid = Arc::new(AtomicI32::new(first.pid));
        let monitor = tokio::spawn(lag::monitor(
            start.url.clone(),
            start.tls.clone(),
            start.config.clone(),
            stats.clone(),
            reset.clone(),
            stopped.clone(),
        ));
        let runner = Runner {
            reported: first.consistent_point.unwrap_or(start.confirmed),
            wire,
            url: start.url,
            tls: start.tls,
            config: start.config,
            stream: start.stream,
            events,
            stats,
            acknowledged,
            pid: pid.clone(),
            stop: stopped,
            reset,
        };
        let task = tokio::spawn(runner.run(first));
        Ok(ReplicationSource {
            tasks: Some((task, monitor)),
            stop,
            pid,
        })
    }

    /// The WAL sender's backend pid (`None` between sessions).
    pub fn process_id(&self) -> Option<i32> {
        Some(self.pid.load(Ordering::Relaxed)).filter(|&pid| pid != 0)
    }

    /// Ends the session (cleanly, so the slot is free at once) and the tasks.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some((task, monitor)) = self.tasks.take() {
            let _ = task.await;
            let _ = monitor.await;
        }
    }
}

impl Drop for ReplicationSource {
    /// A hub dropped without `shutdown` stops streaming too (its session ends, and a
    /// temporary slot with it).
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some((task, monitor)) = self.tasks.take() {
            task.abort();
            monitor.abort();
        }
    }
}

/// Opens the first session; the slot may still be held for a moment by the WAL sender of a
/// hub that just went away, so that is tried again for a while.
async fn first_session(
    wire: &pgwire_replication::ReplicationConfig,
    start: &Start,
) -> Result<Session, ReplicationError> {
    let deadline = tokio::time::Instant::now() + FIRST_SESSION_WAIT;
    loop {
        match session::open(
            wire,
            start.config.temporary,
            start.confirmed,
            start.confirmed,
        )
        .await
        {
            Ok(session) => return Ok(session),
            Err(error) if error.slot_busy() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(session::connect_error(&start.config.slot, error)),
        }
    }
}

/// Why a session ended.
enum End {
    /// Shutdown.
    Stopped,
    /// The pump is gone.
    Closed,
    /// The connection broke.
    Broken(SessionError),
    /// The slot must be replaced.
    Reset,
}

struct Runner {
    wire: pgwire_replication::ReplicationConfig,
    url: String,
    tls: Tls,
    config: ReplicationConfig,
    stream: Stream,
    events: mpsc::Sender<CaptureEvent>,
    stats: Arc<CaptureStats>,
    acknowledged: Acknowledged,
    /// The highest position reported to the server (never report less: PostgreSQL 15
    /// would move the slot back).
    reported: u64,
    pid: Arc<AtomicI32>,
    stop: watch::Receiver<bool>,
    reset: Arc<Notify>,
}

impl Runner {
    async fn run(mut self, first: Session) {
        let mut next = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let session = match next.take() {
                Some(session) => session,
                None => match self.reopen().await {
                    Ok(Some(session)) => {
                        backoff = Duration::from_millis(100);
                        session
                    }
                    Ok(None) => return,
                    Err(error) => {
                        tracing::warn!(slot = %self.config.slot, %error, "replication: cannot reopen the session; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.stop.changed() => return,
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            self.pid.store(session.pid, Ordering::Relaxed);
            self.stream.session_started(session.xid_reference);
            let end = self.follow(session.client).await;
            self.pid.store(0, Ordering::Relaxed);
            match end {
                End::Stopped | End::Closed => return,
                End::Broken(error) => {
                    CaptureStats::count(&self.stats.reconnects);
                    tracing::warn!(slot = %self.config.slot, %error, "replication: the session ended; reconnecting");
                    if error.slot_gone() && !self.config.temporary {
                        if let Err(error) = self.replace_slot().await {
                            tracing::warn!(%error, "replication: replacing the slot failed; retrying");
                        }
                    }
                }
                End::Reset => {
                    if let Err(error) = self.replace_slot().await {
                        tracing::warn!(%error, "replication: replacing the slot failed; retrying");
                    }
                }
            }
        }
    }

    /// The next session: a permanent slot resumes after the last transaction emitted; a
    /// temporary one is new, and every subscriber resyncs. `None`: stopped meanwhile.
    async fn reopen(&mut self) -> Result<Option<Session>, ReplicationError> {
        if *self.stop.borrow() {
            return Ok(None);
        }
        let temporary = self.config.temporary;
        let opened = session::open(
            &self.wire,
            temporary,
            self.stream.delivered(),
            self.reported,
        )
        .await;
        let session = match opened {
            Ok(session) => session,
            Err(error) if error.slot_gone() && !temporary => {
                self.replace_slot().await?;
                session::open(&self.wire, false, 0, self.reported)
                    .await
                    .map_err(|e| session::connect_error(&self.config.slot, e))?
            }
            Err(error) => return Err(session::connect_error(&self.config.slot, error)),
        };
        if let Some(point) = session.consistent_point {
            self.stream.slot_replaced();
            self.reported = point;
            self.resync_everyone().await;
        }
        Ok(Some(session))
    }

    /// Drops the permanent slot and creates it again at the current position; every
    /// subscriber resyncs. A temporary slot is replaced by the next session.
    async fn replace_slot(&mut self) -> Result<(), ReplicationError> {
        CaptureStats::count(&self.stats.slot_resets);
        if self.config.temporary {
            return Ok(());
        }
        let pg = tokio_postgres::Config::from_str(&self.url)
            .map_err(|e| ReplicationError::Url(e.to_string()))?;
        let (client, driver) =
            self.tls
                .connect_spawned(&pg)
                .await
                .map_err(|source| ReplicationError::Database {
                    action: "connecting to replace the replication slot",
                    source,
                })?;
        let replaced = async {
            slot::drop_slot(&client, &self.config.slot).await?;
            slot::ensure_slot(&client, &self.config.slot).await?;
            slot::skip_ahead(&client, &self.config.slot).await
        }
        .await;
        drop(client);
        driver.abort();
        let confirmed = replaced?;
        self.stream.slot_replaced();
        self.reported = confirmed;
        self.resync_everyone().await;
        Ok(())
    }

    async fn resync_everyone(&self) {
        let _ = self
            .events
            .send(CaptureEvent::Resync {
                table: None,
                reason: ResyncReason::Reconnected,
            })
            .await;
    }

    /// Streams one session until it ends.
    async fn follow(&mut self, mut client: ReplicationClient) -> End {
        let mut tick =
            tokio::time::interval(self.config.status_interval.min(Duration::from_millis(200)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = Vec::new();
        let end = loop {
            tokio::select! {
                biased;
                _ = self.stop.changed() => break End::Stopped,
                () = self.reset.notified() => break End::Reset,
                _ = tick.tick() => {
                    self.acknowledge(&client, self.acknowledged.load(Ordering::Acquire));
                }
                received = client.recv() => match received {
                    Ok(Some(event)) => {
                        self.handle(event, &client, &mut out);
                        for event in out.drain(..) {
                            if self.events.send(event).await.is_err() {
                                return End::Closed;
                            }
                        }
                    }
                    Ok(None) => break End::Broken(SessionError(pgwire_replication::PgWireError::Io(
                        Arc::new(std::io::Error::other("the server ended the stream")),
                    ))),
                    Err(error) => break End::Broken(SessionError(error)),
                },
            }
        };
        if matches!(end, End::Stopped | End::Reset) {
            // ends cleanly (CopyDone), so the slot is free at once
            let _ = tokio::time::timeout(STOP_WAIT, client.shutdown()).await;
        }
        end
    }

    fn handle(
        &mut self,
        event: ReplicationEvent,
        client: &ReplicationClient,
        out: &mut Vec<CaptureEvent>,
    ) {
        match event {
            ReplicationEvent::Begin { final_lsn, xid, .. } => self.stream.begin(final_lsn.0, xid),
            ReplicationEvent::XLogData { data, .. } => self.stream.message(&data, out),
            ReplicationEvent::Commit { end_lsn, .. } => self.stream.commit(end_lsn.0, out),
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                // between transactions with everything routed, nothing before the keepalive
                // is owed to anyone
                let routed = self.acknowledged.load(Ordering::Acquire);
                if self.stream.idle() && routed >= self.stream.delivered() {
                    self.acknowledge(client, wal_end.0.max(routed));
                }
            }
            // why here: the client decodes logical decoding messages itself
            ReplicationEvent::Message {
                prefix, content, ..
            } => self.stream.logical_message(&prefix, &content, out),
            ReplicationEvent::StoppedAt { .. } => {}
        }
    }

    fn acknowledge(&mut self, client: &ReplicationClient, lsn: u64) {
        if lsn > self.reported {
            client.update_applied_lsn(Lsn(lsn));
            self.reported = lsn;
        }
    }
}
