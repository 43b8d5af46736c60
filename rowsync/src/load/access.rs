//! Who is asking: the database role and settings a load runs under, so that PostgreSQL's
//! row-level security policies decide what each holder gets, at every depth of its preloads.
//!
//! A context is applied inside the read's own transaction (`SET LOCAL ROLE`,
//! `set_config(name, value, true)`), so it ends with that transaction and never stays on a
//! pooled connection.

use std::fmt;
use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::error::SqlState;

use super::{Db, Executor};
use crate::error::{AccessError, LoadError};
use crate::graph::PreloadTree;
use crate::schema::{quote_ident, Filter, SchemaMeta};

/// An access context: the database role to act as and/or settings that row-level security
/// policies read (`request.jwt.claims`, `app.tenant_id`, ...).
///
/// ```
/// let tenant_7 = rowsync::Access::new()
///     .role("app_user")
///     .setting("app.tenant_id", "7");
/// assert_eq!(tenant_7.role_name(), Some("app_user"));
/// ```
///
/// Queries ([`Query::access`](crate::Query::access)), live queries and subscriptions
/// ([`Hub::subscribe_as`](crate::Hub::subscribe_as)) take one; every read that serves them runs
/// under it. Two equal contexts (same role, same settings) are one context: their holders
/// share every read. Cloning is cheap.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Access {
    inner: Arc<Inner>,
}

#[derive(Clone, PartialEq, Eq, Hash, Default)]
struct Inner {
    role: Option<String>,
    /// Sorted by name, each name once: equal contexts compare equal.
    settings: Vec<(String, String)>,
    scope: Option<Scope>,
}

/// A filter every row held must pass, whatever its table.
#[derive(Clone)]
struct Scope {
    filter: Arc<Filter>,
    /// The filter's text: what tells scopes apart.
    text: String,
}

impl PartialEq for Scope {
    fn eq(&self, other: &Scope) -> bool {
        self.text == other.text
    }
}

impl Eq for Scope {}

impl std::hash::Hash for Scope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl Access {
    /// A context with no role and no settings (reads run as the connecting role).
    pub fn new() -> Access {
        Access::default()
    }

    /// Acts as `role` (`SET LOCAL ROLE`): the connecting role must be a member of it.
    pub fn role(mut self, role: impl Into<String>) -> Access {
        Arc::make_mut(&mut self.inner).role = Some(role.into());
        self
    }

