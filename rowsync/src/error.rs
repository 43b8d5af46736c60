//! One error enum per public surface.

use thiserror::Error;

/// A column value could not be turned into a field (or a row into a struct).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum DecodeError {
    /// `NULL` arrived for a field that cannot hold it.
    #[error("unexpected null; declare the field as an `Option<_>` if the column is nullable")]
    UnexpectedNull,
    /// The column's type does not fit the field's type.
    #[error("a {found} value cannot be decoded as {expected}; change the field's type to match the column")]
    TypeMismatch {
        /// What the field accepts.
        expected: &'static str,
        /// What the column held.
        found: &'static str,
    },
    /// A number too large for the field's type.
    #[error("{value} does not fit {expected}; use a wider field type")]
    OutOfRange {
        /// What the field accepts.
        expected: &'static str,
        /// The value, as text.
        value: String,
    },
    /// A PostgreSQL type rowsync does not decode.
    #[error("PostgreSQL type `{type_name}` is not supported; cast the column to a supported type in a view (`uuid`, `json`, the date/time types and `numeric` need rowsync's cargo features `uuid`, `json`, `chrono`, `decimal`)")]
    UnsupportedType {
        /// The type's name.
        type_name: String,
    },
    /// A text value that names no variant of a text-backed enum.
    #[error("`{value}` is not a variant of enum `{enum_name}`")]
    UnknownVariant {
        /// The Rust enum.
        enum_name: &'static str,
        /// The text received.
        value: String,
    },
    /// A row source had no value at this position (a row shorter than the schema).
    #[error("the row has no column at position {index}")]
    MissingColumn {
        /// Position in the schema's column list.
        index: usize,
    },
    /// Raw bytes from the database could not be read as the column's type.
    #[error("malformed value: {message}")]
    Malformed {
        /// What was wrong.
        message: String,
    },
    /// Decoding failed in a named column.
    #[error("column `{table}.{column}`: {cause}")]
    Column {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// What went wrong.
        cause: Box<DecodeError>,
    },
}

impl DecodeError {
    /// Wraps this error with the column it happened in.
    pub fn in_column(self, table: &'static str, column: &'static str) -> DecodeError {
        DecodeError::Column {
            table,
            column,
            cause: Box::new(self),
        }
    }
}

/// A schema, association name or preload path that does not fit the declared schemas.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum SchemaError {
    /// A preload path or API call named an association the schema does not have.
    #[error("`{schema}` has no association `{name}`; its associations are: {known}")]
    UnknownAssociation {
        /// The Rust schema type.
        schema: &'static str,
        /// The name asked for.
        name: String,
        /// The names it does have, comma-separated.
        known: String,
    },
    /// A column named in an API call does not exist in the schema.
    #[error("`{schema}` has no column `{name}`; its columns are: {known}")]
    UnknownColumn {
        /// The Rust schema type.
        schema: &'static str,
        /// The name asked for.
        name: String,
        /// The columns it does have, comma-separated.
        known: String,
    },
    /// A key had the wrong number of parts for the schema's primary key.
    #[error(
        "`{schema}` has a primary key of {expected} column(s), but {found} value(s) were given"
    )]
    KeyArity {
        /// The Rust schema type.
        schema: &'static str,
        /// Columns in the primary key.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// Declarations that do not fit together (found when the schema graph is built).
    #[error("invalid schema declarations:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Loading rows failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The query or a preload named something the schemas do not have.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// PostgreSQL returned an error or the connection failed.
    #[error("database error while loading `{table}`: {}", describe(error))]
    Database {
        /// The table being loaded.
        table: String,
        /// The driver's error (its message is part of this error's).
        error: tokio_postgres::Error,
    },
    /// No connection could be taken from the pool.
    #[error("could not get a database connection from the pool: {}", describe(.0))]
    Pool(deadpool_postgres::PoolError),
    /// A row did not decode into the schema.
    #[error("could not decode a row of `{table}`: {cause}")]
    Decode {
        /// The table.
        table: String,
        /// What went wrong.
        cause: DecodeError,
    },
    /// A load this one waited on failed; every caller that shared it gets its error.
    #[error(transparent)]
    Shared(std::sync::Arc<LoadError>),
    /// `one()` found more than one row.
    #[error("expected at most one row of `{table}`, found {count}; add a filter or use `all()`")]
    MultipleRows {
        /// The table.
        table: String,
        /// How many rows matched.
        count: usize,
    },
    /// The access context the load runs under could not be taken on.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// A change's transaction, handed over by the replication stream, did not become
    /// visible to other sessions in time, so what it changed could not be read; the holder
    /// reloads instead.
    #[error("transaction {xid} did not become visible to new snapshots in time; reloading")]
    NotVisible {
        /// The transaction.
        xid: u64,
    },
}

