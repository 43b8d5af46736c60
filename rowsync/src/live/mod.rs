//! Live queries: load and subscribe with no gap, and a [`Live<T>`] that keeps itself in sync.
//!
//! How the gap is closed: the subscription is made first (routing every change of the tables
//! the query reads into its queue); then the rows are loaded in one REPEATABLE READ
//! transaction whose snapshot (`pg_current_snapshot()`) is kept. A queued or later change is
//! applied only if its transaction is not visible in that snapshot, so every transaction
//! committed after the load is applied exactly once and none before it is applied again.
//! [`Subscription`] does all of that. Identical live queries share one value and one
//! subscription (`shared.rs`).

mod shared;
mod stream;

use std::ops::Deref;
use std::sync::Arc;

use shared::{Shared, Viewer};

use crate::error::{HubError, SyncError};
use crate::graph::PreloadTree;
use crate::hub::{Hub, Subscription, SyncStats};
use crate::load::{Query, Snapshot};
use crate::route::SubscriptionId;
use crate::schema::{Key, Schema};
use crate::sync::{Changes, Held, KeySet, Membership, SyncOptions};

pub use stream::LiveUpdate;

/// Data a live query can hold: a list, or at most one row.
pub trait LiveValue: Held<Self::Row> + Clone + Send + Sync + 'static {
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

/// The mode of a [`Query`] that a hub follows live: what [`Hub::live`] returns.
pub struct Follow {
    hub: Hub,
    options: SyncOptions,
}

/// A query followed live: `hub.live::<Person>().filter(..).preload([..]).all().await`
/// gives a [`Live`] value. Its setters are those of every [`Query`].
pub type LiveQuery<S> = Query<'static, S, Follow>;

impl Hub {
    /// A live query: loaded and subscribed with no gap, then kept in sync by
    /// [`Live::next`].
    pub fn live<S: Schema>(&self) -> LiveQuery<S> {
        Query::with_mode(Follow {
            hub: self.clone(),
            options: SyncOptions::new(),
        })
    }
}

impl<S: Schema> Query<'static, S, Follow> {
    /// Options the value is synced with, e.g. the shape rows get
    /// ([`SyncOptions::preload`]): they merge into the query's own preloads.
    pub fn sync_options(mut self, options: SyncOptions) -> Self {
        self.mode.options = options;
        self
    }

    /// Every matching row, kept in sync.
    pub async fn all(self) -> Result<Live<Vec<S>>, HubError> {
        self.follow(None, false).await
    }

    /// Every matching row and the subscription that keeps them in sync, loaded with the same
    /// no-gap rule as [`all`](Self::all), for a caller who drives the syncs by hand (with
    /// [`Subscription::sync`], or `sync_with` and its own options). Never shared.
    pub async fn subscribe(self) -> Result<(Vec<S>, Subscription), HubError> {
        let (rows, sub, _, _) = self.start::<Vec<S>>(None, false).await?;
        Ok((rows, sub))
    }

    /// The row with primary key `key` (or `None`), kept in sync: it appears if inserted later.
    pub async fn get(self, key: impl Into<Key>) -> Result<Live<Option<S>>, HubError> {
        self.follow(Some(key.into()), true).await
    }

    /// The only matching row (or `None`), kept in sync.
    pub async fn one(self) -> Result<Live<Option<S>>, HubError> {
        self.follow(None, true).await
    }

    /// A viewer of the value shared by identical live queries, started if there is none.
    async fn follow<T: LiveValue<Row = S>>(
        self,
        key: Option<Key>,
        single: bool,
    ) -> Result<Live<T>, HubError> {
        // why every part of the query: values share only when a fresh load of each would
        // give the same data, synced the same way; the access context by its full key, as
        // its Debug hides setting values (two tenants must never share a value)
        let shared_key = crate::hub::hash128(&format!(
            "{}|{:?}|{:?}|{:?}|{single}|{}",
            std::any::type_name::<T>(),
            key,
            self.spec,
            self.spec.access.as_ref().map(crate::load::Access::key),
            self.mode.options.key()
        ));
        let hub = self.mode.hub.clone();
        if let Some(mut viewer) = Shared::<T>::join(&hub, shared_key).await {
            // what is queued already is applied for all, so the new viewer starts as fresh
            // as the value can be without a sync point (an error: its resync is queued)
            let _ = viewer.apply_pending().await;
            return Ok(Live::new(viewer));
        }
        let (data, sub, options, hub) = self.start(key, single).await?;
        let viewer = Shared::start(&hub, shared_key, data, sub, options).await;
        Ok(Live::new(viewer))
    }

    async fn start<T: LiveValue<Row = S>>(
        mut self,
        key: Option<Key>,
        single: bool,
    ) -> Result<(T, Subscription, SyncOptions, Hub), HubError> {
        let meta = S::meta();
        let tree = PreloadTree::parse(meta, &self.spec.preloads)?;
        let membership = match key {
            // why by key when nothing else filters: a followed key is routed by that row's
            // topic alone, not by every change of the table
            Some(key) if self.spec.filters.is_empty() => {
                Membership::Keys(Arc::new(KeySet::One(key)))
            }
            key => {
                if let Some(key) = key {
                    self.spec
                        .filters
                        .push(crate::load::query::key_filter(meta, key)?);
                }
                Membership::Query {
                    filter: self.spec.filter().map(Arc::new),
                    order_by: Arc::from(self.spec.order(meta)?),
                }
            }
        };
        let Follow { hub, options } = self.mode;
        if let Some(access) = &self.spec.access {
            hub.check_access(access).await?;
        }
        let tree = options.grow(meta, &tree)?;
        let mut sub = hub.subscribe_shape(meta, tree, membership, self.spec, single, Vec::new())?;
        let rows = sub.reload::<S>(&[]).await?;
        Ok((T::from_rows(rows), sub, options, hub))
    }
}

