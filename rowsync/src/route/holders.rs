//! The subscriptions holding one topic, with how often and for which operations.
//!
//! why this shape: most topics (a row's key) have one holder, kept inline; a shared topic
//! (a tag under thousands of posts) keeps its holders in a vector sorted by id, 16 bytes
//! each with little spare room, where a hash map kept twice that with its slack.

use std::num::NonZeroU32;

use super::index::SubscriptionId;
use super::topic::Ops;
use crate::change::Op;

/// How often a subscription holds a topic, and for which operations.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold {
    // why never zero: a hold goes with its last count, and the zero it never takes tells
    // `Holders`' two kinds apart, making them 16 bytes instead of 24
    count: NonZeroU32,
    /// No operation: a holder gone from a shared list, not yet swept out.
    ops: Ops,
}

impl Hold {
    fn new(ops: Ops) -> Hold {
        Hold {
            count: NonZeroU32::MIN,
            ops,
        }
    }

    fn again(&mut self, ops: Ops) {
        self.count = self.count.saturating_add(1);
        self.ops = self.ops.union(ops);
    }

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

    fn is_gone(self) -> bool {
        self.ops == Ops::NONE
    }
}

/// The subscriptions holding a topic: never empty.
// why boxed: a shared list is 32 bytes and most topics have one holder; boxed, and with the
// tag in the hold's count, this is 16
pub(super) enum Holders {
    One(SubscriptionId, Hold),
    Many(Box<Many>),
}

/// Two holders or more, sorted by id.
///
/// why the gone ones stay until half are: taking one out of the middle moves every holder
/// after it, and dropping thousands of subscriptions would move a shared topic's list
/// thousands of times; swept when half is gone, a holder's removal costs a constant.
pub(super) struct Many {
    list: Vec<(SubscriptionId, Hold)>,
    gone: usize,
}

impl Many {
    fn live(&self) -> usize {
        self.list.len() - self.gone
    }

    fn find(&self, id: SubscriptionId) -> Result<usize, usize> {
        self.list.binary_search_by_key(&id, |(id, _)| *id)
    }

    fn sweep(&mut self) {
        self.list.retain(|(_, hold)| !hold.is_gone());
        self.gone = 0;
        let room = self.list.len() + self.list.len() / 8;
        if self.list.capacity() > 2 * room + 8 {
            self.list.shrink_to(room);
        }
    }
}

impl Holders {
    /// The first hold of a topic.
    pub fn new(id: SubscriptionId, ops: Ops) -> Holders {
        Holders::One(id, Hold::new(ops))
    }

    /// Adds one hold of `id`; true if `id` did not hold the topic before.
    pub fn add(&mut self, id: SubscriptionId, ops: Ops) -> bool {
        let many = match self {
            Holders::One(held_by, hold) if *held_by == id => {
                hold.again(ops);
                return false;
            }
            Holders::One(other, hold) => {
                let mut list = vec![(*other, *hold), (id, Hold::new(ops))];
                list.sort_unstable_by_key(|(id, _)| *id);
                *self = Holders::Many(Box::new(Many { list, gone: 0 }));
                return true;
            }
            Holders::Many(many) => many,
        };
        match many.find(id) {
            Ok(at) if many.list[at].1.is_gone() => {
                many.list[at].1 = Hold::new(ops);
                many.gone -= 1;
                true
            }
            Ok(at) => {
                many.list[at].1.again(ops);
                false
            }
            Err(at) => {
                // why grown by an eighth, not doubled: a shared topic's list is its
                // holders' memory, and a doubled one is up to half spare room
                if many.list.len() == many.list.capacity() {
                    many.list.reserve_exact(many.list.len() / 8 + 4);
                }
                many.list.insert(at, (id, Hold::new(ops)));
                true
            }
        }
    }

    /// Takes one hold of `id` off; true when it was its last (then call
    /// [`remove`](Self::remove)).
    pub fn release(&mut self, id: SubscriptionId) -> bool {
        match self {
            Holders::One(held_by, hold) if *held_by == id => hold.release(),
            Holders::One(..) => false,
            Holders::Many(many) => match many.find(id) {
                Ok(at) if !many.list[at].1.is_gone() => many.list[at].1.release(),
                _ => false,
            },
        }
    }

    /// Takes `id` off whatever its count; true when no holder is left.
    pub fn remove(&mut self, id: SubscriptionId) -> bool {
        let many = match self {
            Holders::One(held_by, _) => return *held_by == id,
            Holders::Many(many) => many,
        };
        match many.find(id) {
            Ok(at) if !many.list[at].1.is_gone() => {
                many.list[at].1.ops = Ops::NONE;
                many.gone += 1;
            }
            _ => return false,
        }
        if many.live() == 1 {
            let one = many.list.iter().find(|(_, hold)| !hold.is_gone());
            let (other, hold) = *one.expect("one holder left");
            *self = Holders::One(other, hold);
        } else if 2 * many.gone > many.list.len() {
            many.sweep();
        }
        false
    }

    /// Whether `id` holds the topic.
    pub fn contains(&self, id: SubscriptionId) -> bool {
        match self {
            Holders::One(held_by, _) => *held_by == id,
            Holders::Many(many) => many.find(id).is_ok_and(|at| !many.list[at].1.is_gone()),
        }
    }

    /// The holders that hold the topic for `op`.
    pub fn for_op(&self, op: Op) -> impl Iterator<Item = SubscriptionId> + '_ {
        self.all()
            .filter(move |(_, hold)| hold.ops.contains(op))
            .map(|(id, _)| id)
    }

    /// Every holder.
    pub fn ids(&self) -> impl Iterator<Item = SubscriptionId> + '_ {
        self.all()
            .filter(|(_, hold)| !hold.is_gone())
            .map(|(id, _)| id)
    }

    fn all(&self) -> impl Iterator<Item = (SubscriptionId, Hold)> + '_ {
        let (one, many) = match self {
            Holders::One(id, hold) => (Some((*id, *hold)), &[][..]),
            Holders::Many(many) => (None, &many.list[..]),
        };
        one.into_iter().chain(many.iter().copied())
    }
}
