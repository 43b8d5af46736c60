//! The subscription users hold: a stream of messages, and `sync` to apply them to data.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::Stream;

use super::Hub;
use crate::change::Change;
use crate::error::SyncError;
use crate::graph::PreloadTree;
use crate::graph::ShapePaths;
use crate::route::{topics_for_rows, Inbox, Message, SubscriptionId, Topic};
use crate::schema::{Filter, Key, Schema, SchemaMeta};
use crate::sync::{apply, Changes, Held, Membership, SyncCtx, SyncOptions};

/// The data shape a subscription was made for, with its paths to every watched table.
pub(crate) struct Shape {
    pub root: &'static SchemaMeta,
    pub tree: PreloadTree,
    pub paths: Arc<ShapePaths>,
    /// Which root rows belong to the held data.
    pub membership: Membership,
}

impl Shape {
    pub fn new(
        hub: &Hub,
        root: &'static SchemaMeta,
        tree: PreloadTree,
        membership: Membership,
    ) -> Result<Shape, crate::error::SchemaError> {
        let paths = hub.graph().shape(root, &tree)?;
        Ok(Shape {
            root,
            tree,
            paths,
            membership,
        })
    }
}

/// A stream of [`Message`]s about the data a subscriber holds, and the means to apply them:
///
/// ```no_run
/// # use rowsync::{Assoc, Hub, Schema};
/// # #[derive(Schema, Clone, Debug, PartialEq)]
/// # #[rowsync(table = "people")]
/// # struct Person { id: i64, #[rowsync(has_many(Post))] posts: Assoc<Vec<Post>> }
/// # #[derive(Schema, Clone, Debug, PartialEq)]
/// # #[rowsync(table = "posts")]
/// # struct Post { id: i64, person_id: i64 }
/// # async fn run(hub: Hub) -> Result<(), Box<dyn std::error::Error>> {
/// let mut people = hub.query::<Person>().preload(["posts"]).all().await?;
/// let mut sub = hub.subscribe(&people, ["posts"])?;
/// while let Some(msg) = sub.next().await {
///     let changes = sub.sync(&mut people, &msg).await?;
///     // re-render the rows in `changes`
/// }
/// # Ok(())
/// # }
/// ```
///
/// Changes arrive in commit order, each at most once. The subscription follows the data:
/// rows that sync inserts are subscribed, rows it removes are unsubscribed. On
/// [`Message::Resync`], `sync` reloads the data (same shape) and re-derives the topics.
///
/// Gap rule for this manual path: subscribe right after loading, and expect that a change
/// committed between the two is only seen by the next resync; `Hub::live` (to come) closes
/// that gap by construction.
pub struct Subscription {
    inbox: Inbox,
    hub: Hub,
    shape: Option<Arc<Shape>>,
    /// Changes with `seq` up to this are already reflected in the data (set by reloads).
    synced_through: u64,
}

impl Subscription {
    pub(crate) fn new(inbox: Inbox, hub: Hub, shape: Option<Shape>) -> Subscription {
        Subscription {
            inbox,
            hub,
            shape: shape.map(Arc::new),
            synced_through: 0,
        }
    }

