//! Reloading what a subscription holds: the rows its shape selects, read under one
//! snapshot, shared by identical reloads that start together.
//!
//! why a join window: a caller may only share a load whose snapshot is taken after that
//! caller subscribed, or changes committed in between would be missed. So a load stays open
//! to joiners for a short window before its transaction starts, and leaves the map when it
//! starts; callers arriving later start a new load (1,000 `live()` calls at once → 1 query).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::Hub;
use crate::cache::Flight;
use crate::error::LoadError;
use crate::load::Snapshot;

/// A shared reload's result, typed by the caller.
pub(crate) type Entry = Arc<dyn Any + Send + Sync>;

/// A load waits this long after the last caller joined before its snapshot is taken...
const JOIN_WINDOW: Duration = Duration::from_millis(2);
/// ...but no longer than this in all, so a steady stream of callers still gets loads.
const MAX_WAIT: Duration = Duration::from_millis(50);

impl Hub {
    /// Runs `load` once for every caller with the same `key` that arrives before the load's
    /// window closes; the others share its result. The load runs in its own task, so a
    /// caller that gives up does not cancel it for the rest.
    pub(crate) async fn shared_reload<T: Any + Send + Sync>(
        &self,
        key: String,
        load: BoxFuture<'static, Result<(Snapshot, T), LoadError>>,
    ) -> Result<Arc<(Snapshot, T)>, Arc<LoadError>> {
        let reloads = &self.inner.reloads;
        let mut opened = None;
        let (flight, started) = reloads.join_or_start(
            key.clone(),
            || {
                let (open, window) = oneshot::channel::<()>();
                opened = Some(open);
                async move {
                    // the window closed (or its keeper is gone): take the snapshot now
                    let _ = window.await;
                    load.await.map(|v| Arc::new(v) as Entry)
                }
            },
            |_| {},
        );
        if let (true, Some(open)) = (started, opened) {
            let hub = self.clone();
            let flight = flight.clone();
            tokio::spawn(async move { hub.keep_window(key, flight, open).await });
        }
        let entry = flight.await?;
        entry.downcast::<(Snapshot, T)>().map_err(|_| {
            Arc::new(LoadError::Schema(crate::error::SchemaError::Invalid(vec![
                "a shared reload of an unexpected type".to_owned(),
            ])))
        })
    }

    /// Keeps a load open to joiners while they keep coming, then starts it and drives it to
    /// the end whoever still waits.
    async fn keep_window(&self, key: String, flight: Flight<Entry>, open: oneshot::Sender<()>) {
        let started = tokio::time::Instant::now();
        let mut seen = flight.strong_count();
        loop {
            tokio::time::sleep(JOIN_WINDOW).await;
            let now = flight.strong_count();
            if now == seen || started.elapsed() >= MAX_WAIT {
                break;
            }
            seen = now;
        }
        self.inner.reloads.close(&key, &flight);
        let _ = open.send(());
        let _ = flight.await;
    }
}
