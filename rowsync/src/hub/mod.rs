//! The hub: the long-lived handle that wires capture, cache and routing together
//! (EctoSync's supervisor). Start one per application and clone it freely.

mod access;
mod builder;
mod check;
mod health;
mod pump;
mod reload;
mod shapes;
mod subscription;
mod told;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

pub use builder::HubBuilder;
pub(crate) use shapes::hash128;
pub(crate) use subscription::Shape;
pub use subscription::{Subscription, SyncStats};

use crate::cache::{Loader, SingleFlight};
use crate::capture::plan::CapturePlan;
use crate::capture::{triggers, CaptureProblem, CaptureStats, Source};
use crate::change::{Change, Op};
use crate::error::{HubError, SyncError};
use crate::graph::{Graph, PreloadTree};
use crate::load::{Access, Db, Query, QuerySpec};
use crate::route::router::Router;
use crate::route::{topics_for_rows, topics_for_table, Inbox, Message, Ops, Selector, Topic};
use crate::schema::{Schema, SchemaMeta};
use crate::sync::{Changes, Held, Membership, SyncOptions};

/// Counters of a hub, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Changes received and routed.
    pub changes_received: u64,
    /// Rows loaded from the database through the cache (one read each).
    pub rows_loaded: u64,
    /// Requests for a changed row answered by a load already done or in flight.
    pub cache_hits: u64,
    /// Payloads that could not be decoded (logged, then ignored).
    pub malformed_payloads: u64,
    /// Payloads for tables this hub does not watch.
    pub unknown_tables: u64,
    /// Changes too large for a notification (their tables' subscribers resynced).
    pub overflows: u64,
    /// Capture reconnects (a listener's each resynced every subscriber; a replication
    /// stream with a permanent slot resumes where it was, and resyncs nobody).
    pub reconnects: u64,
    /// Payloads of a format this build does not read (from triggers another rowsync
    /// version installed).
    pub unsupported_payloads: u64,
    /// Catalog checks of the installed capture run.
    pub capture_checks: u64,
    /// Problems those checks found (a trigger disabled or dropped, a column renamed, ...);
    /// one that lasts over several checks is counted once. See [`Hub::capture_health`].
    pub capture_problems: u64,
    /// Changes a replication stream sent again after a reconnect, skipped as delivered.
    pub duplicates_skipped: u64,
    /// WAL the replication slot holds back, in bytes (`None`: trigger capture, or not
    /// measured yet).
    pub slot_lag_bytes: Option<u64>,
    /// How late the replication slot's acknowledgements are, as the server measures it
    /// (`None`: trigger capture, not measured, or nothing pending).
    pub slot_lag: Option<Duration>,
    /// Times the replication slot was replaced (held back too much WAL, or was invalidated),
    /// each resyncing every subscriber.
    pub slot_resets: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
    /// Distinct topics in the routing index.
    pub topics: u64,
}

/// A running hub. Cloning is cheap; every clone shares one listener, cache and router.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    db: Db,
    graph: Graph,
    plan: Arc<CapturePlan>,
    channel: String,
    router: Arc<Router>,
    loader: Loader,
    /// Reloads under a snapshot in flight, shared by identical ones (`reload.rs`).
    reloads: SingleFlight<String, reload::Entry>,
    /// The access context of each subscription that has one (the pump batches reads per
    /// context).
    accesses: told::Accesses,
    /// Tables row-level security policies read (`HubBuilder::policy_table`).
    policy_tables: Vec<crate::schema::TableName>,
    /// Contexts the database took on already (checked once per hub).
    checked_accesses: parking_lot::Mutex<std::collections::HashSet<Access>>,
    capture: Arc<CaptureStats>,
    /// The check of the installed triggers (none for a replication hub).
    check: Option<Arc<health::CaptureCheck>>,
    last_seq: Arc<AtomicU64>,
    /// Callers waiting for sync points.
    waiters: pump::SyncWaiters,
    running: tokio::sync::Mutex<Option<(Source, JoinHandle<()>)>>,
    /// Values shared by identical followers (live queries), by a key of their query and
    /// shape; opaque here, typed by their owner.
    shared_values: SharedValues,
    /// The forms of the subscriptions' shapes, one per query (`shapes.rs`).
    forms: shapes::Forms,
}

/// Values shared by identical followers by a 128-bit hash of what makes them identical, each
/// held weakly: it goes when its last holder does.
pub(crate) type SharedValues = parking_lot::Mutex<
    std::collections::HashMap<u128, std::sync::Weak<dyn std::any::Any + Send + Sync>>,
