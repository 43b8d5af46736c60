//! A live list of posts named like a filter, printed as it changes while this example
//! writes through a second connection.
//!
//! Run: `cargo run -p rowsync --example live`. With `DATABASE_URL` unset it starts a
//! throwaway PostgreSQL cluster of its own; with it set, it uses that database and the schema
//! `public` (it creates and drops the tables `live_posts`, `live_tags`, `live_posts_tags`).

// why: the fields of an example's structs speak for themselves.
#![allow(missing_docs)]

use std::time::Duration;

use rowsync::{Assoc, Filter, Hub, Schema};

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "live_posts")]
pub struct Post {
    pub id: i64,
    pub title: String,
    pub published: bool,
    #[rowsync(many_to_many(
        Tag,
        join_through = "live_posts_tags",
        join_keys("post_id", "tag_id")
    ))]
    pub tags: Assoc<Vec<Tag>>,
}

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "live_tags")]
pub struct Tag {
    pub id: i64,
    pub name: String,
}

const SETUP: &str = "
    DROP TABLE IF EXISTS live_posts_tags, live_posts, live_tags;
    CREATE TABLE live_posts (id bigint PRIMARY KEY, title text NOT NULL, published bool NOT NULL);
    CREATE TABLE live_tags (id bigint PRIMARY KEY, name text NOT NULL);
    CREATE TABLE live_posts_tags (post_id bigint REFERENCES live_posts ON DELETE CASCADE,
                                  tag_id bigint REFERENCES live_tags ON DELETE CASCADE,
                                  PRIMARY KEY (post_id, tag_id));
    INSERT INTO live_posts VALUES (1, 'Hello', true), (2, 'Draft', false);
    INSERT INTO live_tags VALUES (1, 'intro'), (2, 'rust');
    INSERT INTO live_posts_tags VALUES (1, 1);
";

/// What the second connection does, one transaction at a time.
const WRITES: [&str; 6] = [
    "UPDATE live_posts SET published = true WHERE id = 2",
    "INSERT INTO live_posts_tags VALUES (2, 2)",
    "UPDATE live_tags SET name = 'rustlang' WHERE id = 2",
    "INSERT INTO live_posts VALUES (3, 'Fresh', true)",
    "UPDATE live_posts SET published = false WHERE id = 1",
    "DELETE FROM live_posts WHERE id = 3",
];

fn show(posts: &[Post]) -> String {
    posts
        .iter()
        .map(|p| {
            let tags: Vec<&str> = p
                .tags
                .loaded()
                .into_iter()
                .flatten()
                .map(|t| t.name.as_str())
                .collect();
            format!("#{} {} [{}]", p.id, p.title, tags.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = rowsync_testdb::database_url_or_throwaway("rowsync_live_example").await?;
    let (writer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    writer.batch_execute(SETUP).await?;

    let hub = Hub::builder(&url).watch::<Post>(["tags"]).start().await?;
    let mut posts = hub
        .live::<Post>()
        .filter(Filter::eq("published", true))
        .preload(["tags"])
        .all()
        .await?;
    println!("published: {}", show(&posts));

    for sql in WRITES {
        writer.batch_execute(sql).await?;
        println!("\nwrote: {sql}");
        // each write changes the list once; wait for it (bounded, so the example always ends)
        match tokio::time::timeout(Duration::from_secs(10), posts.next()).await {
            Ok(Some(changes)) => {
                let changes = changes?;
                let keys = |keys: &[rowsync::Key]| {
                    keys.iter()
                        .map(|k| format!("#{k}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                println!(
                    "  inserted [{}] updated [{}] deleted [{}]",
                    keys(&changes.inserted),
                    keys(&changes.updated),
                    keys(&changes.deleted)
                );
                println!("  published: {}", show(&posts));
            }
            Ok(None) => break,
            Err(_) => return Err("no change arrived within 10 s".into()),
        }
    }
    let stats = hub.stats();
    println!(
        "\n{} changes received, {} rows read for them, {} cache hits",
        stats.changes_received, stats.rows_loaded, stats.cache_hits
    );
    hub.shutdown().await;
    writer
        .batch_execute("DROP TABLE live_posts_tags, live_posts, live_tags")
        .await?;
    Ok(())
}
