//! The subscription users hold: a stream of messages about the data they hold, and `sync`
//! to apply each one to that data (reloading it, under a snapshot, when told to resync).

use std::sync::Arc;

use futures_util::Stream;

use super::shapes::Form;
use super::Hub;
use crate::change::Change;
use crate::change::ResyncReason;
use crate::error::{ErrorClass, HubError, SyncError};
use crate::graph::PreloadTree;
use crate::hash::{HashMap, HashSet};
use crate::load::{rows_under_snapshot, Access, Selection, Snapshot};
use crate::route::{
    topics_for_rows, topics_for_table, Inbox, Message, Selector, SubscriptionId, Topic,
};
use crate::schema::{Key, Schema};
use crate::sync::{
    apply, worth_an_index, Changes, Held, HeldIndex, Membership, SyncCtx, SyncOptions, Verdict,
    Versions,
};

/// The data shape a subscription was made for, with its paths to every table: the form its
/// query shares with every subscription of that query, and which rows are its own.
#[derive(Clone)]
pub(crate) struct Shape {
    pub form: Arc<Form>,
    /// Which root rows belong to the held data.
    pub membership: Membership,
}

impl std::ops::Deref for Shape {
    type Target = Form;
    fn deref(&self) -> &Form {
        &self.form
    }
}

impl Shape {
    /// What a reload reads, and the key under which identical reloads share one load.
    fn selection(&self) -> (Selection, String) {
        let selection = match &self.membership {
            Membership::Keys(keys) => {
                let mut keys: Vec<Key> = keys.iter().cloned().collect();
                keys.sort_by(crate::schema::compare_keys);
                Selection::Keys {
                    keys,
                    preloads: self.spec.preloads.clone(),
                }
            }
            Membership::Query { .. } | Membership::Any => Selection::Query {
                spec: self.spec.clone(),
                single: self.single,
            },
        };
        // why the context's own key: its `Debug` hides setting values, and holders of two
        // contexts must never share a load
        let access = self.access.as_ref().map(Access::key).unwrap_or_default();
        let key = format!("{}|{selection:?}|{access}", self.root.name);
        (selection, key)
    }

    /// The topics of the rows held, and those the membership follows whatever is held.
    fn topics<S: Schema>(&self, rows: &[&S]) -> Result<Vec<Topic>, crate::error::SchemaError> {
        let mut topics = topics_for_rows(rows, &self.tree)?;
        match &self.membership {
            Membership::Keys(keys) => topics.extend(keys.iter().map(|k| Topic {
                table: self.root.table,
                selector: Selector::Row(k.clone()),
            })),
            Membership::Query { .. } => topics.push(Topic {
                table: self.root.table,
                selector: Selector::All,
            }),
            Membership::Any => {}
        }
        if self.access.is_some() {
            topics.extend(super::access::hidden_topics(self.root, &self.tree)?);
            topics.extend(self.policy_topics.iter().cloned());
        }
        Ok(topics)
    }
}

/// Counters of a subscription's syncs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStats {
    /// Changes applied.
    pub applied: u64,
    /// Changes skipped because the data was loaded after they committed (visible in the
    /// load's snapshot).
    pub skipped_visible: u64,
    /// Changes received a second time (never applied twice).
    pub duplicates: u64,
    /// Changes older than what the data held of their row already (applied out of order);
    /// skipped, so old news never overwrites newer data.
    pub stale: u64,
    /// Loads under a snapshot (a live query's first load, and one per resync).
    pub loads: u64,
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
/// [`Message::Resync`], `sync` reloads the data (same shape) under a snapshot, re-derives the
/// topics, and from then on skips the changes that snapshot already saw.
///
/// Gap rule for this manual path: subscribe right after loading, and expect that a change
/// committed between the two is only seen by the next resync; [`Hub::live`] closes that gap
/// by construction.
pub struct Subscription {
    inbox: Inbox,
    hub: Hub,
    shape: Option<Shape>,
    /// The snapshot of the last reload: changes it saw are in the data already. (An `Arc`:
    /// a live value shows the same one beside its data.)
    snapshot: Option<Arc<Snapshot>>,
    /// The version of each row changed since the last load.
    versions: Versions,
    /// Changes queued by a catch-up that may also arrive through the queue: their second
    /// arrival is expected, not a duplicate.
    /// (`None` until a catch-up queues one: most subscriptions never have any.)
    #[allow(clippy::box_collection)]
    caught_up: Option<Box<HashSet<u64>>>,
    stats: SyncStats,
    /// Reloads that failed in a row (the next one waits longer).
    failed_reloads: u32,
    /// Where a large held list holds each row (`None`: not built, or out of step).
    /// (Boxed: most subscriptions hold too little to want one.)
    held_index: Option<Box<HeldIndex>>,
}

