//! A subscription: a bounded stream of messages for one subscriber.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures_util::Stream;

use super::index::SubscriptionId;
use super::queue::{Item, Message, Queue};
use super::router::Router;
use super::topic::{Ops, Topic};
use crate::change::{Change, ResyncReason};

/// How long a catch-up waits for the changes routed before it to be queued.
const DELIVERY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The receiving end of a subscriber's queue: [`Message`]s in commit order, each at most
/// once. The queue is bounded: a subscriber that falls behind gets [`Message::Resync`] (and
/// the changes queued before it are dropped, as a reload covers them) instead of unbounded
/// memory. Dropping the inbox unsubscribes it.
pub struct Inbox {
    id: SubscriptionId,
    queue: Arc<Queue>,
    router: Weak<Router>,
    pending: VecDeque<Item>,
}

impl Inbox {
    /// Files a new subscriber with `router` under `topics`, and returns its end. `syncs`:
    /// it applies changes to data it holds (see `Queue::syncs`).
    pub(crate) fn open(
        router: &Arc<Router>,
        topics: impl IntoIterator<Item = Topic>,
        ops: Ops,
        syncs: bool,
    ) -> Inbox {
        let (id, queue) = router.subscribe(topics, ops, syncs);
        Inbox {
            id,
            queue,
            router: Arc::downgrade(router),
            pending: VecDeque::new(),
        }
    }

    /// This subscription's id within its hub.
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// The next message; `None` once the hub has shut down.
    pub async fn next(&mut self) -> Option<Message> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    /// The next message if one is queued now, without waiting.
    ///
    /// why not `next().now_or_never()`: tokio's cooperative budget makes a receive report
    /// "pending" after many in a row even with messages queued; `try_recv` does not.
    pub fn try_next(&mut self) -> Option<Message> {
        loop {
            if let Some(lagged) = self.take_lag() {
                return Some(lagged);
            }
            let item = self.pending.pop_front().or_else(|| self.queue.try_recv())?;
            if let Item::Message(message) = item {
                return Some(self.taken(message));
            }
        }
    }

    /// Asks for a resync before anything else queued (a change this subscriber could not
    /// apply, a reload that failed and must be tried again).
    pub fn resync_first(&mut self, reason: ResyncReason) {
        self.pending
            .push_front(Item::Message(Message::Resync(reason)));
    }

    /// Waits until a message can be taken with no wait for its first item (one is queued,
    /// a lag is to be reported, or the hub shut down). Cancel-safe: an item received is kept.
    pub(crate) async fn ready(&mut self) {
        loop {
            if self.queue.stats.missed.load(Ordering::Relaxed) > 0
                || self.queue.stats.lost_marks.load(Ordering::Relaxed) > 0
            {
                return;
            }
            // a mark first in line is skipped by `next` anyway
            while matches!(self.pending.front(), Some(Item::Committed(_))) {
                self.pending.pop_front();
            }
            if !self.pending.is_empty() {
                return;
            }
            match self.queue.recv(false).await {
                None => return,
                Some(Item::Committed(_)) => {}
                Some(item) => self.pending.push_back(item),
            }
        }
    }

    /// Like [`ready`](Self::ready), and when the first message is a change, waits until
    /// its transaction is whole too (what [`next_of`](Self::next_of) then gives comes with
    /// no wait). Cancel-safe: items received are kept.
    pub(crate) async fn ready_whole(&mut self) {
        self.ready().await;
        let Some(Item::Message(Message::Change(first))) = self.pending.front() else {
            return;
        };
        let xid = first.xid;
        loop {
            if self.queue.stats.missed.load(Ordering::Relaxed) > 0
                || self.queue.stats.lost_marks.load(Ordering::Relaxed) > 0
            {
                return;
            }
            // whole: its mark is in line, or something `next_of` stops at
            let whole = self.pending.iter().any(|item| match item {
                Item::Committed(done) => *done == xid,
                Item::Message(Message::Change(c)) => c.xid != xid,
                Item::Message(_) => true,
            });
            if whole {
                return;
            }
            match self.queue.recv(true).await {
                Some(item) => self.pending.push_back(item),
                None => return,
            }
        }
    }

