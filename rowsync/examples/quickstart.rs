//! Loads people with their posts and tags, and prints them.
//!
//! Run: `cargo run -p rowsync --example quickstart`. With `DATABASE_URL` unset it starts a
//! throwaway PostgreSQL cluster of its own (removed when it exits); with `DATABASE_URL` set
//! it uses that database and creates its tables under the schema `rowsync_quickstart`.

// why: the fields of an example's structs speak for themselves.
#![allow(missing_docs)]

use rowsync::{Assoc, Db, Filter, Schema};

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "persons", schema = "rowsync_quickstart")]
/// A person, with posts.
pub struct Person {
    pub id: i64,
    pub name: String,
    #[rowsync(has_many(Post, foreign_key = "person_id", order_by = "id"))]
    pub posts: Assoc<Vec<Post>>,
    #[rowsync(has_many(Tag, through(posts, tags)))]
    pub all_tags: Assoc<Vec<Tag>>,
}

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "posts", schema = "rowsync_quickstart")]
/// A post, with tags.
pub struct Post {
    pub id: i64,
    pub title: String,
    pub person_id: i64,
    #[rowsync(many_to_many(Tag, join_through = "posts_tags", order_by = "name"))]
    pub tags: Assoc<Vec<Tag>>,
}

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "tags", schema = "rowsync_quickstart")]
/// A tag.
pub struct Tag {
    pub id: i64,
    pub name: String,
}

const SETUP: &str = "
    DROP SCHEMA IF EXISTS rowsync_quickstart CASCADE;
    CREATE SCHEMA rowsync_quickstart;
    SET search_path TO rowsync_quickstart;
    CREATE TABLE persons (id bigint PRIMARY KEY, name text NOT NULL);
    CREATE TABLE posts (id bigint PRIMARY KEY, title text NOT NULL,
                        person_id bigint NOT NULL REFERENCES persons);
    CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL);
    CREATE TABLE posts_tags (post_id bigint REFERENCES posts, tag_id bigint REFERENCES tags,
                             PRIMARY KEY (post_id, tag_id));
    INSERT INTO persons VALUES (1, 'Ada'), (2, 'Grace');
    INSERT INTO posts VALUES (1, 'Notes on the engine', 1), (2, 'On compilers', 2),
                             (3, 'Bugs, found', 2);
    INSERT INTO tags VALUES (1, 'history'), (2, 'compilers'), (3, 'hardware');
    INSERT INTO posts_tags VALUES (1, 1), (1, 3), (2, 2), (3, 1), (3, 2);
";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = rowsync_testdb::database_url_or_throwaway("rowsync_quickstart").await?;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(SETUP).await?;

    let db = Db::connect(&url)?;
    // One query for people, one for their posts, one for the posts' tags, one for all_tags.
    let people = db
        .query::<Person>()
        .preload(["posts.tags", "all_tags"])
        .all()
        .await?;
    for person in &people {
        println!("{} (#{})", person.name, person.id);
        for post in person.posts.loaded().into_iter().flatten() {
            let tags: Vec<&str> = post
                .tags
                .loaded()
                .into_iter()
                .flatten()
                .map(|t| t.name.as_str())
                .collect();
            println!(
                "  post #{}: {:<22} tags: {}",
                post.id,
                post.title,
                tags.join(", ")
            );
        }
        let all: Vec<&str> = person
            .all_tags
            .loaded()
            .into_iter()
            .flatten()
            .map(|t| t.name.as_str())
            .collect();
        println!(
            "  every tag of theirs (through posts.tags): {}",
            all.join(", ")
        );
    }

    let grace = db
        .query::<Person>()
        .filter(Filter::eq("name", "Grace"))
        .preload(["posts"])
        .one()
        .await?;
    let titles = grace
        .as_ref()
        .and_then(|g| g.posts.loaded())
        .map(|posts| posts.len())
        .unwrap_or(0);
    println!(
        "Grace has {titles} posts; fetched by primary key: {:?}",
        db.query::<Tag>().get(2i64).await?.map(|t| t.name)
    );
    client
        .batch_execute("DROP SCHEMA rowsync_quickstart CASCADE")
        .await?;
    Ok(())
}
