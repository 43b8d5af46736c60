use rowsync::{Assoc, Schema};

#[derive(Schema, Clone)]
#[rowsync(table = "tags")]
struct Tag {
    id: i64,
}

#[derive(Schema, Clone)]
#[rowsync(tabel = "posts")]
struct Post {
    name: String,
    #[rowsync(many_to_many(Tag))]
    tags: Assoc<Vec<Tag>>,
    #[rowsync(has_many(Tag, order_by = "name sideways"))]
    sorted: Assoc<Vec<Tag>>,
    #[rowsync(primary)]
    other: i64,
}

fn main() {}
