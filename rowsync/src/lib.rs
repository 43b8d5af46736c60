//! rowsync keeps in-memory rows in sync with PostgreSQL.
//!
//! Describe tables with `#[derive(Schema)]`, load rows with their associations, and (in the
//! capture, routing and sync layers) keep what you hold up to date as other processes write.
//!
//! ```
//! use rowsync::{Assoc, Db, Filter, Schema};
//!
//! #[derive(Schema, Clone, Debug, PartialEq)]
//! #[rowsync(table = "authors")]
//! pub struct Author {
//!     pub id: i64,
//!     pub name: String,
//!     #[rowsync(has_many(Book, foreign_key = "author_id", order_by = "title"))]
//!     pub books: Assoc<Vec<Book>>,
//! }
//!
//! #[derive(Schema, Clone, Debug, PartialEq)]
//! #[rowsync(table = "books")]
//! pub struct Book {
//!     pub id: i64,
//!     pub title: String,
//!     pub author_id: i64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let url = rowsync_testdb::database_url_or_throwaway("rowsync_doc").await?;
//! # let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
//! # tokio::spawn(conn);
//! # client.batch_execute("
//! #   DROP TABLE IF EXISTS books, authors;
//! #   CREATE TABLE authors (id bigint PRIMARY KEY, name text NOT NULL);
//! #   CREATE TABLE books (id bigint PRIMARY KEY, title text NOT NULL, author_id bigint NOT NULL);
//! #   INSERT INTO authors VALUES (1, 'Le Guin'), (2, 'Lem');
//! #   INSERT INTO books VALUES (1, 'The Dispossessed', 1), (2, 'A Wizard of Earthsea', 1), (3, 'Solaris', 2);
//! # ").await?;
//! let db = Db::connect(&url)?;
//! let authors: Vec<Author> = db
//!     .query::<Author>()
//!     .filter(Filter::eq("name", "Le Guin"))
//!     .preload(["books"])
//!     .all()
//!     .await?;
//! let titles: Vec<&str> = authors[0].books.loaded().unwrap().iter().map(|b| b.title.as_str()).collect();
//! assert_eq!(titles, ["A Wizard of Earthsea", "The Dispossessed"]);
//! # Ok(())
//! # }
//! ```
//!
//! To keep held data in step with the database, start a [`Hub`] once, subscribe to what
//! you hold, and [`sync`](Subscription::sync) each message into it:
//!
//! ```no_run
//! # use rowsync::{Assoc, Hub, Schema};
//! # #[derive(Schema, Clone, Debug, PartialEq)]
//! # #[rowsync(table = "authors")]
//! # pub struct Author { pub id: i64, #[rowsync(has_many(Book))] pub books: Assoc<Vec<Book>> }
//! # #[derive(Schema, Clone, Debug, PartialEq)]
//! # #[rowsync(table = "books")]
//! # pub struct Book { pub id: i64, pub author_id: i64 }
//! # async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::builder(url).watch::<Author>(["books"]).start().await?;
//! let mut authors = hub.query::<Author>().preload(["books"]).all().await?;
//! let mut sub = hub.subscribe(&authors, ["books"])?;
//! while let Some(message) = sub.next().await {
//!     let changes = sub.sync(&mut authors, &message).await?;
//!     println!("changed: {changes:?}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The pieces, in the order a change travels through them: schemas (what you declare), the
//! schema [`Graph`] (paths computed once), queries ([`Db`], [`Query`]), capture (triggers and
//! the listener by default, or a logical replication slot with the `replication` feature and
//! `HubBuilder::replication`; either yields [`Change`]s), a shared row cache (at most one read per change),
//! routing ([`Topic`]s and per-subscriber queues), sync (applying a change to held data), and
//! the [`Hub`] that wires them together; [`Live`] values sit on top.
//!
//! # Cargo features
//!
//! All on by default; with `default-features = false` rowsync keeps integers, floats, `bool`,
//! text, `bytea` and text enums over plain TCP, and you turn back on what your schemas use:
//!
//! - `chrono`: `date`, `time`, `timestamp`, `timestamptz` as chrono's `NaiveDate`,
//!   `NaiveTime`, `NaiveDateTime`, `DateTime<Utc>`.
//! - `uuid`: `uuid` as `uuid::Uuid`.
//! - `decimal`: `numeric` as `Decimal` (rust_decimal, re-exported here).
//! - `json`: `json` / `jsonb` as `serde_json::Value`.
//! - `tls`: TLS connections with rustls (`Tls::rustls`, `Tls::with_root_pem`).
//! - `serde` (off by default): `Serialize` / `Deserialize` for [`Assoc`], [`Key`], [`Value`],
//!   [`Changes`] and [`LiveUpdate`], so a schema that derives serde's traits goes to JSON
//!   with its loaded associations (`null` for one not loaded).
//!
//! A column of a type whose feature is off is reported as unsupported.

