//! One LISTEN connection whose decoded changes are broadcast to every baseline subscriber.

use std::sync::Arc;

use rowsync::testing::{decode, Decoded};
use rowsync::{CapturePlan, Change};
use tokio::sync::broadcast;

use super::listen::PlainListener;
use crate::BenchResult;

/// Every change, to every receiver.
pub struct Fanout {
    listener: PlainListener,
    tx: broadcast::Sender<Arc<Change>>,
}

impl Fanout {
    /// Listens on the triggers' channel and decodes with their capture plan; a receiver
    /// more than `capacity` changes behind is told it lagged.
    pub async fn start(plan: &CapturePlan, url: &str, capacity: usize) -> BenchResult<Fanout> {
        let (tx, _) = broadcast::channel(capacity.max(16));
        let sender = tx.clone();
        let plan = plan.clone();
        let mut seq = 0u64;
        let listener = PlainListener::start(url, super::CHANNEL, move |_, payload| {
            seq += 1;
            if let Ok(Decoded::Change(change)) = decode(payload.as_bytes(), &plan, seq) {
                // why ignore: no receiver means no baseline subscriber is running.
                let _ = sender.send(Arc::new(change));
            }
        })
        .await?;
        Ok(Fanout { listener, tx })
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    /// Stops listening.
    pub fn stop(self) {
        self.listener.stop();
    }
}