>;

impl Hub {
    /// Starts configuring a hub for the database at `url`.
    pub fn builder(url: impl Into<String>) -> HubBuilder {
        HubBuilder::new(url.into())
    }

    /// Starts a query on the hub's connection pool.
    pub fn query<S: Schema>(&self) -> Query<'_, S> {
        self.inner.db.query::<S>()
    }

    /// The hub's connection pool.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The schema graph of the watched schemas.
    pub fn graph(&self) -> &Graph {
        &self.inner.graph
    }

    /// What the hub captures.
    pub fn plan(&self) -> &CapturePlan {
        &self.inner.plan
    }

    pub(crate) fn loader(&self) -> &Loader {
        &self.inner.loader
    }

    /// Values shared by identical followers (see `live`).
    pub(crate) fn shared_values(&self) -> &SharedValues {
        &self.inner.shared_values
    }

    /// The forms of the subscriptions' shapes, one per query.
    pub(crate) fn forms(&self) -> &shapes::Forms {
        &self.inner.forms
    }

    /// The SQL the hub installs (and would install), for migrations you manage yourself.
    pub fn install_sql(&self) -> Result<String, HubError> {
        Ok(triggers::install_sql(
            &self.inner.plan,
            &self.inner.channel,
        )?)
    }

    /// An error naming the tables of `topics` this hub does not capture.
    fn check_watched(&self, topics: &[Topic]) -> Result<(), HubError> {
        let mut missing: Vec<String> = topics
            .iter()
            .filter(|t| self.inner.plan.table(&t.table).is_none())
            .map(|t| t.table.to_string())
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(HubError::NotWatched { tables: missing })
        }
    }

    /// Every change of `S`'s table, and of the tables that can change data loaded with
    /// `preloads` (EctoSync's `subscribe(Post, assocs: [:tags])`).
    pub fn subscribe_table<S: Schema>(
        &self,
        preloads: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Subscription, HubError> {
        let tree = PreloadTree::parse(S::meta(), preloads)?;
        let topics = topics_for_table(S::meta(), &tree)?;
        let membership = Membership::Query {
            filter: None,
            order_by: Arc::from(Vec::new()),
        };
        self.subscribe_shape(
            S::meta(),
            tree,
            membership,
            QuerySpec::default(),
            false,
            topics,
        )
    }

    /// Changes that touch `rows` held with `preloads` loaded: updates and deletes of those
    /// rows and of the associated rows they hold at any depth (by primary key), and inserts
    /// into their loaded collections (by foreign key; join tables by owner key).
    pub fn subscribe<'a, S: Schema>(
        &self,
        rows: impl IntoIterator<Item = &'a S>,
        preloads: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Subscription, HubError> {
        self.subscribe_rows(rows, preloads, None)
    }

    /// What [`subscribe`](Self::subscribe) and `subscribe_as` share: the rows held, under
    /// `access` when there is one.
    pub(crate) fn subscribe_rows<'a, S: Schema>(
        &self,
        rows: impl IntoIterator<Item = &'a S>,
        preloads: impl IntoIterator<Item = impl AsRef<str>>,
        access: Option<Access>,
    ) -> Result<Subscription, HubError> {
        let rows: Vec<&S> = rows.into_iter().collect();
        // why the rows' own shape too: a copy held deeper than `preloads` names must follow
        // its changes like the rest (every place that holds a row is kept fresh)
        let tree = PreloadTree::parse(S::meta(), preloads)?.union(&PreloadTree::of_rows(&rows));
        let topics = topics_for_rows(&rows, &tree)?;
        let keys = rows.iter().map(|r| r.primary_key()).collect();
        let spec = QuerySpec {
            preloads: tree.paths(),
            access,
            ..QuerySpec::default()
        };
        let membership = Membership::Keys(Arc::new(keys));
        let sub = self.subscribe_shape(S::meta(), tree, membership, spec, false, topics)?;
        // its topics name every row it holds: it is told only of those and of rows its
        // context may see
        self.inner.accesses.track(sub.id(), true);
        Ok(sub)
    }

    /// The one way a subscription with a data shape is made: checks that the hub captures
    /// every table the shape reads, then files the subscription under `topics`.
    pub(crate) fn subscribe_shape(
        &self,
        root: &'static SchemaMeta,
        tree: PreloadTree,
        membership: Membership,
        mut spec: QuerySpec,
        single: bool,
        topics: Vec<Topic>,
    ) -> Result<Subscription, HubError> {
        self.check_watched(&topics_for_table(root, &tree)?)?;
        spec.preloads = tree.paths();
        let mut topics = topics;
        let mut policy_topics = Vec::new();
        if let Some(access) = &spec.access {
            access.validate()?;
            access.check_scope(root, &tree)?;
            if access.reads_as().is_some() {
                policy_topics = self.policy_topics();
            }
            topics.extend(access::hidden_topics(root, &tree)?);
            topics.extend(policy_topics.iter().cloned());
        }
        let form = shapes::Form {
            root,
            paths: self.graph().shape(root, &tree)?,
            tree,
            access: spec.access.clone(),
            policy_topics,
            spec,
            single,
        };
        let shape = Shape {
            form: self.forms().intern(form),
            membership,
        };
        let inbox = Inbox::open(&self.inner.router, topics, Ops::ALL, true);
        if let Some(access) = shape.access.as_ref().and_then(Access::reads_as) {
            // why before any change can reach it: the pump reads for it under its context
            self.inner.accesses.file(inbox.id(), access);
        }
        Ok(Subscription::new(inbox, self.clone(), Some(shape)))
    }

    /// Reloads under a snapshot started (live queries and resyncs; concurrent identical ones
    /// share one).
    pub fn live_loads(&self) -> u64 {
        self.inner.reloads.started()
    }

    /// Changes of `S`'s table with operation `op` and rows chosen by `selector`, e.g.
    /// `hub.subscribe_to::<Comment>(Op::Updated, Selector::foreign("post_id", 42))`.
    pub fn subscribe_to<S: Schema>(
        &self,
        op: Op,
        selector: Selector,
    ) -> Result<Subscription, HubError> {
        self.subscribe_topics(
            [Topic {
                table: S::meta().table,
                selector,
            }],
            op.into(),
        )
    }

    /// A subscription to explicit topics.
    pub fn subscribe_topics(
        &self,
        topics: impl IntoIterator<Item = Topic>,
        ops: Ops,
    ) -> Result<Subscription, HubError> {
        let inbox = Inbox::open(&self.inner.router, topics, ops, false);
        Ok(Subscription::new(inbox, self.clone(), None))
    }

    /// Applies a change to data you hold outside a subscription, with the shape read off
    /// the data (EctoSync's `sync(value, event, preloads: ..)`); `options` can give the
    /// shape of rows it inserts. A resync message changes nothing here: reload yourself.
    pub async fn sync_with<S: Schema, H: Held<S>>(
        &self,
        data: &mut H,
        message: &Message,
        options: SyncOptions,
    ) -> Result<Changes, SyncError> {
        match message {
            Message::Change(change) => {
                subscription::sync_detached(self, data, change, options).await
            }
            Message::Resync(_) => Ok(Changes::default()),
        }
    }

    /// Returns once every transaction committed before the call has been delivered to every
    /// subscriber's queue (read-your-writes: a handler that wrote, then calls this, then
    /// applies what its subscription holds, sees its write). No marker row is written and
    /// nothing polls: the hub sends a sync point through its capture stream (a notification,
    /// or a logical decoding message) and waits for it to come back in commit order.
    ///
    /// A capture connection lost meanwhile resyncs every subscriber, which answers the wait
    /// too. Wrap the call in a timeout if capture may be down for long.
    pub async fn sync_point(&self) -> Result<(), HubError> {
        let token = crate::capture::new_token();
        let reached = self.inner.waiters.wait(token);
        {
            let running = self.inner.running.lock().await;
            let Some((source, _)) = running.as_ref() else {
                return Err(HubError::Closed);
            };
            source.sync_point(token, &self.inner.db);
        }
        reached.await.map_err(|_| HubError::Closed)
    }

    /// Returns once transaction `xid` (from `pg_current_xact_id()` in the writer's
    /// transaction, see [`current_xid`](crate::current_xid)) has been delivered to every
    /// subscriber it concerns; at once for a transaction that concerned none. The transaction
    /// must have committed (an aborted one is never delivered: this returns then too).
    pub async fn wait_for(&self, xid: u64) -> Result<(), HubError> {
        let conn = self
            .inner
            .db
            .pool()
            .get()
            .await
            .map_err(|e| HubError::from(crate::error::LoadError::Pool(e)))?;
        let status: Option<String> = conn
            .query_one("SELECT pg_xact_status($1::text::xid8)", &[&xid.to_string()])
            .await
            .map_err(|error| HubError::Database {
                action: "looking up a transaction's status",
                error,
            })?
            .get(0);
        drop(conn);
        if status.as_deref() == Some("in progress") {
            return Err(HubError::InProgress { xid });
        }
        // why a sync point: the capture stream is in commit order, so a sync point asked for
        // after `xid` committed comes back after everything `xid` sent
        self.sync_point().await
    }

    /// The position of the last change routed (changes are numbered in commit order).
    pub fn current_seq(&self) -> u64 {
        self.inner.last_seq.load(Ordering::Acquire)
    }

    /// The changed row as of this change, read once through the shared cache however many
    /// subscribers ask; `None` when it no longer exists.
    pub async fn get<S: Schema>(&self, change: &Change) -> Result<Option<S>, HubError> {
        self.get_with::<S>(change, [""; 0]).await
    }

    /// Like [`get`](Self::get), with associations preloaded (the rows sync inserts).
    pub async fn get_with<S: Schema>(
        &self,
        change: &Change,
        preloads: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Option<S>, HubError> {
        let tree = PreloadTree::parse(S::meta(), preloads)?;
        self.inner
            .loader
            .row::<S>(change.key.clone(), change.seq, change.xid, &tree)
            .await
            .map_err(HubError::Load)
    }

    /// Current counters.
    pub fn stats(&self) -> HubStats {
        let c = &self.inner.capture;
        let n = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        HubStats {
            changes_received: n(&c.changes),
            rows_loaded: self.inner.loader.cache.loads(),
            cache_hits: self.inner.loader.cache.hits(),
            malformed_payloads: n(&c.malformed),
            unknown_tables: n(&c.unknown_table),
            overflows: n(&c.overflows),
            reconnects: n(&c.reconnects),
            unsupported_payloads: n(&c.unsupported),
            capture_checks: n(&c.checks),
            capture_problems: n(&c.problems),
            duplicates_skipped: n(&c.duplicates),
            slot_lag_bytes: CaptureStats::measured(&c.slot_lag_bytes),
            slot_lag: CaptureStats::measured(&c.slot_lag_millis).map(Duration::from_millis),
            slot_resets: n(&c.slot_resets),
            subscriptions: self.inner.router.subscription_count() as u64,
            topics: self.inner.router.topic_count() as u64,
        }
    }

    /// What the last check of the installed capture found wrong (empty when all is well).
    ///
    /// The check runs at start, after every listener reconnect, every
    /// [`capture_check_interval`](HubBuilder::capture_check_interval), and at once when a
    /// payload or a DDL hint suggests it. Every table it finds wrong is reinstalled (when the
    /// hub installs capture) and its holders get [`Message::Resync`] with
    /// [`ResyncReason::SchemaChanged`](crate::ResyncReason::SchemaChanged). Alert on a
    /// non-empty answer, or on [`HubStats::capture_problems`] growing.
    /// A replication hub has no triggers to check: the stream's Relation messages report
    /// schema changes as they come (and resync the table's holders).
    pub fn capture_health(&self) -> Vec<CaptureProblem> {
        self.inner
            .check
            .as_ref()
            .map(|check| check.last())
            .unwrap_or_default()
    }

    /// Runs the check of the installed capture now (see [`capture_health`](Self::capture_health))
    /// and returns what it found.
    pub async fn check_capture(&self) -> Result<Vec<CaptureProblem>, HubError> {
        match &self.inner.check {
            Some(check) => check.run().await,
            None => Ok(Vec::new()),
        }
    }

    /// Entries in the shared row cache now (after pending evictions ran): the bounded store's,
    /// and the rows filed or loading for the syncs of recent changes.
    pub async fn cache_entries(&self) -> u64 {
        self.inner.loader.cache.len().await
    }

    /// The backend pid of the capture connection: the listener's, or the replication
    /// stream's WAL sender (to observe or test reconnects).
    pub async fn listener_pid(&self) -> Option<i32> {
        self.inner
            .running
            .lock()
            .await
            .as_ref()
            .and_then(|(source, _)| source.process_id())
    }

    /// Stops capture and the routing task; subscriptions then end (`next()` gives `None`).
    /// Installed triggers stay (other hubs may rely on them); a replication slot stays
    /// (a hub starting on it later skips ahead; `HubBuilder::uninstall` removes it).
    pub async fn shutdown(&self) {
        let running = self.inner.running.lock().await.take();
        if let Some(check) = &self.inner.check {
            check.stop();
        }
        if let Some((source, pump)) = running {
            source.shutdown().await;
            let _ = pump.await;
        }
        self.inner.router.close_all();
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("stats", &self.stats()).finish()
    }
}
