//! Topics as the routing index keeps them: 16 bytes each, no heap.
//!
//! why: a subscription holding a person with posts and tags is filed under a few dozen
//! topics, and a `Topic` is 88 bytes with a heap key; kept twice per hold, that was most of a
//! subscription's memory. A slot names the table and column by small numbers and carries an
//! integer value inline (keys and foreign keys mostly are); any other value (text, uuid, a
//! composite key) is interned once for all subscriptions that hold it, counted, and freed
//! with the last slot that names it.

use std::borrow::Cow;

use super::topic::{Selector, Topic};
use crate::hash::HashMap;
use crate::schema::{Key, TableName, Value};

/// A topic in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    /// The table's number (high half) and what the topic selects (low half): [`ALL`],
    /// [`ROW`], or a column's number plus [`COLUMNS`].
    head: u32,
    /// Whether `value` is an integer ([`INT`]), an interned value's number ([`INTERNED`]), or
    /// nothing ([`NONE`]).
    kind: u8,
    value: u64,
}

const ALL: u32 = 0;
const ROW: u32 = 1;
const COLUMNS: u32 = 2;
const NONE: u8 = 0;
const INT: u8 = 1;
const INTERNED: u8 = 2;

impl Slot {
    /// The table's number.
    pub fn table(self) -> u16 {
        (self.head >> 16) as u16
    }
}

/// The names and values slots refer to by number.
#[derive(Default)]
pub(crate) struct Interner {
    tables: Vec<TableName>,
    columns: Vec<Cow<'static, str>>,
    column_numbers: HashMap<Cow<'static, str>, u16>,
    /// Interned values: the value (a key, or a column value as a one-value key) and how many
    /// slots in the index name it.
    values: Vec<Option<(Key, u32)>>,
    value_numbers: HashMap<Key, u32>,
    free: Vec<u32>,
}

impl Interner {
    /// The slot of `topic`, naming whatever it needs (use [`retain`](Self::retain) when the
    /// slot enters the index).
    pub fn intern(&mut self, topic: &Topic) -> Slot {
        let table = match self.tables.iter().position(|t| *t == topic.table) {
            Some(at) => at,
            None => {
                self.tables.push(topic.table);
                self.tables.len() - 1
            }
        } as u32;
        let (what, kind, value) = match &topic.selector {
            Selector::All => (ALL, NONE, 0),
            Selector::Row(key) => {
                let (kind, value) = self.intern_value(key.values());
                (ROW, kind, value)
            }
            Selector::Column(column, value) => {
                let number = match self.column_numbers.get(column) {
                    Some(n) => *n,
                    None => {
                        let n = self.columns.len() as u16;
                        self.columns.push(column.clone());
                        self.column_numbers.insert(column.clone(), n);
                        n
                    }
                };
                let (kind, value) = self.intern_value(std::slice::from_ref(value));
                (COLUMNS + number as u32, kind, value)
            }
        };
        Slot {
            head: table << 16 | what,
            kind,
            value,
        }
    }

    /// The slot of `topic` if every name and value it needs is known (else no subscription
    /// holds it).
    pub fn find(&self, topic: &Topic) -> Option<Slot> {
        let table = self.tables.iter().position(|t| *t == topic.table)? as u32;
        let (what, kind, value) = match &topic.selector {
            Selector::All => (ALL, NONE, 0),
            Selector::Row(key) => {
                let (kind, value) = self.find_value(key.values())?;
                (ROW, kind, value)
            }
            Selector::Column(column, value) => {
                let number = *self.column_numbers.get(column)?;
                let (kind, value) = self.find_value(std::slice::from_ref(value))?;
                (COLUMNS + number as u32, kind, value)
            }
        };
        Some(Slot {
            head: table << 16 | what,
            kind,
            value,
        })
    }

    /// The topic a slot stands for.
    pub fn topic(&self, slot: Slot) -> Topic {
        let table = self.tables[slot.table() as usize];
        let value = || -> Key {
            match slot.kind {
                INT => Key(vec![Value::I64(slot.value as i64)]),
                _ => self.values[slot.value as usize]
                    .as_ref()
                    .map(|(key, _)| key.clone())
                    .unwrap_or(Key(Vec::new())),
            }
        };
        let selector = match slot.head & 0xffff {
            ALL => Selector::All,
            ROW => Selector::Row(value()),
            n => {
                let column = self.columns[(n - COLUMNS) as usize].clone();
                let mut key = value();
                Selector::Column(column, key.0.pop().unwrap_or(Value::Null))
            }
        };
        Topic { table, selector }
    }

    /// The number of table `table`, if any slot ever named it.
    pub fn table_number(&self, table: &TableName) -> Option<u16> {
        self.tables
            .iter()
            .position(|t| t == table)
            .map(|n| n as u16)
    }

    /// A slot entered the index.
    pub fn retain(&mut self, slot: Slot) {
        if slot.kind == INTERNED {
            if let Some((_, refs)) = &mut self.values[slot.value as usize] {
                *refs += 1;
            }
        }
    }

    /// A slot left the index: its interned value goes with the last slot naming it.
    pub fn release(&mut self, slot: Slot) {
        if slot.kind != INTERNED {
            return;
        }
        let at = slot.value as usize;
        let gone = match &mut self.values[at] {
            Some((_, refs)) => {
                *refs = refs.saturating_sub(1);
                *refs == 0
            }
            None => false,
        };
        if gone {
            if let Some((key, _)) = self.values[at].take() {
                self.value_numbers.remove(&key);
            }
            self.free.push(at as u32);
        }
    }

    fn intern_value(&mut self, values: &[Value]) -> (u8, u64) {
        if let Some(found) = self.find_value(values) {
            return found;
        }
        let key = Key(values.to_vec());
        let number = match self.free.pop() {
            Some(n) => {
                self.values[n as usize] = Some((key.clone(), 0));
                n
            }
            None => {
                self.values.push(Some((key.clone(), 0)));
                (self.values.len() - 1) as u32
            }
        };
        self.value_numbers.insert(key, number);
        (INTERNED, number as u64)
    }

    fn find_value(&self, values: &[Value]) -> Option<(u8, u64)> {
        // why integers inline: equal integers are equal values whatever their width
        // (`Value`'s equality), as they are here
        if let [value] = values {
            if let Some(int) = value.as_i64() {
                return Some((INT, int as u64));
            }
        }
        let key = Key(values.to_vec());
        self.value_numbers.get(&key).map(|n| (INTERNED, *n as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posts(selector: Selector) -> Topic {
        Topic {
            table: TableName {
                schema: None,
                name: "posts",
            },
            selector,
        }
    }

    #[test]
    fn slots_stand_for_their_topics() {
        let mut names = Interner::default();
        let topics = [
            posts(Selector::All),
            posts(Selector::row(7i64)),
            posts(Selector::foreign("person_id", 3i64)),
            posts(Selector::foreign("name", "x")),
            posts(Selector::Row(Key::from((1i64, 2i64)))),
        ];
        for topic in &topics {
            let slot = names.intern(topic);
            names.retain(slot);
            assert_eq!(std::mem::size_of::<Slot>(), 16);
            assert_eq!(names.find(topic), Some(slot));
            assert_eq!(&names.topic(slot), topic);
        }
        assert_eq!(
            names.find(&posts(Selector::row(7i32))),
            names.find(&posts(Selector::row(7i64))),
            "integers of any width"
        );
        let text = names.intern(&topics[3]);
        names.release(text);
        assert_eq!(
            names.find(&topics[3]),
            None,
            "the last release frees the value"
        );
    }
}