    pub(crate) fn shape(&self) -> Option<Arc<Shape>> {
        self.shape.clone()
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    pub(crate) fn set_topics(&self, topics: Vec<Topic>) {
        self.inbox.set_topics(topics);
    }

    /// This subscription's id within its hub.
    pub fn id(&self) -> SubscriptionId {
        self.inbox.id()
    }

    /// The next message; `None` once the hub has shut down.
    pub async fn next(&mut self) -> Option<Message> {
        self.inbox.next().await
    }

    /// The next message if one is queued now, without waiting (`None`: nothing queued).
    pub fn try_next(&mut self) -> Option<Message> {
        self.inbox.try_next()
    }

    /// The next message and every change of the same transaction already queued after it.
    pub async fn next_batch(&mut self) -> Option<Vec<Message>> {
        self.inbox.next_batch().await
    }

    /// The topics this subscription is routed by now.
    pub fn topics(&self) -> Vec<Topic> {
        self.inbox.topics()
    }

    /// Adds topics by hand.
    pub fn add_topics(&self, topics: impl IntoIterator<Item = Topic>) {
        self.inbox.add_topics(topics)
    }

    /// Messages queued for this subscriber so far.
    pub fn delivered(&self) -> u64 {
        self.inbox.delivered()
    }

    /// Messages dropped for this subscriber because its queue was full (each followed by a
    /// resync).
    pub fn dropped(&self) -> u64 {
        self.inbox.dropped()
    }

    /// Applies `message` to `data` (EctoSync's `sync/2`): the result equals what a fresh load
    /// with the same preloads would give. Returns what changed at the top level.
    pub async fn sync<S: Schema, H: Held<S>>(
        &mut self,
        data: &mut H,
        message: &Message,
    ) -> Result<Changes, SyncError> {
        self.sync_with(data, message, SyncOptions::new()).await
    }

    /// [`sync`](Self::sync) with options, e.g. the shape of rows it inserts.
    pub async fn sync_with<S: Schema, H: Held<S>>(
        &mut self,
        data: &mut H,
        message: &Message,
        options: SyncOptions,
    ) -> Result<Changes, SyncError> {
        let shape = self.shape.clone().ok_or(SyncError::NoShape)?;
        if !std::ptr::eq(shape.root, S::meta()) {
            return Err(SyncError::WrongSchema {
                expected: shape.root.name,
                found: S::meta().name,
            });
        }
        match message {
            Message::Change(change) => {
                if change.seq <= self.synced_through {
                    return Ok(Changes::default());
                }
                let paths = shape.paths.to(&change.table);
                let mut ctx = SyncCtx::new(change.clone(), self.hub.inner.loader.clone(), options);
                ctx.membership = shape.membership.clone();
                let changes = apply(&ctx, data, &shape.tree, paths).await?;
                let delta = ctx.take_delta();
                if !delta.added.is_empty() {
                    self.inbox.add_topics(delta.added);
                }
                if !delta.removed.is_empty() {
                    self.inbox.remove_topics(&delta.removed);
                }
                Ok(changes)
            }
            Message::Resync(_) => self.reload(data, &shape).await,
        }
    }

    async fn reload<S: Schema, H: Held<S>>(
        &mut self,
        data: &mut H,
        shape: &Shape,
    ) -> Result<Changes, SyncError> {
        // why read the position first: every change received so far committed before the
        // reload's snapshot, so it is in the reloaded data and must not be applied again.
        let watermark = self.hub.current_seq();
        let paths = shape.tree.paths();
        let fresh = match &shape.membership {
            Membership::Keys(keys) => {
                let keys = held_order(&data.rows(), keys.iter().cloned().collect());
                reload_rows(&self.hub, keys, &paths).await
            }
            Membership::Query { filter, .. } => {
                let mut query = self.hub.query::<S>().preload(&paths);
                if let Some(filter) = filter {
                    query = query.filter(Filter::clone(filter));
                }
                query.all().await
            }
            Membership::Any => {
                let keys = data.rows().iter().map(|r| r.primary_key()).collect();
                reload_rows(&self.hub, keys, &paths).await
            }
        }
        .map_err(|e| SyncError::Load(Arc::new(e)))?;
        data.replace_all(fresh);
        if let Membership::Keys(keys) = &shape.membership {
            let mut topics = topics_for_rows(&data.rows(), &shape.tree)?;
            topics.extend(keys.iter().map(|k| Topic {
                table: shape.root.table,
                selector: crate::route::Selector::Row(k.clone()),
            }));
            self.inbox.set_topics(topics);
        }
        self.synced_through = watermark;
        Ok(Changes {
            reloaded: true,
            ..Changes::default()
        })
    }
}

/// The followed keys, those held first in the order held, then the others.
fn held_order<S: Schema>(held: &[&S], followed: Vec<Key>) -> Vec<Key> {
    let mut keys: Vec<Key> = held.iter().map(|r| r.primary_key()).collect();
    let mut rest: Vec<Key> = followed.into_iter().filter(|k| !keys.contains(k)).collect();
    rest.sort_by(crate::sync::order::compare_keys);
    keys.extend(rest);
    keys
}

/// The rows with these keys, in the order given, with `paths` preloaded.
async fn reload_rows<S: Schema>(
    hub: &Hub,
    keys: Vec<Key>,
    paths: &[String],
) -> Result<Vec<S>, crate::error::LoadError> {
    let meta = S::meta();
    let mut rows = match meta.single_key_column() {
        Some(column) => {
            let values: Vec<_> = keys.iter().map(|k| k.0[0].clone()).collect();
            hub.query::<S>()
                .filter(Filter::in_list(column, values))
                .preload(paths)
                .all()
                .await?
        }
        None => {
            let mut rows = Vec::new();
            for key in &keys {
                rows.extend(hub.query::<S>().preload(paths).get(key.clone()).await?);
            }
            rows
        }
    };
    let position: HashMap<Key, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), i))
        .collect();
    rows.sort_by_key(|r| {
        position
            .get(&r.primary_key())
            .copied()
            .unwrap_or(usize::MAX)
    });
    Ok(rows)
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        std::pin::Pin::new(&mut self.get_mut().inbox).poll_next(cx)
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.inbox.id())
            .field("schema", &self.shape.as_ref().map(|s| s.root.name))
            .finish()
    }
}

/// Applies a change to data held outside any subscription (no topics to follow), with the
/// shape read off the data itself.
pub(crate) async fn sync_detached<S: Schema, H: Held<S>>(
    hub: &Hub,
    data: &mut H,
    change: &Arc<Change>,
    options: SyncOptions,
) -> Result<Changes, SyncError> {
    let tree = PreloadTree::of_rows(&data.rows());
    let paths = hub.graph().shape(S::meta(), &tree)?;
    let paths = paths.to(&change.table);
    let mut ctx = SyncCtx::new(change.clone(), hub.inner.loader.clone(), options);
    ctx.follow_topics = false;
    apply(&ctx, data, &tree, paths).await
}