    /// Queues `changes` (oldest first): changes of rows this subscriber started to hold
    /// that were routed before it held them. Each goes where commit order puts it among
    /// what is queued already, not before it all: applied ahead of older changes, a newer
    /// change would make them look like old news (or undo it, for a key change).
    ///
    /// Every change older than the newest caught-up one was routed before it, so whatever of
    /// them reached this subscriber is queued now: the channel is drained into `pending`
    /// (at most its capacity) to merge by position. A caught-up change of a transaction
    /// that also has changes queued joins them before their mark; one of a transaction with
    /// nothing else queued gets a mark of its own. `is_new` is asked of each change not
    /// queued already (false: an earlier catch-up took it, leave it out).
    pub fn catch_up(&mut self, changes: Vec<Arc<Change>>, mut is_new: impl FnMut(&Change) -> bool) {
        if changes.is_empty() {
            return;
        }
        while let Some(item) = self.queue.try_recv() {
            self.pending.push_back(item);
        }
        let queued: crate::hash::HashSet<u64> = self
            .pending
            .iter()
            .filter_map(|item| match item {
                Item::Message(Message::Change(c)) => Some(c.seq),
                _ => None,
            })
            .collect();
        let mut at = 0;
        for change in changes {
            // routed to this subscriber through another topic, it comes in its place
            if queued.contains(&change.seq) || !is_new(&change) {
                continue;
            }
            while at < self.pending.len()
                && !matches!(&self.pending[at], Item::Message(Message::Change(c)) if c.seq > change.seq)
            {
                at += 1;
            }
            // a transaction closed just before: the change belongs inside it when it is its own
            if at > 0 && matches!(self.pending[at - 1], Item::Committed(xid) if xid == change.xid) {
                at -= 1;
                self.pending
                    .insert(at, Item::Message(Message::Change(change)));
                at += 1;
                continue;
            }
            let xid = change.xid;
            self.pending
                .insert(at, Item::Message(Message::Change(change)));
            at += 1;
            let continues = matches!(&self.pending.get(at), Some(Item::Message(Message::Change(c))) if c.xid == xid);
            if !continues {
                self.pending.insert(at, Item::Committed(xid));
            }
        }
    }

    /// Changes after `seq` that touch one of `topics`, from the router's memory of recent
    /// changes (`None`: they left it).
    ///
    /// Waits first until every change routed so far is queued: one routed but not queued
    /// yet, caught up now, would be applied before older changes still on their way to this
    /// queue (the catch-up merges by position only what is queued).
    pub async fn touching_since(
        &self,
        seq: u64,
        topics: &crate::hash::HashSet<Topic>,
    ) -> Option<Vec<Arc<Change>>> {
        let router = self.router.upgrade()?;
        router.delivered(DELIVERY_PATIENCE).await;
        router.touching_since(seq, topics)
    }

    /// Resyncs not queued because one was already waiting.
    pub fn coalesced(&self) -> u64 {
        self.queue.stats.coalesced.load(Ordering::Relaxed)
    }

    /// The lag resync when messages were dropped for this subscriber: what is queued is
    /// dropped too, as the reload it asks for reads the database after they committed.
    fn take_lag(&mut self) -> Option<Message> {
        let missed = self.queue.stats.missed.swap(0, Ordering::Relaxed);
        let lost_marks = self.queue.stats.lost_marks.swap(0, Ordering::Relaxed);
        if missed == 0 && lost_marks == 0 {
            return None;
        }
        self.pending
            .retain(|m| matches!(m, Item::Message(Message::Resync(_))));
        self.queue.clear();
        self.queue
            .stats
            .resync_queued
            .store(false, Ordering::Release);
        Some(Message::Resync(ResyncReason::Lagged { missed }))
    }

    /// Notes that a message is handed out: a resync taken lets the next one be queued.
    fn taken(&self, message: Message) -> Message {
        if matches!(message, Message::Resync(_)) {
            self.queue
                .stats
                .resync_queued
                .store(false, Ordering::Release);
        }
        message
    }

    /// The next message and, for a change, every other change of its transaction: waits
    /// until the transaction is whole (its mark is queued), so applying the batch never
    /// shows a state the database was not in. A resync comes alone.
    ///
    /// A caller that applies the batch takes rows in as it goes, and their catch-up changes
    /// can belong inside the batch: [`next_of`](Self::next_of), message by message, puts
    /// them in their place.
    pub async fn next_batch(&mut self) -> Option<Vec<Message>> {
        let first = self.next().await?;
        let Message::Change(change) = &first else {
            return Some(vec![first]);
        };
        let xid = change.xid;
        let mut batch = vec![first];
        while let Some(next) = self.next_of(xid).await {
            batch.push(next);
        }
        Some(batch)
    }

    /// The next change of transaction `xid`, waiting until the transaction is whole;
    /// `None` once it is (its mark came, or something else is next: a resync, another
    /// transaction, a lag, the hub's end).
    pub async fn next_of(&mut self, xid: u64) -> Option<Message> {
        loop {
            if self.queue.stats.missed.load(Ordering::Relaxed) > 0
                || self.queue.stats.lost_marks.load(Ordering::Relaxed) > 0
            {
                // a lag: the resync comes next, and reloads what this batch would change
                return None;
            }
            let item = match self.pending.pop_front() {
                Some(item) => item,
                None => self.queue.recv(true).await?,
            };
            match item {
                Item::Committed(done) if done == xid => return None,
                Item::Message(Message::Change(c)) if c.xid == xid => {
                    return Some(Message::Change(c))
                }
                // the mark of an earlier transaction (a catch-up came between), or nothing
                // to wait for: a resync or another transaction
                Item::Committed(_) => {}
                other => {
                    self.pending.push_front(other);
                    return None;
                }
            }
        }
    }

    /// The topics this subscription is indexed under now.
    pub fn topics(&self) -> Vec<Topic> {
        self.router
            .upgrade()
            .map(|r| r.topics_of(self.id))
            .unwrap_or_default()
    }

