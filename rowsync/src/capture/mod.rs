//! Where changes come from. Every source decodes its own bytes and yields the same
//! [`CaptureEvent`]s, in commit order: row changes, and notices that some holders must
//! reload. Today the source is the generated triggers with LISTEN/NOTIFY (`triggers/`).

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
}

/// The row a change left behind, as its source delivered it.
#[derive(Debug, Clone, PartialEq)]
#[allow(dead_code)] // `Row` and `Gone`: the replication source carries rows
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

/// Counters a capture source keeps.
#[derive(Debug, Default)]
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
}

impl CaptureStats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
