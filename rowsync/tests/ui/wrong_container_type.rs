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
    #[rowsync(has_many(Post, foreign_key = "person_id"))]
    posts: Assoc<Option<Post>>,
    #[rowsync(belongs_to(Post))]
    post: Vec<Post>,
}

fn main() {}
