//! A fleet of subscriber tasks measured together: shared progress counters, waiting for a
//! count with a deadline, and stopping them to collect when each saw which change applied.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::writer::Writer;

/// When a subscriber first held the data of change `marker`.
pub type Sample = (u32, Instant);

/// Counters every subscriber of a fleet adds to.
#[derive(Default)]
pub struct Probe {
    applied: AtomicU64,
    resyncs: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Probe {
    /// Counts one message handled.
    pub fn applied(&self) {
        self.applied.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a resync (a reload because messages were lost).
    pub fn resynced(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error, keeping the first one's text.
    pub fn error(&self, error: impl std::fmt::Display) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            *self.first_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
        }
    }

    /// Messages handled so far.
    pub fn applied_count(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Resyncs so far.
    pub fn resync_count(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Errors so far, with the first one's text.
    pub fn errors(&self) -> (u64, Option<String>) {
        (
            self.errors.load(Ordering::Relaxed),
            self.first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Subscriber tasks started together and stopped together.
pub struct Fleet {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Vec<Sample>>>,
    probe: Arc<Probe>,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
            probe: Arc::default(),
        }
    }
}

impl Fleet {
    /// Starts one subscriber: `task` gets the shared probe and the stop signal, and returns
    /// its samples when stopped.
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(Arc<Probe>, watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = Vec<Sample>> + Send + 'static,
    {
        let future = task(self.probe.clone(), self.stop.subscribe());
        self.tasks.push(tokio::spawn(future));
    }

    /// The shared counters.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// Waits until `target` messages were handled in all, or `deadline` passed; returns
    /// whether the target was reached.
    pub async fn wait_applied(&self, target: u64, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        // why poll: a 5 ms tick costs nothing measurable and keeps subscribers free of any
        // signalling of ours on their hot path.
        while self.probe.applied_count() < target {
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops every subscriber and returns each one's samples.
    pub async fn stop(self) -> Vec<Vec<Sample>> {
        let _ = self.stop.send(true);
        let mut out = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            out.push(task.await.unwrap_or_default());
        }
        out
    }
}

/// Latencies from each change's COMMIT (as the writer saw it return) to the first moment
/// each subscriber held it, for the changes in `markers`.
///
/// A subscriber holds change `n` of post `p` from the first moment its copy of `p` shows
/// change `n` or a later one: a change overtaken by a later change of the same post before
/// the read is still applied then (the held row is newer), it just never shows its own
/// marker. A subscriber applying before the writer's COMMIT call returned counts as zero.
pub fn latencies(
    samples: &[Vec<Sample>],
    writer: &Writer,
    markers: std::ops::Range<u32>,
) -> Vec<Duration> {
    // the changes of each post, in order
    let mut by_post: HashMap<i64, Vec<u32>> = HashMap::new();
    for n in markers.clone() {
        if let Some(post) = writer.post_of(n) {
            by_post.entry(post).or_default().push(n);
        }
    }
    let mut out = Vec::new();
    for per_subscriber in samples {
        let mut seen: Vec<&Sample> = per_subscriber.iter().collect();
        seen.sort_by_key(|(_, at)| *at);
        // per post: how many of its changes this subscriber already holds
        let mut credited: HashMap<i64, usize> = HashMap::new();
        for &&(marker, at) in &seen {
            let Some(post) = writer.post_of(marker) else {
                continue;
            };
            let Some(changes) = by_post.get(&post) else {
                continue;
            };
            let done = credited.entry(post).or_insert(0);
            let upto = changes.partition_point(|&n| n <= marker);
            for &n in changes.get(*done..upto).unwrap_or(&[]) {
                if let Some(commit) = writer.commit_of(n) {
                    out.push(at.saturating_duration_since(commit));
                }
            }
            *done = (*done).max(upto);
        }
    }
    out
}

/// The last moment any subscriber applied a change of `markers`.
pub fn last_applied(samples: &[Vec<Sample>], markers: &std::ops::Range<u32>) -> Option<Instant> {
    samples
        .iter()
        .flatten()
        .filter(|(m, _)| markers.contains(m))
        .map(|(_, at)| *at)
        .max()
}
