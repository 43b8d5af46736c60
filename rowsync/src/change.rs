//! The one change type every capture source yields and sync reads, and why a holder must
//! reload instead.

use crate::schema::{Key, TableName, Value};

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `INSERT`.
    Inserted,
    /// `UPDATE`.
    Updated,
    /// `DELETE`.
    Deleted,
}

/// One row change, as captured. Carries the row's key and the routing columns, not the row:
/// the row is read (once, through the hub's cache) only by those who need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What happened.
    pub op: Op,
    /// The table.
    pub table: TableName,
    /// The row's key (for an update that changed the key: the new key).
    pub key: Key,
    /// The key before an update that changed it.
    pub old_key: Option<Key>,
    /// Routing columns: new values (old values for a delete).
    pub columns: Vec<(&'static str, Value)>,
    /// Old values of the routing columns, for an update that changed any of them.
    pub old_columns: Vec<(&'static str, Value)>,
    /// The writing transaction's id (`pg_current_xact_id()`).
    pub xid: u64,
    /// Position in the order the hub received changes (commit order); also the version the
    /// row cache keys loads by.
    pub seq: u64,
}

impl Change {
    /// The value of a routing column (new value; old value for a delete).
    pub fn column(&self, name: &str) -> Option<&Value> {
        self.columns
            .iter()
            .find(|(c, _)| *c == name)
            .map(|(_, v)| v)
    }

    /// The value of a routing column before an update, if the update changed it.
    pub fn old_column(&self, name: &str) -> Option<&Value> {
        self.old_columns
            .iter()
            .find(|(c, _)| *c == name)
            .map(|(_, v)| v)
    }
}

/// Why a subscriber must reload what it holds: changes were lost for it, or cannot be
/// described to it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResyncReason {
    /// The capture connection was lost; changes committed in the gap are gone.
    Reconnected,
    /// The subscriber's queue was full; this many messages were dropped for it.
    Lagged {
        /// Messages dropped.
        missed: u64,
    },
    /// A change of this table was too large to describe in a notification.
    Overflow {
        /// The table.
        table: TableName,
    },
    /// The table was truncated.
    Truncated {
        /// The table.
        table: TableName,
    },
    /// The table, or the capture installed on it, changed in a way that may have lost or
    /// hidden changes (a trigger dropped or disabled, a column renamed, dropped or retyped,
    /// the table dropped and created again).
    SchemaChanged {
        /// The table.
        table: TableName,
        /// What was found.
        detail: String,
    },
    /// A change arrived out of order, older than what the subscription still remembers of
    /// its row's versions: only a reload can tell whether it is old news.
    OutOfOrder,
    /// A change of this table could not be read or decoded; the data is reloaded instead.
    Unreadable {
        /// The table.
        table: TableName,
        /// The error.
        error: String,
    },
    /// A table row-level security policies read changed (`HubBuilder::policy_table`): what
    /// the holder's access context sees may have changed anywhere.
    PolicyChanged {
        /// The table.
        table: TableName,
    },
}
