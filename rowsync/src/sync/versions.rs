//! Which version of each row a holder's data reflects, so that old news never overwrites
//! newer data: messages applied out of order or twice (a caller that buffers, a retry, a
//! relay that redelivers) end as if applied in order once.
//!
//! A change's position (`seq`, commit order) is the version of the row it read: a sync reads
//! the row as of that change or later. A change at or below the version recorded for its row
//! is old news and skipped; a delete is recorded like any change, so an older update cannot
//! bring the row back.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::change::Change;
use crate::schema::Key;

/// Changes remembered at most; past it the oldest is forgotten and its position becomes the
/// floor (see [`Verdict::Unknown`]): a message older than the last `REMEMBERED` changes
/// applied, that no change remembered names, costs a reload.
const REMEMBERED: usize = 128;

/// What to do with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Newer than what is held of its row: apply it.
    Apply,
    /// Exactly what is held already (received twice).
    Duplicate,
    /// Older than what is held of its row.
    Stale,
    /// At or below the floor of a memory that forgot changes, for a row no change remembered
    /// names, or a key change whose old key holds a newer row: it may be old news or not;
    /// only a reload can tell.
    Unknown,
}

/// The changes applied since the data was loaded, newest last: the version of a row is the
/// newest of them that names it.
///
/// why the changes themselves, in order, instead of a map of row versions: messages mostly
/// come in order, and a change newer than every change applied needs no look at all; what
/// is kept is then only for the rare message that comes late or twice. Remembering a change
/// is a pointer copy (the message's own `Arc`), where a map hashed and cloned the key for
/// every change every holder applied (a thousand holders per change in a broadcast).
///
/// Reads for a change applied after a newer one are taken as of the newer one
/// ([`Versions::read_position`]): a read kept in the shared cache from the older change's
/// time would put older rows back, in lists read whole (links, `through`) as much as in rows.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    /// The changes applied, by position (`seq`), oldest first; at most [`REMEMBERED`].
    applied: VecDeque<Arc<Change>>,
    /// Changes at or below this may have been applied and forgotten.
    floor: u64,
    /// The newest change applied.
    newest: u64,
}

impl Versions {
    /// Whether `change` is news for the rows it names.
    pub fn judge(&self, change: &Change) -> Verdict {
        // why first: newer than every change applied, it is news for whatever it names (no
        // row's version, nor the floor, can be above `newest`); messages mostly come in
        // order, and this spares a look a thousand holders each would make
        if change.seq > self.newest {
            return Verdict::Apply;
        }
        // why only the changes at or after this one: an older version of a row compares
        // like no version (news either way), and every change above the floor is kept
        let from = self.applied.partition_point(|c| c.seq < change.seq);
        let held = |key: &Key| {
            self.applied
                .range(from..)
                .filter(|c| c.table == change.table && names(c, key))
                .map(|c| c.seq)
                .max()
        };
        let version = held(&change.key);
        // a change that moved its row is news while what it says of the old key is: the
        // new key may be newer already (changed again since) while the old one is not
        let old_version = change.old_key.as_ref().map(held);
        let old_is_news = old_version.is_some_and(|v| v.is_none_or(|v| v < change.seq));
        // a key change whose old key changed since (a row inserted again under it): applied,
        // it would take that newer row away; only a reload can tell what is right
        let old_is_newer = old_version.is_some_and(|v| v.is_some_and(|v| v > change.seq));
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
    pub fn record(&mut self, change: &Arc<Change>) {
        if self.applied.len() >= REMEMBERED {
            if let Some(oldest) = self.applied.pop_front() {
                self.floor = self.floor.max(oldest.seq);
            }
        }
        self.newest = self.newest.max(change.seq);
        // in order, it goes last; a late change goes where its position puts it
        let at = match self.applied.back() {
            Some(last) if last.seq > change.seq => {
                self.applied.partition_point(|c| c.seq < change.seq)
            }
            _ => self.applied.len(),
        };
        self.applied.insert(at, change.clone());
    }

    /// The position to read rows at for `change`: its own, or the newest change applied
    /// when that is newer (the data must not go back to an older state).
    pub fn read_position(&self, change: &Change) -> u64 {
        change.seq.max(self.newest)
    }

    /// Forgets everything: the data was just reloaded (its snapshot says what it reflects).
    pub fn reset(&mut self) {
        self.applied = VecDeque::new();
        self.floor = 0;
        self.newest = 0;
    }
}

/// Whether `change` names the row with `key` (as its key, or the key it had before).
fn names(change: &Change, key: &Key) -> bool {
    change.key == *key || change.old_key.as_ref() == Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Op;
    use crate::schema::TableName;

    fn change(seq: u64, key: i64, op: Op) -> Arc<Change> {
        Arc::new(Change {
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
        })
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
        Arc::make_mut(&mut moved).old_key = Some(Key::from(1i64));
        v.record(&moved);
        assert_eq!(v.judge(&change(4, 1, Op::Updated)), Verdict::Stale);
    }

    #[test]
    fn an_older_key_change_never_takes_a_newer_row_of_its_old_key_away() {
        let mut v = Versions::default();
        // row 5 inserted again at 9; the key change 5 -> 4 of 7 comes late
        v.record(&change(9, 5, Op::Inserted));
        let mut moved = change(7, 4, Op::Updated);
        Arc::make_mut(&mut moved).old_key = Some(Key::from(5i64));
        assert_eq!(v.judge(&moved), Verdict::Unknown);
    }

    #[test]
    fn a_forgotten_change_leaves_a_floor() {
        let mut v = Versions::default();
        for i in 0..REMEMBERED as i64 + 1 {
            v.record(&change(i as u64 + 1, i, Op::Updated));
        }
        assert_eq!(
            v.judge(&change(1, 999_999, Op::Updated)),
            Verdict::Unknown,
            "at the floor, not remembered"
        );
        assert_eq!(
            v.judge(&change(1, 0, Op::Updated)),
            Verdict::Unknown,
            "forgotten"
        );
        assert_eq!(
            v.judge(&change(5, 4, Op::Updated)),
            Verdict::Duplicate,
            "still remembered"
        );
        assert_eq!(
            v.judge(&change(3, 999_999, Op::Updated)),
            Verdict::Apply,
            "above the floor: no change since names the row"
        );
        assert_eq!(
            v.judge(&change(REMEMBERED as u64 + 10, 999_999, Op::Updated)),
            Verdict::Apply
        );
    }

    #[test]
    fn a_late_change_takes_its_place() {
        let mut v = Versions::default();
        v.record(&change(9, 1, Op::Updated));
        assert_eq!(v.judge(&change(7, 2, Op::Updated)), Verdict::Apply);
        v.record(&change(7, 2, Op::Updated));
        assert_eq!(v.judge(&change(7, 2, Op::Updated)), Verdict::Duplicate);
        assert_eq!(v.judge(&change(6, 2, Op::Updated)), Verdict::Stale);
        assert_eq!(v.judge(&change(8, 1, Op::Updated)), Verdict::Stale);
        assert_eq!(v.read_position(&change(7, 2, Op::Updated)), 9);
    }
}
