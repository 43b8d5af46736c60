//! Live queries: load and subscribe with no gap, and a [`Live<T>`] that keeps itself in sync.
//!
//! How the gap is closed: the subscription is made first (routing every change of the tables
//! the query reads into its queue); then the rows are loaded in one REPEATABLE READ
//! transaction whose snapshot (`pg_current_snapshot()`) is kept. A queued or later change is
//! applied only if its transaction is not visible in that snapshot, so every transaction
//! committed after the load is applied exactly once and none before it is applied again.
//! [`Subscription`] does all of that; a live value is its data and its subscription.

use std::ops::Deref;
use std::sync::Arc;

use crate::error::{ErrorClass, HubError, SyncError};
use crate::graph::PreloadTree;
use crate::hub::{Hub, Subscription, SyncStats};
use crate::load::{Query, Snapshot};
use crate::schema::{Key, Schema};
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
        self.start(None, false).await
    }

    /// Every matching row and the subscription that keeps them in sync, loaded with the same
    /// no-gap rule as [`all`](Self::all), for a caller who drives the syncs by hand (with
    /// [`Subscription::sync`], or `sync_with` and its own options).
    pub async fn subscribe(self) -> Result<(Vec<S>, Subscription), HubError> {
        let live: Live<Vec<S>> = self.start(None, false).await?;
        Ok((live.data, live.sub))
    }

    /// The row with primary key `key` (or `None`), kept in sync: it appears if inserted later.
    pub async fn get(self, key: impl Into<Key>) -> Result<Live<Option<S>>, HubError> {
        self.start(Some(key.into()), true).await
    }

    /// The only matching row (or `None`), kept in sync.
    pub async fn one(self) -> Result<Live<Option<S>>, HubError> {
        self.start(None, true).await
    }

    async fn start<T: LiveValue<Row = S>>(
        mut self,
        key: Option<Key>,
        single: bool,
    ) -> Result<Live<T>, HubError> {
        let meta = S::meta();
        let tree = PreloadTree::parse(meta, &self.spec.preloads)?;
        let membership = match key {
            // why by key when nothing else filters: a followed key is routed by that row's
            // topic alone, not by every change of the table
            Some(key) if self.spec.filters.is_empty() => {
                Membership::Keys(Arc::new([key].into_iter().collect()))
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
        Ok(Live {
            data: T::from_rows(rows),
            sub,
            options,
        })
    }
}

/// Data loaded by a live query and kept in sync: it derefs to the data, and
/// [`next`](Live::next) applies each delivered change and says what changed at the top level.
/// Dropping it ends its subscription.
pub struct Live<T: LiveValue> {
    data: T,
    sub: Subscription,
    options: SyncOptions,
}

impl<T: LiveValue> Live<T> {
    /// Waits for the next transaction that changes the data, applies all of it, and returns
    /// what it changed at the top level (a resync reloads, and says so with `reloaded`).
    /// Between two calls the value always shows a state the database was in: a transaction
    /// is applied whole or not at all. `None` once the hub shut down.
    ///
    /// Not cancel-safe: a call dropped while it applies a change loses that change (the
    /// next resync repairs it). Drive it from one task rather than racing it in `select!`.
    pub async fn next(&mut self) -> Option<Result<Changes, SyncError>> {
        loop {
            let batch = self.sub.next_batch().await?;
            let mut all = Changes::default();
            let mut failed = None;
            for message in &batch {
                let options = self.options.clone();
                match self.sub.sync_with(&mut self.data, message, options).await {
                    Ok(changes) => all.merge(changes),
                    // a change that could not be applied: its resync comes next (the change
                    // is not lost, the value is reloaded)
                    Err(SyncError::Load(error)) if error.class() != ErrorClass::Fatal => {}
                    Err(error) => failed = Some(error),
                }
            }
            match failed {
                Some(error) => return Some(Err(error)),
                None if all.is_empty() => continue,
                None => return Some(Ok(all)),
            }
        }
    }

    /// Applies every message already delivered, without waiting for more; returns what
    /// changed at the top level, all together.
    pub async fn apply_pending(&mut self) -> Result<Changes, SyncError> {
        let mut all = Changes::default();
        while let Some(message) = self.sub.try_next() {
            let options = self.options.clone();
            all.merge(
                self.sub
                    .sync_with(&mut self.data, &message, options)
                    .await?,
            );
        }
        Ok(all)
    }

    /// Applies every transaction committed before the call (read-your-writes: a handler that
    /// wrote, then awaits this, renders its write). See [`Hub::sync_point`].
    pub async fn catch_up(&mut self) -> Result<Changes, SyncError> {
        self.sub
            .hub()
            .sync_point()
            .await
            .map_err(|e| SyncError::Wait(Box::new(e)))?;
        self.apply_pending().await
    }

    /// Applies transaction `xid` (and everything committed before it), once it has
    /// committed; at once for a transaction that touched nothing this value holds. See
    /// [`Hub::wait_for`] and [`current_xid`](crate::current_xid).
    pub async fn wait_for(&mut self, xid: u64) -> Result<Changes, SyncError> {
        self.sub
            .hub()
            .wait_for(xid)
            .await
            .map_err(|e| SyncError::Wait(Box::new(e)))?;
        self.apply_pending().await
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
    pub fn stats(&self) -> SyncStats {
        self.sub.stats()
    }

    /// The snapshot of the last load.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.sub.snapshot()
    }

    /// The subscription feeding this value.
    pub fn subscription(&self) -> &Subscription {
        &self.sub
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
            .field("snapshot", &self.sub.snapshot())
            .field("stats", &self.sub.stats())
            .finish()
    }
}
