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
//! The pieces, in the order a change travels through them: [`schema`] (what you declare),
//! [`graph`] (the schema graph and its paths), [`load`] (queries and preloads), [`capture`]
//! (triggers, payloads, the listener), [`cache`] (at most one read per change, shared), [`route`] (topics and
//! subscriber queues), [`sync`] (applying a change to held data), and the [`Hub`] that wires
//! them together.

pub mod cache;
pub mod capture;
pub mod error;
pub mod graph;
mod hub;
pub mod live;
pub mod load;
pub mod route;
pub mod schema;
pub mod sync;

pub use capture::{Change, Op};
pub use error::{ConnectError, DecodeError, HubError, LoadError, SchemaError, SyncError};
pub use graph::{Graph, Path, Reached};
pub use hub::{Hub, HubBuilder, HubStats, Subscription};
pub use live::{Live, LiveQuery, LiveStats, LiveValue};
pub use load::{preload_into, query, Db, Executor, PreloadTree, Query, Tls};
pub use route::{Message, Ops, ResyncReason, Selector, Topic};
#[doc = include_str!("schema/derive_schema.md")]
pub use rowsync_derive::Schema;
#[doc = include_str!("schema/derive_text_enum.md")]
pub use rowsync_derive::TextEnum;
/// `numeric` columns decode into `rust_decimal`'s `Decimal`, re-exported so the versions match.
pub use rust_decimal::Decimal;
pub use schema::{Assoc, AssocValue, FieldValue, Filter, Key, RowSource, Schema, Value};
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
