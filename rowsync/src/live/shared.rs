//! One synced value for every live query of the same query and shape: one subscription, one
//! sync per change, and the value handed to each viewer as an `Arc` snapshot swapped per
//! transaction.
//!
//! why driven by the viewers, not by a task: a value nobody asks for costs nothing, and the
//! first viewer to ask applies the next transaction for all of them (under the driver lock);
//! the others wake on the new version and take it. Each viewer still sees every transaction
//! in order: the versions it has not shown yet are kept (each an `Arc` of the value after it,
//! with what it changed) until every viewer has passed them, up to [`STEPS`] of them; a viewer
//! further behind jumps to the latest value, told as a reload.
//!
//! why copy-on-write: the driver syncs into `Arc::make_mut` of its own snapshot, so a value
//! with one viewer is never copied, and one with many is copied once per transaction, not
//! once per viewer.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::LiveValue;
use crate::change::ResyncReason;
use crate::error::{ErrorClass, SyncError};
use crate::hub::{Hub, Subscription, SyncStats};
use crate::load::Snapshot;
use crate::route::{Message, SubscriptionId};
use crate::sync::{Changes, SyncOptions};

/// Transactions kept for viewers behind the latest one.
const STEPS: usize = 128;

/// The value shared by identical live queries.
pub(crate) struct Shared<T: LiveValue> {
    hub: Hub,
    key: u128,
    id: SubscriptionId,
    driver: tokio::sync::Mutex<Driver>,
    state: Mutex<State<T>>,
    /// Counts publications (a version, or a value given back after a cut-short sync), for
    /// viewers to wake on with `published_wake`.
    ///
    /// why a counter and one `Notify`, not a `watch` channel: a `watch` channel is ~400 bytes
    /// (nine `Notify`s), and a hub keeps one per live value, most with a single viewer.
    published: AtomicU64,
    published_wake: Notify,
    /// Viewers that want the driver now (to apply what is queued), not after the next
    /// change: one waiting for a change under the driver lock lets go for them.
    wanting: AtomicUsize,
    wanted: Notify,
}

/// What applying changes needs: the one subscription and its options.
struct Driver {
    sub: Subscription,
    options: SyncOptions,
    /// A sync was cut short (its caller gave up): the value may hold part of a transaction.
    interrupted: bool,
}

/// The versions published, and where the viewers are.
struct State<T> {
    version: u64,
    /// The latest value (held by the viewers at the latest version, or by its step). Weak,
    /// so that a single viewer's sync finds it unshared and changes it in place.
    current: Weak<T>,
    view: View,
    /// Versions some viewer has not taken yet, oldest first.
    steps: VecDeque<Step<T>>,
    /// How many viewers show each version.
    positions: Positions,
    viewers: usize,
}

/// How many viewers show each version, oldest first (a few versions at most: viewers keep
/// up, or jump to the latest).
///
/// why one version inline: most values have one viewer, or all at one version, and a list
/// is a heap block per value.
enum Positions {
    /// Viewers at one version (0 viewers: none anywhere).
    One(u64, u32),
    Many(Vec<(u64, u32)>),
}

impl Positions {
    fn add(&mut self, version: u64) {
        match self {
            Positions::One(_, 0) => *self = Positions::One(version, 1),
            Positions::One(v, n) if *v == version => *n += 1,
            Positions::One(v, n) => {
                let mut list = vec![(*v, *n), (version, 1)];
                list.sort_unstable_by_key(|(v, _)| *v);
                *self = Positions::Many(list);
            }
            Positions::Many(list) => match list.iter_mut().find(|(v, _)| *v == version) {
                Some((_, n)) => *n += 1,
                None => {
                    let at = list.partition_point(|(v, _)| *v < version);
                    list.insert(at, (version, 1));
                }
            },
        }
    }