    /// Adds topics (e.g. for rows the subscriber started to hold).
    pub fn add_topics(&self, topics: impl IntoIterator<Item = Topic>) {
        if let Some(router) = self.router.upgrade() {
            router.add_topics(self.id, topics, super::Ops::ALL);
        }
    }

    /// Removes topics (e.g. for rows the subscriber no longer holds).
    pub fn remove_topics(&self, topics: &[Topic]) {
        if let Some(router) = self.router.upgrade() {
            router.remove_topics(self.id, topics);
        }
    }

    /// Replaces every topic (after a reload).
    pub fn set_topics(&self, topics: impl IntoIterator<Item = Topic>) {
        if let Some(router) = self.router.upgrade() {
            router.set_topics(self.id, topics);
        }
    }

    /// Messages queued for this subscriber so far.
    pub fn delivered(&self) -> u64 {
        self.queue.stats.delivered.load(Ordering::Relaxed)
    }

    /// Messages dropped for this subscriber because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.stats.dropped_total.load(Ordering::Relaxed)
    }

    /// Stops the subscription now (dropping it does the same).
    pub fn unsubscribe(self) {}

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            if let Some(lagged) = self.take_lag() {
                return Poll::Ready(Some(lagged));
            }
            let item = match self.pending.pop_front() {
                Some(item) => item,
                None => match self.queue.poll_recv(cx, false) {
                    Poll::Ready(Some(item)) => item,
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                },
            };
            if let Item::Message(message) = item {
                return Poll::Ready(Some(self.taken(message)));
            }
        }
    }
}

impl Stream for Inbox {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.get_mut().poll_message(cx)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        if let Some(router) = self.router.upgrade() {
            router.unsubscribe(self.id);
        }
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::hash::{HashSet, HashSetExt};

    use super::*;
    use crate::change::Op;
    use crate::route::topic::Selector;
    use crate::route::Ops;
    use crate::schema::{Key, TableName};

    const POSTS: TableName = TableName {
        schema: None,
        name: "posts",
    };

    fn change(seq: u64, xid: u64, key: i64) -> Arc<Change> {
        Arc::new(Change {
            op: Op::Updated,
            table: POSTS,
            key: Key::from(key),
            old_key: None,
            columns: Vec::new(),
            old_columns: Vec::new(),
            xid,
            seq,
        })
    }

    /// Routes `changes` (row 1's are this subscriber's) and closes each transaction.
    fn route(router: &Router, changes: &[Arc<Change>]) {
        let routed = router.route(changes.to_vec());
        let mut ids = HashSet::new();
        let mut xids = Vec::new();
        for r in &routed {
            ids.extend(r.subscribers.iter().copied());
            if !xids.contains(&r.change.xid) {
                xids.push(r.change.xid);
            }
        }
        router.deliver(routed, false);
        for xid in xids {
            router.commit(xid, &ids);
        }
    }

    #[tokio::test]
    async fn caught_up_changes_take_their_place_in_commit_order() {
        let router = Router::new(64);
        let topic = Topic {
            table: POSTS,
            selector: Selector::Row(Key::from(1i64)),
        };
        let mut inbox = Inbox::open(&router, [topic], Ops::ALL, true);
        // queued: seq 1 (xid 10), seq 4 (xid 11), seq 7 (xid 13); row 2's changes were
        // routed before the subscriber held row 2
        route(
            &router,
            &[
                change(1, 10, 1),
                change(2, 10, 2),
                change(3, 11, 2),
                change(4, 11, 1),
                change(5, 11, 2),
                change(6, 12, 2),
                change(7, 13, 1),
            ],
        );
        inbox.catch_up(
            vec![
                change(2, 10, 2),
                change(3, 11, 2),
                change(4, 11, 1),
                change(5, 11, 2),
                change(6, 12, 2),
            ],
            |_| true,
        );
        let mut batches = Vec::new();
        while batches.len() < 4 {
            let batch = inbox.next_batch().await.unwrap();
            batches.push(
                batch
                    .iter()
                    .map(|m| match m {
                        Message::Change(c) => c.seq,
                        Message::Resync(_) => 0,
                    })
                    .collect::<Vec<_>>(),
            );
        }
        // in commit order, each transaction whole, seq 4 (queued) once
        assert_eq!(batches, [vec![1, 2], vec![3, 4, 5], vec![6], vec![7]]);
        assert!(inbox.try_next().is_none(), "nothing twice");
    }

    #[tokio::test]
    async fn a_change_an_earlier_catch_up_took_is_left_out() {
        let router = Router::new(64);
        let mut inbox = Inbox::open(&router, [], Ops::ALL, true);
        inbox.catch_up(vec![change(1, 10, 2), change(2, 11, 2)], |c| c.seq != 1);
        match inbox.try_next() {
            Some(Message::Change(c)) => assert_eq!(c.seq, 2),
            other => panic!("expected seq 2, got {other:?}"),
        }
        assert!(inbox.try_next().is_none());
    }
}