    /// Sets `name` to `value` for the read (`set_config(name, value, true)`), e.g.
    /// `setting("app.tenant_id", "7")` for a policy reading
    /// `current_setting('app.tenant_id')`. A second call with the same name replaces it.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Access {
        let (name, value) = (name.into(), value.into());
        let settings = &mut Arc::make_mut(&mut self.inner).settings;
        match settings.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(at) => settings[at].1 = value,
            Err(at) => settings.insert(at, (name, value)),
        }
        self
    }

    /// Keeps only the rows that pass `filter`, in every table the holder's data reaches
    /// (the root and every preloaded association), with no row-level security involved:
    /// `scope(Filter::eq("tenant_id", 7))` holds tenant 7's people, their posts and their
    /// tags. Checked in memory on the rows sync reads anyway, so a scope costs no read; every
    /// table on the holder's paths must have the filter's columns (else
    /// [`AccessError::ScopeColumn`] when the subscription is made). Several calls combine
    /// with AND.
    pub fn scope(mut self, filter: Filter) -> Access {
        let inner = Arc::make_mut(&mut self.inner);
        let filter = match inner.scope.take() {
            Some(old) => Filter::and([Filter::clone(&old.filter), filter]),
            None => filter,
        };
        inner.scope = Some(Scope {
            text: format!("{filter:?}"),
            filter: Arc::new(filter),
        });
        self
    }

    /// The scope, if any.
    pub fn scope_filter(&self) -> Option<&Filter> {
        self.inner.scope.as_ref().map(|s| &*s.filter)
    }

    /// The scope, shared.
    pub(crate) fn scope_arc(&self) -> Option<Arc<Filter>> {
        self.inner.scope.as_ref().map(|s| s.filter.clone())
    }

    /// The part of this context the database applies (role and settings), if any: what
    /// reads run under and are shared by. A scope alone reads as the hub's own role.
    pub(crate) fn reads_as(&self) -> Option<Access> {
        if self.inner.role.is_none() && self.inner.settings.is_empty() {
            return None;
        }
        if self.inner.scope.is_none() {
            return Some(self.clone());
        }
        let mut inner = Inner::clone(&self.inner);
        inner.scope = None;
        Some(Access {
            inner: Arc::new(inner),
        })
    }

    /// The scope alone, as a context (nothing for the database to apply).
    pub(crate) fn scope_only(&self) -> Option<Access> {
        let scope = self.inner.scope.clone()?;
        Some(Access {
            inner: Arc::new(Inner {
                scope: Some(scope),
                ..Inner::default()
            }),
        })
    }

    /// Checks that every schema of `tree` (under `root`) has the scope's columns.
    pub(crate) fn check_scope(
        &self,
        root: &'static SchemaMeta,
        tree: &PreloadTree,
    ) -> Result<(), AccessError> {
        let Some(scope) = &self.inner.scope else {
            return Ok(());
        };
        for column in scope.filter.columns() {
            if root.column_index(column).is_none() {
                return Err(AccessError::ScopeColumn {
                    schema: root.name,
                    column: column.to_owned(),
                    known: root
                        .columns
                        .iter()
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        for node in tree.children() {
            self.check_scope((root.assocs[node.assoc].related)(), &node.tree)?;
        }
        Ok(())
    }

    /// The role acted as, if any.
    pub fn role_name(&self) -> Option<&str> {
        self.inner.role.as_deref()
    }

    /// The settings, by name.
    pub fn settings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner
            .settings
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Checks the names without the database: a role is not empty, a setting is a dotted
    /// custom name (PostgreSQL refuses to `set_config` unknown names without a dot, and a
    /// built-in one such as `role` would undo the context).
    pub fn validate(&self) -> Result<(), AccessError> {
        if self.inner.role.as_deref() == Some("") {
            return Err(AccessError::EmptyRole);
        }
        for (name, _) in &self.inner.settings {
            if !valid_setting_name(name) {
                return Err(AccessError::InvalidSetting { name: name.clone() });
            }
        }
        Ok(())
    }

    /// `SET LOCAL ROLE ..` for the role, if any (the name quoted, never spliced raw).
    fn role_sql(&self) -> Option<String> {
        self.inner
            .role
            .as_ref()
            .map(|role| format!("SET LOCAL ROLE {}", quote_ident(role)))
    }

    /// One `SELECT set_config($1, $2, true), ..` for the settings, if any; the names and
    /// values are its parameters.
    fn settings_sql(&self) -> Option<String> {
        let settings = &self.inner.settings;
        (!settings.is_empty()).then(|| {
            let calls: Vec<String> = (0..settings.len())
                .map(|i| format!("set_config(${}, ${}, true)", 2 * i + 1, 2 * i + 2))
                .collect();
            format!("SELECT {}", calls.join(", "))
        })
    }

    fn settings_params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        self.inner
            .settings
            .iter()
            .flat_map(|(n, v)| [n as _, v as _])
            .collect()
    }

    /// Takes the context on in the transaction `exec` runs.
    pub(crate) async fn apply(&self, exec: &dyn Executor) -> Result<(), AccessError> {
        self.validate()?;
        if let Some(sql) = self.role_sql() {
            exec.query_rows(&sql, &[])
                .await
                .map_err(|error| self.refused(error))?;
        }
        if let Some(sql) = self.settings_sql() {
            exec.query_rows(&sql, &self.settings_params())
                .await
                .map_err(|error| self.refused(error))?;
        }
        Ok(())
    }

    /// The error for PostgreSQL refusing the context.
    fn refused(&self, error: tokio_postgres::Error) -> AccessError {
        let role = self.inner.role.clone().unwrap_or_default();
        match error.code() {
            Some(code) if *code == SqlState::INVALID_PARAMETER_VALUE && !role.is_empty() => {
                AccessError::UnknownRole { role }
            }
            Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE && !role.is_empty() => {
                AccessError::RoleNotGranted { role }
            }
            _ => AccessError::Database { error },
        }
    }

    /// Takes the context on for a query on a connection the caller holds, and checks that
    /// it held: outside a transaction PostgreSQL forgets `SET LOCAL` at once.
    pub(crate) async fn apply_held(&self, exec: &dyn Executor) -> Result<(), AccessError> {
        self.apply(exec).await?;
        let (rows, expected) = match (&self.inner.role, self.inner.settings.first()) {
            (Some(role), _) => (
                exec.query_rows("SELECT current_user::text", &[]).await,
                role,
            ),
            (None, Some((name, value))) => (
                exec.query_rows("SELECT current_setting($1, true)", &[name])
                    .await,
                value,
            ),
            (None, None) => return Ok(()),
        };
        let rows = rows.map_err(|error| AccessError::Database { error })?;
        let found: Option<String> = rows.first().and_then(|r| r.try_get(0).ok());
        if found.as_deref() == Some(expected.as_str()) {
            Ok(())
        } else {
            Err(AccessError::NotInTransaction)
        }
    }

    /// Everything that tells contexts apart, for keys of shared loads.
    pub(crate) fn key(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}",
            self.inner.role,
            self.inner.settings,
            self.inner.scope.as_ref().map(|s| &s.text)
        )
    }
}

