//! A live query published for many browsers: one `Live` value, applied transaction by
//! transaction by a task of its own, and what each transaction did kept as a patch in a
//! bounded replay buffer that every connection reads at its own pace.
//!
//! why one value and a buffer instead of a value per browser: a hundred pages of the same
//! query cost one subscription and one read per change, and a page that reconnects finds
//! the transactions it missed (by event id) while they are still in the buffer.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rowsync::{Changes, Key, Live, LiveQuery, Schema};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::FeedError;
use crate::event::{self, EventId};

/// How much a feed keeps for connections that fall behind or reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedConfig {
    /// Transactions kept for replay (default 1024). A connection further behind gets a
    /// `reset` with the whole current value instead.
    pub replay: usize,
    /// Bytes of patches kept for replay (default 8 MiB), whichever limit comes first.
    pub replay_bytes: usize,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            replay: 1024,
            replay_bytes: 8 << 20,
        }
    }
}

/// Counters of a feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Transactions published (patches and resets).
    pub transactions: u64,
    /// Resets published (the live value was reloaded).
    pub resets: u64,
    /// Times a connection was too far behind for the replay buffer and got the whole value
    /// again instead of the patches it missed.
    pub lagged: u64,
    /// Connections resumed from their `Last-Event-ID` without a snapshot.
    pub resumed: u64,
    /// Patches in the replay buffer now.
    pub replay_len: usize,
    /// Bytes of patches in the replay buffer now.
    pub replay_bytes: usize,
}

/// A transaction as the replay buffer keeps it.
struct Entry {
    seq: u64,
    /// The patch's JSON; `None` for a reset (its data is the value at the time it is sent).
    patch: Option<Arc<str>>,
}

/// The value as JSON, and the recent transactions.
#[derive(Default)]
pub(crate) struct State {
    /// The last transaction published.
    pub(crate) seq: u64,
    /// Keys (JSON) in the query's order.
    pub(crate) order: Vec<Arc<str>>,
    /// Row JSON by key JSON.
    pub(crate) rows: HashMap<Arc<str>, Arc<str>>,
    ring: VecDeque<Entry>,
    ring_bytes: usize,
    /// The live value ended (the hub shut down): connections end once they are up to date.
    pub(crate) ended: bool,
    /// The rows as JSON for transaction `.0`, built once for every connection that asks.
    snapshot: Option<(u64, Arc<str>)>,
}

/// What a connection reads next.
pub(crate) enum Next {
    /// The transaction after the connection's cursor.
    Patch(u64, Arc<str>),
    /// The whole value: after a resync (`lagged: false`), or for a connection the buffer no
    /// longer covers (`lagged: true`).
    Reset {
        /// The connection fell behind the buffer.
        lagged: bool,
    },
    /// Nothing new.
    Wait,
    /// Nothing new, ever.
    End,
}

impl State {
    pub(crate) fn next_after(&self, cursor: u64) -> Next {
        if cursor >= self.seq {
            return if self.ended { Next::End } else { Next::Wait };
        }
        let Some(front) = self.ring.front() else {
            return Next::Reset { lagged: true };
        };
        if cursor + 1 < front.seq {
            return Next::Reset { lagged: true };
        }
        match self.ring.get((cursor + 1 - front.seq) as usize) {
            Some(Entry {
                seq,
                patch: Some(patch),
            }) => Next::Patch(*seq, patch.clone()),
            Some(Entry { patch: None, .. }) => Next::Reset { lagged: false },
            None => Next::Reset { lagged: true },
        }
    }

    /// Every row as the data of a `snapshot` or `reset`, as of the last transaction.
    pub(crate) fn rows_json(&mut self) -> Arc<str> {
        if let Some((seq, json)) = &self.snapshot {
            if *seq == self.seq {
                return Arc::clone(json);
            }
        }
        let json: Arc<str> = Arc::from(event::rows_json(self));
        self.snapshot = Some((self.seq, Arc::clone(&json)));
        json
    }

