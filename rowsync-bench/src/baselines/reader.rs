//! Capture + one shared read per change: the bare listener reading the changed posts, and
//! nothing else. The limit of "capture + one read" for a design that batches its reads as
//! rowsync does: the changes that arrived while a read was running are read together, with
//! one `WHERE id = ANY($1)` query, a few such reads overlapping on the pool.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rowsync::testing::{decode, Decoded};
use rowsync::{CapturePlan, Schema};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::listen::PlainListener;
use crate::fleet::Sample;
use crate::schema::{marker_of, post_id_of, Post};
use crate::BenchResult;

/// Reads overlapping at most, each on a connection of its own.
const READS_IN_FLIGHT: usize = 4;

/// The read: the columns rowsync reads for a post, for many posts at once.
const READ: &str = "SELECT id, name, person_id FROM posts WHERE id = ANY($1)";

/// Reads every changed post once (a post changed again before its read is read once for
/// both changes, as rowsync's batched reads do).
pub struct SharedReader {
    listener: PlainListener,
    reader: JoinHandle<()>,
    samples: Arc<Mutex<Vec<Sample>>>,
    changes: Arc<Mutex<usize>>,
}

impl SharedReader {
    /// Listens on the triggers' channel and reads on connections of its own.
    pub async fn start(plan: &CapturePlan, url: &str) -> BenchResult<SharedReader> {
        let (pool_tx, pool_rx) = mpsc::unbounded_channel();
        for _ in 0..READS_IN_FLIGHT {
            let (client, _connection) = crate::db::open(url).await?;
            let _ = pool_tx.send(client);
        }
        let samples = Arc::new(Mutex::new(Vec::new()));
        let changes = Arc::new(Mutex::new(0));
        let plan = plan.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut seq = 0u64;
        let listener = PlainListener::start(url, super::CHANNEL, move |_, payload| {
            seq += 1;
            let Ok(Decoded::Change(change)) = decode(payload.as_bytes(), &plan, seq) else {
                return;
            };
            if let Some(id) = (change.table == Post::meta().table)
                .then(|| post_id_of(&change.key))
                .flatten()
            {
                // why ignore: the reader stops only after the listener
                let _ = tx.send(id);
            }
        })
        .await?;
        let reader = tokio::spawn(read_batches(
            rx,
            (pool_tx, pool_rx),
            samples.clone(),
            changes.clone(),
        ));
        Ok(SharedReader {
            listener,
            reader,
            samples,
            changes,
        })
    }

    /// Changes whose post was read so far.
    pub fn read(&self) -> usize {
        *self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `count` changes were read or `deadline` passed.
    pub async fn wait_for(&self, count: usize, deadline: std::time::Duration) -> bool {
        let end = Instant::now() + deadline;
        while self.read() < count {
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops; returns what each read saw and when.
    pub fn stop(self) -> Vec<Sample> {
        self.listener.stop();
        self.reader.abort();
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Connections free to read on: taken from the receiver, given back through the sender.
type Pool = (
    mpsc::UnboundedSender<Client>,
    mpsc::UnboundedReceiver<Client>,
);

/// Takes every change queued so far, reads their posts with one query on a free
/// connection, repeats.
async fn read_batches(
    mut rx: mpsc::UnboundedReceiver<i64>,
    (give_back, mut free): Pool,
    samples: Arc<Mutex<Vec<Sample>>>,
    changes: Arc<Mutex<usize>>,
) {
    let mut ids = Vec::new();
    while rx.recv_many(&mut ids, usize::MAX).await > 0 {
        let Some(client) = free.recv().await else {
            return;
        };
        // what queued while waiting for a connection joins this read
        while let Ok(id) = rx.try_recv() {
            ids.push(id);
        }
        let batch = std::mem::take(&mut ids);
        let (give_back, samples, changes) = (give_back.clone(), samples.clone(), changes.clone());
        tokio::spawn(async move {
            let count = batch.len();
            let mut unique = batch;
            unique.sort_unstable();
            unique.dedup();
            let read = client.query(READ, &[&unique]).await;
            let now = Instant::now();
            if let Ok(rows) = read {
                let mut sink = samples.lock().unwrap_or_else(|e| e.into_inner());
                sink.extend(rows.iter().filter_map(|row| {
                    let name: &str = row.get(1);
                    Some((marker_of(name)?, now))
                }));
            }
            *changes.lock().unwrap_or_else(|e| e.into_inner()) += count;
            let _ = give_back.send(client);
        });
    }
}