// why not derived: setting values can be secrets (JWT claims); logs show the names only
impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("role", &self.inner.role)
            .field(
                "settings",
                &self
                    .inner
                    .settings
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `part(.part)+`, each part an ASCII identifier.
fn valid_setting_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// A pooled connection a read runs on, in a transaction under an access context when it
/// has one.
///
/// why a guard: a read dropped halfway (its caller gave up) would hand the connection back
/// inside a transaction acting as another role; such a connection is closed instead.
pub(crate) struct ReadConn {
    conn: Option<Object>,
    in_transaction: bool,
}

impl ReadConn {
    /// A connection of `db`'s pool, under `access` (in a transaction) when given.
    pub async fn open(db: &Db, access: Option<&Access>) -> Result<ReadConn, LoadError> {
        ReadConn::open_on(db.pool(), access).await
    }

    /// [`open`](Self::open) on a pool.
    pub async fn open_on(
        pool: &deadpool_postgres::Pool,
        access: Option<&Access>,
    ) -> Result<ReadConn, LoadError> {
        let conn = pool.get().await.map_err(LoadError::Pool)?;
        let mut read = ReadConn {
            conn: Some(conn),
            in_transaction: false,
        };
        if let Some(access) = access {
            access.validate()?;
            read.in_transaction = true;
            let conn = read.conn.as_ref().map(|c| &***c);
            let Some(client) = conn else {
                return Err(AccessError::NotInTransaction.into());
            };
            // why pipelined: the transaction, the role and the settings reach the server
            // in one round trip (the driver sends both before reading any answer)
            let mut begin = "BEGIN READ ONLY".to_owned();
            if let Some(sql) = access.role_sql() {
                begin.push_str("; ");
                begin.push_str(&sql);
            }
            let settings_sql = access.settings_sql();
            let params = access.settings_params();
            let set = async {
                match &settings_sql {
                    Some(sql) => client.query(sql.as_str(), &params).await.map(|_| ()),
                    None => Ok(()),
                }
            };
            let (begun, set) = futures_util::future::join(client.batch_execute(&begin), set).await;
            begun.map_err(|error| access.refused(error))?;
            set.map_err(|error| access.refused(error))?;
        }
        Ok(read)
    }

    /// What queries run on.
    pub fn exec(&self) -> &dyn Executor {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a read connection is held until dropped"),
        }
    }

    /// Ends the transaction, if any, and hands the connection back.
    pub async fn finish(mut self) -> Result<(), LoadError> {
        if self.in_transaction {
            let Some(conn) = &self.conn else {
                return Ok(());
            };
            conn.batch_execute("COMMIT")
                .await
                .map_err(|error| AccessError::Database { error })?;
            self.in_transaction = false;
        }
        Ok(())
    }
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        if self.in_transaction {
            if let Some(conn) = self.conn.take() {
                // detached from the pool: the client drops here and its connection closes
                drop(Object::take(conn));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_contexts_are_one() {
        let a = Access::new()
            .setting("b.x", "1")
            .setting("a.y", "2")
            .role("r");
        let b = Access::new()
            .role("r")
            .setting("a.y", "2")
            .setting("b.x", "1");
        assert_eq!(a, b);
        assert_ne!(a, b.clone().setting("a.y", "3"));
        assert_eq!(
            a.key(),
            Access::new()
                .role("r")
                .setting("a.y", "2")
                .setting("b.x", "1")
                .key()
        );
    }

    #[test]
    fn setting_names_are_dotted_identifiers() {
        for ok in ["app.tenant_id", "request.jwt.claims", "_a.b1"] {
            assert!(valid_setting_name(ok), "{ok}");
        }
        for bad in [
            "role",
            "",
            "app.",
            ".x",
            "app.tenant-id",
            "a.b;drop",
            "app.1x",
            "a..b",
        ] {
            assert!(!valid_setting_name(bad), "{bad}");
        }
        assert!(matches!(
            Access::new().setting("role", "postgres").validate(),
            Err(AccessError::InvalidSetting { .. })
        ));
        assert!(matches!(
            Access::new().role("").validate(),
            Err(AccessError::EmptyRole)
        ));
    }

    #[test]
    fn debug_hides_setting_values() {
        let text = format!(
            "{:?}",
            Access::new().setting("request.jwt.claims", "secret")
        );
        assert!(text.contains("request.jwt.claims") && !text.contains("secret"));
    }
}
