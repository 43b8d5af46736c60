use rowsync::{Assoc, Schema};

#[derive(Schema, Clone)]
#[rowsync(table = "posts")]
struct Post {
    id: i64,
    // a `text[]` column: arrays are not a column type rowsync decodes
    tags: Vec<String>,
    #[rowsync(column = "edited_at")]
    edited: Option<std::time::SystemTime>,
    title: String,
}

#[derive(Schema, Clone)]
#[rowsync(table = "persons")]
struct Person {
    id: i64,
    // an association without its attribute is not taken for a column
    posts: Assoc<Vec<Post>>,
}

fn main() {
    // one error per bad field, and none where the types are used
    let _ = Post::meta();
    let _ = Person::meta();
}
