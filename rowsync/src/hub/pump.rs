//! The hub's one task between capture and routing: decoded changes in, routed to their
//! subscribers in the order PostgreSQL committed them, the rows a burst's syncs will read
//! offered as one read per table first (rows the source carried need no read). Once a
//! transaction is in every subscriber's queue, its end is published for the source to
//! acknowledge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::told::{self, Accesses, Teller};
use crate::cache::Loader;
use crate::capture::{Acknowledged, CaptureEvent, Carried};
use crate::change::Change;
use crate::hash::{HashMap, HashMapExt, HashSet};
use crate::load::Access;
use crate::route::queue::Queue;
use crate::route::router::Router;
use crate::route::SubscriptionId;
use crate::schema::{Key, RowImage, SchemaMeta, TableName};

/// Events taken from the capture queue at once, at most.
const MAX_BURST: usize = 1024;

/// What the pump needs besides its queue.
pub(crate) struct Pump {
    pub router: Arc<Router>,
    pub loader: Loader,
    /// The schema mapping each watched table (join tables known by name have none: their
    /// rows are never read).
    pub schemas: HashMap<TableName, &'static SchemaMeta>,
    /// The `seq` of the last change routed.
    pub last_seq: Arc<AtomicU64>,
    /// The end of the last transaction routed (sources that stream transactions read it).
    pub acknowledged: Acknowledged,
    /// Callers waiting for a sync point.
    pub waiters: SyncWaiters,
    /// The access context of each subscription that has one.
    pub accesses: Accesses,
    /// Tables row-level security policies read (their changes resync holders as they are).
    pub policy_tables: Vec<TableName>,
    /// Whether changes come from a replication stream: they can arrive before other
    /// sessions see their transactions (reads made for them at once wait until they do),
    /// and they come as whole committed transactions (routed once each is whole).
    pub rows_arrive_early: bool,
}

/// Changes taken from the queue, not routed yet.
#[derive(Default)]
struct Pending {
    changes: Vec<Arc<Change>>,
    /// The rows the source carried (`None`: deleted), by the `seq` of their change.
    carried: HashMap<u64, Option<RowImage>>,
    /// The subscribers that received changes of the transaction not ended yet.
    in_transaction: HashSet<SubscriptionId>,
}

impl Pump {
    pub async fn run(self, mut events: mpsc::Receiver<CaptureEvent>) {
        let mut burst = Vec::new();
        let mut pending = Pending::default();
        while let Some(first) = events.recv().await {
            // why take what is queued: the changes of a burst can share one read; nothing
            // waits for a burst to fill
            burst.push(first);
            while burst.len() < MAX_BURST {
                match events.try_recv() {
                    Ok(event) => burst.push(event),
                    Err(_) => break,
                }
            }
            let mut committed = None;
            for event in burst.drain(..) {
                match event {
                    CaptureEvent::Change { change, row } => self.take(&mut pending, change, row),
                    CaptureEvent::Resync { table, reason } => {
                        // everything before it is routed before the resync it causes
                        self.route(&mut pending).await;
                        let everyone = table.is_none();
                        self.router.resync(table, reason);
                        // a resync of everyone covers whatever a sync point waited for
                        if everyone {
                            self.waiters.release_all();
                        }
                    }
                    CaptureEvent::Committed { xid, lsn } => {
                        self.route(&mut pending).await;
                        self.router.commit(xid, &pending.in_transaction);
                        pending.in_transaction.clear();
                        committed = lsn.or(committed);
                    }
                    CaptureEvent::Reached { token } => {
                        self.route(&mut pending).await;
                        self.waiters.reached(token);
                    }
                }
            }
            // why a replication stream's changes wait for their transaction's end: the
            // stream hands over whole committed transactions, and a transaction split
            // between two bursts would be read in two batches (the trigger source cannot
            // say when a transaction ends, so what it sent is routed now)
            if !self.rows_arrive_early {
                self.route(&mut pending).await;
            }
            // why after routing: the source may tell the server it is done with the
            // transaction only once every subscriber's queue holds it
            if let Some(lsn) = committed {
                self.acknowledged.fetch_max(lsn, Ordering::Release);
            }
        }
    }

    /// Queues `change` for routing; a row its source carried is filed under it, so that no
    /// sync reads it.
    fn take(&self, pending: &mut Pending, change: Change, row: Carried) {
        let filed = match row {
            Carried::Nothing => None,
            Carried::Row(image) => Some(Some(image)),
            Carried::Gone => Some(None),
        };
        if let Some(row) = filed {
            pending.carried.insert(change.seq, row);
        }
        pending.changes.push(Arc::new(change));
    }

