//! The subscription index: topic → subscribers, so delivering a change costs the topics it
//! touches and the subscribers it concerns, never the subscriptions it does not.

use std::collections::{HashMap, HashSet};

use super::topic::{Ops, Topic};
use crate::change::Change;

/// A subscription's id within a hub.
pub type SubscriptionId = u64;

/// why counted: one subscriber can hold the same row in several places (a tag under two
/// posts); the topic must stay until the last of them is gone.
#[derive(Default)]
pub(crate) struct RouteIndex {
    by_topic: HashMap<Topic, HashMap<SubscriptionId, Ops>>,
    by_subscription: HashMap<SubscriptionId, HashMap<Topic, Hold>>,
}

/// How often a subscription holds a topic, and for which operations.
#[derive(Debug, Clone, Copy)]
struct Hold {
    count: usize,
    ops: Ops,
}

impl RouteIndex {
    pub fn add(&mut self, id: SubscriptionId, topic: Topic, ops: Ops) {
        let holds = self.by_subscription.entry(id).or_default();
        // why a fast path: every sync re-adds the topics of the rows it replaced (and then
        // removes the old holds); when the topic is already held for these operations only
        // the count changes, so the topic is neither cloned nor looked up in `by_topic`.
        if let Some(hold) = holds.get_mut(&topic) {
            hold.count += 1;
            if hold.ops.union(ops) == hold.ops {
                return;
            }
            hold.ops = hold.ops.union(ops);
            let widened = hold.ops;
            self.by_topic.entry(topic).or_default().insert(id, widened);
            return;
        }
        holds.insert(topic.clone(), Hold { count: 1, ops });
        self.by_topic.entry(topic).or_default().insert(id, ops);
    }

    /// Removes one hold of `topic`; the topic goes when no hold is left.
    pub fn remove_topic(&mut self, id: SubscriptionId, topic: &Topic) {
        let Some(topics) = self.by_subscription.get_mut(&id) else {
            return;
        };
        let Some(hold) = topics.get_mut(topic) else {
            return;
        };
        hold.count -= 1;
        if hold.count > 0 {
            return;
        }
        topics.remove(topic);
        if let Some(subs) = self.by_topic.get_mut(topic) {
            subs.remove(&id);
            if subs.is_empty() {
                self.by_topic.remove(topic);
            }
        }
    }

    pub fn remove(&mut self, id: SubscriptionId) {
        for topic in self
            .by_subscription
            .remove(&id)
            .unwrap_or_default()
            .into_keys()
        {
            if let Some(subs) = self.by_topic.get_mut(&topic) {
                subs.remove(&id);
                if subs.is_empty() {
                    self.by_topic.remove(&topic);
                }
            }
        }
    }

    pub fn topics_of(&self, id: SubscriptionId) -> Vec<Topic> {
        self.by_subscription
            .get(&id)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Subscribers a change concerns, each once.
    pub fn matching(&self, change: &Change, touched: &[Topic]) -> HashSet<SubscriptionId> {
        let mut out = HashSet::new();
        for topic in touched {
            if let Some(subs) = self.by_topic.get(topic) {
                out.extend(
                    subs.iter()
                        .filter(|(_, ops)| ops.contains(change.op))
                        .map(|(id, _)| *id),
                );
            }
        }
        out
    }

    /// Whether some subscription holds `topic`.
    pub fn has_topic(&self, topic: &Topic) -> bool {
        self.by_topic.contains_key(topic)
    }

    /// Subscribers with any topic on `table`.
    pub fn on_table(&self, table: &crate::schema::TableName) -> HashSet<SubscriptionId> {
        self.by_topic
            .iter()
            .filter(|(t, _)| t.table == *table)
            .flat_map(|(_, subs)| subs.keys().copied())
            .collect()
    }

    /// Number of distinct topics indexed (for tests and metrics).
    pub fn topic_count(&self) -> usize {
        self.by_topic.len()
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
