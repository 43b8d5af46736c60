//! Baseline subscribers: each holds one person's posts with tags, receives every change
//! from the fan-out, and on a relevant one either reloads everything (naive) or fetches the
//! changed row and patches its list by hand (per-subscriber fetch).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use rowsync::{Assoc, Change, Db, Filter, Schema};
use tokio::sync::{broadcast, watch};

use super::Fanout;
use crate::fleet::{Fleet, Probe, Sample};
use crate::schema::{find_post, marker_of, post_id_of, Post, POST_SHAPE};

/// What a baseline subscriber does with a relevant change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Reload the whole list with its tags.
    Naive,
    /// Fetch the changed post alone and patch the list.
    Fetch,
}

impl Strategy {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Fetch => "per_subscriber_fetch",
        }
    }
}

/// Starts one subscriber per `(person, posts)` of `holdings`, reading through `db`.
pub fn spawn_all(
    fleet: &mut Fleet,
    fanout: &Fanout,
    db: &Db,
    strategy: Strategy,
    holdings: Vec<(i64, Vec<Post>)>,
) {
    for (person, posts) in holdings {
        let held = Held {
            person,
            posts,
            db: db.clone(),
        };
        let rx = fanout.subscribe();
        fleet.spawn(move |probe, stop| run(strategy, held, rx, probe, stop));
    }
}

/// One subscriber's data: `person`'s posts with tags.
struct Held {
    person: i64,
    posts: Vec<Post>,
    db: Db,
}

impl Held {
    fn ids(&self) -> HashSet<i64> {
        self.posts.iter().map(|p| p.id).collect()
    }

    async fn reload(&mut self) -> Result<(), rowsync::LoadError> {
        self.posts = self
            .db
            .query::<Post>()
            .filter(Filter::eq("person_id", self.person))
            .preload(POST_SHAPE)
            .all()
            .await?;
        Ok(())
    }

    /// Fetches post `id` and puts it in place of the held one, keeping its tags.
    async fn fetch(&mut self, id: i64) -> Result<(), rowsync::LoadError> {
        let fresh = self.db.query::<Post>().get(id).await?;
        let Some(at) = self.posts.iter().position(|p| p.id == id) else {
            return Ok(());
        };
        match fresh {
            Some(mut post) if post.person_id == self.person => {
                post.tags = std::mem::replace(&mut self.posts[at].tags, Assoc::NotLoaded);
                self.posts[at] = post;
            }
            _ => {
                self.posts.remove(at);
            }
        }
        Ok(())
    }
}

async fn run(
    strategy: Strategy,
    mut held: Held,
    mut rx: broadcast::Receiver<Arc<Change>>,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut ids = held.ids();
    loop {
        let received = tokio::select! {
            r = rx.recv() => r,
            _ = stop.changed() => break,
        };
        let id = match received {
            Ok(change) => {
                // relevance: a change of a post this subscriber holds
                let id = (change.table == Post::meta().table)
                    .then(|| post_id_of(&change.key))
                    .flatten();
                match id {
                    Some(id) if ids.contains(&id) => id,
                    _ => continue,
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                probe.resynced();
                if let Err(e) = held.reload().await {
                    probe.error(e);
                }
                ids = held.ids();
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let result = match strategy {
            Strategy::Naive => held.reload().await,
            Strategy::Fetch => held.fetch(id).await,
        };
        if let Err(e) = result {
            probe.error(e);
        }
        if let Some(marker) = find_post(&held.posts, id).and_then(|p| marker_of(&p.name)) {
            samples.push((marker, Instant::now()));
        }
        ids = held.ids();
        probe.applied();
    }
    samples
}
