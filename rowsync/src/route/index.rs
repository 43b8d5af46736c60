//! The subscription index: topic → subscribers, so delivering a change costs the topics it
//! touches and the subscribers it concerns, never the subscriptions it does not.
//!
//! why this compact: it holds an entry per (subscription, topic), a few dozen per web
//! session. Topics are kept as 16-byte slots (`slot.rs`); a topic one subscription holds
//! (most: its rows' keys) keeps that subscription inline, a map only when shared; the hold
//! count lives there too, and a subscription keeps only the list of its slots.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;

use super::slot::{Interner, Slot};
use super::topic::{Ops, Topic};
use crate::change::Change;

/// A subscription's id within a hub.
pub type SubscriptionId = u64;

/// why counted: one subscriber can hold the same row in several places (a tag under two
/// posts); the topic must stay until the last of them is gone.
#[derive(Default)]
pub(crate) struct RouteIndex {
    names: Interner,
    by_topic: HashMap<Slot, Holders>,
    by_subscription: HashMap<SubscriptionId, Slots>,
}

/// How often a subscription holds a topic, and for which operations.
#[derive(Debug, Clone, Copy)]
struct Hold {
    // why never zero: a hold goes with its last count, and the zero it never takes tells
    // `Holders`' two kinds apart, making an index entry 32 bytes instead of 40
    count: NonZeroU32,
    ops: Ops,
}

impl Hold {
    /// Takes one count off; true when it was the last (the hold goes).
    fn release(&mut self) -> bool {
        match NonZeroU32::new(self.count.get() - 1) {
            Some(count) => {
                self.count = count;
                false
            }
            None => true,
        }
    }
}

/// The subscriptions holding a topic.
// why boxed: a map is 48 bytes and most topics have one holder; boxed, and with the tag in
// the hold's count, an entry is 16
#[allow(clippy::box_collection)]
enum Holders {
    One(SubscriptionId, Hold),
    Many(Box<HashMap<SubscriptionId, Hold>>),
}

/// The slots a subscription holds: a list while short, a set beyond.
#[allow(clippy::box_collection)]
enum Slots {
    Few(Vec<Slot>),
    Many(Box<HashSet<Slot>>),
}

/// Slots a subscription keeps in a list (searched linearly).
const FEW: usize = 64;

impl Slots {
    fn insert(&mut self, slot: Slot) {
        match self {
            Slots::Few(list) if list.len() < FEW => list.push(slot),
            Slots::Few(list) => {
                let mut set: HashSet<Slot> = list.drain(..).collect();
                set.insert(slot);
                *self = Slots::Many(Box::new(set));
            }
            Slots::Many(set) => {
                set.insert(slot);
            }
        }
    }

    fn remove(&mut self, slot: Slot) {
        match self {
            Slots::Few(list) => {
                if let Some(at) = list.iter().position(|s| *s == slot) {
                    list.swap_remove(at);
                }
            }
            Slots::Many(set) => {
                set.remove(&slot);
            }
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = Slot> + '_> {
        match self {
            Slots::Few(list) => Box::new(list.iter().copied()),
            Slots::Many(set) => Box::new(set.iter().copied()),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Slots::Few(list) => list.is_empty(),
            Slots::Many(set) => set.is_empty(),
        }
    }
}

impl RouteIndex {
    pub fn add(&mut self, id: SubscriptionId, topic: Topic, ops: Ops) {
        let slot = self.names.intern(&topic);
        let new = match self.by_topic.get_mut(&slot) {
            None => {
                self.by_topic.insert(
                    slot,
                    Holders::One(
                        id,
                        Hold {
                            count: NonZeroU32::MIN,
                            ops,
                        },
                    ),
                );
                self.names.retain(slot);
                true
            }
            Some(Holders::One(held_by, hold)) if *held_by == id => {
                hold.count = hold.count.saturating_add(1);
                hold.ops = hold.ops.union(ops);
                false
            }
            Some(holders) => {
                if let Holders::One(other, hold) = *holders {
                    *holders = Holders::Many(Box::new(HashMap::from([(other, hold)])));
                }
                let Holders::Many(map) = holders else {
                    unreachable!("made many above")
                };
                match map.get_mut(&id) {
                    Some(hold) => {
                        hold.count = hold.count.saturating_add(1);
                        hold.ops = hold.ops.union(ops);
                        false
                    }
                    None => {
                        map.insert(
                            id,
                            Hold {
                                count: NonZeroU32::MIN,
                                ops,
                            },
                        );
                        true
                    }
                }
            }
        };
        if new {
            self.by_subscription
                .entry(id)
                .or_insert_with(|| Slots::Few(Vec::new()))
                .insert(slot);
        }
    }