/// An access context ([`Access`](crate::Access)) cannot be used: found when a query, a
/// subscription or a live query is made with it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AccessError {
    /// A setting name PostgreSQL would not take as a custom setting.
    #[error("`{name}` is not a valid setting name; use a dotted custom name such as `app.tenant_id` or `request.jwt.claims` (ASCII letters, digits and underscores in each part)")]
    InvalidSetting {
        /// The name given.
        name: String,
    },
    /// An empty role name.
    #[error("the access context names an empty role; give the name of an existing role, or leave the role out")]
    EmptyRole,
    /// The role does not exist.
    #[error("role `{role}` does not exist; create it (`CREATE ROLE {role} NOLOGIN`) and grant it to the hub's role")]
    UnknownRole {
        /// The role named.
        role: String,
    },
    /// The connecting role may not act as the role.
    #[error("the database role rowsync connects as may not act as `{role}`; grant it (`GRANT {role} TO <the hub's role>`)")]
    RoleNotGranted {
        /// The role named.
        role: String,
    },
    /// A scope names a column a table on the holder's paths does not have.
    #[error("the scope on `{column}` cannot apply to `{schema}`, which has no such column; its columns are: {known}")]
    ScopeColumn {
        /// The schema on the holder's paths.
        schema: &'static str,
        /// The column the scope names.
        column: String,
        /// The schema's columns.
        known: String,
    },
    /// The context was given a query on a connection outside a transaction, where
    /// PostgreSQL forgets `SET LOCAL` at once.
    #[error("an access context needs a transaction: run the query on a transaction you hold (`client.transaction()`) or on a pool")]
    NotInTransaction,
    /// PostgreSQL refused the context for another reason, or the connection failed.
    #[error("taking on the access context failed: {}", describe(error))]
    Database {
        /// The driver's error.
        error: tokio_postgres::Error,
    },
}

impl AccessError {
    /// What to do about this error: a context PostgreSQL refuses is fatal until someone
    /// fixes it; a lost connection is retried.
    pub fn class(&self) -> ErrorClass {
        match self {
            AccessError::Database { error } => classify_db(error),
            _ => ErrorClass::Fatal,
        }
    }
}

