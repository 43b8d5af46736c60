//! The subscription index: topic → subscribers, so delivering a change costs the topics it
//! touches and the subscribers it concerns, never the subscriptions it does not.
//!
//! why this compact: it holds an entry per (subscription, topic), a few dozen per web
//! session. Topics are kept as 16-byte slots (`slot.rs`), each held topic once under a
//! number with its holders (`held.rs`, `holders.rs`), and a subscription keeps only the
//! numbers of its topics.

use super::held::{Entry, HeldTopics};
use super::holders::Holders;
use super::slot::Interner;
use super::topic::{Ops, Topic};
use crate::change::Change;
use crate::hash::{HashMap, HashSet, HashSetExt};

/// A subscription's id within a hub.
pub type SubscriptionId = u64;

/// why counted: one subscriber can hold the same row in several places (a tag under two
/// posts); the topic must stay until the last of them is gone.
#[derive(Default)]
pub(crate) struct RouteIndex {
    names: Interner,
    topics: HeldTopics,
    by_subscription: HashMap<SubscriptionId, Numbers>,
}

/// The numbers of the topics a subscription holds: a list while short, a set beyond.
#[allow(clippy::box_collection)]
enum Numbers {
    Few(Vec<u32>),
    Many(Box<HashSet<u32>>),
}

/// Topics a subscription keeps in a list (searched linearly).
const FEW: usize = 64;

impl Numbers {
    fn insert(&mut self, number: u32) {
        match self {
            Numbers::Few(list) if list.len() < FEW => list.push(number),
            Numbers::Few(list) => {
                let mut set: HashSet<u32> = list.drain(..).collect();
                set.insert(number);
                *self = Numbers::Many(Box::new(set));
            }
            Numbers::Many(set) => {
                set.insert(number);
            }
        }
    }

    fn remove(&mut self, number: u32) {
        match self {
            Numbers::Few(list) => {
                if let Some(at) = list.iter().position(|n| *n == number) {
                    list.swap_remove(at);
                }
            }
            Numbers::Many(set) => {
                set.remove(&number);
            }
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match self {
            Numbers::Few(list) => Box::new(list.iter().copied()),
            Numbers::Many(set) => Box::new(set.iter().copied()),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Numbers::Few(list) => list.is_empty(),
            Numbers::Many(set) => set.is_empty(),
        }
    }
}

impl RouteIndex {
    pub fn add(&mut self, id: SubscriptionId, topic: Topic, ops: Ops) {
        let slot = self.names.intern(&topic);
        let number = match self.topics.find(slot) {
            Some(number) => {
                if !self.topics.get_mut(number).holders.add(id, ops) {
                    return;
                }
                number
            }
            None => {
                self.names.retain(slot);
                self.topics.insert(Entry {
                    slot,
                    holders: Holders::new(id, ops),
                })
            }
        };
        self.by_subscription
            .entry(id)
            .or_insert_with(|| Numbers::Few(Vec::new()))
            .insert(number);
    }

    /// Removes one hold of `topic`; the topic goes when no hold is left.
    pub fn remove_topic(&mut self, id: SubscriptionId, topic: &Topic) {
        let Some(number) = self.find(topic) else {
            return;
        };
        if !self.topics.get_mut(number).holders.release(id) {
            return;
        }
        self.unhold(id, number);
        if let Some(numbers) = self.by_subscription.get_mut(&id) {
            numbers.remove(number);
            if numbers.is_empty() {
                self.by_subscription.remove(&id);
            }
        }
    }

    /// Takes `id` off topic `number` whatever its count; the topic goes with its last
    /// holder.
    fn unhold(&mut self, id: SubscriptionId, number: u32) {
        let entry = self.topics.get_mut(number);
        if entry.holders.remove(id) {
            let slot = entry.slot;
            self.topics.remove(number);
            self.names.release(slot);
        }
    }

