//! The subscription index: topic → subscribers, so delivering a change costs the topics it
//! touches and the subscribers it concerns, never the subscriptions it does not.

use std::collections::{HashMap, HashSet};

use super::topic::{Ops, Topic};
use crate::capture::Change;

/// A subscription's id within a hub.
pub type SubscriptionId = u64;

/// why counted: one subscriber can hold the same row in several places (a tag under two
/// posts); the topic must stay until the last of them is gone.
#[derive(Default)]
pub(crate) struct RouteIndex {
    by_topic: HashMap<Topic, HashMap<SubscriptionId, Ops>>,
    by_subscription: HashMap<SubscriptionId, HashMap<Topic, usize>>,
}

impl RouteIndex {
    pub fn add(&mut self, id: SubscriptionId, topic: Topic, ops: Ops) {
        let entry = self.by_topic.entry(topic.clone()).or_default();
        let ops = entry.get(&id).map_or(ops, |o| o.union(ops));
        entry.insert(id, ops);
        *self
            .by_subscription
            .entry(id)
            .or_default()
            .entry(topic)
            .or_default() += 1;
    }

    /// Removes one hold of `topic`; the topic goes when no hold is left.
    pub fn remove_topic(&mut self, id: SubscriptionId, topic: &Topic) {
        let Some(topics) = self.by_subscription.get_mut(&id) else {
            return;
        };
        let Some(count) = topics.get_mut(topic) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
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