impl Subscription {
    pub(crate) fn new(inbox: Inbox, hub: Hub, shape: Option<Shape>) -> Subscription {
        Subscription {
            inbox,
            hub,
            shape,
            snapshot: None,
            versions: Versions::default(),
            caught_up: None,
            stats: SyncStats::default(),
            failed_reloads: 0,
            held_index: None,
        }
    }

    /// The hub this subscription belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
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
    ///
    /// A sync of the batch that takes rows in queues the changes of them it missed behind
    /// the batch, though some may be older than the batch's later changes: the row versions
    /// make them harmless, and [`next`](Self::next), message by message, keeps them in commit
    /// order.
    pub async fn next_batch(&mut self) -> Option<Vec<Message>> {
        self.inbox.next_batch().await
    }

    /// The next change of transaction `xid` once it is whole (see `Inbox::next_of`).
    pub(crate) async fn next_of(&mut self, xid: u64) -> Option<Message> {
        self.inbox.next_of(xid).await
    }

    /// Waits until a message can be taken, and for a change its whole transaction, with no
    /// wait (cancel-safe).
    pub(crate) async fn ready_whole(&mut self) {
        self.inbox.ready_whole().await
    }

    /// Asks for a resync before anything else queued.
    pub(crate) fn resync_first(&mut self, reason: ResyncReason) {
        self.inbox.resync_first(reason)
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

    /// Counters of the syncs through this subscription.
    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    /// The snapshot of the last reload, if the data was loaded through the subscription.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_deref()
    }

    /// The snapshot of the last reload, to share.
    pub(crate) fn snapshot_arc(&self) -> Option<&Arc<Snapshot>> {
        self.snapshot.as_ref()
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
        let shape = self.grown_shape::<S>(&options)?;
        match message {
            Message::Change(change) => {
                if self.snapshot.as_ref().is_some_and(|s| s.sees(change.xid)) {
                    self.stats.skipped_visible += 1;
                    return Ok(Changes::default());
                }
                // what a context sees may have changed anywhere: only a reload can tell
                if shape.policy_topics.iter().any(|t| t.table == change.table)
                    && self.hub.is_policy_table(&change.table)
                {
                    let reason = ResyncReason::PolicyChanged {
                        table: change.table,
                    };
                    return self.resync(data, &reason).await;
                }
                let verdict = self.versions.judge(change);
                // a change a catch-up queued, and applied then, that comes again through its
                // own routing: expected, whatever the versions say of it by now (newer ones
                // of its row caught up with it; more changes applied than they remember)
                let again = verdict != Verdict::Apply
                    && self
                        .caught_up
                        .as_mut()
                        .is_some_and(|c| c.remove(&change.seq));
                match verdict {
                    Verdict::Apply => {}
                    _ if again => return Ok(Changes::default()),
                    Verdict::Duplicate => {
                        self.stats.duplicates += 1;
                        return Ok(Changes::default());
                    }
                    Verdict::Stale => {
                        self.stats.stale += 1;
                        return Ok(Changes::default());
                    }
                    // old news or not, only a reload can tell
                    Verdict::Unknown => return self.resync(data, &ResyncReason::OutOfOrder).await,
                }
                self.versions.record(change);
                self.stats.applied += 1;
                let applied = self.apply(&shape, data, change, options).await;
                if let Err(error) = &applied {
                    // why: the change is not lost; the data is reloaded instead (a fatal
                    // error, a mistake in the program, would fail the reload the same way)
                    if error.class() != ErrorClass::Fatal {
                        tracing::warn!(table = %change.table, key = %change.key, %error, "a change could not be applied; resyncing");
                        self.inbox.resync_first(ResyncReason::Unreadable {
                            table: change.table,
                            error: error.to_string(),
                        });
                    }
                }
                applied
            }
            Message::Resync(reason) => self.resync(data, reason).await,
        }
    }