    /// Takes a viewer off `version`; false if none was there.
    fn remove(&mut self, version: u64) -> bool {
        match self {
            Positions::One(v, n) if *v == version && *n > 0 => {
                *n -= 1;
                true
            }
            Positions::One(..) => false,
            Positions::Many(list) => {
                let Some(at) = list.iter().position(|(v, _)| *v == version) else {
                    return false;
                };
                list[at].1 -= 1;
                if list[at].1 == 0 {
                    list.remove(at);
                }
                if let [(v, n)] = list[..] {
                    *self = Positions::One(v, n);
                }
                true
            }
        }
    }

    fn oldest(&self) -> Option<u64> {
        match self {
            Positions::One(_, 0) => None,
            Positions::One(v, _) => Some(*v),
            Positions::Many(list) => list.first().map(|(v, _)| *v),
        }
    }
}

/// What a viewer shows beside the data.
#[derive(Clone, Default)]
pub(crate) struct View {
    pub snapshot: Option<Arc<Snapshot>>,
    pub stats: SyncStats,
}

/// A published version: the value after a transaction and what the transaction changed.
struct Step<T> {
    version: u64,
    value: Arc<T>,
    changes: Changes,
    view: View,
}

impl<T> State<T> {
    /// A viewer moved from version `from` to `to`: forget what no viewer needs any more.
    fn moved(&mut self, from: u64, to: u64) {
        self.leave(from);
        self.positions.add(to);
        self.viewers += 1;
        self.prune();
    }

    fn leave(&mut self, from: u64) {
        if self.positions.remove(from) {
            self.viewers -= 1;
        }
    }

    fn prune(&mut self) {
        let oldest = self.positions.oldest().unwrap_or(self.version);
        while self
            .steps
            .front()
            .is_some_and(|s| s.version <= oldest || self.steps.len() > STEPS)
        {
            self.steps.pop_front();
        }
    }
}

impl<T: LiveValue> Shared<T> {
    /// A viewer of the value shared under `key`, if one is alive.
    pub async fn join(hub: &Hub, key: u128) -> Option<Viewer<T>> {
        let shared = hub.shared_values().lock().get(&key)?.upgrade()?;
        let shared = shared.downcast::<Shared<T>>().ok()?;
        Shared::viewer(shared).await
    }

    /// The first viewer of a new shared value (loaded into `data`, kept in sync by `sub`),
    /// or, when an identical one was started meanwhile, a viewer of that one.
    pub async fn start(
        hub: &Hub,
        key: u128,
        data: T,
        sub: Subscription,
        options: SyncOptions,
    ) -> Viewer<T> {
        let data = Arc::new(data);
        let view = view_of(&sub, &View::default());
        let shared = Arc::new(Shared {
            hub: hub.clone(),
            key,
            id: sub.id(),
            driver: tokio::sync::Mutex::new(Driver {
                sub,
                options,
                interrupted: false,
            }),
            state: Mutex::new(State {
                version: 0,
                current: Arc::downgrade(&data),
                view: view.clone(),
                steps: VecDeque::new(),
                positions: Positions::One(0, 1),
                viewers: 1,
            }),
            published: AtomicU64::new(0),
            published_wake: Notify::new(),
            wanting: AtomicUsize::new(0),
            wanted: Notify::new(),
        });
        let existing = {
            let mut values = hub.shared_values().lock();
            match values.get(&key).and_then(Weak::upgrade) {
                Some(existing) => Some(existing),
                None => {
                    let weak: Weak<dyn Any + Send + Sync> = Arc::downgrade(&shared) as Weak<_>;
                    values.insert(key, weak);
                    None
                }
            }
        };
        let noticed = shared.published.load(Ordering::Acquire);
        let ours = Viewer {
            data,
            view,
            seen: 0,
            shared,
            noticed,
        };
        if let Some(existing) = existing.and_then(|e| e.downcast::<Shared<T>>().ok()) {
            // an identical value was started while ours loaded: one value, one subscription
            if let Some(theirs) = Shared::viewer(existing).await {
                return theirs;
            }
        }
        ours
    }

