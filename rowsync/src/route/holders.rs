//! The subscriptions holding one topic, with how often and for which operations.
//!
//! why this shape: most topics (a row's key) have one holder, kept inline; a shared topic
//! (a tag under thousands of posts) keeps its holders in a vector sorted by id, 12 bytes
//! each with little spare room, where a hash map kept 16 and as much again of slack.

use std::num::NonZeroU32;

use super::index::SubscriptionId;
use super::topic::Ops;
use crate::change::Op;

/// How often a subscription holds a topic (low bits), and for which operations (the top
/// three).
///
/// why packed in 4 bytes: a shared topic's holder is an id and a hold, 12 bytes with it,
/// where a count and the operations apart made 16.
// why never zero: a hold has a count of one at least, and the zero it never takes tells
// `Holders`' two kinds apart, making them 16 bytes instead of 24
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold(NonZeroU32);

const OPS_SHIFT: u32 = 29;
const COUNT: u32 = (1 << OPS_SHIFT) - 1;

impl Hold {
    fn new(ops: Ops) -> Hold {
        Hold::of(1, ops)
    }

    fn of(count: u32, ops: Ops) -> Hold {
        let count = count.clamp(1, COUNT);
        Hold(NonZeroU32::new(count | ops.bits() << OPS_SHIFT).expect("a count of one at least"))
    }

    fn count(self) -> u32 {
        self.0.get() & COUNT
    }

    fn ops(self) -> Ops {
        Ops::from_bits(self.0.get() >> OPS_SHIFT)
    }

    fn again(&mut self, ops: Ops) {
        *self = Hold::of(self.count() + 1, self.ops().union(ops));
    }

    /// Takes one count off; true when it was the last (the hold goes).
    fn release(&mut self) -> bool {
        if self.count() == 1 {
            return true;
        }
        *self = Hold::of(self.count() - 1, self.ops());
        false
    }

    fn gone(&mut self) {
        *self = Hold::of(1, Ops::NONE);
    }

    /// Whether it is a holder gone from a shared list, not yet swept out (no operation).
    fn is_gone(self) -> bool {
        self.ops() == Ops::NONE
    }
}

/// A holder of a shared topic: its id in two halves, so that it is 12 bytes.
#[derive(Debug, Clone, Copy)]
struct Holder {
    id: [u32; 2],
    hold: Hold,
}

impl Holder {
    fn new(id: SubscriptionId, hold: Hold) -> Holder {
        Holder {
            id: [(id >> 32) as u32, id as u32],
            hold,
        }
    }

    fn id(&self) -> SubscriptionId {
        (self.id[0] as u64) << 32 | self.id[1] as u64
    }
}

/// The subscriptions holding a topic: never empty.
// why boxed: a shared list is 32 bytes, and most topics have one holder; boxed, and with the
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
    list: Vec<Holder>,
    gone: usize,
}

impl Many {
    fn live(&self) -> usize {
        self.list.len() - self.gone
    }

    fn find(&self, id: SubscriptionId) -> Result<usize, usize> {
        self.list.binary_search_by_key(&id, Holder::id)
    }

    fn sweep(&mut self) {
        self.list.retain(|h| !h.hold.is_gone());
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
                let mut list = vec![Holder::new(*other, *hold), Holder::new(id, Hold::new(ops))];
                list.sort_unstable_by_key(Holder::id);
                *self = Holders::Many(Box::new(Many { list, gone: 0 }));
                return true;
            }
            Holders::Many(many) => many,
        };
        match many.find(id) {
            Ok(at) if many.list[at].hold.is_gone() => {
                many.list[at].hold = Hold::new(ops);
                many.gone -= 1;
                true
            }
            Ok(at) => {
                many.list[at].hold.again(ops);
                false
            }
            Err(at) => {
                // why grown by an eighth, not doubled: a shared topic's list is its
                // holders' memory, and a doubled one is up to half spare room
                if many.list.len() == many.list.capacity() {
                    many.list.reserve_exact(many.list.len() / 8 + 4);
                }
                many.list.insert(at, Holder::new(id, Hold::new(ops)));
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
                Ok(at) if !many.list[at].hold.is_gone() => many.list[at].hold.release(),
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
            Ok(at) if !many.list[at].hold.is_gone() => {
                many.list[at].hold.gone();
                many.gone += 1;
            }
            _ => return false,
        }
        if many.live() == 1 {
            let one = many.list.iter().find(|h| !h.hold.is_gone());
            let one = one.expect("one holder left");
            *self = Holders::One(one.id(), one.hold);
        } else if 2 * many.gone > many.list.len() {
            many.sweep();
        }
        false
    }

    /// Whether `id` holds the topic.
    pub fn contains(&self, id: SubscriptionId) -> bool {
        match self {
            Holders::One(held_by, _) => *held_by == id,
            Holders::Many(many) => many.find(id).is_ok_and(|at| !many.list[at].hold.is_gone()),
        }
    }

    /// The holders that hold the topic for `op`.
    pub fn for_op(&self, op: Op) -> impl Iterator<Item = SubscriptionId> + '_ {
        self.all()
            .filter(move |(_, hold)| hold.ops().contains(op))
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
        one.into_iter().chain(many.iter().map(|h| (h.id(), h.hold)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_counts_and_widens_in_four_bytes() {
        assert_eq!(std::mem::size_of::<Holder>(), 12);
        assert_eq!(std::mem::size_of::<Holders>(), 16);
        let mut hold = Hold::new(Op::Updated.into());
        hold.again(Op::Deleted.into());
        assert_eq!(hold.count(), 2);
        assert!(hold.ops().contains(Op::Deleted) && hold.ops().contains(Op::Updated));
        assert!(!hold.ops().contains(Op::Inserted));
        assert!(!hold.release());
        assert!(hold.release(), "the last count");
        assert_eq!(Hold::of(COUNT + 5, Ops::ALL).count(), COUNT, "saturates");
    }
}