/// Data loaded by a live query and kept in sync: it derefs to the data, and
/// [`next`](Live::next) applies each delivered change and says what changed at the top level.
///
/// Live values of the same query, shape and sync options on one hub share one value: one
/// subscription and one sync per change however many there are, each holding an `Arc`
/// snapshot of the data that is swapped per transaction. Each still sees every transaction,
/// whole and in order (one that falls more than 128 transactions behind the others jumps to
/// the latest value, told as a reload). A live value that joins one already running starts
/// from its current state, with what was queued for it applied; [`catch_up`](Live::catch_up)
/// for read-your-writes. Dropping the last of them ends the subscription.
pub struct Live<T: LiveValue> {
    /// `None` only while the [`Stream`](futures_util::Stream) impl applies a transaction
    /// with it: then it is in `flight`.
    viewer: Option<Viewer<T>>,
    /// A transaction the `Stream` impl is applying (live/stream.rs). Boxed: most live
    /// values are never streamed, and each of them would carry its room.
    flight: Option<Box<stream::Flight<T>>>,
}

impl<T: LiveValue> Live<T> {
    fn new(viewer: Viewer<T>) -> Live<T> {
        Live {
            viewer: Some(viewer),
            flight: None,
        }
    }

    /// Waits for the next transaction that changes the data, applies all of it, and returns
    /// what it changed at the top level (a resync reloads, and says so with `reloaded`).
    /// Between two calls the value always shows a state the database was in: a transaction
    /// is applied whole or not at all. `None` once the hub shut down.
    ///
    /// Not cancel-safe: a call dropped while it applies a change leaves the value to be
    /// reloaded (a resync follows). Drive it from one task rather than racing it in
    /// `select!`; the [`Stream`](futures_util::Stream) impl is the cancel-safe way.
    pub async fn next(&mut self) -> Option<Result<Changes, SyncError>> {
        if let Some(landed) = self.land().await {
            return landed;
        }
        self.viewer.as_mut()?.next().await
    }

