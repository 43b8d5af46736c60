//! Which holders under an access context are told of a change: those whose context may
//! see its row, and those holding it (it leaves at their sync); never one that neither
//! holds the row nor may see it, which would learn the key and routing values of a row
//! hidden from it.
//!
//! why in the pump, before the queues: routing sends a change to every holder whose topics
//! it touches (a holder under a context follows some tables whole), and what sits in a
//! queue is what `next()` and `try_next()` hand out. The look is the read the holders'
//! syncs make anyway, through the shared cache under the same key (row, change, context):
//! it moves that read earlier, batched per table and context, and adds none.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::cache::Loader;
use crate::change::Change;
use crate::hash::{HashMap, HashMapExt, HashSet};
use crate::load::Access;
use crate::route::router::{Routed, Router};
use crate::route::{Selector, SubscriptionId, Topic};
use crate::schema::{SchemaMeta, TableName};

/// The access context of each subscription that has one, shared by the hub (which files
/// them) and the pump (which batches reads per context).
#[derive(Clone, Default)]
pub(crate) struct Accesses {
    by_subscription: Arc<parking_lot::RwLock<HashMap<SubscriptionId, Filed>>>,
}

/// A subscription's context, and whether its topics name every row it holds.
#[derive(Clone)]
pub(crate) struct Filed {
    pub access: Access,
    /// Whether each row it holds has a row topic (rows given when subscribing, or loaded by
    /// a reload): then a change of a row it neither holds nor may see is not for it.
    pub tracked: bool,
}

impl Accesses {
    /// Files `id`'s context; its rows are not known yet (see [`track`](Self::track)).
    pub fn file(&self, id: SubscriptionId, access: Access) {
        let filed = Filed {
            access,
            tracked: false,
        };
        self.by_subscription.write().insert(id, filed);
    }

    /// Says whether `id`'s topics name every row it holds now.
    pub fn track(&self, id: SubscriptionId, tracked: bool) {
        if let Some(filed) = self.by_subscription.write().get_mut(&id) {
            filed.tracked = tracked;
        }
    }

    pub fn forget(&self, id: SubscriptionId) {
        self.by_subscription.write().remove(&id);
    }

    /// The context of each tracked subscription among `subscribers`.
    pub fn tracked<'a>(
        &self,
        subscribers: impl Iterator<Item = &'a SubscriptionId>,
    ) -> Vec<(SubscriptionId, Access)> {
        let map = self.by_subscription.read();
        if map.is_empty() {
            return Vec::new();
        }
        subscribers
            .filter_map(|id| {
                let filed = map.get(id).filter(|f| f.tracked)?;
                Some((*id, filed.access.clone()))
            })
            .collect()
    }

    /// The distinct contexts of `subscribers` (`None`: the hub's own role) with how many
    /// of them share each, or just `None` when no subscription has a context (nothing to
    /// look up).
    pub(super) fn of(&self, subscribers: &HashSet<SubscriptionId>) -> Vec<(Option<Access>, u32)> {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let map = self.by_subscription.read();
        if map.is_empty() {
            return vec![(None, count(subscribers.len()))];
        }
        let mut found: Vec<(Option<Access>, u32)> = Vec::new();
        for id in subscribers {
            let access = map.get(id).map(|f| f.access.clone());
            match found.iter_mut().find(|(a, _)| *a == access) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => found.push((access, 1)),
            }
        }
        found
    }
}

/// What deciding who is told needs from the pump.
pub(super) struct Teller<'a> {
    /// The schema mapping each watched table.
    pub schemas: &'a HashMap<TableName, &'static SchemaMeta>,
    /// Tables row-level security policies read (their changes are told as they are).
    pub policy_tables: &'a [TableName],
    pub accesses: &'a Accesses,
    /// Whether changes can arrive before other sessions see their transactions.
    pub rows_arrive_early: bool,
    pub loader: &'a Loader,
    pub router: &'a Router,
}

/// How long routing waits for the looks of a burst; past it, everyone is told (their syncs
/// read again and decide), since a slow read must not stop every other holder's changes.
const LOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes out of each routed change's subscribers those under a context that neither may see
/// its row nor hold it. Only subscriptions whose topics name every row they hold are
/// concerned (others cannot tell what they hold); changes of policy tables and of tables
/// no schema maps (join tables known by name) are told as they are.
pub(super) async fn hide(pump: &Teller<'_>, routed: &mut [Routed]) {
    // (change, context) → whether the context sees the row
    let mut looks: HashMap<(usize, Access), bool> = HashMap::new();
    let mut concerned: Vec<(usize, SubscriptionId, Access)> = Vec::new();
    for (i, r) in routed.iter().enumerate() {
        if !pump.schemas.contains_key(&r.change.table)
            || pump.policy_tables.contains(&r.change.table)
        {
            continue;
        }
        for (id, access) in pump.accesses.tracked(r.subscribers.iter()) {
            looks.insert((i, access.clone()), true);
            concerned.push((i, id, access));
        }
    }
    if concerned.is_empty() {
        return;
    }
    if pump.rows_arrive_early && !committed_visible(pump, routed).await {
        tracing::warn!(
            "the transactions of changes did not become visible in time; every holder is told"
        );
        return;
    }
    let asked = looks.keys().cloned().map(|(i, access)| {
        let change = routed[i].change.clone();
        let meta = pump.schemas.get(&change.table).copied();
        let loader = pump.loader.under(Some(access.clone()));
        async move {
            let Some(meta) = meta else {
                return ((i, access), true);
            };
            // a read that fails tells the holder: its sync reads again and resyncs
            let read = loader.image(meta, change.key.clone(), change.seq).await;
            ((i, access), !matches!(read, Ok(None)))
        }
    });
    match tokio::time::timeout(LOOK_TIMEOUT, join_all(asked)).await {
        Ok(seen) => looks.extend(seen),
        Err(_) => {
            tracing::warn!(
                "looking at changed rows under access contexts timed out; every holder is told"
            );
            return;
        }
    }
    for (i, id, access) in concerned {
        let seen = looks.get(&(i, access)).copied().unwrap_or(true);
        let r = &mut routed[i];
        if !seen && !holds(pump, id, &r.change) {
            r.subscribers.remove(&id);
        }
    }
}

/// Waits (up to [`LOOK_TIMEOUT`]) until the transactions of `routed` are visible to new
/// snapshots (see `load::wait_visible`).
async fn committed_visible(pump: &Teller<'_>, routed: &[Routed]) -> bool {
    let xids: Vec<u64> = routed.iter().map(|r| r.change.xid).collect();
    crate::load::wait_visible(&pump.loader.db, &xids, LOOK_TIMEOUT).await
}

/// Whether subscription `id` holds the changed row (under its key, or its key before).
fn holds(pump: &Teller<'_>, id: SubscriptionId, change: &Change) -> bool {
    let held = |key: &crate::schema::Key| {
        pump.router.holds(
            id,
            &Topic {
                table: change.table,
                selector: Selector::Row(key.clone()),
            },
        )
    };
    held(&change.key) || change.old_key.as_ref().is_some_and(held)
}
