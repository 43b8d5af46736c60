//! Single-flight for live loads: concurrent `live()` calls of one query share one load.
//!
//! why a join window instead of moka's `get_with`: a caller may only share a load whose
//! snapshot is taken after that caller subscribed, or changes committed in between would be
//! missed. So a load stays open to joiners for a short window before its transaction starts,
//! and leaves the map when it starts; callers arriving later start a new load.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::{LoadError, SchemaError};

type Shared = Arc<dyn Any + Send + Sync>;
type Outcome = Option<Result<Shared, Arc<LoadError>>>;
type Open = Arc<Mutex<HashMap<String, Flight>>>;

struct Flight {
    id: u64,
    rx: watch::Receiver<Outcome>,
    joined: Arc<AtomicU64>,
}

/// A load waits this long after the last caller joined before its snapshot is taken...
pub(crate) const JOIN_WINDOW: Duration = Duration::from_millis(2);
/// ...but no longer than this in all, so a steady stream of callers still gets loads.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(50);

#[derive(Default)]
pub(crate) struct Flights {
    open: Open,
    loads: AtomicU64,
}

fn internal(message: &str) -> Arc<LoadError> {
    Arc::new(LoadError::Schema(SchemaError::Invalid(vec![
        message.to_owned()
    ])))
}

impl Flights {
    /// Runs `load` once for every caller with the same `key` that arrives before the load's
    /// window closes; the others share its result. The load runs in its own task, so a
    /// caller that gives up does not cancel it for the rest.
    pub async fn run<T, F>(&self, key: String, load: F) -> Result<Arc<T>, Arc<LoadError>>
    where
        T: Any + Send + Sync,
        F: Future<Output = Result<T, LoadError>> + Send + 'static,
    {
        let mut rx = {
            let mut open = self.open.lock();
            match open.get(&key) {
                Some(flight) => {
                    flight.joined.fetch_add(1, Ordering::Relaxed);
                    flight.rx.clone()
                }
                None => {
                    let id = self.loads.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = watch::channel(None);
                    let joined = Arc::new(AtomicU64::new(0));
                    open.insert(
                        key.clone(),
                        Flight {
                            id,
                            rx: rx.clone(),
                            joined: joined.clone(),
                        },
                    );
                    let open = self.open.clone();
                    tokio::spawn(async move {
                        let started = tokio::time::Instant::now();
                        let mut seen = 0;
                        loop {
                            tokio::time::sleep(JOIN_WINDOW).await;
                            let now = joined.load(Ordering::Relaxed);
                            if now == seen || started.elapsed() >= MAX_WAIT {
                                break;
                            }
                            seen = now;
                        }
                        {
                            let mut open = open.lock();
                            if open.get(&key).is_some_and(|f| f.id == id) {
                                open.remove(&key);
                            }
                        }
                        let outcome = load.await.map(|v| Arc::new(v) as Shared).map_err(Arc::new);
                        let _ = tx.send(Some(outcome));
                    });
                    rx
                }
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| internal("a shared live load ended without a result"))?
            .clone();
        match outcome {
            Some(Ok(shared)) => shared
                .downcast::<T>()
                .map_err(|_| internal("a shared live load of an unexpected type")),
            Some(Err(e)) => Err(e),
            None => Err(internal("a shared live load reported no result")),
        }
    }

    /// Loads started so far.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}
