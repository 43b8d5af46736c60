//! Which version of each row a holder's data reflects, so that old news never overwrites
//! newer data: messages applied out of order or twice (a caller that buffers, a retry, a
//! relay that redelivers) end as if applied in order once.
//!
//! A change's position (`seq`, commit order) is the version of the row it read: a sync reads
//! the row as of that change or later. A change at or below the version recorded for its row
//! is old news and skipped; a delete is recorded like any change, so an older update cannot
//! bring the row back.

use std::collections::HashMap;

use crate::change::Change;
use crate::schema::{Key, TableName};

/// Rows remembered at most; past it the memory is emptied and its newest position becomes
/// the floor (see [`Verdict::Unknown`]).
const REMEMBERED: usize = 65_536;

/// What to do with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Newer than what is held of its row: apply it.
    Apply,
    /// Exactly what is held already (received twice).
    Duplicate,
    /// Older than what is held of its row.
    Stale,
    /// At or below the floor of a memory that was emptied, for a row not remembered since,
    /// or a key change whose old key holds a newer row: it may be old news or not; only a
    /// reload can tell.
    Unknown,
}

/// The version of each row changed since the data was loaded.
///
/// Reads for a change applied after a newer one are taken as of the newer one
/// ([`Versions::newest`]): a read kept in the shared cache from the older change's time
/// would put older rows back, in lists read whole (links, `through`) as much as in rows.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    // why by table first: a lookup borrows the change's key instead of cloning it (a
    // judgement is made for every change every holder applies); why boxed, and `None` until
    // a change is recorded: a hub keeps one per subscription, most never changed
    #[allow(clippy::box_collection)]
    rows: Option<Box<HashMap<TableName, HashMap<Key, u64>>>>,
    /// Rows remembered, over every table.
    remembered: usize,
    /// Changes at or below this were applied before the memory was emptied.
    floor: u64,
    /// The newest change applied.
    newest: u64,
}

impl Versions {
    /// Whether `change` is news for the rows it names.
    pub fn judge(&self, change: &Change) -> Verdict {
        // why first: newer than every change applied, it is news for whatever it names (no
        // row's version, nor the floor, can be above `newest`); messages mostly come in
        // order, and this spares a look into a map a thousand holders each keep
        if change.seq > self.newest {
            return Verdict::Apply;
        }
        let table = self.rows.as_ref().and_then(|rows| rows.get(&change.table));
        let held = |key: &Key| table.and_then(|rows| rows.get(key)).copied();
        let version = held(&change.key);
        // a change that moved its row is news while what it says of the old key is: the
        // new key may be newer already (changed again since) while the old one is not
        let old_is_news = change
            .old_key
            .as_ref()
            .is_some_and(|old| held(old).is_none_or(|v| v < change.seq));
        // a key change whose old key changed since (a row inserted again under it): applied,
        // it would take that newer row away; only a reload can tell what is right
        let old_is_newer = change
            .old_key
            .as_ref()
            .is_some_and(|old| held(old).is_some_and(|v| v > change.seq));
        match version {
            Some(v) if change.seq == v => Verdict::Duplicate,
            Some(v) if change.seq < v && !old_is_news => Verdict::Stale,
            _ if old_is_newer => Verdict::Unknown,
            Some(_) => Verdict::Apply,
            None if change.seq <= self.floor => Verdict::Unknown,
            None => Verdict::Apply,
        }
    }

    /// Records that the data reflects `change` (its row, and the key it had before).
    pub fn record(&mut self, change: &Change) {
        for key in std::iter::once(&change.key).chain(&change.old_key) {
            self.at_least(change.table, key, change.seq);
        }
        self.newest = self.newest.max(change.seq);
    }

    /// Records that the data holds the row of `table` with `key` as read at position `seq`
    /// (a row a sync took in, read as of that change or later): a change of it at or before
    /// `seq`, applied late, is old news. Without this, a late delete of a row read since
    /// would take it away, with nothing left to bring it back.
    pub fn record_read(&mut self, table: TableName, key: &Key, seq: u64) {
        self.at_least(table, key, seq);
    }

