use rowsync::{Assoc, Schema};

#[derive(Schema, Clone)]
#[rowsync(table = "posts")]
struct Post {
    id: i64,
}

#[derive(Schema, Clone)]
#[rowsync(table = "tags")]
struct Tag {
    id: i64,
}

#[derive(Schema, Clone)]
#[rowsync(table = "persons")]
struct Person {
    id: i64,
    #[rowsync(has_many(Post))]
    posts: Assoc<Vec<Tag>>,
    created: std::time::Instant,
}

fn main() {}
