//! Live queries: load and subscribe with no gap, and a [`Live<T>`] that keeps itself in sync.
//!
//! How the gap is closed: the subscription is made first (routing every change of the tables
//! the query reads into its queue); then the rows are loaded in one REPEATABLE READ
//! transaction whose snapshot (`pg_current_snapshot()`) is kept. A queued or later change is
//! applied only if its transaction is not visible in that snapshot, so every transaction
//! committed after the load is applied exactly once and none before it is applied again.

mod flight;
mod snapshot;

use std::ops::Deref;
use std::sync::Arc;

pub(crate) use flight::Flights;
pub use snapshot::{Snapshot, SnapshotParseError};
use tokio_postgres::IsolationLevel;

use crate::error::{DecodeError, HubError, LoadError, SyncError};
use crate::graph::PreloadTree;
use crate::hub::{Hub, Subscription};
use crate::load::{query, Db};
use crate::route::{topics_for_rows, topics_for_table, Message, Selector, Topic};
use crate::schema::{Filter, Key, OrderBy, Schema, SortOrder};
use crate::sync::{Changes, Held, Membership, SyncOptions};

/// Data a live query can hold: a list, or at most one row.
pub trait LiveValue: Held<Self::Row> + Send + Sync + 'static {
    /// The schema of the rows.
    type Row: Schema;
    /// Builds the value from loaded rows.
    fn from_rows(rows: Vec<Self::Row>) -> Self;
}

impl<S: Schema> LiveValue for Vec<S> {
    type Row = S;
    fn from_rows(rows: Vec<S>) -> Self {
        rows
    }
}

impl<S: Schema> LiveValue for Option<S> {
    type Row = S;
    fn from_rows(rows: Vec<S>) -> Self {
        rows.into_iter().next()
    }
}

/// What a live query selects.
#[derive(Debug, Clone)]
enum Kind {
    All,
    Get(Key),
    One,
}

#[derive(Debug)]
struct Spec {
    filters: Vec<Filter>,
    preloads: Vec<String>,
    order_by: Vec<(String, SortOrder)>,
    kind: Kind,
}

impl Spec {
    fn filter(&self) -> Option<Filter> {
        match self.filters.len() {
            0 => None,
            1 => Some(self.filters[0].clone()),
            _ => Some(Filter::and(self.filters.clone())),
        }
    }
}

/// Builds a live query: `hub.live::<Person>().filter(..).preload([..]).all().await`.
#[must_use = "a live query does nothing until `all`, `get` or `one` is awaited"]
pub struct LiveQuery<S> {
    hub: Hub,
    filters: Vec<Filter>,
    preloads: Vec<String>,
    order_by: Vec<(String, SortOrder)>,
    _schema: std::marker::PhantomData<fn() -> S>,
}

impl<S: Schema> LiveQuery<S> {
    pub(crate) fn new(hub: Hub) -> Self {
        LiveQuery {
            hub,
            filters: Vec::new(),
            preloads: Vec::new(),
            order_by: Vec::new(),
            _schema: std::marker::PhantomData,
        }
    }

