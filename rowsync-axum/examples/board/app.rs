//! The board: people with their posts and the posts' tags, live in every open page, and a
//! form that adds a post through the server. Shared by `main.rs` and the browser test.

use std::error::Error;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use rowsync::{Assoc, Db, Hub, Schema};
use rowsync_axum::{FeedConfig, LiveFeed};
use serde::{Deserialize, Serialize};

/// A person and their posts.
#[derive(Schema, Clone, Debug, PartialEq, Serialize)]
#[rowsync(table = "board_people")]
pub struct Person {
    /// The key.
    pub id: i64,
    /// The name shown.
    pub name: String,
    /// Posts, oldest first.
    #[rowsync(has_many(Post, foreign_key = "person_id", order_by = "id"))]
    pub posts: Assoc<Vec<Post>>,
}

/// A post and its tags.
#[derive(Schema, Clone, Debug, PartialEq, Serialize)]
#[rowsync(table = "board_posts")]
pub struct Post {
    /// The key.
    pub id: i64,
    /// The author.
    pub person_id: i64,
    /// The text shown.
    pub title: String,
    /// Tags, by name.
    #[rowsync(many_to_many(
        Tag,
        join_through = "board_posts_tags",
        join_keys("post_id", "tag_id"),
        order_by = "name"
    ))]
    pub tags: Assoc<Vec<Tag>>,
}

/// A tag.
#[derive(Schema, Clone, Debug, PartialEq, Serialize)]
#[rowsync(table = "board_tags")]
pub struct Tag {
    /// The key.
    pub id: i64,
    /// The name shown.
    pub name: String,
}

/// The tables and a few rows (dropped first: the demo starts fresh).
pub const SETUP: &str = "
    DROP TABLE IF EXISTS board_posts_tags, board_posts, board_tags, board_people;
    CREATE TABLE board_people (id bigserial PRIMARY KEY, name text NOT NULL);
    CREATE TABLE board_posts (
        id bigserial PRIMARY KEY,
        person_id bigint NOT NULL REFERENCES board_people (id) ON DELETE CASCADE,
        title text NOT NULL
    );
    CREATE TABLE board_tags (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE);
    CREATE TABLE board_posts_tags (
        post_id bigint NOT NULL REFERENCES board_posts (id) ON DELETE CASCADE,
        tag_id bigint NOT NULL REFERENCES board_tags (id) ON DELETE CASCADE,
        PRIMARY KEY (post_id, tag_id)
    );
    INSERT INTO board_people (name) VALUES ('Ada'), ('Grace'), ('Edsger');
    INSERT INTO board_tags (name) VALUES ('rust'), ('sql'), ('web');
    INSERT INTO board_posts (person_id, title) VALUES
        (1, 'Notes on the engine'), (1, 'Loops'), (2, 'Compilers'), (3, 'Go to');
    INSERT INTO board_posts_tags VALUES (1, 1), (1, 2), (2, 1), (3, 3);
";

/// What the server holds.
#[derive(Clone)]
pub struct Board {
    /// The hub following the tables.
    // why: the tests read it (to kill its listener); the demo only keeps it running
    #[allow(dead_code)]
    pub hub: Hub,
    /// The people, published to every page.
    pub feed: LiveFeed,
    db: Db,
}

/// Creates the tables (see [`SETUP`]) and starts the hub and the feed.
pub async fn start(url: &str, config: FeedConfig) -> Result<(Router, Board), Box<dyn Error>> {
    let db = Db::connect(url)?;
    db.pool().get().await?.batch_execute(SETUP).await?;
    let hub = Hub::builder(url)
        .watch::<Person>(["posts.tags"])
        .start()
        .await?;
    let query = hub.live::<Person>().preload(["posts.tags"]).order_by("id");
    let feed = LiveFeed::start_with(query, config).await?;
    let board = Board { hub, feed, db };
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/rowsync.js", get(rowsync_axum::client_js))
        .route("/people/events", get(rowsync_axum::sse(board.feed.clone())))
        .route("/posts", post(add_post))
        .with_state(board.clone());
    Ok((router, board))
}

/// The page: the people list, kept live by the client, and the form.
pub const PAGE: &str = include_str!("page.html");

/// A post as the form sends it.
#[derive(Debug, Deserialize)]
pub struct NewPost {
    /// The author.
    pub person_id: i64,
    /// The text.
    pub title: String,
    /// Tag names, comma separated (new ones are created).
    #[serde(default)]
    pub tags: String,
}

/// `POST /posts`: the post and its tags, in one transaction.
async fn add_post(
    State(board): State<Board>,
    Json(new): Json<NewPost>,
) -> Result<StatusCode, (StatusCode, String)> {
    let title = new.title.trim();
    if title.is_empty() || title.len() > 200 {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "a title of 1 to 200 characters, please".into(),
        ));
    }
    let tags: Vec<String> = new
        .tags
        .split(',')
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty() && t.len() <= 40)
        .collect();
    let failed = |e: &dyn std::fmt::Display| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let mut client = board.db.pool().get().await.map_err(|e| failed(&e))?;
    let tx = client.transaction().await.map_err(|e| failed(&e))?;
    let row = tx
        .query_opt(
            "INSERT INTO board_posts (person_id, title)
             SELECT id, $2 FROM board_people WHERE id = $1 RETURNING id",
            &[&new.person_id, &title],
        )
        .await
        .map_err(|e| failed(&e))?
        .ok_or((StatusCode::NOT_FOUND, "no such person".to_owned()))?;
    let post_id: i64 = row.get(0);
    tx.execute(
        "WITH t AS (
            INSERT INTO board_tags (name) SELECT unnest($2::text[])
            ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id)
         INSERT INTO board_posts_tags (post_id, tag_id) SELECT $1, id FROM t",
        &[&post_id, &tags],
    )
    .await
    .map_err(|e| failed(&e))?;
    tx.commit().await.map_err(|e| failed(&e))?;
    Ok(StatusCode::CREATED)
}