    /// Routes the pending changes in order, after offering one batched read per table of
    /// the rows their syncs would read one by one (except rows carried, filed already);
    /// holders under a context are told only of rows they may see or hold (`told.rs`).
    async fn route(&self, pending: &mut Pending) {
        let Some(last) = pending.changes.last() else {
            return;
        };
        let last = last.seq;
        let mut carried = std::mem::take(&mut pending.carried);
        let mut routed = self.router.route(std::mem::take(&mut pending.changes));
        // one batched read per (table, context): holders sharing a context share it
        let mut wanted: Wanted = HashMap::new();
        for r in &routed {
            let row = carried.remove(&r.change.seq);
            let was_carried = row.is_some();
            let gone = matches!(row, Some(None));
            // why counted: an entry expecting its subscribers leaves the cache when the last
            // one took it, instead of being kept (and stored) for callers that never come
            let accesses = self.accesses.of(&r.subscribers);
            if let Some(row) = row {
                let own = accesses.iter().find(|(a, _)| a.is_none()).map(|(_, n)| *n);
                // why at least one: a row no subscriber was routed stays for one caller (a
                // subscriber catching up on the change)
                self.loader.file(&r.change, row, own.unwrap_or(0).max(1));
            }
            for (access, claims) in accesses {
                // a context's holders read every change routed to them (a sync reads the
                // changed row, deletes too; `told.rs` looks at it first)
                if access.is_none() && !r.reads_row {
                    continue;
                }
                // a carried row serves the hub's own role; a context reads its own
                if access.is_none() && was_carried {
                    continue;
                }
                // why no read: a row deleted as of this change is gone whoever looks
                if access.is_some() && gone {
                    self.loader.under(access).file(&r.change, None, claims);
                    continue;
                }
                // why at once: the read of the next change then runs while subscribers apply
                // this one (see `cache/prefetch.rs`); not for rows only watchers would read
                let now = (access.is_some() || r.read_now) && !self.rows_arrive_early;
                wanted
                    .entry((r.change.table, access, now))
                    .or_default()
                    .push((r.change.key.clone(), r.change.seq, claims));
            }
        }
        let mut reading = Vec::new();
        for ((table, access, now), wanted) in wanted {
            if let Some(meta) = self.schemas.get(&table) {
                reading.extend(self.loader.under(access).prefetch(meta, wanted, now));
            }
        }
        let teller = Teller {
            schemas: &self.schemas,
            policy_tables: &self.policy_tables,
            accesses: &self.accesses,
            rows_arrive_early: self.rows_arrive_early,
            loader: &self.loader,
            router: &self.router,
        };
        told::hide(&teller, &mut routed).await;
        for r in &routed {
            pending.in_transaction.extend(r.subscribers.iter().copied());
        }
        // why quietly when rows are being read: see `Router::deliver`; the messages are
        // queued now, in order (a watcher, which reads nothing, is woken as before)
        let to_wake = self
            .router
            .deliver(routed, WAKE_AFTER_READ && !reading.is_empty());
        if !to_wake.is_empty() {
            tokio::spawn(wake_when_read(reading, to_wake));
        }
        self.last_seq.store(last, Ordering::Release);
    }
}

/// Whether syncing subscribers of a change whose row is being read are woken only once the
/// read is done. Off: with it (and held lists indexed from 64 rows) a broadcast's tail grew
/// (BENCHMARKS.md, "a tail that came back"); kept, measured, until bisected.
const WAKE_AFTER_READ: bool = false;

/// How long subscribers left asleep wait for the reads of their changes at most: a read
/// that hangs must not keep them from the messages behind it.
const READ_WAIT: Duration = Duration::from_secs(1);

/// Wakes `queues` once the reads `reading` are done (read, failed, or past [`READ_WAIT`]):
/// their syncs then find the rows in the cache instead of waiting for them.
async fn wake_when_read(reading: Vec<BoxFuture<'static, ()>>, queues: Vec<Arc<Queue>>) {
    let _ = tokio::time::timeout(READ_WAIT, join_all(reading)).await;
    for queue in queues {
        queue.wake();
    }
}

/// The rows a burst's syncs will read, per table, context (`None`: the hub's own role) and
/// whether to read them at once.
type Wanted = HashMap<(TableName, Option<Access>, bool), Vec<(Key, u64, u32)>>;

/// Callers waiting for sync points, by token.
#[derive(Clone, Default)]
pub(crate) struct SyncWaiters {
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>,
}

impl SyncWaiters {
    /// Registers a wait for `token`.
    pub fn wait(&self, token: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(token, tx);
        rx
    }

    /// Sync point `token` came through: everything before it is routed.
    fn reached(&self, token: u64) {
        if let Some(waiter) = self.waiting.lock().remove(&token) {
            let _ = waiter.send(());
        }
    }

    /// Every subscriber was told to resync: no wait is left unanswered.
    fn release_all(&self) {
        for (_, waiter) in self.waiting.lock().drain() {
            let _ = waiter.send(());
        }
    }
}
