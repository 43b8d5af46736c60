//! Live rowsync queries in the browser.
//!
//! Start a [`LiveFeed`] from a live query, serve it with the [`sse`] handler, and load the
//! [client](CLIENT_JS) in the page: every browser gets a `snapshot` of the rows, then one
//! `patch` per committed transaction (rows upserted and keys removed, by primary key, nested
//! associations included; never part of a transaction), and a `reset` after a resync
//! (`TRUNCATE`, a lost capture connection, a browser too far behind). Event ids let a
//! reconnecting browser resume after its last transaction while the feed's replay buffer
//! still holds what it missed.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use rowsync::{Assoc, Hub, Schema};
//! use rowsync_axum::LiveFeed;
//!
//! #[derive(Schema, Clone, Debug, serde::Serialize)]
//! #[rowsync(table = "people")]
//! pub struct Person {
//!     pub id: i64,
//!     pub name: String,
//!     #[rowsync(has_many(Post, foreign_key = "person_id"))]
//!     pub posts: Assoc<Vec<Post>>,
//! }
//!
//! #[derive(Schema, Clone, Debug, serde::Serialize)]
//! #[rowsync(table = "posts")]
//! pub struct Post {
//!     pub id: i64,
//!     pub person_id: i64,
//!     pub title: String,
//! }
//!
//! # async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::builder(url).watch::<Person>(["posts"]).start().await?;
//! let people = LiveFeed::start(hub.live::<Person>().preload(["posts"]).order_by("name")).await?;
//! let app: Router = Router::new()
//!     .route("/people/events", get(rowsync_axum::sse(people)))
//!     .route("/rowsync.js", get(rowsync_axum::client_js));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! and in the page:
//!
//! ```js
//! import { follow } from "/rowsync.js";
//! follow("/people/events", (people, change) => render(people));
//! ```
//!
//! A slow browser never holds memory without bound: events are made as its socket drains,
//! and the replay buffer is bounded ([`FeedConfig`]). For a query per request (per-user
//! filters) use [`sse_per_request`]; for a handler of your own, [`LiveFeed::sse`].

mod error;
mod event;
mod feed;
mod sse;

use axum::http::header;
use axum::response::IntoResponse;

pub use error::FeedError;
pub use feed::{FeedConfig, FeedStats, LiveFeed};
pub use sse::{sse, sse_per_request, EventResponse, EventStream};

/// The browser client, a JavaScript module with one export, `follow(url, onChange,
/// options)`: it keeps the rows in a keyed store and calls `onChange(rows, change)` after
/// the snapshot and after each transaction. Serve it with [`client_js`].
pub const CLIENT_JS: &str = include_str!("client.js");

/// An axum handler serving [`CLIENT_JS`]: `.route("/rowsync.js", get(rowsync_axum::client_js))`.
// why async with nothing to await: that is the shape of an axum handler
#[allow(clippy::unused_async)]
pub async fn client_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CLIENT_JS,
    )
}