    /// Removes one hold of `topic`; the topic goes when no hold is left.
    pub fn remove_topic(&mut self, id: SubscriptionId, topic: &Topic) {
        let Some(slot) = self.names.find(topic) else {
            return;
        };
        let Some(holders) = self.by_topic.get_mut(&slot) else {
            return;
        };
        let last = match holders {
            Holders::One(held_by, hold) if *held_by == id => hold.release(),
            Holders::One(..) => return,
            Holders::Many(map) => {
                let Some(hold) = map.get_mut(&id) else {
                    return;
                };
                hold.release()
            }
        };
        if last {
            self.unhold(id, slot);
            if let Some(slots) = self.by_subscription.get_mut(&id) {
                slots.remove(slot);
                if slots.is_empty() {
                    self.by_subscription.remove(&id);
                }
            }
        }
    }

    /// Takes `id` off `slot` whatever its count; the slot goes with its last holder.
    fn unhold(&mut self, id: SubscriptionId, slot: Slot) {
        let Some(holders) = self.by_topic.get_mut(&slot) else {
            return;
        };
        let empty = match holders {
            Holders::One(held_by, _) => *held_by == id,
            Holders::Many(map) => {
                map.remove(&id);
                if map.len() == 1 {
                    let (other, hold) = map.iter().next().map(|(k, v)| (*k, *v)).expect("one");
                    *holders = Holders::One(other, hold);
                }
                map_is_empty(holders)
            }
        };
        if empty {
            self.by_topic.remove(&slot);
            self.names.release(slot);
        }
    }

    pub fn remove(&mut self, id: SubscriptionId) {
        let Some(slots) = self.by_subscription.remove(&id) else {
            return;
        };
        for slot in slots.iter() {
            self.unhold(id, slot);
        }
    }

    pub fn topics_of(&self, id: SubscriptionId) -> Vec<Topic> {
        self.by_subscription
            .get(&id)
            .map(|slots| slots.iter().map(|s| self.names.topic(s)).collect())
            .unwrap_or_default()
    }

    /// Subscribers a change concerns, each once.
    pub fn matching(&self, change: &Change, touched: &[Topic]) -> HashSet<SubscriptionId> {
        let mut out = HashSet::new();
        for topic in touched {
            let Some(holders) = self.names.find(topic).and_then(|s| self.by_topic.get(&s)) else {
                continue;
            };
            match holders {
                Holders::One(id, hold) => {
                    if hold.ops.contains(change.op) {
                        out.insert(*id);
                    }
                }
                Holders::Many(map) => out.extend(
                    map.iter()
                        .filter(|(_, hold)| hold.ops.contains(change.op))
                        .map(|(id, _)| *id),
                ),
            }
        }
        out
    }

    /// Whether subscription `id` holds `topic`.
    pub fn holds(&self, id: SubscriptionId, topic: &Topic) -> bool {
        match self.names.find(topic).and_then(|s| self.by_topic.get(&s)) {
            Some(Holders::One(one, _)) => *one == id,
            Some(Holders::Many(map)) => map.contains_key(&id),
            None => false,
        }
    }

    /// Whether some subscription holds `topic`.
    pub fn has_topic(&self, topic: &Topic) -> bool {
        self.names
            .find(topic)
            .is_some_and(|s| self.by_topic.contains_key(&s))
    }

