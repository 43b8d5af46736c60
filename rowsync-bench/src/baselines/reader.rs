//! Capture + one shared read per change: the bare listener reading each changed post once,
//! concurrently on a pool, and nothing else. The limit of "capture + one read".

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rowsync::testing::{decode, Decoded};
use rowsync::{Db, Hub, Schema};

use super::listen::PlainListener;
use crate::fleet::Sample;
use crate::schema::{marker_of, post_id_of, Post};
use crate::BenchResult;

/// Reads every changed post once.
pub struct SharedReader {
    listener: PlainListener,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl SharedReader {
    /// Listens on the hub's channel and reads through `db`.
    pub async fn start(hub: &Hub, url: &str, db: &Db) -> BenchResult<SharedReader> {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let plan = hub.plan().clone();
        let db = db.clone();
        let mut seq = 0u64;
        let listener = PlainListener::start(url, super::CHANNEL, move |_, payload| {
            seq += 1;
            let Ok(Decoded::Change(change)) = decode(payload.as_bytes(), &plan, seq) else {
                return;
            };
            let Some(id) = (change.table == Post::meta().table)
                .then(|| post_id_of(&change.key))
                .flatten()
            else {
                return;
            };
            let (db, sink) = (db.clone(), sink.clone());
            // why a task per change: reads overlap on the pool, as rowsync's subscribers' do.
            tokio::spawn(async move {
                if let Ok(Some(post)) = db.query::<Post>().get(id).await {
                    if let Some(marker) = marker_of(&post.name) {
                        let sample = (marker, Instant::now());
                        sink.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
                    }
                }
            });
        })
        .await?;
        Ok(SharedReader { listener, samples })
    }

    /// Posts read so far.
    pub fn read(&self) -> usize {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits until `count` posts were read or `deadline` passed.
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
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