    /// Keeps rows matching `filter`; rows start and stop belonging as they start and stop
    /// matching it.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Preloads associations by dotted path; they follow the rules of sync.
    pub fn preload(mut self, paths: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.preloads
            .extend(paths.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Orders the list by a column, ascending (then by primary key); inserted rows take their
    /// place in this order.
    pub fn order_by(mut self, column: impl Into<String>) -> Self {
        self.order_by.push((column.into(), SortOrder::Asc));
        self
    }

    /// Orders the list by a column, descending.
    pub fn order_by_desc(mut self, column: impl Into<String>) -> Self {
        self.order_by.push((column.into(), SortOrder::Desc));
        self
    }

    /// Every matching row, kept in sync.
    pub async fn all(self) -> Result<Live<Vec<S>>, HubError> {
        self.start(Kind::All).await
    }

    /// The row with primary key `key` (or `None`), kept in sync: it appears if inserted later.
    pub async fn get(self, key: impl Into<Key>) -> Result<Live<Option<S>>, HubError> {
        self.start(Kind::Get(key.into())).await
    }

    /// The only matching row (or `None`), kept in sync.
    pub async fn one(self) -> Result<Live<Option<S>>, HubError> {
        self.start(Kind::One).await
    }

    async fn start<T: LiveValue<Row = S>>(self, kind: Kind) -> Result<Live<T>, HubError> {
        let meta = S::meta();
        let tree = PreloadTree::parse(meta, &self.preloads)?;
        let mut order = Vec::new();
        for (column, direction) in &self.order_by {
            let index = crate::schema::column_index(meta, column)?;
            order.push(OrderBy {
                column: meta.columns[index].name,
                order: *direction,
            });
        }
        let spec = Arc::new(Spec {
            filters: self.filters,
            preloads: self.preloads,
            order_by: self.order_by,
            kind,
        });
        let membership = match &spec.kind {
            Kind::Get(key) => Membership::Keys(Arc::new([key.clone()].into_iter().collect())),
            Kind::All | Kind::One => Membership::Query {
                filter: spec.filter().map(Arc::new),
                order_by: Arc::from(order),
            },
        };
        let sub = self.hub.subscribe_shape::<S>(tree, membership)?;
        let mut live = Live {
            data: T::from_rows(Vec::new()),
            sub,
            snapshot: Snapshot {
                xmin: 0,
                xmax: 0,
                xip: Vec::new(),
            },
            spec,
            stats: LiveStats::default(),
            last_seq: 0,
        };
        live.load().await?;
        Ok(live)
    }
}

/// Counters of a live value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveStats {
    /// Changes applied.
    pub applied: u64,
    /// Changes skipped because the loaded data already held them (committed before the
    /// load's snapshot).
    pub skipped_visible: u64,
    /// Changes received a second time (never applied twice; should stay 0).
    pub duplicates: u64,
    /// Reloads (the first load, and one per resync).
    pub loads: u64,
}

/// Data loaded by a live query and kept in sync: it derefs to the data, and
/// [`next`](Live::next) applies each delivered change and says what changed at the top level.
/// Dropping it ends its subscription.
pub struct Live<T: LiveValue> {
    data: T,
    sub: Subscription,
    snapshot: Snapshot,
    spec: Arc<Spec>,
    stats: LiveStats,
    last_seq: u64,
}

impl<T: LiveValue> Live<T> {
    /// Waits for the next change of the data, applies it, and returns what changed at the top
    /// level (a resync reloads, and says so with `reloaded`). `None` once the hub shut down.
    ///
    /// Not cancel-safe: a call dropped while it applies a change loses that change (the
    /// next resync repairs it). Drive it from one task rather than racing it in `select!`.
    pub async fn next(&mut self) -> Option<Result<Changes, SyncError>> {
        loop {
            let message = self.sub.next().await?;
            if let Some(result) = self.handle(message).await {
                return Some(result);
            }
        }
    }

    /// Applies every message already delivered, without waiting for more; returns what
    /// changed at the top level, all together.
    pub async fn apply_pending(&mut self) -> Result<Changes, SyncError> {
        let mut all = Changes::default();
        while let Some(message) = self.sub.try_next() {
            if let Some(changes) = self.handle(message).await {
                let changes = changes?;
                all.inserted.extend(changes.inserted);
                all.updated.extend(changes.updated);
                all.deleted.extend(changes.deleted);
                all.reloaded |= changes.reloaded;
            }
        }
        Ok(all)
    }