    /// Whether a connection that saw transaction `seq` can go on from the buffer.
    pub(crate) fn covers(&self, seq: u64) -> bool {
        if seq > self.seq {
            return false;
        }
        if seq == self.seq {
            return true;
        }
        self.ring.front().is_some_and(|front| seq + 1 >= front.seq)
    }
}

pub(crate) struct Shared {
    pub(crate) epoch: u64,
    pub(crate) state: Mutex<State>,
    pub(crate) published: watch::Sender<u64>,
    pub(crate) lagged: AtomicU64,
    pub(crate) resumed: AtomicU64,
    resets: AtomicU64,
    config: FeedConfig,
}

impl Shared {
    pub(crate) fn id(&self, seq: u64) -> EventId {
        EventId {
            epoch: self.epoch,
            seq,
        }
    }
}

/// Stops the feed's task when the last handle goes.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A live query published to browsers: start it once, hand it to [`sse`](crate::sse) (or
/// call [`LiveFeed::sse`] from a handler of your own), and every connection gets a
/// `snapshot`, then one `patch` per transaction, a `reset` after a resync.
///
/// Cloning is cheap (a handle); the live value ends when the last handle is dropped.
#[derive(Clone)]
pub struct LiveFeed {
    pub(crate) shared: Arc<Shared>,
    _task: Arc<Task>,
}

impl LiveFeed {
    /// Loads `query` (a list, with its preloads) and follows it, with the default
    /// [`FeedConfig`].
    pub async fn start<S: Schema + Serialize>(query: LiveQuery<S>) -> Result<LiveFeed, FeedError> {
        LiveFeed::start_with(query, FeedConfig::default()).await
    }

    /// [`start`](Self::start) with a config.
    pub async fn start_with<S: Schema + Serialize>(
        query: LiveQuery<S>,
        config: FeedConfig,
    ) -> Result<LiveFeed, FeedError> {
        let live = query.all().await?;
        let mut state = State::default();
        reload_rows(&mut state, &live)?;
        let (published, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            // why random: an id from before a server restart must not resume in another
            // feed whose numbers happen to match
            epoch: RandomState::new().hash_one(std::time::SystemTime::now()) & 0xffff_ffff_ffff,
            state: Mutex::new(state),
            published,
            lagged: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            config,
        });
        let task = tokio::spawn(follow(live, Arc::clone(&shared)));
        Ok(LiveFeed {
            shared,
            _task: Arc::new(Task(task)),
        })
    }

    /// Counters of this feed.
    pub fn stats(&self) -> FeedStats {
        let state = self.shared.state.lock();
        FeedStats {
            transactions: state.seq,
            resets: self.shared.resets.load(Ordering::Relaxed),
            lagged: self.shared.lagged.load(Ordering::Relaxed),
            resumed: self.shared.resumed.load(Ordering::Relaxed),
            replay_len: state.ring.len(),
            replay_bytes: state.ring_bytes,
        }
    }

    /// The number of the last transaction published (0 for the first load).
    pub fn seq(&self) -> u64 {
        self.shared.state.lock().seq
    }

    /// Waits until transaction `seq` is published (or the feed ended).
    pub async fn published(&self, seq: u64) {
        let mut rx = self.shared.published.subscribe();
        let shared = &self.shared;
        // the sender lives as long as `self`: an error cannot happen here
        let _ = rx
            .wait_for(|&published| published >= seq || shared.state.lock().ended)
            .await;
    }
}

impl std::fmt::Debug for LiveFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFeed")
            .field("epoch", &self.shared.epoch)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The feed's task: applies each transaction to the live value and publishes it.
async fn follow<S: Schema + Serialize>(mut live: Live<Vec<S>>, shared: Arc<Shared>) {
    loop {
        let applied = match live.next().await {
            None => break,
            Some(Ok(changes)) => publish(&shared, &live, &changes),
            // why go on: a change that could not be applied is followed by a resync, which
            // reloads the value (and publishes a reset)
            Some(Err(error)) => {
                tracing::warn!(schema = S::meta().name, %error, "a live feed's sync failed; a resync follows");
                continue;
            }
        };
        if let Err(error) = applied {
            // a row that does not serialize: the browsers get the whole value again at the
            // next reload; until then this transaction is missing, so say it loudly
            tracing::error!(schema = S::meta().name, %error, "a row of a live feed does not serialize");
        }
    }
    shared.state.lock().ended = true;
    shared.published.send_modify(|_| {});
}