/// Connecting to the database failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connection string could not be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The pool could not be built.
    #[error("could not create the connection pool: {0}")]
    Pool(deadpool_postgres::BuildError),
    /// The TLS configuration could not be built (unreadable roots, no certificate).
    #[cfg(feature = "tls")]
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Starting or using a [`Hub`](crate::Hub) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HubError {
    /// Declarations, preload paths or names that do not fit the schemas.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The live database does not match the declared schemas.
    #[error("the database does not match the declared schemas:\n  - {}", .0.join("\n  - "))]
    DatabaseMismatch(Vec<String>),
    /// The database URL could not be used.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A database operation at start failed.
    #[error("{action} failed: {}", describe(error))]
    Database {
        /// What was being done.
        action: &'static str,
        /// The driver's error (its message is part of this error's).
        error: tokio_postgres::Error,
    },

    /// Installing the capture triggers failed.
    #[error(transparent)]
    Triggers(#[from] TriggerError),
    /// The listener could not start.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The logical replication capture source could not be set up or started.
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// Loading rows failed (shared by every caller waiting on the same load).
    #[error("loading rows failed: {0}")]
    Load(std::sync::Arc<LoadError>),
    /// A subscription reads tables the hub does not capture, so it would never hear of them.
    #[error("the hub does not capture {}; add them with `Hub::builder(..).watch::<Schema>([..])`", .tables.join(", "))]
    NotWatched {
        /// The tables missing from the hub's capture plan.
        tables: Vec<String>,
    },
    /// A transaction waited for has not committed yet: wait for it after its commit.
    #[error("transaction {xid} is still in progress; wait for it after it commits")]
    InProgress {
        /// The transaction.
        xid: u64,
    },
    /// The hub has been shut down.
    #[error("the hub has been shut down")]
    Closed,
    /// The access context of a subscription cannot be used.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Row-level security policies on watched tables read tables the hub does not capture
    /// as policy tables: a change of one would change what access contexts see without
    /// any message. Declare each with [`HubBuilder::policy_table`](crate::HubBuilder::policy_table)
    /// (or [`policy_table_named`](crate::HubBuilder::policy_table_named)).
    #[error("row-level security policies read tables the hub does not capture as policy tables, so a change of them would change what access contexts see without a message; declare each with `Hub::builder(..).policy_table::<Schema>()` or `.policy_table_named(\"schema.table\")`:\n  - {}", list(.inputs))]
    UndeclaredPolicyInputs {
        /// Each policy and the table it reads.
        inputs: Vec<PolicyInput>,
    },
}

/// A table a row-level security policy on a watched table reads (found in `pg_depend`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyInput {
    /// The policy's name.
    pub policy: String,
    /// The watched table the policy is on, as PostgreSQL names it (`regclass` text).
    pub table: String,
    /// The table the policy's expressions read, as PostgreSQL names it.
    pub reads: String,
}

impl std::fmt::Display for PolicyInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "policy `{}` on {} reads {}",
            self.policy, self.table, self.reads
        )
    }
}

/// Items one per line (after the first, which follows the message).
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  - ")
}

impl From<LoadError> for HubError {
    fn from(e: LoadError) -> Self {
        HubError::Load(std::sync::Arc::new(e))
    }
}

/// Applying a change to held data failed; the data is left as it was before that change
/// where the failure happened (other parts may already hold the change).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Loading a changed row failed (shared by every caller waiting on the same load).
    #[error("loading a changed row failed: {0}")]
    Load(std::sync::Arc<LoadError>),
    /// Preload paths or declarations that do not fit the schemas.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The data is not of the schema the subscription was made for.
    #[error("this subscription holds `{expected}`, but `sync` was given `{found}`")]
    WrongSchema {
        /// The subscription's schema.
        expected: &'static str,
        /// The data's schema.
        found: &'static str,
    },
    /// Reloading after a resync failed; the data is as it was, and the next resync retries.
    #[error("reloading after a resync failed (the next resync tries again): {0}")]
    Reload(Box<HubError>),
    /// Waiting for the changes committed so far (a sync point) failed: the hub shut down, or
    /// the transaction waited for has not committed.
    #[error("waiting for committed changes failed: {0}")]
    Wait(Box<HubError>),
    /// The subscription was made without held data (`subscribe_to`, `subscribe_topics`).
    #[error("this subscription has no data shape to sync; subscribe with `subscribe` or `subscribe_table`")]
    NoShape,
}

impl From<std::sync::Arc<LoadError>> for SyncError {
    fn from(e: std::sync::Arc<LoadError>) -> Self {
        SyncError::Load(e)
    }
}