    /// Applies one message; `None` when it changed nothing.
    async fn handle(&mut self, message: Message) -> Option<Result<Changes, SyncError>> {
        match &message {
            Message::Change(change) => {
                if self.snapshot.sees(change.xid) {
                    self.stats.skipped_visible += 1;
                    return None;
                }
                if change.seq <= self.last_seq {
                    self.stats.duplicates += 1;
                    return None;
                }
                self.last_seq = change.seq;
                self.stats.applied += 1;
                match self
                    .sub
                    .sync_with(&mut self.data, &message, SyncOptions::new())
                    .await
                {
                    Ok(changes) if changes.is_empty() => None,
                    other => Some(other),
                }
            }
            Message::Resync(_) => Some(match self.load().await {
                Ok(()) => Ok(Changes {
                    reloaded: true,
                    ..Changes::default()
                }),
                Err(e) => Err(SyncError::Reload(Box::new(e))),
            }),
        }
    }

    /// The data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The data, leaving the live query (its subscription ends).
    pub fn into_inner(self) -> T {
        self.data
    }

    /// Counters of this live value.
    pub fn stats(&self) -> LiveStats {
        self.stats
    }

    /// The snapshot of the last load.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The subscription feeding this value.
    pub fn subscription(&self) -> &Subscription {
        &self.sub
    }

    /// Subscribes broadly, loads under a snapshot (shared with concurrent identical live
    /// queries), then narrows the topics to the rows held.
    async fn load(&mut self) -> Result<(), HubError> {
        let shape = self.sub.shape().ok_or(HubError::Closed)?;
        let meta = <T::Row as Schema>::meta();
        let coarse = topics_for_table(meta, &shape.tree)?;
        self.sub.set_topics(coarse);
        let hub = self.sub.hub().clone();
        let key = format!("{}|{:?}", meta.name, self.spec);
        let db = hub.db().clone();
        let spec = self.spec.clone();
        let loaded = hub
            .flights()
            .run(key, load_under_snapshot::<T::Row>(db, spec))
            .await
            .map_err(HubError::Load)?;
        let (snapshot, rows) = (loaded.0.clone(), loaded.1.clone());
        self.data = T::from_rows(rows);
        let mut topics = topics_for_rows(&self.data.rows(), &shape.tree)?;
        topics.push(match &self.spec.kind {
            Kind::Get(key) => Topic {
                table: meta.table,
                selector: Selector::Row(key.clone()),
            },
            Kind::All | Kind::One => Topic {
                table: meta.table,
                selector: Selector::All,
            },
        });
        self.sub.set_topics(topics);
        self.snapshot = snapshot;
        self.stats.loads += 1;
        Ok(())
    }
}

impl<T: LiveValue> Deref for Live<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T: LiveValue + std::fmt::Debug> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("data", &self.data)
            .field("snapshot", &self.snapshot)
            .field("stats", &self.stats)
            .finish()
    }
}

/// The query's rows and the snapshot they were read under, in one REPEATABLE READ
/// transaction.
async fn load_under_snapshot<S: Schema>(
    db: Db,
    spec: Arc<Spec>,
) -> Result<(Snapshot, Vec<S>), LoadError> {
    let table = S::meta().table.to_string();
    let database = |source| LoadError::Database {
        table: table.clone(),
        source,
    };
    let mut conn = db.pool().get().await.map_err(LoadError::Pool)?;
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(database)?;
    // why first: the snapshot of a REPEATABLE READ transaction is taken at its first
    // statement, so this is the snapshot the query below reads under.
    let text: String = tx
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await
        .map_err(database)?
        .get(0);
    let snapshot = Snapshot::parse(&text).map_err(|e| LoadError::Decode {
        table: table.clone(),
        cause: DecodeError::Malformed {
            message: e.to_string(),
        },
    })?;
    let mut q = query::<S>(&*tx).preload(&spec.preloads);
    for filter in &spec.filters {
        q = q.filter(filter.clone());
    }
    for (column, order) in &spec.order_by {
        q = match order {
            SortOrder::Asc => q.order_by(column.clone()),
            SortOrder::Desc => q.order_by_desc(column.clone()),
        };
    }
    let rows = match &spec.kind {
        Kind::All => q.all().await?,
        Kind::Get(key) => q.get(key.clone()).await?.into_iter().collect(),
        Kind::One => q.one().await?.into_iter().collect(),
    };
    tx.commit().await.map_err(database)?;
    Ok((snapshot, rows))
}
