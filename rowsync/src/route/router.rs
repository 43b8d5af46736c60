//! Fan-out: a change goes to the subscribers its topics match, each once, without waiting
//! on any of them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use tokio::sync::mpsc;

use super::inbox::{Inbox, Message, Queue, QueueStats, ResyncReason};
use super::index::{RouteIndex, SubscriptionId};
use super::topic::{touched, Ops, Topic};
use crate::change::Change;
use crate::schema::TableName;

/// The subscriptions of a hub and their index.
pub(crate) struct Router {
    index: RwLock<RouteIndex>,
    queues: RwLock<HashMap<SubscriptionId, Arc<Queue>>>,
    next_id: AtomicU64,
    capacity: usize,
}

// why parking_lot's blocking locks: every critical section is a few map operations with no
// await inside, dispatch must never wait on a subscriber, and they cannot poison (a panic
// elsewhere must not take routing down for everyone).
impl Router {
    pub fn new(capacity: usize) -> Arc<Router> {
        Arc::new(Router {
            index: RwLock::default(),
            queues: RwLock::default(),
            next_id: AtomicU64::new(1),
            capacity: capacity.max(1),
        })
    }

    pub fn subscribe(self: &Arc<Self>, topics: impl IntoIterator<Item = Topic>, ops: Ops) -> Inbox {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.capacity);
        let stats = Arc::new(QueueStats::default());
        let queue = Arc::new(Queue {
            tx,
            stats: stats.clone(),
        });
        self.queues.write().insert(id, queue);
        self.add_topics(id, topics, ops);
        Inbox::new(id, rx, stats, Arc::downgrade(self))
    }

    pub fn add_topics(
        &self,
        id: SubscriptionId,
        topics: impl IntoIterator<Item = Topic>,
        ops: Ops,
    ) {
        let mut index = self.index.write();
        for topic in topics {
            index.add(id, topic, ops);
        }
    }

    pub fn remove_topics(&self, id: SubscriptionId, topics: &[Topic]) {
        let mut index = self.index.write();
        for topic in topics {
            index.remove_topic(id, topic);
        }
    }

    pub fn set_topics(&self, id: SubscriptionId, topics: impl IntoIterator<Item = Topic>) {
        let mut index = self.index.write();
        index.remove(id);
        for topic in topics {
            index.add(id, topic, Ops::ALL);
        }
    }

    pub fn unsubscribe(&self, id: SubscriptionId) {
        self.index.write().remove(id);
        self.queues.write().remove(&id);
    }

    pub fn topics_of(&self, id: SubscriptionId) -> Vec<Topic> {
        self.index.read().topics_of(id)
    }

    /// Delivers a change to every subscriber it concerns; returns how many.
    pub fn dispatch(&self, change: Arc<Change>) -> usize {
        let ids = self.matching(&change);
        self.deliver(&ids, change);
        ids.len()
    }

    /// The subscribers a change concerns, each once.
    pub fn matching(&self, change: &Change) -> HashSet<SubscriptionId> {
        let topics = touched(change);
        self.index.read().matching(change, &topics)
    }

    /// Delivers a change to `ids` (from [`Router::matching`]).
    pub fn deliver(&self, ids: &HashSet<SubscriptionId>, change: Arc<Change>) {
        let queues = self.queues.read();
        for id in ids {
            if let Some(queue) = queues.get(id) {
                queue.offer(Message::Change(change.clone()));
            }
        }
    }

    /// Whether some subscriber holds the row of `table` with `key`.
    pub fn holds_row(&self, table: TableName, key: &crate::schema::Key) -> bool {
        self.index.read().has_topic(&Topic {
            table,
            selector: super::Selector::Row(key.clone()),
        })
    }

    /// Tells every subscriber to resync.
    pub fn resync_all(&self, reason: ResyncReason) {
        for queue in self.queues.read().values() {
            queue.offer(Message::Resync(reason.clone()));
        }
    }

    /// Tells the subscribers with a topic on `table` to resync.
    pub fn resync_table(&self, table: TableName) {
        let ids = self.index.read().on_table(&table);
        let queues = self.queues.read();
        for id in ids {
            if let Some(queue) = queues.get(&id) {
                queue.offer(Message::Resync(ResyncReason::Overflow { table }));
            }
        }
    }

    /// Ends every subscription: their queues close, so `next()` gives `None` once drained.
    pub fn close_all(&self) {
        self.queues.write().clear();
    }

    /// Distinct topics indexed.
    pub fn topic_count(&self) -> usize {
        self.index.read().topic_count()
    }

    /// Live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.queues.read().len()
    }
}