/// Installing or removing capture triggers failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// The NOTIFY channel name is not one rowsync can write into a function body.
    #[error("invalid NOTIFY channel name `{0}`; use 1 to 63 ASCII letters, digits or underscores, other than `rowsync_ddl` (reserved for DDL hints)")]
    InvalidChannel(String),
    /// PostgreSQL rejected the script.
    #[error(
        "PostgreSQL rejected the capture trigger SQL; check that every watched table and column \
         exists and that the role owns the tables and may create functions in their schemas"
    )]
    Database {
        /// The server's error.
        #[from]
        source: tokio_postgres::Error,
    },
}

/// Starting the listener failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The connection string is invalid, or the server could not be reached or refused us.
    #[error("could not open the LISTEN connection; check the database URL and that the server is reachable")]
    Connect {
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server refused to LISTEN on a channel.
    #[error("could not LISTEN on channel `{channel}`; check the channel name, and connect to a primary (a standby cannot LISTEN)")]
    Listen {
        /// The channel.
        channel: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// What to do about an error. Every error of rowsync is classified here, in one place, so
/// that the hub, subscriptions and live values react to the same error the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// A passing fault (connection lost, pool exhausted, lock or statement timeout,
    /// serialization failure, server shutting down): trying again may succeed.
    Retry,
    /// Held data may no longer match the database, and reloading it is the repair (a row
    /// that no longer decodes, a column or table that changed under us).
    Resync,
    /// A mistake in the program or its declarations (an unknown association, a wrong
    /// schema type): retrying or reloading changes nothing; fix the code.
    Fatal,
}

/// The class of a driver error, by its SQLSTATE.
fn classify_db(error: &tokio_postgres::Error) -> ErrorClass {
    let Some(state) = error.code() else {
        // no SQLSTATE: the connection failed or closed under the query
        return ErrorClass::Retry;
    };
    match state.code() {
        // connection exceptions, insufficient resources, operator intervention (cancel,
        // shutdown, timeouts), serialization failures and deadlocks, lock not available
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => ErrorClass::Retry,
        "40001" | "40P01" | "55P03" | "55006" => ErrorClass::Retry,
        // undefined or changed columns, tables and types, data that no longer converts:
        // the schema changed under the query; a reload shows it (or fails loudly)
        c if c.starts_with("42") || c.starts_with("22") => ErrorClass::Resync,
        _ => ErrorClass::Resync,
    }
}

impl LoadError {
    /// What to do about this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            LoadError::Schema(_) => ErrorClass::Fatal,
            LoadError::Database { error, .. } => classify_db(error),
            LoadError::Pool(_) => ErrorClass::Retry,
            LoadError::Decode { .. }
            | LoadError::MultipleRows { .. }
            | LoadError::NotVisible { .. } => ErrorClass::Resync,
            LoadError::Shared(inner) => inner.class(),
            LoadError::Access(inner) => inner.class(),
        }
    }
}

impl HubError {
    /// What to do about this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            HubError::Database { error, .. } => classify_db(error),
            HubError::Load(inner) => inner.class(),
            HubError::Listen(_) => ErrorClass::Retry,
            HubError::Replication(error) => error.class(),
            HubError::Triggers(TriggerError::Database { source }) => classify_db(source),
            HubError::Schema(_)
            | HubError::DatabaseMismatch(_)
            | HubError::Connect(_)
            | HubError::Triggers(_)
            | HubError::NotWatched { .. }
            | HubError::UndeclaredPolicyInputs { .. }
            | HubError::InProgress { .. }
            | HubError::Closed => ErrorClass::Fatal,
            HubError::Access(inner) => inner.class(),
        }
    }
}

impl ReplicationError {
    /// What to do about this error: a lost connection or a busy server is retried, what
    /// the setup lacks (privileges, settings, names) is fatal until someone fixes it.
    pub fn class(&self) -> ErrorClass {
        match self {
            ReplicationError::Connect { .. } | ReplicationError::NoFreeWalSender { .. } => {
                ErrorClass::Retry
            }
            ReplicationError::Database { source, .. } => classify_db(source),
            _ => ErrorClass::Fatal,
        }
    }
}