fn key_json(key: &Key) -> Result<Arc<str>, FeedError> {
    Ok(Arc::from(serde_json::to_string(key)?))
}

fn row_json<S: Serialize>(row: &S) -> Result<Arc<str>, FeedError> {
    Ok(Arc::from(serde_json::to_string(row)?))
}

/// Serializes the whole value into `state` (a first load or a reload).
fn reload_rows<S: Schema + Serialize>(state: &mut State, rows: &[S]) -> Result<(), FeedError> {
    let mut order = Vec::with_capacity(rows.len());
    let mut map = HashMap::with_capacity(rows.len());
    for row in rows {
        let key = key_json(&row.primary_key())?;
        map.insert(Arc::clone(&key), row_json(row)?);
        order.push(key);
    }
    state.order = order;
    state.rows = map;
    Ok(())
}

/// Turns one transaction's changes into a patch (or a reset) and appends it.
fn publish<S: Schema + Serialize>(
    shared: &Shared,
    live: &Live<Vec<S>>,
    changes: &Changes,
) -> Result<(), FeedError> {
    let rows: &[S] = live.data();
    if changes.reloaded {
        let mut fresh = State::default();
        reload_rows(&mut fresh, rows)?;
        let mut state = shared.state.lock();
        state.order = fresh.order;
        state.rows = fresh.rows;
        append(shared, &mut state, None);
        shared.resets.fetch_add(1, Ordering::Relaxed);
        drop(state);
        shared.published.send_modify(|seq| *seq += 1);
        return Ok(());
    }
    // the value's keys in order, once; then the rows the transaction touched
    let mut order = Vec::with_capacity(rows.len());
    let mut at = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let key = key_json(&row.primary_key())?;
        at.insert(Arc::clone(&key), i);
        order.push(key);
    }
    let mut upsert = Vec::new();
    let mut remove = Vec::new();
    for key in changes.inserted.iter().chain(&changes.updated) {
        let key = key_json(key)?;
        match at.get(&key) {
            Some(&i) => upsert.push((key, row_json(&rows[i])?)),
            // updated out of the value (a filter it no longer matches)
            None => remove.push(key),
        }
    }
    for key in &changes.deleted {
        let key = key_json(key)?;
        if !at.contains_key(&key) {
            remove.push(key);
        }
    }
    let mut state = shared.state.lock();
    let order_changed = state.order != order;
    // why: a transaction that left every row as it was (a catch-up of changes the value
    // already shows) is no news for a browser
    upsert.retain(|(key, row)| state.rows.get(key) != Some(row));
    remove.retain(|key| state.rows.contains_key(key));
    if upsert.is_empty() && remove.is_empty() && !order_changed {
        return Ok(());
    }
    let patch = event::patch_json(&upsert, &remove, order_changed.then_some(&order[..]));
    for key in &remove {
        state.rows.remove(key);
    }
    for (key, row) in upsert {
        state.rows.insert(key, row);
    }
    state.order = order;
    append(shared, &mut state, Some(Arc::from(patch)));
    drop(state);
    shared.published.send_modify(|seq| *seq += 1);
    Ok(())
}

/// Appends a transaction to the replay buffer, dropping the oldest past the limits.
fn append(shared: &Shared, state: &mut State, patch: Option<Arc<str>>) {
    state.seq += 1;
    let bytes = patch.as_ref().map_or(0, |p| p.len());
    state.ring.push_back(Entry {
        seq: state.seq,
        patch,
    });
    state.ring_bytes += bytes;
    while state.ring.len() > shared.config.replay.max(1)
        || (state.ring_bytes > shared.config.replay_bytes && state.ring.len() > 1)
    {
        if let Some(old) = state.ring.pop_front() {
            state.ring_bytes -= old.patch.map_or(0, |p| p.len());
        }
    }
}
