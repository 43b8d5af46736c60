use rowsync::{Assoc, Schema};

#[derive(Schema, Clone)]
#[rowsync(table = "posts")]
struct Post {
    id: i64,
}

#[derive(Schema, Clone)]
#[rowsync(table = "persons")]
struct Person {
    id: i64,
    #[rowsync(has_many(Post, filter(name ~ "x")))]
    posts: Assoc<Vec<Post>>,
    #[rowsync(has_many(Post, filter(name = Some)))]
    other: Assoc<Vec<Post>>,
}

fn main() {}
