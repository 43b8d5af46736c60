use rowsync::Schema;

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

fn main() {
    // one error per bad field, and none where the type is used
    let _ = Post::meta();
}
