//! rowsync's subscribers: each holds a list of posts with their tags, subscribed through the
//! hub, and applies every message with `Subscription::sync`.

use std::sync::Arc;
use std::time::Instant;

use rowsync::{Hub, Message, Schema, Subscription};
use tokio::sync::watch;

use crate::fleet::{Fleet, Probe, Sample};
use crate::schema::{find_post, marker_of, post_id_of, Post, POST_SHAPE};
use crate::BenchResult;

/// Subscribes one subscriber per list in `holdings` and starts its task in `fleet`.
pub fn spawn_all(fleet: &mut Fleet, hub: &Hub, holdings: Vec<Vec<Post>>) -> BenchResult<()> {
    spawn(fleet, hub, holdings, true)
}

/// As [`spawn_all`], but the subscribers keep no samples: their memory stays what
/// rowsync's is (the `memory` scenario).
pub fn spawn_unsampled(fleet: &mut Fleet, hub: &Hub, holdings: Vec<Vec<Post>>) -> BenchResult<()> {
    spawn(fleet, hub, holdings, false)
}

fn spawn(fleet: &mut Fleet, hub: &Hub, holdings: Vec<Vec<Post>>, keep: bool) -> BenchResult<()> {
    for posts in holdings {
        let sub = hub.subscribe(&posts, POST_SHAPE)?;
        fleet.spawn(move |probe, stop| run(sub, posts, probe, stop, keep));
    }
    Ok(())
}

async fn run(
    mut sub: Subscription,
    mut posts: Vec<Post>,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
    keep: bool,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    loop {
        let message = tokio::select! {
            m = sub.next() => m,
            _ = stop.changed() => None,
        };
        let Some(message) = message else { break };
        if let Err(e) = sub.sync(&mut posts, &message).await {
            probe.error(e);
        }
        match &message {
            Message::Change(change) => {
                let post = (change.table == Post::meta().table)
                    .then(|| post_id_of(&change.key))
                    .flatten()
                    .and_then(|id| find_post(&posts, id));
                if let Some(marker) = post.and_then(|p| marker_of(&p.name)).filter(|_| keep) {
                    samples.push((marker, Instant::now()));
                }
            }
            Message::Resync(_) => probe.resynced(),
        }
        probe.applied();
    }
    samples
}
