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
    /// A transaction ended; `lsn` is its end position, which the source may tell its
    /// server it is done with once everything before this event is routed (the pump
    /// publishes it in [`Acknowledged`]). Only a replication stream sends these.
    #[allow(dead_code)] // without the `replication` feature no source sends it
    Committed { lsn: u64 },
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
    /// The backend pid of the capture connection (`None` while reconnecting).
    pub fn process_id(&self) -> Option<i32> {
        match self {
            Source::Triggers(source) => source.process_id(),
            #[cfg(feature = "replication")]
            Source::Replication(source) => source.process_id(),
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