    /// Reloads `data`; when the reload fails, the resync is asked for again (the data is
    /// stale until a reload succeeds).
    async fn resync<S: Schema, H: Held<S>>(
        &mut self,
        data: &mut H,
        reason: &ResyncReason,
    ) -> Result<Changes, SyncError> {
        let rows = match self.reload::<S>(&data.rows()).await {
            Ok(rows) => rows,
            Err(error) => {
                if error.class() != ErrorClass::Fatal {
                    self.inbox.resync_first(reason.clone());
                }
                return Err(SyncError::Reload(Box::new(error)));
            }
        };
        data.replace_all(rows);
        Ok(Changes {
            reloaded: true,
            ..Changes::default()
        })
    }

    /// The shape, grown by the paths `options` add (data synced with them holds those too,
    /// and its reloads and routing must follow them).
    fn grown_shape<S: Schema>(&mut self, options: &SyncOptions) -> Result<Shape, SyncError> {
        let shape = self.shape_of::<S>()?;
        if options.is_empty() {
            return Ok(shape);
        }
        let tree = options.grow(shape.root, &shape.tree)?;
        if tree == shape.tree {
            return Ok(shape);
        }
        let mut spec = shape.spec.clone();
        spec.preloads = tree.paths();
        let form = Form {
            root: shape.root,
            paths: self.hub.graph().shape(shape.root, &tree)?,
            tree,
            spec,
            single: shape.single,
            access: shape.access.clone(),
            policy_topics: shape.policy_topics.clone(),
        };
        let grown = Shape {
            form: self.hub.forms().intern(form),
            membership: shape.membership.clone(),
        };
        self.shape = Some(grown.clone());
        Ok(grown)
    }

    fn shape_of<S: Schema>(&self) -> Result<Shape, SyncError> {
        let shape = self.shape.clone().ok_or(SyncError::NoShape)?;
        if !std::ptr::eq(shape.root, S::meta()) {
            return Err(SyncError::WrongSchema {
                expected: shape.root.name,
                found: S::meta().name,
            });
        }
        Ok(shape)
    }

    /// The root positions `change` can touch in `data`, from the index of what it holds
    /// (built when first needed); `None`: every root row is looked at.
    fn positions<S: Schema, H: Held<S>>(
        &mut self,
        shape: &Shape,
        data: &H,
        change: &Change,
        paths: &[crate::graph::TreePath],
    ) -> Option<Vec<usize>> {
        if !worth_an_index(data.held_count()) {
            self.held_index = None;
            return None;
        }
        if self.held_index.is_none() {
            self.held_index = HeldIndex::build(&data.rows(), &shape.tree)
                .ok()
                .map(Box::new);
        }
        let index = self.held_index.as_ref()?;
        let at = index.positions(shape.root, change, paths)?;
        if index.still_holds(data, &at) {
            return Some(at);
        }
        // the list moved under the index (changed by hand): walk it all this time
        self.held_index = None;
        None
    }

    async fn apply<S: Schema, H: Held<S>>(
        &mut self,
        shape: &Shape,
        data: &mut H,
        change: &Arc<Change>,
        options: SyncOptions,
    ) -> Result<Changes, SyncError> {
        let paths = shape.paths.to(&change.table);
        let meta = self.hub.graph().schema_of(change.table);
        let read_seq = self.versions.read_position(change);
        let mut ctx = SyncCtx::new(
            change.clone(),
            meta,
            self.hub.loader().under(shape.access.clone()),
            options,
            read_seq,
        )
        .await?;
        ctx.membership = shape.membership.clone();

        let only = self.positions(shape, data, change, paths);
        let changes = apply(&ctx, data, &shape.tree, paths, only.as_deref()).await?;
        let delta = ctx.take_delta();
        if !delta.added.is_empty()
            || !delta.removed.is_empty()
            || !changes.inserted.is_empty()
            || !changes.deleted.is_empty()
        {
            // which rows are held, or where, changed: built again when next needed
            self.held_index = None;
        }
        if !delta.added.is_empty() {
            let added: HashSet<Topic> = delta.added.iter().cloned().collect();
            self.inbox.add_topics(delta.added);
            // why: the rows this sync took in were read as of `read_seq`; changes of them
            // committed since were routed before they were held, so not to us
            match self.inbox.touching_since(ctx.read_seq, &added).await {
                Some(missed) => {
                    // why bounded: a caught-up change that was not routed to us never
                    // arrives a second time
                    let caught_up = self.caught_up.get_or_insert_with(Box::default);
                    if caught_up.len() > 4096 {
                        caught_up.clear();
                    }
                    // a change an earlier catch-up queued already is not queued again
                    self.inbox.catch_up(missed, |c| caught_up.insert(c.seq));
                }
                None => self.inbox.resync_first(ResyncReason::Lagged { missed: 0 }),
            }
        }
        if !delta.removed.is_empty() {
            self.inbox.remove_topics(&delta.removed);
        }
        Ok(changes)
    }

