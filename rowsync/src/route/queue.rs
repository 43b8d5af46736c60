//! A subscriber's bounded queue: what the router puts in, never waiting on the subscriber.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

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
    /// Transaction marks not queued (the queue was full): the subscriber must resync, as
    /// for a message lost, though none was.
    pub lost_marks: AtomicU64,
}

/// The hub's side of a subscriber's queue. Only the hub holds the sender, so the stream
/// ends when the hub shuts down.
pub(crate) struct Queue {
    pub tx: mpsc::Sender<Item>,
    pub stats: Arc<QueueStats>,
}

impl Queue {
    /// Queues a message, or counts it as missed when the queue is full; never waits.
    ///
    /// A resync is not queued while another one waits to be taken: the reload that one
    /// causes reads everything committed by then (a flood of resyncs costs one reload per
    /// reload the subscriber has time for, not one per message).
    pub fn offer(&self, message: Message) {
        self.offer_item(Item::Message(message));
    }

    /// Queues the mark that transaction `xid` is whole.
    pub fn offer_commit(&self, xid: u64) {
        self.offer_item(Item::Committed(xid));
    }

    fn offer_item(&self, item: Item) {
        let mark = matches!(item, Item::Committed(_));
        let resync = matches!(item, Item::Message(Message::Resync(_)));
        if resync && self.stats.resync_queued.swap(true, Ordering::AcqRel) {
            self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send(item) {
            Ok(()) if mark => {}
            Ok(()) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) if mark => {
                self.stats.lost_marks.fetch_add(1, Ordering::Relaxed);
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
