//! Where changes come from. Every source decodes its own bytes and yields the same
//! [`CaptureEvent`]s, in commit order: row changes, and notices that some holders must
//! reload. Two sources: the generated triggers with LISTEN/NOTIFY (`triggers/`, the default),
//! and logical replication from a slot (`replication/`, with the `replication` feature).

pub(crate) mod plan;
pub(crate) mod replication;
pub(crate) mod triggers;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::change::{Change, ResyncReason};
use crate::schema::{RowImage, TableName};

/// What a capture source tells the hub, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CaptureEvent {
    /// One row change, and the row it left when the source carries rows (a replication
    /// stream does; triggers send keys only, and the row is read when needed).
    Change { change: Change, row: Carried },
    /// The holders of `table` (of every table, for `None`) must reload: changes were lost,
    /// or cannot be described.
    Resync {
        table: Option<TableName>,
        reason: ResyncReason,
    },
    /// Every change of transaction `xid` has been sent. `lsn`, from a replication stream,
    /// is its end position, which the source may tell its server it is done with once
    /// everything before this event is routed (the pump publishes it in [`Acknowledged`]).
    Committed { xid: u64, lsn: Option<u64> },
    /// Sync point `token` was reached: every transaction committed before it was asked for
    /// has been sent (see [`SYNC_POINT`]).
    Reached { token: u64 },
}

/// What marks a sync point in a capture stream: the prefix of the notification (triggers)
/// or logical decoding message (replication) a hub sends to find out when everything
/// committed before has come through, followed by its token.
pub(crate) const SYNC_POINT: &str = "rowsync-sync-point";

/// A token no one can guess: sync points name themselves by it, so a notification someone
/// else sends cannot pass for one a hub waits for.
pub(crate) fn new_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // why RandomState: std seeds each one from the operating system's randomness, which is
    // all this needs (no crate of its own)
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// The token of a sync point notification, if `payload` is one.
pub(crate) fn sync_point_token(payload: &str) -> Option<u64> {
    payload
        .strip_prefix(SYNC_POINT)?
        .strip_prefix(':')?
        .parse()
        .ok()
}

/// The end position of the last transaction routed into every subscriber's queue (the
/// pump writes it, a replication source reads it to acknowledge its slot).
pub(crate) type Acknowledged = std::sync::Arc<AtomicU64>;

/// The row a change left behind, as its source delivered it.
#[derive(Debug, Clone, PartialEq)]
#[allow(dead_code)] // `Row` and `Gone`: only the replication source carries rows
pub(crate) enum Carried {
    /// The source sends no rows: whoever needs the row reads it.
    Nothing,
    /// The row as the change left it (its new image; an insert's or an update's).
    Row(RowImage),
    /// The row no longer exists (a delete).
    Gone,
}

/// Something found wrong with the capture of a table: changes of it may have been missed or
/// can no longer be described, so its holders are told to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureProblem {
    /// The table.
    pub table: TableName,
    /// What was found, in words.
    pub detail: String,
}

impl std::fmt::Display for CaptureProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.table, self.detail)
    }
}

/// The running capture source of a hub.
pub(crate) enum Source {
    /// Triggers and LISTEN/NOTIFY.
    Triggers(triggers::TriggerSource),
    /// Logical replication.
    #[cfg(feature = "replication")]
    Replication(replication::ReplicationSource),
}

impl Source {
    /// Whether a change can arrive a moment before other sessions see its transaction (a
    /// replication stream decodes the commit as soon as it is written; a notification is
    /// sent once the transaction is visible).
    pub fn arrives_before_visible(&self) -> bool {
        match self {
            Source::Triggers(_) => false,
            #[cfg(feature = "replication")]
            Source::Replication(_) => true,
        }
    }

    /// The backend pid of the capture connection (`None` while reconnecting).
    pub fn process_id(&self) -> Option<i32> {
        match self {
            Source::Triggers(source) => source.process_id(),
            #[cfg(feature = "replication")]
            Source::Replication(source) => source.process_id(),
        }
    }

    /// Asks for sync point `token`: the source sends `Reached { token }` once every
    /// transaction committed before now has been sent. `db` sends the marker: a notification
    /// on the trigger channel, or a transactional logical decoding message.
    pub fn sync_point(&self, token: u64, db: &crate::load::Db) {
        match self {
            Source::Triggers(source) => {
                let _ = db;
                source.sync_point(token)
            }
            #[cfg(feature = "replication")]
            Source::Replication(_) => {
                let db = db.clone();
                tokio::spawn(async move {
                    let sent = async {
                        let conn = db.pool().get().await.map_err(|e| e.to_string())?;
                        conn.execute(
                            "SELECT pg_logical_emit_message(true, $1, $2)",
                            &[&SYNC_POINT, &token.to_string()],
                        )
                        .await
                        .map_err(|e| crate::error::describe(&e))
                    };
                    if let Err(error) = sent.await {
                        tracing::warn!(%error, "could not send a sync point");
                    }
                });
            }
        }
    }

    /// Stops capturing; returns when everything captured has been handed on.
    pub async fn shutdown(self) {
        match self {
            Source::Triggers(source) => source.shutdown().await,
            #[cfg(feature = "replication")]
            Source::Replication(source) => source.shutdown().await,
        }
    }
}

/// Counters a capture source keeps.
#[derive(Debug)]
pub(crate) struct CaptureStats {
    pub changes: AtomicU64,
    pub malformed: AtomicU64,
    pub unknown_table: AtomicU64,
    pub overflows: AtomicU64,
    pub reconnects: AtomicU64,
    /// Payloads of a format this build does not read.
    pub unsupported: AtomicU64,
    /// Catalog checks of the installed capture run.
    pub checks: AtomicU64,
    /// Problems those checks found (one that persists is counted once).
    pub problems: AtomicU64,
    /// Changes a replication stream sent again after a reconnect and that were skipped
    /// (already delivered).
    pub duplicates: AtomicU64,
    /// Bytes of WAL the replication slot holds back (`u64::MAX`: not measured).
    pub slot_lag_bytes: AtomicU64,
    /// The server's flush lag of the replication connection in ms (`u64::MAX`: none).
    pub slot_lag_millis: AtomicU64,
    /// Times the replication slot was dropped and created again.
    pub slot_resets: AtomicU64,
}

impl Default for CaptureStats {
    fn default() -> Self {
        CaptureStats {
            changes: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            unknown_table: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            unsupported: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            problems: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            slot_lag_bytes: AtomicU64::new(UNKNOWN),
            slot_lag_millis: AtomicU64::new(UNKNOWN),
            slot_resets: AtomicU64::new(0),
        }
    }
}

/// What a measurement counter holds before anything was measured.
pub(crate) const UNKNOWN: u64 = u64::MAX;

impl CaptureStats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A measurement, `None` until one was taken.
    pub fn measured(counter: &AtomicU64) -> Option<u64> {
        Some(counter.load(Ordering::Relaxed)).filter(|&v| v != UNKNOWN)
    }
}