    /// Raises the version of one row to `seq` (the key is cloned only for a row new here).
    fn at_least(&mut self, table: TableName, key: &Key, seq: u64) {
        if self.remembered >= REMEMBERED {
            self.rows = None;
            self.remembered = 0;
            self.floor = self.newest;
        }
        let rows = self
            .rows
            .get_or_insert_with(Box::default)
            .entry(table)
            .or_default();
        match rows.get_mut(key) {
            Some(version) => *version = (*version).max(seq),
            None => {
                rows.insert(key.clone(), seq);
                self.remembered += 1;
            }
        }
    }

    /// The position to read rows at for `change`: its own, or the newest change applied
    /// when that is newer (the data must not go back to an older state).
    pub fn read_position(&self, change: &Change) -> u64 {
        change.seq.max(self.newest)
    }

    /// Forgets everything: the data was just reloaded (its snapshot says what it reflects).
    pub fn reset(&mut self) {
        self.rows = None;
        self.remembered = 0;
        self.floor = 0;
        self.newest = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Op;

    fn change(seq: u64, key: i64, op: Op) -> Change {
        Change {
            op,
            table: TableName {
                schema: None,
                name: "posts",
            },
            key: Key::from(key),
            old_key: None,
            columns: Vec::new(),
            old_columns: Vec::new(),
            xid: seq,
            seq,
        }
    }

    #[test]
    fn old_news_and_repeats_are_recognised() {
        let mut v = Versions::default();
        assert_eq!(v.judge(&change(7, 1, Op::Updated)), Verdict::Apply);
        v.record(&change(7, 1, Op::Updated));
        assert_eq!(v.judge(&change(7, 1, Op::Updated)), Verdict::Duplicate);
        assert_eq!(v.judge(&change(5, 1, Op::Updated)), Verdict::Stale);
        assert_eq!(
            v.judge(&change(5, 2, Op::Updated)),
            Verdict::Apply,
            "another row"
        );
        assert_eq!(v.judge(&change(9, 1, Op::Updated)), Verdict::Apply);
    }

    #[test]
    fn a_delete_is_not_undone_by_an_older_update() {
        let mut v = Versions::default();
        v.record(&change(8, 1, Op::Deleted));
        assert_eq!(v.judge(&change(6, 1, Op::Updated)), Verdict::Stale);
        assert_eq!(v.judge(&change(9, 1, Op::Inserted)), Verdict::Apply);
    }

    #[test]
    fn a_key_change_covers_the_old_key_too() {
        let mut v = Versions::default();
        let mut moved = change(5, 2, Op::Updated);
        moved.old_key = Some(Key::from(1i64));
        v.record(&moved);
        assert_eq!(v.judge(&change(4, 1, Op::Updated)), Verdict::Stale);
    }

    #[test]
    fn an_older_key_change_never_takes_a_newer_row_of_its_old_key_away() {
        let mut v = Versions::default();
        // row 5 inserted again at 9; the key change 5 -> 4 of 7 comes late
        v.record(&change(9, 5, Op::Inserted));
        let mut moved = change(7, 4, Op::Updated);
        moved.old_key = Some(Key::from(5i64));
        assert_eq!(v.judge(&moved), Verdict::Unknown);
    }

    #[test]
    fn a_row_read_since_is_not_taken_away_by_an_older_delete() {
        let mut v = Versions::default();
        v.record(&change(9, 7, Op::Inserted));
        // the sync of 9 took in row 3 as read at 9
        let table = change(0, 0, Op::Updated).table;
        v.record_read(table, &Key::from(3i64), 9);
        assert_eq!(v.judge(&change(4, 3, Op::Deleted)), Verdict::Stale);
        assert_eq!(v.judge(&change(12, 3, Op::Deleted)), Verdict::Apply);
    }

    #[test]
    fn an_emptied_memory_leaves_a_floor() {
        let mut v = Versions::default();
        for i in 0..REMEMBERED as i64 + 1 {
            v.record(&change(i as u64 + 1, i, Op::Updated));
        }
        assert_eq!(
            v.judge(&change(3, 999_999, Op::Updated)),
            Verdict::Unknown,
            "below the floor, not remembered"
        );
        assert_eq!(
            v.judge(&change(REMEMBERED as u64 + 10, 999_999, Op::Updated)),
            Verdict::Apply
        );
    }
}
