//! The topics held, each once with its holders, under a number that stays while it is held.
//!
//! why numbered: a subscription lists the topics it holds (to drop them with it), and a
//! 4-byte number is a quarter of a slot. The entries live in fixed blocks, so a number stays
//! put as the table grows and no block is more than one block's worth of spare room; a hash
//! table of numbers (5 bytes a bucket with its control byte) finds an entry by its slot,
//! where a map from slot to holders kept the 32-byte entries themselves at its load factor.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::holders::Holders;
use super::slot::Slot;

/// Entries a block holds (32 KiB).
const BLOCK: usize = 1024;

/// A topic held and its holders.
pub(super) struct Entry {
    pub slot: Slot,
    pub holders: Holders,
}

/// The topics held, by number and by slot.
#[derive(Default)]
pub(super) struct HeldTopics {
    blocks: Vec<Vec<Entry>>,
    /// Numbers of entries given up, to reuse.
    free: Vec<u32>,
    by_slot: HashTable<u32>,
    hasher: RandomState,
}

impl HeldTopics {
    /// The number of the entry for `slot`, if it is held.
    pub fn find(&self, slot: Slot) -> Option<u32> {
        let blocks = &self.blocks;
        self.by_slot
            .find(self.hasher.hash_one(slot), |&n| at(blocks, n).slot == slot)
            .copied()
    }

    pub fn get(&self, number: u32) -> &Entry {
        at(&self.blocks, number)
    }

    pub fn get_mut(&mut self, number: u32) -> &mut Entry {
        let n = number as usize;
        &mut self.blocks[n / BLOCK][n % BLOCK]
    }

    /// Files a new entry (its slot held nowhere yet) and gives its number.
    pub fn insert(&mut self, entry: Entry) -> u32 {
        let hash = self.hasher.hash_one(entry.slot);
        let number = match self.free.pop() {
            Some(n) => {
                *self.get_mut(n) = entry;
                n
            }
            None => {
                if self.blocks.last().is_none_or(|b| b.len() == BLOCK) {
                    self.blocks.push(Vec::with_capacity(BLOCK));
                }
                let last = self.blocks.len() - 1;
                self.blocks[last].push(entry);
                (last * BLOCK + self.blocks[last].len() - 1) as u32
            }
        };
        let (blocks, hasher) = (&self.blocks, &self.hasher);
        self.by_slot
            .insert_unique(hash, number, |&n| hasher.hash_one(at(blocks, n).slot));
        number
    }

    /// Gives up entry `number` (no holder left); its number is reused.
    pub fn remove(&mut self, number: u32) {
        let slot = self.get(number).slot;
        if let Ok(found) = self
            .by_slot
            .find_entry(self.hasher.hash_one(slot), |&n| n == number)
        {
            found.remove();
        }
        // why kept as an empty one: the block stays whole; a shared topic's list is freed
        let holders = &mut self.get_mut(number).holders;
        *holders = Holders::new(0, super::Ops::ALL);
        self.free.push(number);
    }

    /// Every entry held.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.by_slot.iter().map(|&n| at(&self.blocks, n))
    }

    /// Topics held.
    pub fn len(&self) -> usize {
        self.by_slot.len()
    }
}

fn at(blocks: &[Vec<Entry>], number: u32) -> &Entry {
    let n = number as usize;
    &blocks[n / BLOCK][n % BLOCK]
}
