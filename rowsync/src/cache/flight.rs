//! Single flight: concurrent requests for one key share one load.
//!
//! One type, used twice: the row cache's map of recent loads (a thousand subscribers asking
//! for the row one change touched wait on one read) and the shared loads of identical live
//! queries. A load is a `Shared` future: whoever polls it drives it, a waiter that gives up
//! does not cancel it for the others, and its error is shared as `Arc<LoadError>`.
//!
//! why not moka's `get_with`: waiting in moka costs every waiter a lock and an event listener
//! (a quarter of broadcast sync CPU, measured); waiting on a `Shared` future is a waker in a
//! list. And live loads need to leave the map when their snapshot is taken (a caller arriving
//! later must not share an older snapshot), which moka's entries cannot express.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;

use crate::error::LoadError;
use crate::hash::HashMap;

/// The outcome of a load, shared by everyone who waited for it.
pub(crate) type Loaded<V> = Result<V, Arc<LoadError>>;

/// A load in flight, to be awaited by any number of callers.
pub(crate) type Flight<V> = Shared<BoxFuture<'static, Loaded<V>>>;

/// A load for one key, finished or in flight.
pub(crate) struct Slot<V> {
    state: State<V>,
    /// Callers still expected: a slot filed for callers to come (a batched read's share, a
    /// row its change carried) says how many (the subscribers the change was routed to).
    claims: u32,
    /// Whether the slot was filed with a count of callers: once they all came, no one else
    /// is expected, so it is never kept in the store (the map lets it go when full).
    counted: bool,
}

enum State<V> {
    Ready(V),
    Loading(Flight<V>),
}

/// Loads by key, each key loaded once while it is in the map.
pub(crate) struct SingleFlight<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
    started: AtomicU64,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            slots: Mutex::default(),
            started: AtomicU64::new(0),
        }
    }
}

/// What the map holds for a key.
pub(crate) enum Found<V> {
    /// A finished value.
    Ready(V),
    /// A load in flight to join.
    Loading(Flight<V>),
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone + Send + Sync + 'static,
{
    /// The value for `key` if it is known now, without waiting (a finished load counts).
    pub fn peek(&self, key: &K) -> Option<Loaded<V>> {
        let mut slots = self.slots.lock();
        let slot = slots.get_mut(key)?;
        let found = match &slot.state {
            State::Ready(value) => Ok(value.clone()),
            State::Loading(flight) => flight.peek().cloned()?,
        };
        slot.claim();
        Some(found)
    }

    /// What the map holds for `key`.
    pub fn find(&self, key: &K) -> Option<Found<V>> {
        let mut slots = self.slots.lock();
        let slot = slots.get_mut(key)?;
        let found = match &slot.state {
            State::Ready(value) => Found::Ready(value.clone()),
            State::Loading(flight) => Found::Loading(flight.clone()),
        };
        slot.claim();
        Some(found)
    }

    /// The flight of `key`: the one in the map, or `load` started now and filed under it.
    /// The flag says whether this call started it. `room` runs before a new entry is filed,
    /// with the map locked, to bound its size.
    pub fn join_or_start<F>(
        &self,
        key: K,
        load: impl FnOnce() -> F,
        room: impl FnOnce(&mut HashMap<K, Slot<V>>),
    ) -> (Flight<V>, bool)
    where
        F: Future<Output = Result<V, LoadError>> + Send + 'static,
    {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get_mut(&key) {
            slot.claim();
            return (slot.flight(), false);
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        let flight = load().map(|r| r.map_err(Arc::new)).boxed().shared();
        room(&mut slots);
        slots.insert(key, Slot::new(State::Loading(flight.clone()), 0));
        (flight, true)
    }

    /// Files the flights of `offers` as the loads of their keys (a batched read offering
    /// its share of rows), each for the number of callers given; a key known already just
    /// expects those callers too. One lock for them all.
    pub fn offer(
        &self,
        offers: impl IntoIterator<Item = (K, Flight<V>, u32)>,
        mut room: impl FnMut(&mut HashMap<K, Slot<V>>),
    ) {
        let mut slots = self.slots.lock();
        for (key, flight, claims) in offers {
            match slots.get_mut(&key) {
                Some(slot) => slot.expect(claims),
                None => {
                    room(&mut slots);
                    slots.insert(key, Slot::new(State::Loading(flight), claims));
                }
            }
        }
    }

    /// Files a finished value unless the key is known already (then it just expects the
    /// callers too); `claims`: the callers expected (a row its change carried, for the
    /// subscribers the change was routed to), 0 for a value anyone may ask for.
    pub fn insert_ready(
        &self,
        key: K,
        value: V,
        claims: u32,
        room: impl FnOnce(&mut HashMap<K, Slot<V>>),
    ) {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get_mut(&key) {
            slot.expect(claims);
            return;
        }
        room(&mut slots);
        slots.insert(key, Slot::new(State::Ready(value), claims));
    }

    /// Records how the load of `key` ended: a value is kept as ready, an error forgets the
    /// key (the next caller tries again). Returns whether the value should be stored
    /// elsewhere: only for the first call to see it end (exactly one caller stores it), and
    /// not for a slot filed for a count of callers (those still expected find it here).
    pub fn settle(&self, key: &K, loaded: &Loaded<V>) -> bool {
        let mut slots = self.slots.lock();
        let Some(slot) = slots.get_mut(key) else {
            return false;
        };
        if !matches!(slot.state, State::Loading(_)) {
            return false;
        }
        match loaded {
            Ok(value) => {
                slot.state = State::Ready(value.clone());
                !slot.counted
            }
            Err(_) => {
                slots.remove(key);
                true
            }
        }
    }

    /// Removes `key` if it still holds `flight` (a later load under the same key stays).
    pub fn close(&self, key: &K, flight: &Flight<V>) {
        let mut slots = self.slots.lock();
        if let Some(State::Loading(current)) = slots.get(key).map(|slot| &slot.state) {
            if current.ptr_eq(flight) {
                slots.remove(key);
            }
        }
    }

    /// Loads started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Keys in the map now: loads in flight and values kept.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }
}

impl<V: Clone + Send + Sync + 'static> Slot<V> {
    fn new(state: State<V>, claims: u32) -> Self {
        Slot {
            state,
            claims,
            counted: claims > 0,
        }
    }

    /// Expects `claims` more callers.
    fn expect(&mut self, claims: u32) {
        if claims > 0 {
            self.claims = self.claims.saturating_add(claims);
            self.counted = true;
        }
    }

    /// A caller takes the slot: one fewer is expected.
    fn claim(&mut self) {
        self.claims = self.claims.saturating_sub(1);
    }

    /// The slot as a future of its value.
    fn flight(&self) -> Flight<V> {
        match &self.state {
            State::Loading(flight) => flight.clone(),
            State::Ready(value) => {
                let value = value.clone();
                async move { Ok(value) }.boxed().shared()
            }
        }
    }

    /// Whether a caller still waits for this slot (a finished value waits for no one).
    pub fn awaited(&self) -> bool {
        match &self.state {
            State::Loading(flight) => flight.strong_count().is_some_and(|n| n > 1),
            State::Ready(_) => false,
        }
    }

    /// Whether the slot was filed for callers to come and some of them have not asked yet.
    pub fn unclaimed(&self) -> bool {
        self.claims > 0
    }
}