    async fn viewer(shared: Arc<Shared<T>>) -> Option<Viewer<T>> {
        let mut noticed = shared.published.load(Ordering::Acquire);
        loop {
            {
                let mut state = shared.state.lock();
                if state.viewers == 0 {
                    // its last viewer is leaving
                    return None;
                }
                if let Some(data) = state.current.upgrade() {
                    let seen = state.version;
                    state.positions.add(seen);
                    state.viewers += 1;
                    let view = state.view.clone();
                    drop(state);
                    return Some(Viewer {
                        data,
                        view,
                        seen,
                        shared,
                        noticed,
                    });
                }
            }
            // a sync is changing the latest value: it is published when done
            shared.changed(&mut noticed).await;
        }
    }
}

impl<T: LiveValue> Shared<T> {
    /// Waits for a publication after the one `noticed` counts, and notes it (cancel-safe:
    /// `noticed` moves only when it returns).
    async fn changed(&self, noticed: &mut u64) {
        loop {
            let wake = self.published_wake.notified();
            tokio::pin!(wake);
            // why enabled before the check: a publication after it wakes `wake`
            wake.as_mut().enable();
            let now = self.published.load(Ordering::Acquire);
            if now != *noticed {
                *noticed = now;
                return;
            }
            wake.await;
        }
    }

    /// Tells every waiting viewer that something was published.
    fn announce(&self) {
        self.published.fetch_add(1, Ordering::AcqRel);
        self.published_wake.notify_waiters();
    }
}

impl<T: LiveValue> Drop for Shared<T> {
    fn drop(&mut self) {
        let mut values = self.hub.shared_values().lock();
        if values.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            values.remove(&self.key);
        }
    }
}

/// The view's snapshot and counters after the driver's syncs, reusing `before`'s snapshot
/// when it did not change.
fn view_of(sub: &Subscription, before: &View) -> View {
    let snapshot = match (sub.snapshot_arc(), &before.snapshot) {
        (Some(now), Some(was)) if **was == **now => Some(was.clone()),
        (now, _) => now.cloned(),
    };
    View {
        snapshot,
        stats: sub.stats(),
    }
}

/// One live value's place in a shared value: the version it shows.
pub(crate) struct Viewer<T: LiveValue> {
    pub data: Arc<T>,
    pub view: View,
    seen: u64,
    shared: Arc<Shared<T>>,
    /// The publications this viewer has taken note of (see [`Shared::changed`]).
    noticed: u64,
}

/// What a call to the driver did.
enum Driven {
    /// A version this viewer has not shown is there (another viewer applied it).
    Behind,
    /// Nothing was queued (only when not waiting).
    Nothing,
    /// This viewer applied messages: what they changed (empty: nothing it holds).
    Applied(Changes),
    /// The hub shut down.
    Closed,
}

impl<T: LiveValue> Viewer<T> {
    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// The id of the subscription feeding the value.
    pub fn subscription_id(&self) -> SubscriptionId {
        self.shared.id
    }

