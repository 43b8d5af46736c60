//! Holders under an access context: subscriptions made with one, the check that the
//! database takes it on, and the topics such holders follow besides what they hold.

use std::sync::Arc;

use super::{Hub, Subscription};
use crate::change::Change;
use crate::error::HubError;
use crate::graph::PreloadTree;
use crate::load::{Access, QuerySpec, ReadConn};
use crate::route::{topics_for_table, Selector, Topic};
use crate::schema::{Schema, SchemaMeta};
use crate::sync::Membership;

impl Hub {
    /// [`subscribe`](Self::subscribe) under an access context: every read serving the
    /// subscription (the changed rows, the rows sync takes in, reloads) runs as `access`, so
    /// row-level security decides what it holds; holders sharing a context share each read.
    /// Load the rows under the same context (`hub.query::<S>().access(access)`).
    ///
    /// The context is checked against the database first (once per hub): a role that does
    /// not exist or may not be taken on, or an invalid setting name, is an
    /// [`AccessError`](crate::AccessError) here.
    pub async fn subscribe_as<'a, S: Schema>(
        &self,
        access: &Access,
        rows: impl IntoIterator<Item = &'a S>,
        preloads: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Subscription, HubError> {
        self.check_access(access).await?;
        self.subscribe_rows(rows, preloads, Some(access.clone()))
    }

    /// [`subscribe_table`](Self::subscribe_table) under an access context (see
    /// [`subscribe_as`](Self::subscribe_as)): the rows of the table `access` may see.
    pub async fn subscribe_table_as<S: Schema>(
        &self,
        access: &Access,
        preloads: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Subscription, HubError> {
        self.check_access(access).await?;
        let tree = PreloadTree::parse(S::meta(), preloads)?;
        let topics = topics_for_table(S::meta(), &tree)?;
        let membership = Membership::Query {
            filter: None,
            order_by: Arc::from(Vec::new()),
        };
        let spec = QuerySpec {
            access: Some(access.clone()),
            ..QuerySpec::default()
        };
        self.subscribe_shape(S::meta(), tree, membership, spec, false, topics)
    }

    /// [`get`](Self::get) under an access context: the changed row as `access` sees it,
    /// `None` when it no longer exists or the context may not see it (row-level security or
    /// the context's scope). Read once per context and change however many callers ask;
    /// the row a capture source carried serves the hub's own role only.
    pub async fn get_as<S: Schema>(
        &self,
        access: &Access,
        change: &Change,
    ) -> Result<Option<S>, HubError> {
        self.get_with_as::<S>(access, change, crate::NO_PRELOADS)
            .await
    }

    /// [`get_with`](Self::get_with) under an access context (see [`get_as`](Self::get_as)):
    /// the associations are read under it too, at every depth.
    pub async fn get_with_as<S: Schema>(
        &self,
        access: &Access,
        change: &Change,
        preloads: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Option<S>, HubError> {
        self.check_access(access).await?;
        let tree = PreloadTree::parse(S::meta(), preloads)?;
        access.check_scope(S::meta(), &tree)?;
        self.inner
            .loader
            .under(Some(access.clone()))
            .row::<S>(change.key.clone(), change.seq, change.xid, &tree)
            .await
            .map_err(HubError::Load)
    }

    /// Checks that the database takes `access` on (the role exists and the hub's role may
    /// act as it, the setting names are valid), once per hub and context.
    pub async fn check_access(&self, access: &Access) -> Result<(), HubError> {
        access.validate()?;
        // a scope alone asks nothing of the database
        let Some(access) = access.reads_as() else {
            return Ok(());
        };
        if self.inner.checked_accesses.lock().contains(&access) {
            return Ok(());
        }
        let refused = |error| match error {
            crate::error::LoadError::Access(error) => HubError::Access(error),
            error => HubError::from(error),
        };
        let conn = ReadConn::open(&self.inner.db, Some(&access))
            .await
            .map_err(refused)?;
        conn.finish().await.map_err(refused)?;
        let mut checked = self.inner.checked_accesses.lock();
        // why bounded: contexts can be per user; a forgotten one is only checked again
        if checked.len() >= 10_000 {
            checked.clear();
        }
        checked.insert(access);
        Ok(())
    }

    /// Every change of the tables policies read.
    pub(super) fn policy_topics(&self) -> Vec<Topic> {
        self.inner
            .policy_tables
            .iter()
            .map(|&table| Topic {
                table,
                selector: Selector::All,
            })
            .collect()
    }

    /// Whether policies read `table`.
    pub(crate) fn is_policy_table(&self, table: &crate::schema::TableName) -> bool {
        self.inner.policy_tables.contains(table)
    }

    /// A subscription with a context ended.
    pub(crate) fn forget_access(&self, id: crate::route::SubscriptionId) {
        self.inner.accesses.forget(id);
    }

    /// Says whether subscription `id`'s topics name every row it holds (see `told.rs`).
    pub(crate) fn track_access(&self, id: crate::route::SubscriptionId, tracked: bool) {
        self.inner.accesses.track(id, tracked);
    }
}

/// Topics a holder under an access context follows besides those of what it holds: the
/// whole related table of each many_to_many, through and belongs_to association of its shape.
///
/// why: a linked row the context cannot see is not held, so no topic follows its key; when
/// it becomes visible (a policy column changed) the holder must hear of it to take it in.
/// Inserts into has_many collections are routed by foreign key already.
pub(crate) fn hidden_topics(
    root: &'static SchemaMeta,
    tree: &PreloadTree,
) -> Result<Vec<Topic>, crate::error::SchemaError> {
    let mut out = Vec::new();
    collect_hidden(root, tree, &mut out)?;
    Ok(out)
}

fn collect_hidden(
    meta: &'static SchemaMeta,
    tree: &PreloadTree,
    out: &mut Vec<Topic>,
) -> Result<(), crate::error::SchemaError> {
    for node in tree.children() {
        let def = &meta.assocs[node.assoc];
        let related = (def.related)();
        if matches!(
            def.kind,
            crate::schema::AssocKind::ManyToMany { .. }
                | crate::schema::AssocKind::Through { .. }
                | crate::schema::AssocKind::BelongsTo { .. }
        ) {
            let topic = Topic {
                table: related.table,
                selector: Selector::All,
            };
            if !out.contains(&topic) {
                out.push(topic);
            }
        }
        collect_hidden(related, &node.tree, out)?;
    }
    Ok(())
}
