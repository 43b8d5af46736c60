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
use crate::sync::{Changes, Held, Membership};

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
}

/// A query followed live: `hub.live::<Person>().filter(..).preload([..]).all().await`
/// gives a [`Live`] value. Its setters are those of every [`Query`].
pub type LiveQuery<S> = Query<'static, S, Follow>;

impl Hub {
    /// A live query: loaded and subscribed with no gap, then kept in sync by
    /// [`Live::next`].
    pub fn live<S: Schema>(&self) -> LiveQuery<S> {
        Query::with_mode(Follow { hub: self.clone() })
    }
}

impl<S: Schema> Query<'static, S, Follow> {
    /// Every matching row, kept in sync.
    pub async fn all(self) -> Result<Live<Vec<S>>, HubError> {
        self.start(None, false).await
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
        let hub = self.mode.hub;
        let mut sub = hub.subscribe_shape(meta, tree, membership, self.spec, single, Vec::new())?;
        let rows = sub.reload::<S>(&[]).await?;
        Ok(Live {
            data: T::from_rows(rows),
            sub,
        })
    }
}

/// Data loaded by a live query and kept in sync: it derefs to the data, and
/// [`next`](Live::next) applies each delivered change and says what changed at the top level.
/// Dropping it ends its subscription.
pub struct Live<T: LiveValue> {
    data: T,
    sub: Subscription,
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
            match self.sub.sync(&mut self.data, &message).await {
                Ok(changes) if changes.is_empty() => continue,
                // a change that could not be applied: its resync is next (the change is not
                // lost, the value is reloaded)
                Err(SyncError::Load(error)) if error.class() != ErrorClass::Fatal => continue,
                other => return Some(other),
            }
        }
    }

    /// Applies every message already delivered, without waiting for more; returns what
    /// changed at the top level, all together.
    pub async fn apply_pending(&mut self) -> Result<Changes, SyncError> {
        let mut all = Changes::default();
        while let Some(message) = self.sub.try_next() {
            let changes = self.sub.sync(&mut self.data, &message).await?;
            all.inserted.extend(changes.inserted);
            all.updated.extend(changes.updated);
            all.deleted.extend(changes.deleted);
            all.reloaded |= changes.reloaded;
        }
        Ok(all)
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