    /// The next transaction: waits for it and applies it unless another viewer did.
    pub async fn next(&mut self) -> Option<Result<Changes, SyncError>> {
        loop {
            match self.advance() {
                Some(changes) if !changes.is_empty() => return Some(Ok(changes)),
                // a version that changed nothing at the top level (a copy): the next one
                Some(_) => continue,
                None => {}
            }
            match self.drive(true).await {
                Ok(Driven::Closed) => return None,
                Ok(Driven::Applied(changes)) if !changes.is_empty() => return Some(Ok(changes)),
                Ok(_) => {}
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Every version not shown yet and every message queued now, applied; what they changed,
    /// all together.
    pub async fn apply_pending(&mut self) -> Result<Changes, SyncError> {
        let mut all = Changes::default();
        loop {
            while let Some(changes) = self.advance() {
                all.merge(changes);
            }
            match self.drive(false).await? {
                Driven::Behind => {}
                Driven::Applied(changes) => all.merge(changes),
                Driven::Nothing | Driven::Closed => return Ok(all),
            }
        }
    }

    /// Takes the next version this viewer has not shown; a viewer too far behind jumps to
    /// the latest one, told as a reload.
    fn advance(&mut self) -> Option<Changes> {
        // why first: a version published from now on wakes `Shared::changed`
        self.noticed = self.shared.published.load(Ordering::Acquire);
        let mut state = self.shared.state.lock();
        if state.version == self.seen {
            return None;
        }
        let next = self.seen + 1;
        let step = state
            .steps
            .front()
            .and_then(|first| next.checked_sub(first.version))
            .and_then(|at| state.steps.get(at as usize))
            .filter(|s| s.version == next);
        let (version, value, changes, view) = match step {
            Some(s) => (
                s.version,
                s.value.clone(),
                s.changes.clone(),
                s.view.clone(),
            ),
            None => (
                state.version,
                state.current.upgrade()?,
                Changes {
                    reloaded: true,
                    ..Changes::default()
                },
                state.view.clone(),
            ),
        };
        state.moved(self.seen, version);
        drop(state);
        self.seen = version;
        self.view = view;
        self.data = value;
        Some(changes)
    }

    /// Takes the driver and applies the next transaction (`wait`: waiting for it) or every
    /// message queued now, unless a version this viewer has not shown is there first.
    async fn drive(&mut self, wait: bool) -> Result<Driven, SyncError> {
        let shared = self.shared.clone();
        let mut guard = if wait {
            tokio::select! {
                biased;
                _ = shared.changed(&mut self.noticed) => return Ok(Driven::Behind),
                guard = shared.driver.lock() => guard,
            }
        } else {
            // a viewer waiting for the next change holds the driver: ask it, and every
            // viewer in line before us, to let go
            shared.wanting.fetch_add(1, Ordering::AcqRel);
            shared.wanted.notify_waiters();
            let guard = shared.driver.lock().await;
            shared.wanting.fetch_sub(1, Ordering::AcqRel);
            guard
        };
        if shared.state.lock().version != self.seen {
            return Ok(Driven::Behind);
        }
        let driver = &mut *guard;
        if std::mem::take(&mut driver.interrupted) {
            driver.sub.resync_first(ResyncReason::Lagged { missed: 0 });
        }
        let first = if wait {
            let wanted = shared.wanted.notified();
            tokio::pin!(wanted);
            // why enabled before the check: a want announced after it wakes `wanted`
            wanted.as_mut().enable();
            if shared.wanting.load(Ordering::Acquire) > 0 {
                return Ok(Driven::Nothing);
            }
            tokio::select! {
                biased;
                // why whole: the value is taken once the transaction can be applied with
                // no wait, so a caller giving up meanwhile costs nothing
                _ = driver.sub.ready_whole() => {}
                _ = wanted => return Ok(Driven::Nothing),
            }
            match driver.sub.next().await {
                Some(first) => first,
                None => return Ok(Driven::Closed),
            }
        } else {
            match driver.sub.try_next() {
                Some(first) => first,
                None => return Ok(Driven::Nothing),
            }
        };
        // a change's transaction is applied whole (waiting for it, when `wait`), a resync
        // alone; without `wait`, everything queued
        let xid = match &first {
            Message::Change(change) if wait => Some(change.xid),
            _ => None,
        };
        let Driver {
            sub,
            options,
            interrupted,
        } = driver;
        // why the viewer's own reference is let go: with no other viewer, the value is
        // then changed in place instead of copied
        let placeholder = Arc::new(T::from_rows(Vec::new()));
        let taken = std::mem::replace(&mut self.data, placeholder);
        let mut held = Restore {
            home: &mut self.data,
            value: Some(taken),
            shared: &shared,
            interrupted,
        };
        // (an address, not a pointer: the future stays `Send`)
        let before = Arc::as_ptr(held.value.as_ref().expect("taken above")) as usize;
        let value = Arc::make_mut(held.value.as_mut().expect("taken above"));
        let mut all = Changes::default();
        let mut failed = None;
        let mut message = Some(first);
        // why message by message, not a batch taken off the queue first: a sync that takes
        // rows in queues the changes of them it missed among those not applied yet, in
        // commit order; applied after newer ones already taken, old news would be applied
        // late (a delete taking away a row read since)
        while let Some(current) = message.take() {
            match sub.sync_with(value, &current, options.clone()).await {
                Ok(changes) => all.merge(changes),
                // a change that could not be applied: its resync comes next (the change is
                // not lost, the value is reloaded)
                Err(SyncError::Load(error)) if wait && error.class() != ErrorClass::Fatal => {}
                // the first error is returned; the resync it asked for comes next, before
                // what is still queued
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
            message = match (xid, &current) {
                (_, Message::Resync(_)) if wait => None,
                (Some(xid), _) => sub.next_of(xid).await,
                (None, _) => sub.try_next(),
            };
        }
        let value = held.value.take().expect("still held");
        drop(held);
        // why a copy is published even when nothing changed at the top level: viewers at
        // this version hold the value it was copied from, and the next sync starts from
        // this one
        let copied = Arc::as_ptr(&value) as usize != before;
        self.publish(sub, value, &all, copied);
        match failed {
            Some(error) => Err(error),
            None => Ok(Driven::Applied(all)),
        }
    }

    /// Publishes `value`, the result of this viewer's syncs, as the next version when they
    /// changed anything (`changes`) or it is a copy (`copied`), and shows it.
    fn publish(&mut self, sub: &Subscription, value: Arc<T>, changes: &Changes, copied: bool) {
        let shared = self.shared.clone();
        let mut state = shared.state.lock();
        state.current = Arc::downgrade(&value);
        state.view = view_of(sub, &state.view);
        if !changes.is_empty() || copied {
            state.version += 1;
            let version = state.version;
            if state.viewers > 1 {
                let step = Step {
                    version,
                    value: value.clone(),
                    changes: changes.clone(),
                    view: state.view.clone(),
                };
                state.steps.push_back(step);
            }
            state.moved(self.seen, version);
            self.seen = version;
        }
        self.view = state.view.clone();
        drop(state);
        self.data = value;
        // why always: viewers joining while the value was being changed wait for this
        shared.announce();
    }
}

impl<T: LiveValue> Drop for Viewer<T> {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.leave(self.seen);
        state.prune();
    }
}

/// Gives a value being synced back to its viewer if the sync is cut short, and marks the
/// value for a resync (it may hold part of a transaction).
struct Restore<'a, T: LiveValue> {
    home: &'a mut Arc<T>,
    value: Option<Arc<T>>,
    shared: &'a Shared<T>,
    interrupted: &'a mut bool,
}

impl<T: LiveValue> Drop for Restore<'_, T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            self.shared.state.lock().current = Arc::downgrade(&value);
            *self.home = value;
            *self.interrupted = true;
            self.shared.announce();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Positions;

    #[test]
    fn positions_count_viewers_per_version_oldest_first() {
        let mut at = Positions::One(0, 1);
        at.add(0);
        at.add(2);
        at.add(1);
        assert_eq!(at.oldest(), Some(0));
        assert!(at.remove(0) && at.remove(0));
        assert!(!at.remove(0), "no viewer left there");
        assert_eq!(at.oldest(), Some(1));
        assert!(at.remove(1));
        assert!(matches!(at, Positions::One(2, 1)), "back inline");
        assert!(at.remove(2));
        assert_eq!(at.oldest(), None);
        at.add(5);
        assert_eq!(at.oldest(), Some(5));
    }
}