mod cache;
mod capture;
mod change;
mod error;
mod graph;
mod hash;
mod hub;
mod live;
mod load;
mod route;
mod schema;
mod sync;

pub use cache::CacheConfig;
pub use capture::plan::{CapturePlan, TablePlan};
#[cfg(feature = "replication")]
pub use capture::replication::ReplicationConfig;
pub use capture::CaptureProblem;
pub use change::{Change, Op, ResyncReason};
pub use error::{
    AccessError, ConnectError, DecodeError, ErrorClass, HubError, ListenError, LoadError,
    PolicyInput, ReplicationError, SchemaError, SyncError, TriggerError,
};
pub use graph::{Graph, GraphBuilder, Path, PreloadNode, PreloadTree, Reached};
pub use hub::{Hub, HubBuilder, HubStats, Subscription, SyncStats};
pub use live::{Follow, Live, LiveQuery, LiveUpdate, LiveValue};
pub use load::{
    current_xid, preload_into, query, Access, Db, Executor, Fetch, PgType, Query, Snapshot,
    SnapshotParseError, Tls,
};
pub use route::{Inbox, Message, Ops, Selector, SubscriptionId, Topic};
#[doc = include_str!("schema/derive_schema.md")]
pub use rowsync_derive::Schema;
#[doc = include_str!("schema/derive_text_enum.md")]
pub use rowsync_derive::TextEnum;
/// `numeric` columns decode into `rust_decimal`'s `Decimal`, re-exported so the versions match.
#[cfg(feature = "decimal")]
pub use rust_decimal::Decimal;
pub use schema::{
    Assoc, AssocDef, AssocField, AssocKind, AssocValue, AssocVisitor, ColumnDef, FieldValue,
    Filter, JoinThrough, Key, OrderBy, RowSource, Schema, SchemaMeta, SortOrder, TableName, Value,
};
pub use sync::{Changes, Held, SyncOptions};

/// No preloads, for APIs that take preload paths: `.watch::<Tag>(rowsync::NO_PRELOADS)`.
pub const NO_PRELOADS: [&str; 0] = [];

/// Used by the code `#[derive(Schema)]` generates; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::error::DecodeError;
    pub use crate::schema::decode_field;
    pub use crate::schema::{
        AssocDef, AssocField, AssocKind, AssocValue, AssocVisitor, ColumnDef, FieldValue, Filter,
        JoinThrough, Key, OrderBy, RowSource, Schema, SchemaMeta, SortOrder, TableName, Value,
    };
}

/// Internals that the test suite and the benchmark reach into; not a public API, and not
/// covered by semver.
#[doc(hidden)]
pub mod testing {
    pub use crate::capture::replication::pgoutput;
    pub use crate::capture::triggers::ddl::{CHANNEL as DDL_CHANNEL, EVENT_TRIGGER};
    pub use crate::capture::triggers::listen::{ListenEvent, Listener, ListenerConfig};
    pub use crate::capture::triggers::meta::FORMAT;
    pub use crate::capture::triggers::payload::{decode, Decoded, PayloadError};
    pub use crate::capture::triggers::{
        function_name, install, install_sql, trigger_name, truncate_trigger_name, uninstall,
        uninstall_sql, MARKER,
    };
    pub use crate::load::value_from_text;
    pub use crate::route::{topics_for_rows, topics_for_table};
    pub use crate::schema::quote_ident;
    pub use crate::sync::set_indexed_from;
}