    /// Applies every message already delivered, without waiting for more; returns what
    /// changed at the top level, all together.
    pub async fn apply_pending(&mut self) -> Result<Changes, SyncError> {
        let mut all = match self.land().await {
            Some(Some(landed)) => landed?,
            _ => Changes::default(),
        };
        if let Some(viewer) = self.viewer.as_mut() {
            all.merge(viewer.apply_pending().await?);
        }
        Ok(all)
    }

    /// Applies every transaction committed before the call (read-your-writes: a handler that
    /// wrote, then awaits this, renders its write). See [`Hub::sync_point`].
    pub async fn catch_up(&mut self) -> Result<Changes, SyncError> {
        let mut all = self.apply_pending().await?;
        if let Some(viewer) = &self.viewer {
            viewer
                .hub()
                .sync_point()
                .await
                .map_err(|e| SyncError::Wait(Box::new(e)))?;
        }
        all.merge(self.apply_pending().await?);
        Ok(all)
    }

    /// Applies transaction `xid` (and everything committed before it), once it has
    /// committed; at once for a transaction that touched nothing this value holds. See
    /// [`Hub::wait_for`] and [`current_xid`](crate::current_xid).
    pub async fn wait_for(&mut self, xid: u64) -> Result<Changes, SyncError> {
        let mut all = self.apply_pending().await?;
        if let Some(viewer) = &self.viewer {
            viewer
                .hub()
                .wait_for(xid)
                .await
                .map_err(|e| SyncError::Wait(Box::new(e)))?;
        }
        all.merge(self.apply_pending().await?);
        Ok(all)
    }

    /// The data. While the [`Stream`](futures_util::Stream) impl is applying a transaction
    /// (between a pending poll and its item), the state before that transaction.
    pub fn data(&self) -> &T {
        match (&self.viewer, &self.flight) {
            (Some(viewer), _) => &viewer.data,
            (None, Some(flight)) => &flight.data,
            // why unreachable: the viewer leaves only into a flight, and comes back with it
            (None, None) => unreachable!("a live value is always held or in flight"),
        }
    }

    /// The data as shared with identical live values: a snapshot that stays as it is.
    pub fn snapshot_arc(&self) -> Arc<T> {
        match (&self.viewer, &self.flight) {
            (Some(viewer), _) => viewer.data.clone(),
            (None, Some(flight)) => flight.data.clone(),
            (None, None) => unreachable!("a live value is always held or in flight"),
        }
    }

    /// The data, leaving the live query (its subscription ends with the last viewer; a
    /// transaction the stream was applying is dropped).
    pub fn into_inner(self) -> T {
        let data = self.snapshot_arc();
        drop(self);
        Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Counters of the subscription feeding this value, as of the version it shows.
    pub fn stats(&self) -> SyncStats {
        self.view().stats
    }

    /// The snapshot of the last load.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.view().snapshot.as_deref()
    }

    /// The id of the subscription feeding this value (shared by identical live values).
    pub fn subscription_id(&self) -> SubscriptionId {
        match (&self.viewer, &self.flight) {
            (Some(viewer), _) => viewer.subscription_id(),
            (None, Some(flight)) => flight.id,
            (None, None) => unreachable!("a live value is always held or in flight"),
        }
    }

    /// Whether the [`Stream`](futures_util::Stream) impl is applying a transaction now (a
    /// poll gave up halfway): [`data`](Self::data) shows the state before it until it lands.
    pub fn is_applying(&self) -> bool {
        self.flight.is_some()
    }

    fn view(&self) -> &shared::View {
        match (&self.viewer, &self.flight) {
            (Some(viewer), _) => &viewer.view,
            (None, Some(flight)) => &flight.view,
            (None, None) => unreachable!("a live value is always held or in flight"),
        }
    }
}

impl<T: LiveValue> Deref for Live<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data()
    }
}

impl<T: LiveValue + std::fmt::Debug> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("data", self.data())
            .field("snapshot", &self.snapshot())
            .field("stats", &self.stats())
            .finish()
    }
}
