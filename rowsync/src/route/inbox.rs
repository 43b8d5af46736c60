//! A subscription: a bounded stream of messages for one subscriber.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use super::index::SubscriptionId;
use super::router::Router;
use super::topic::Topic;
use crate::change::{Change, ResyncReason};

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A change that touches the subscriber's data.
    Change(Arc<Change>),
    /// Changes were lost for this subscriber: reload what it holds.
    Resync(ResyncReason),
}

/// Counters shared by a subscriber's queue and its subscription.
#[derive(Default)]
pub(crate) struct QueueStats {
    /// Messages dropped since the subscriber last looked (queue full).
    pub missed: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped_total: AtomicU64,
    /// A resync is queued and not yet taken: another one would ask for the same reload.
    pub resync_queued: AtomicBool,
    /// Resyncs not queued because one already was.
    pub coalesced: AtomicU64,
}

/// The hub's side of a subscriber's queue. Only the hub holds the sender, so the stream
/// ends when the hub shuts down.
pub(crate) struct Queue {
    pub tx: mpsc::Sender<Message>,
    pub stats: Arc<QueueStats>,
}

impl Queue {
    /// Queues a message, or counts it as missed when the queue is full; never waits.
    ///
    /// A resync is not queued while another one waits to be taken: the reload that one
    /// causes reads everything committed by then (a flood of resyncs costs one reload per
    /// reload the subscriber has time for, not one per message).
    pub fn offer(&self, message: Message) {
        let resync = matches!(message, Message::Resync(_));
        if resync && self.stats.resync_queued.swap(true, Ordering::AcqRel) {
            self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send(message) {
            Ok(()) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if resync {
                    // the lag resync the full queue causes covers this one
                    self.stats.resync_queued.store(false, Ordering::Release);
                }
                self.stats.missed.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The receiving end of a subscriber's queue: [`Message`]s in commit order, each at most
/// once. The queue is bounded: a subscriber that falls behind gets [`Message::Resync`] (and
/// the changes queued before it are dropped, as a reload covers them) instead of unbounded
/// memory. Dropping the inbox unsubscribes it.
pub struct Inbox {
    id: SubscriptionId,
    rx: mpsc::Receiver<Message>,
    queue: Arc<QueueStats>,
    router: Weak<Router>,
    pending: VecDeque<Message>,
}

impl Inbox {
    pub(crate) fn new(
        id: SubscriptionId,
        rx: mpsc::Receiver<Message>,
        queue: Arc<QueueStats>,
        router: Weak<Router>,
    ) -> Self {
        Inbox {
            id,
            rx,
            queue,
            router,
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
        if let Some(lagged) = self.take_lag() {
            return Some(lagged);
        }
        let message = self
            .pending
            .pop_front()
            .or_else(|| self.rx.try_recv().ok())?;
        Some(self.taken(message))
    }

    /// Asks for a resync before anything else queued (a change this subscriber could not
    /// apply, a reload that failed and must be tried again).
    pub fn resync_first(&mut self, reason: ResyncReason) {
        self.pending.push_front(Message::Resync(reason));
    }

    /// Resyncs not queued because one was already waiting.
    pub fn coalesced(&self) -> u64 {
        self.queue.coalesced.load(Ordering::Relaxed)
    }

    /// The lag resync when messages were dropped for this subscriber: what is queued is
    /// dropped too, as the reload it asks for reads the database after they committed.
    fn take_lag(&mut self) -> Option<Message> {
        let missed = self.queue.missed.swap(0, Ordering::Relaxed);
        if missed == 0 {
            return None;
        }
        self.pending.retain(|m| !matches!(m, Message::Change(_)));
        while self.rx.try_recv().is_ok() {}
        self.queue.resync_queued.store(false, Ordering::Release);
        Some(Message::Resync(ResyncReason::Lagged { missed }))
    }

    /// Notes that a message is handed out: a resync taken lets the next one be queued.
    fn taken(&self, message: Message) -> Message {
        if matches!(message, Message::Resync(_)) {
            self.queue.resync_queued.store(false, Ordering::Release);
        }
        message
    }

    /// The next message and every change of the same transaction already queued after it.
    pub async fn next_batch(&mut self) -> Option<Vec<Message>> {
        let first = self.next().await?;
        let Message::Change(change) = &first else {
            return Some(vec![first]);
        };
        let xid = change.xid;
        let mut batch = vec![first];
        // why only with nothing pending: what is pending comes first
        while self.pending.is_empty() {
            let Ok(message) = self.rx.try_recv() else {
                break;
            };
            match &message {
                Message::Change(c) if c.xid == xid => batch.push(message),
                _ => {
                    self.pending.push_back(message);
                    break;
                }
            }
        }
        Some(batch)
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
        self.queue.delivered.load(Ordering::Relaxed)
    }

    /// Messages dropped for this subscriber because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped_total.load(Ordering::Relaxed)
    }

    /// Stops the subscription now (dropping it does the same).
    pub fn unsubscribe(self) {}

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        if let Some(lagged) = self.take_lag() {
            return Poll::Ready(Some(lagged));
        }
        if let Some(message) = self.pending.pop_front() {
            return Poll::Ready(Some(self.taken(message)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(message)) => Poll::Ready(Some(self.taken(message))),
            other => other,
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