    pub fn remove(&mut self, id: SubscriptionId) {
        let Some(numbers) = self.by_subscription.remove(&id) else {
            return;
        };
        for number in numbers.iter() {
            self.unhold(id, number);
        }
    }

    pub fn topics_of(&self, id: SubscriptionId) -> Vec<Topic> {
        self.by_subscription
            .get(&id)
            .map(|numbers| {
                numbers
                    .iter()
                    .map(|n| self.names.topic(self.topics.get(n).slot))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The holders of `topic`, if some subscription holds it.
    fn holders(&self, topic: &Topic) -> Option<&Holders> {
        self.find(topic).map(|n| &self.topics.get(n).holders)
    }

    fn find(&self, topic: &Topic) -> Option<u32> {
        self.names.find(topic).and_then(|s| self.topics.find(s))
    }

    /// Subscribers a change concerns, each once.
    pub fn matching(&self, change: &Change, touched: &[Topic]) -> HashSet<SubscriptionId> {
        let mut out = HashSet::new();
        for topic in touched {
            if let Some(holders) = self.holders(topic) {
                out.extend(holders.for_op(change.op));
            }
        }
        out
    }

    /// Whether subscription `id` holds `topic`.
    pub fn holds(&self, id: SubscriptionId, topic: &Topic) -> bool {
        self.holders(topic).is_some_and(|h| h.contains(id))
    }

    /// Whether some subscription holds `topic`.
    pub fn has_topic(&self, topic: &Topic) -> bool {
        self.find(topic).is_some()
    }

    /// Subscribers with any topic on `table`.
    pub fn on_table(&self, table: &crate::schema::TableName) -> HashSet<SubscriptionId> {
        let Some(number) = self.names.table_number(table) else {
            return HashSet::new();
        };
        self.topics
            .iter()
            .filter(|entry| entry.slot.table() == number)
            .flat_map(|entry| entry.holders.ids())
            .collect()
    }

    /// Number of distinct topics indexed (for tests and metrics).
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Gives back the spare room of `id`'s list of topics (after filing many at once).
    pub fn shrink(&mut self, id: SubscriptionId) {
        if let Some(Numbers::Few(list)) = self.by_subscription.get_mut(&id) {
            list.shrink_to_fit();
        }
    }
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
            ("slot", std::mem::size_of::<super::super::slot::Slot>()),
            ("holders", std::mem::size_of::<Holders>()),
            ("entry", std::mem::size_of::<Entry>()),
            ("numbers", std::mem::size_of::<Numbers>()),
            ("queue", std::mem::size_of::<crate::route::queue::Queue>()),
            ("topic", std::mem::size_of::<Topic>()),
        ];
        eprintln!("{sizes:?}");
        assert_eq!(sizes[0].1, 16);
        assert_eq!(sizes[1].1, 16);
        assert_eq!(sizes[2].1, 32);
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

    #[test]
    fn a_shared_topic_keeps_its_holders_in_order() {
        let mut index = RouteIndex::default();
        for id in [5, 3, 9, 1, 7, 3] {
            index.add(id, topic(4), Ops::ALL);
        }
        index.add(6, topic(4), Op::Deleted.into());
        assert_eq!(subscribers(&index, 4, Op::Updated), [1, 3, 5, 7, 9]);
        assert_eq!(subscribers(&index, 4, Op::Deleted), [1, 3, 5, 6, 7, 9]);
        index.remove_topic(3, &topic(4));
        assert!(index.holds(3, &topic(4)), "held twice");
        index.remove(3);
        index.remove(9);
        assert!(!index.holds(3, &topic(4)));
        for id in [1, 5, 6] {
            index.remove(id);
        }
        assert_eq!(subscribers(&index, 4, Op::Deleted), [7]);
        index.remove_topic(7, &topic(4));
        assert_eq!(index.topic_count(), 0);
        index.add(2, topic(8), Ops::ALL);
        assert_eq!(index.topics_of(2), [topic(8)], "a freed number reused");
    }
}
