//! Topics: what a subscription listens to, and what a change touches.

use std::borrow::Cow;

use crate::change::{Change, Op};
use crate::schema::{Key, TableName, Value};

/// Which rows of a table a topic covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Every row.
    All,
    /// The row with this primary key.
    Row(Key),
    /// Rows whose `column` equals the value (a foreign key, for inserts into a collection).
    Column(Cow<'static, str>, Value),
}

impl Selector {
    /// Rows whose `column` (a routing column, e.g. a foreign key) equals `value`.
    pub fn foreign(column: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Selector {
        Selector::Column(column.into(), value.into())
    }

    /// The row with primary key `key`.
    pub fn row(key: impl Into<Key>) -> Selector {
        Selector::Row(key.into())
    }
}

/// A table and the rows of it a subscription wants to hear about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// The table.
    pub table: TableName,
    /// Which rows.
    pub selector: Selector,
}

/// A set of operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ops(u8);

impl Ops {
    /// Inserts, updates and deletes.
    pub const ALL: Ops = Ops(0b111);

    /// No operation.
    pub(crate) const NONE: Ops = Ops(0);

    /// Whether `op` is in the set.
    pub fn contains(self, op: Op) -> bool {
        self.0 & Ops::from(op).0 != 0
    }

    /// Both sets.
    pub fn union(self, other: Ops) -> Ops {
        Ops(self.0 | other.0)
    }

    /// The set as three bits.
    pub(crate) fn bits(self) -> u32 {
        self.0 as u32
    }

    /// The set of three bits `bits`.
    pub(crate) fn from_bits(bits: u32) -> Ops {
        Ops((bits & 0b111) as u8)
    }
}

impl From<Op> for Ops {
    fn from(op: Op) -> Ops {
        Ops(match op {
            Op::Inserted => 1,
            Op::Updated => 2,
            Op::Deleted => 4,
        })
    }
}

/// Every topic a change touches: its table, its row (old key too, if the key changed), and
/// each routing column's new and old value.
pub(crate) fn touched(change: &Change) -> Vec<Topic> {
    let at = |selector| Topic {
        table: change.table,
        selector,
    };
    let mut topics = vec![at(Selector::All), at(Selector::Row(change.key.clone()))];
    if let Some(old) = &change.old_key {
        topics.push(at(Selector::Row(old.clone())));
    }
    for (column, value) in change.columns.iter().chain(change.old_columns.iter()) {
        if !value.is_null() {
            topics.push(at(Selector::Column(Cow::Borrowed(column), value.clone())));
        }
    }
    topics
}
