//! Fan-out: a change goes to the subscribers its topics match, each once, without waiting
//! on any of them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::index::{RouteIndex, SubscriptionId};
use super::queue::{Message, Queue};
use super::topic::{touched, Ops, Topic};
use crate::change::ResyncReason;
use crate::change::{Change, Op};
use crate::hash::{HashMap, HashSet};
use crate::schema::TableName;

/// The subscriptions of a hub and their index.
pub(crate) struct Router {
    index: RwLock<RouteIndex>,
    queues: RwLock<HashMap<SubscriptionId, Arc<Queue>>>,
    next_id: AtomicU64,
    capacity: usize,
    /// The changes routed most recently, oldest first: a subscriber that starts to hold a
    /// row after reading it catches up on the changes of that row it was not routed yet.
    recent: Mutex<VecDeque<Arc<Change>>>,
    /// The newest change put into `recent`, and the newest one queued for its subscribers:
    /// a catch-up waits until every change it may see in `recent` is queued (see
    /// [`Router::touching_since`]).
    routed: AtomicU64,
    delivered: AtomicU64,
    delivery: tokio::sync::Notify,
}

/// Changes [`Router::recent`] keeps.
const RECENT: usize = 16 * 1024;

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
            recent: Mutex::default(),
            routed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            delivery: tokio::sync::Notify::new(),
        })
    }

    /// Files a new subscriber under `topics`: its id, the receiving end of its queue and the
    /// queue's counters (see `Inbox::open`). `syncs`: it applies changes to data it holds.
    pub fn subscribe(
        &self,
        topics: impl IntoIterator<Item = Topic>,
        ops: Ops,
        syncs: bool,
    ) -> (SubscriptionId, Arc<Queue>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(Queue::new(self.capacity, syncs));
        self.queues.write().insert(id, queue.clone());
        self.add_topics(id, topics, ops);
        self.index.write().shrink(id);
        (id, queue)
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
        index.shrink(id);
    }

    pub fn unsubscribe(&self, id: SubscriptionId) {
        self.index.write().remove(id);
        self.queues.write().remove(&id);
    }

    /// Whether subscription `id` is routed by `topic`.
    pub fn holds(&self, id: SubscriptionId, topic: &Topic) -> bool {
        self.index.read().holds(id, topic)
    }

    pub fn topics_of(&self, id: SubscriptionId) -> Vec<Topic> {
        self.index.read().topics_of(id)
    }

    /// Routes changes in one pass under the index lock: for each, the subscribers it
    /// concerns (each once) and whether a sync of it will read the changed row (so that the
    /// rows of a burst can be read together before anyone asks).
    pub fn route(&self, changes: Vec<Arc<Change>>) -> Vec<Routed> {
        {
            let mut recent = self.recent.lock();
            for change in &changes {
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back(change.clone());
            }
            if let Some(last) = changes.last() {
                self.routed.fetch_max(last.seq, Ordering::AcqRel);
            }
        }
        let index = self.index.read();
        let queues = self.queues.read();
        changes
            .into_iter()
            .map(|change| {
                let subscribers = index.matching(&change, &touched(&change));
                let reads_row = match change.op {
                    // an update is read by whoever holds the row
                    Op::Updated => index.has_topic(&Topic {
                        table: change.table,
                        selector: super::Selector::Row(change.key.clone()),
                    }),
                    // an insert is read by a collection or list that may take it in
                    Op::Inserted => !subscribers.is_empty(),
                    // a delete is read one by one by the hub's own role (holders under a
                    // context have every change they are routed read in the batch)
                    Op::Deleted => false,
                };
                // why only for syncing subscribers: a read started for watchers that never ask
                // for the row would be a read for nothing
                let read_now = reads_row
                    && subscribers
                        .iter()
                        .any(|id| queues.get(id).is_some_and(|q| q.syncs));
                Routed {
                    change,
                    subscribers,
                    reads_row,
                    read_now,
                }
            })
            .collect()
    }

    /// The changes after position `seq` that touch one of `topics`, oldest first; `None`
    /// when changes after `seq` have left the memory already (only a reload can tell what
    /// they did).
    pub fn touching_since(&self, seq: u64, topics: &HashSet<Topic>) -> Option<Vec<Arc<Change>>> {
        let recent = self.recent.lock();
        if recent.front().is_some_and(|oldest| oldest.seq > seq + 1) {
            return None;
        }
        let after = recent.partition_point(|c| c.seq <= seq);
        Some(
            recent
                .range(after..)
                .filter(|c| touched(c).iter().any(|t| topics.contains(t)))
                .cloned()
                .collect(),
        )
    }

    /// Queues each routed change for its subscribers, in order, without waiting. With
    /// `quiet`, a subscriber that syncs is not woken for a change whose row is being read
    /// for it (`read_now`): the queues returned are, to be woken once the read is done.
    ///
    /// why: woken at once, it would ask for the row, find the read in flight and sleep
    /// again until it ends; a thousand subscribers of each change woke twice per change.
    pub fn deliver(&self, routed: Vec<Routed>, quiet: bool) -> Vec<Arc<Queue>> {
        let last = routed.last().map(|r| r.change.seq);
        let queues = self.queues.read();
        let mut to_wake = Vec::new();
        for Routed {
            change,
            subscribers,
            read_now,
            ..
        } in routed
        {
            let quiet = quiet && read_now;
            for id in subscribers {
                if let Some(queue) = queues.get(&id) {
                    let message = Message::Change(change.clone());
                    if quiet && queue.syncs {
                        queue.offer_quiet(message);
                        to_wake.push(queue.clone());
                    } else {
                        queue.offer(message);
                    }
                }
            }
        }
        drop(queues);
        if let Some(last) = last {
            self.delivered.fetch_max(last, Ordering::AcqRel);
            self.delivery.notify_waiters();
        }
        to_wake
    }

    /// Waits until every change routed so far is queued for its subscribers (the pump
    /// routes a burst, reads and looks at it, then queues it), up to `patience`.
    pub async fn delivered(&self, patience: std::time::Duration) {
        let target = self.routed.load(Ordering::Acquire);
        let waiting = async {
            loop {
                let queued = self.delivery.notified();
                tokio::pin!(queued);
                // why enabled before the check: a delivery after it wakes `queued`
                queued.as_mut().enable();
                if self.delivered.load(Ordering::Acquire) >= target {
                    return;
                }
                queued.await;
            }
        };
        // a burst the pump never queued (it stopped): the catch-up goes on without it
        let _ = tokio::time::timeout(patience, waiting).await;
    }

    /// Tells `ids` that every change of transaction `xid` that concerns them has been
    /// queued.
    pub fn commit(&self, xid: u64, ids: &HashSet<SubscriptionId>) {
        let queues = self.queues.read();
        for id in ids {
            if let Some(queue) = queues.get(id) {
                queue.offer_commit(xid);
            }
        }
    }

    /// Tells the subscribers with a topic on `table` (every subscriber, for `None`) to
    /// resync.
    pub fn resync(&self, table: Option<TableName>, reason: ResyncReason) {
        let ids: Vec<SubscriptionId> = match table {
            Some(table) => self.index.read().on_table(&table).into_iter().collect(),
            None => self.queues.read().keys().copied().collect(),
        };
        let queues = self.queues.read();
        for id in ids {
            if let Some(queue) = queues.get(&id) {
                queue.offer(Message::Resync(reason.clone()));
            }
        }
    }

    /// Ends every subscription: their queues close, so `next()` gives `None` once drained.
    pub fn close_all(&self) {
        for (_, queue) in self.queues.write().drain() {
            queue.close();
        }
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

impl Drop for Router {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// A change with the subscribers it concerns.
pub(crate) struct Routed {
    pub change: Arc<Change>,
    pub subscribers: HashSet<SubscriptionId>,
    /// Whether a sync of the change will read the changed row.
    pub reads_row: bool,
    /// Whether a subscriber that syncs will read it: the read is worth starting at once.
    pub read_now: bool,
}
