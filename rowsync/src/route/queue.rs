//! A subscriber's bounded queue: what the router puts in, never waiting on the subscriber.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::change::{Change, ResyncReason};

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A change that touches the subscriber's data.
    Change(Arc<Change>),
    /// Changes were lost for this subscriber: reload what it holds.
    Resync(ResyncReason),
}

/// What a subscriber's queue holds: its messages, and after the changes of each transaction
/// a mark that the transaction is whole (what `next_batch` waits for).
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Message(Message),
    /// Every change of transaction `xid` that concerns the subscriber is queued before this.
    Committed(u64),
}

/// Counters of a subscriber's queue, read by its subscription.
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
    /// Transaction marks not queued (the queue was full): the subscriber must resync, as
    /// for a message lost, though none was.
    pub lost_marks: AtomicU64,
}

/// A subscriber's queue, shared by the router (which offers) and the inbox (which takes).
///
/// why not a tokio mpsc channel: one allocates a block of 32 slots up front (1,840 bytes
/// per subscriber); this holds nothing until a message comes, and frees its buffer when
/// drained, so a hundred thousand quiet subscriptions cost a few dozen bytes each here.
pub(crate) struct Queue {
    slots: Mutex<Slots>,
    capacity: u32,
    /// Whether its subscriber applies changes to data it holds (reading their rows); one
    /// that only watches changes reads nothing unless it asks.
    pub syncs: bool,
    pub stats: QueueStats,
}

#[derive(Default)]
struct Slots {
    items: VecDeque<Item>,
    waker: Option<Waker>,
    closed: bool,
    /// Whether the waiting subscriber waits for a transaction's mark (`next_batch`): only
    /// then does a mark wake it.
    mark_wanted: bool,
}

impl Queue {
    pub fn new(capacity: usize, syncs: bool) -> Queue {
        Queue {
            slots: Mutex::default(),
            capacity: capacity.clamp(1, u32::MAX as usize) as u32,
            syncs,
            stats: QueueStats::default(),
        }
    }

    /// Queues a message, or counts it as missed when the queue is full; never waits.
    ///
    /// A resync is not queued while another one waits to be taken: the reload that one
    /// causes reads everything committed by then (a flood of resyncs costs one reload per
    /// reload the subscriber has time for, not one per message).
    pub fn offer(&self, message: Message) {
        self.offer_item(Item::Message(message), true);
    }

    /// Queues a message like [`offer`](Self::offer) without waking a waiting subscriber:
    /// [`wake`](Self::wake) does, once what its sync will read is there.
    pub fn offer_quiet(&self, message: Message) {
        self.offer_item(Item::Message(message), false);
    }

    /// Wakes the subscriber if it waits (for a message queued quietly).
    pub fn wake(&self) {
        // why the waker leaves the lock first: waking under it would make the woken task
        // wait for it
        let waker = self.slots.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Queues the mark that transaction `xid` is whole.
    pub fn offer_commit(&self, xid: u64) {
        self.offer_item(Item::Committed(xid), true);
    }

    fn offer_item(&self, item: Item, wake: bool) {
        let mark = matches!(item, Item::Committed(_));
        let resync = matches!(item, Item::Message(Message::Resync(_)));
        if resync && self.stats.resync_queued.swap(true, Ordering::AcqRel) {
            self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.push(item, wake) {
            Pushed::Queued(waker) => {
                if !mark {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Pushed::Full if mark => {
                self.stats.lost_marks.fetch_add(1, Ordering::Relaxed);
            }
            Pushed::Full => {
                if resync {
                    // the lag resync the full queue causes covers this one
                    self.stats.resync_queued.store(false, Ordering::Release);
                }
                self.stats.missed.fetch_add(1, Ordering::Relaxed);
                self.stats.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
            Pushed::Closed => {}
        }
    }

    fn push(&self, item: Item, wake: bool) -> Pushed {
        let mut slots = self.slots.lock();
        if slots.closed {
            return Pushed::Closed;
        }
        if slots.items.len() >= self.capacity as usize {
            return Pushed::Full;
        }
        // why a mark wakes only a subscriber waiting for one: one that takes message by
        // message skips marks, and waking a thousand of them again for each transaction's
        // mark doubled the wake-ups of a broadcast (the trigger source's marks come a round
        // trip after the change)
        let wake = wake && (!matches!(item, Item::Committed(_)) || slots.mark_wanted);
        slots.items.push_back(item);
        // why the waker leaves the lock first: waking under it would make the woken task
        // wait for it
        Pushed::Queued(if wake { slots.waker.take() } else { None })
    }

    /// The next item, if one is queued.
    pub fn try_recv(&self) -> Option<Item> {
        let mut slots = self.slots.lock();
        let item = slots.items.pop_front();
        if slots.items.is_empty() && slots.items.capacity() > 0 {
            slots.items = VecDeque::new();
        }
        item
    }

    /// The next item; `None` once the queue is closed and drained. A transaction's mark
    /// queued while this waits wakes it only if `mark_wanted`.
    pub fn poll_recv(&self, cx: &mut Context<'_>, mark_wanted: bool) -> Poll<Option<Item>> {
        let mut slots = self.slots.lock();
        slots.mark_wanted = mark_wanted;
        if let Some(item) = slots.items.pop_front() {
            if slots.items.is_empty() {
                slots.items = VecDeque::new();
            }
            return Poll::Ready(Some(item));
        }
        if slots.closed {
            return Poll::Ready(None);
        }
        match &slots.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => slots.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits for the next item; `None` once the queue is closed and drained. Cancel-safe.
    /// See [`poll_recv`](Self::poll_recv) for `mark_wanted`.
    pub async fn recv(&self, mark_wanted: bool) -> Option<Item> {
        std::future::poll_fn(|cx| self.poll_recv(cx, mark_wanted)).await
    }

    /// Drops every queued item.
    pub fn clear(&self) {
        self.slots.lock().items = VecDeque::new();
    }

    /// Closes the queue: the subscriber gets what is queued, then the end.
    pub fn close(&self) {
        let waker = {
            let mut slots = self.slots.lock();
            slots.closed = true;
            slots.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

enum Pushed {
    Queued(Option<Waker>),
    Full,
    Closed,
}
