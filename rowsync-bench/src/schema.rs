//! The bench's own tables: persons with posts, posts with tags through `posts_tags`.
//!
//! why not rowsync's test fixture: the bench must not depend on `rowsync/tests/`, and its
//! tables carry only what the scenarios change (names) and route by (keys).

use rowsync::{Assoc, Schema};

/// A person; its posts are what a partitioned subscriber holds.
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "persons")]
pub struct Person {
    /// Primary key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// The person's posts, in id order.
    #[rowsync(has_many(Post, foreign_key = "person_id", order_by = "id"))]
    pub posts: Assoc<Vec<Post>>,
}

/// A post; writers change its name to a marker (`m<n>`) to follow change `n`.
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "posts")]
pub struct Post {
    /// Primary key.
    pub id: i64,
    /// The name; `m<n>` once change `n` touched it.
    pub name: String,
    /// The owner.
    pub person_id: i64,
    /// Tags, through the `posts_tags` join table.
    #[rowsync(many_to_many(Tag, join_through = "posts_tags", join_keys("post_id", "tag_id")))]
    pub tags: Assoc<Vec<Tag>>,
}

/// A tag, shared by many posts.
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "tags")]
pub struct Tag {
    /// Primary key.
    pub id: i64,
    /// The name.
    pub name: String,
}

/// The tables of the schemas above.
pub const DDL: &str = "
    CREATE TABLE persons (id bigint PRIMARY KEY, name text NOT NULL);
    CREATE TABLE posts (
        id bigint PRIMARY KEY,
        name text NOT NULL,
        person_id bigint NOT NULL REFERENCES persons (id)
    );
    CREATE INDEX posts_person_id ON posts (person_id);
    CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL);
    CREATE TABLE posts_tags (
        post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
        tag_id bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
        PRIMARY KEY (post_id, tag_id)
    );
    CREATE INDEX posts_tags_tag_id ON posts_tags (tag_id);
";

/// The tables whose reads count as database reads (`pg_stat_statements`).
pub const TABLES: [&str; 4] = ["persons", "posts", "tags", "posts_tags"];

/// What every hub of the bench watches: all four tables.
pub const WATCH: [&str; 1] = ["posts.tags"];

/// The shape every subscriber holds its posts in.
pub const POST_SHAPE: [&str; 1] = ["tags"];

/// The marker a writer puts into a post's name for change `n`.
pub fn marker_name(n: u32) -> String {
    format!("m{n}")
}

/// The change a post's name says last touched it, if any.
pub fn marker_of(name: &str) -> Option<u32> {
    name.strip_prefix('m')?.parse().ok()
}

/// The post with `id` in `posts`.
pub fn find_post(posts: &[Post], id: i64) -> Option<&Post> {
    posts.iter().find(|p| p.id == id)
}

/// The post id of a change's key (posts have a single `bigint` key).
pub fn post_id_of(key: &rowsync::Key) -> Option<i64> {
    match key.values() {
        [rowsync::Value::I64(id)] => Some(*id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{marker_name, marker_of};

    #[test]
    fn markers_round_trip() {
        assert_eq!(marker_of(&marker_name(42)), Some(42));
        assert_eq!(marker_of("post 7"), None);
        assert_eq!(marker_of("m"), None);
    }
}