    /// The rows the shape selects now, read under one snapshot (shared with identical
    /// reloads that start together), ordered as `held` holds them; the topics follow them.
    ///
    /// The subscription first listens to every change of the tables the shape reads, so
    /// nothing committed while the rows are read is missed; changes the snapshot saw are
    /// skipped from then on.
    pub(crate) async fn reload<S: Schema>(&mut self, held: &[&S]) -> Result<Vec<S>, HubError> {
        let shape = self.shape_of::<S>().map_err(|_| HubError::Closed)?;
        if self.failed_reloads > 0 {
            // why wait: the last reload failed (the database is down or overloaded); a
            // caller retrying at once would only add load
            tokio::time::sleep(crate::capture::triggers::listen::backoff(
                self.failed_reloads - 1,
                std::time::Duration::from_millis(50),
                std::time::Duration::from_secs(5),
            ))
            .await;
        }
        let reloaded = self.reload_now::<S>(&shape, held).await;
        self.failed_reloads = match reloaded {
            Ok(_) => 0,
            Err(_) => self.failed_reloads.saturating_add(1),
        };
        reloaded
    }

    async fn reload_now<S: Schema>(
        &mut self,
        shape: &Shape,
        held: &[&S],
    ) -> Result<Vec<S>, HubError> {
        let mut reading = topics_for_table(shape.root, &shape.tree)?;
        reading.extend(shape.policy_topics.iter().cloned());
        // why untracked meanwhile: its topics name tables, not the rows the reload gives
        self.hub.track_access(self.inbox.id(), false);
        self.inbox.set_topics(reading);
        let (selection, key) = shape.selection();
        let db = self.hub.db().clone();
        let access = shape.access.clone();
        let loaded = self
            .hub
            .shared_reload::<Vec<S>>(
                key,
                Box::pin(async move {
                    rows_under_snapshot::<S>(&db, &selection, access.as_ref()).await
                }),
            )
            .await
            .map_err(HubError::Load)?;
        let (snapshot, mut rows) = (loaded.0.clone(), loaded.1.clone());
        if let Membership::Keys(_) = shape.membership {
            rows = in_held_order(held, rows);
        }
        let held: Vec<&S> = rows.iter().collect();
        self.inbox.set_topics(shape.topics(&held)?);
        self.hub.track_access(self.inbox.id(), true);
        self.snapshot = Some(Arc::new(snapshot));
        self.held_index = None;
        self.versions.reset();
        self.stats.loads += 1;
        Ok(rows)
    }
}

/// `rows` with those held first, in the order held, then the others in key order.
fn in_held_order<S: Schema>(held: &[&S], mut rows: Vec<S>) -> Vec<S> {
    let position: HashMap<Key, usize> = held
        .iter()
        .enumerate()
        .map(|(i, r)| (r.primary_key(), i))
        .collect();
    rows.sort_by(|a, b| {
        let (ka, kb) = (a.primary_key(), b.primary_key());
        match (position.get(&ka), position.get(&kb)) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => crate::schema::compare_keys(&ka, &kb),
        }
    });
    rows
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.shape.as_ref().is_some_and(|s| s.access.is_some()) {
            self.hub.forget_access(self.inbox.id());
        }
    }
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
    let meta = hub.graph().schema_of(change.table);
    let mut ctx = SyncCtx::new(
        change.clone(),
        meta,
        hub.loader().clone(),
        options,
        change.seq,
    )
    .await?;
    ctx.follow_topics = false;
    apply(&ctx, data, &tree, paths.to(&change.table), None).await
}
