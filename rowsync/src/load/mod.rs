//! Queries: get / all / one with preloads, and decoding rows into schemas.

pub(crate) mod access;
mod db;
mod executor;
pub(crate) mod image;
pub(crate) mod pg_text;
pub(crate) mod pg_value;
mod preload;
pub(crate) mod snapshot;
pub(crate) use preload::{fetch_related_of, owner_index, preload, Related};
pub(crate) mod query;
pub(crate) mod related_sql;
pub(crate) mod scope;
mod tls;

pub use access::Access;
pub(crate) use access::ReadConn;
pub use db::{query, Db};
pub use executor::{current_xid, Executor};
pub use pg_text::{value_from_text, PgType};
pub(crate) use query::QuerySpec;
pub use query::{preload_into, Fetch, Query};
pub(crate) use snapshot::{rows_under_snapshot, wait_visible, Selection};
pub use snapshot::{Snapshot, SnapshotParseError};
pub(crate) use tls::DriveConnection;
pub use tls::Tls;