impl SyncError {
    /// What to do about this error: anything but [`ErrorClass::Fatal`] makes the subscription
    /// resync (the change it could not apply is not lost).
    pub fn class(&self) -> ErrorClass {
        match self {
            SyncError::Load(inner) => inner.class(),
            SyncError::Reload(inner) | SyncError::Wait(inner) => inner.class(),
            SyncError::Schema(_) | SyncError::WrongSchema { .. } | SyncError::NoShape => {
                ErrorClass::Fatal
            }
        }
    }
}

/// The logical replication capture source could not be set up, started or removed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// A slot or publication name PostgreSQL (or the replication protocol) cannot take.
    #[error("invalid replication {what} name `{name}`; use 1 to 63 lower-case ASCII letters, digits or underscores")]
    InvalidName {
        /// `slot` or `publication`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// The server does not write the WAL logical decoding needs.
    #[error("logical replication needs `wal_level = logical`, but the server has `{found}`; set it in postgresql.conf and restart the server, or use the trigger capture (the default)")]
    WalLevel {
        /// The server's `wal_level`.
        found: String,
    },
    /// The role may not open replication connections or create slots.
    #[error("role `{role}` may not use replication; grant it with `ALTER ROLE {role} REPLICATION`, or use the trigger capture (the default)")]
    NotReplicationRole {
        /// The connecting role.
        role: String,
    },
    /// No replication slot is free for a new one.
    #[error("all {max} replication slots are in use; raise `max_replication_slots` (needs a restart) or drop the slots nothing consumes any more (`pg_drop_replication_slot`)")]
    NoFreeSlot {
        /// `max_replication_slots`.
        max: i64,
    },
    /// No WAL sender process is free for the replication connection.
    #[error("all {max} WAL senders are busy; raise `max_wal_senders` (needs a restart)")]
    NoFreeWalSender {
        /// `max_wal_senders`.
        max: i64,
    },
    /// Watched tables whose replica identity does not let their changes be captured.
    #[error("the replica identity of watched tables does not fit logical replication:\n  - {}", .0.join("\n  - "))]
    ReplicaIdentity(Vec<String>),
    /// The slot exists but cannot be used by this hub.
    #[error("replication slot `{slot}` exists but {detail}; give this hub another slot name")]
    SlotMismatch {
        /// The slot.
        slot: String,
        /// What does not fit.
        detail: String,
    },
    /// Another process holds the slot.
    #[error("replication slot `{slot}` is in use by process {pid}; another hub or consumer uses this slot name: give each hub a slot of its own")]
    SlotInUse {
        /// The slot.
        slot: String,
        /// The process holding it.
        pid: i32,
    },
    /// The publication does not publish every watched table (and rowsync may not change it).
    #[error("publication `{publication}` does not publish {}; add them (`ALTER PUBLICATION .. ADD TABLE ..`) or let the hub manage the publication", .tables.join(", "))]
    PublicationMissing {
        /// The publication.
        publication: String,
        /// The watched tables it lacks.
        tables: Vec<String>,
    },
    /// Creating or updating the publication failed.
    #[error("could not create or update publication `{publication}`; the role must own every watched table (or create the publication yourself and turn `manage_publication` off)")]
    Publication {
        /// The publication.
        publication: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database URL cannot be used for a replication connection.
    #[error("the database URL cannot be used for replication: {0}")]
    Url(String),
    /// The replication connection could not be opened or started.
    #[error("could not start streaming from replication slot `{slot}`; check that pg_hba.conf allows `replication` connections for this role, and the URL and TLS settings")]
    Connect {
        /// The slot.
        slot: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A database operation failed.
    #[error("{action} failed")]
    Database {
        /// What was being done.
        action: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// An error with its causes: tokio-postgres shows only "db error" and hides the server's
/// message in `source()`.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_includes_causes() {
        #[derive(Debug, Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(describe(&error), "outer: inner");
    }
}