    /// Subscribers with any topic on `table`.
    pub fn on_table(&self, table: &crate::schema::TableName) -> HashSet<SubscriptionId> {
        let Some(number) = self.names.table_number(table) else {
            return HashSet::new();
        };
        let mut out = HashSet::new();
        for (slot, holders) in &self.by_topic {
            if slot.table() != number {
                continue;
            }
            match holders {
                Holders::One(id, _) => {
                    out.insert(*id);
                }
                Holders::Many(map) => out.extend(map.keys().copied()),
            }
        }
        out
    }

    /// Number of distinct topics indexed (for tests and metrics).
    pub fn topic_count(&self) -> usize {
        self.by_topic.len()
    }

    /// Gives back the spare room of `id`'s list of slots (after filing many at once).
    pub fn shrink(&mut self, id: SubscriptionId) {
        if let Some(Slots::Few(list)) = self.by_subscription.get_mut(&id) {
            list.shrink_to_fit();
        }
    }
}

fn map_is_empty(holders: &Holders) -> bool {
    matches!(holders, Holders::Many(map) if map.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Op;
    use crate::route::Selector;
    use crate::schema::TableName;

    fn topic(key: i64) -> Topic {
        Topic {
            table: TableName {
                schema: None,
                name: "posts",
            },
            selector: Selector::row(key),
        }
    }

    fn subscribers(index: &RouteIndex, key: i64, op: Op) -> Vec<SubscriptionId> {
        let change = Change {
            op,
            table: topic(key).table,
            key: key.into(),
            old_key: None,
            columns: Vec::new(),
            old_columns: Vec::new(),
            xid: 1,
            seq: 1,
        };
        let mut ids: Vec<_> = index.matching(&change, &[topic(key)]).into_iter().collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn entries_are_small() {
        // what a hold costs in the index (BENCHMARKS.md breaks memory down by these)
        let sizes = [
            ("slot", std::mem::size_of::<Slot>()),
            ("holders", std::mem::size_of::<Holders>()),
            ("hold", std::mem::size_of::<Hold>()),
            ("slots", std::mem::size_of::<Slots>()),
            ("queue", std::mem::size_of::<crate::route::queue::Queue>()),
            ("topic", std::mem::size_of::<Topic>()),
        ];
        eprintln!("{sizes:?}");
        assert_eq!(sizes[0].1, 16);
        assert_eq!(sizes[1].1, 16);
    }

    #[test]
    fn a_topic_stays_until_its_last_hold_goes() {
        let mut index = RouteIndex::default();
        index.add(1, topic(7), Ops::ALL);
        index.add(1, topic(7), Ops::ALL);
        index.add(2, topic(7), Ops::ALL);
        index.remove_topic(1, &topic(7));
        assert_eq!(subscribers(&index, 7, Op::Updated), [1, 2]);
        index.remove_topic(1, &topic(7));
        assert_eq!(subscribers(&index, 7, Op::Updated), [2]);
        index.remove_topic(2, &topic(7));
        assert_eq!(index.topic_count(), 0);
        assert!(index.topics_of(1).is_empty());
    }

    #[test]
    fn a_second_hold_can_widen_the_operations() {
        let mut index = RouteIndex::default();
        index.add(1, topic(7), Op::Updated.into());
        assert!(subscribers(&index, 7, Op::Deleted).is_empty());
        index.add(1, topic(7), Op::Deleted.into());
        assert_eq!(subscribers(&index, 7, Op::Deleted), [1]);
        assert_eq!(subscribers(&index, 7, Op::Updated), [1]);
    }

    #[test]
    fn removing_a_subscription_removes_all_its_holds() {
        let mut index = RouteIndex::default();
        for key in [1, 2, 2, 3] {
            index.add(9, topic(key), Ops::ALL);
        }
        index.add(8, topic(3), Ops::ALL);
        index.remove(9);
        assert_eq!(index.topic_count(), 1);
        assert_eq!(subscribers(&index, 3, Op::Inserted), [8]);
    }
}
