//! The schema graph: paths computed once, and declarations checked all at once.

use rowsync::{Assoc, Graph, PreloadTree, Reached, Schema, SchemaError, TableName};

use crate::support::schemas::{Person, Post, Tag};

fn table(name: &'static str) -> TableName {
    TableName { schema: None, name }
}

fn dotted(graph: &Graph, shape: &[&str], to: &'static str) -> Vec<(String, Reached)> {
    let tree = PreloadTree::parse(Person::meta(), shape).unwrap();
    let mut paths: Vec<_> = graph
        .paths::<Person>(&tree, table(to))
        .unwrap()
        .iter()
        .map(|p| (p.dotted(), p.reached))
        .collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    paths
}

const TAG_SHAPE: &[&str] = &[
    "posts.tags",
    "all_tags",
    "other_posts.tags",
    "test_posts.tags",
];

#[test]
fn a_shape_reaches_tags_via_posts_tags_and_via_all_tags() {
    let graph = Graph::builder().register::<Person>().build().unwrap();
    let to_tags = dotted(&graph, TAG_SHAPE, "tags");
    assert_eq!(
        to_tags,
        [
            ("all_tags".into(), Reached::Related),
            ("other_posts.tags".into(), Reached::Related),
            ("posts.tags".into(), Reached::Related),
            ("test_posts.tags".into(), Reached::Related),
        ]
    );
    let to_join = dotted(&graph, TAG_SHAPE, "posts_tags");
    assert!(
        to_join.contains(&("posts.tags".into(), Reached::JoinTable)),
        "{to_join:?}"
    );
    assert!(
        to_join.contains(&("all_tags".into(), Reached::Through)),
        "{to_join:?}"
    );
    // a through association also depends on its intermediate table
    assert!(dotted(&graph, TAG_SHAPE, "posts").contains(&("all_tags".into(), Reached::Through)));
    // nothing outside the shape
    assert!(dotted(&graph, TAG_SHAPE, "labels").is_empty());
}

#[test]
fn a_shape_visiting_a_schema_twice_has_a_path_for_each_visit() {
    let graph = Graph::builder().register::<Person>().build().unwrap();
    let shape = ["favourite_people.posts.person", "posts"];
    let to_posts: Vec<_> = dotted(&graph, &shape, "posts")
        .into_iter()
        .map(|(p, r)| format!("{p} {r:?}"))
        .collect();
    assert_eq!(
        to_posts,
        ["favourite_people.posts Related", "posts Related"]
    );
    let to_persons: Vec<_> = dotted(&graph, &shape, "persons")
        .into_iter()
        .map(|(p, r)| format!("{p} {r:?}"))
        .collect();
    assert_eq!(
        to_persons,
        [
            "favourite_people Related",
            "favourite_people.posts.person Related"
        ]
    );
    let to_fav = dotted(&graph, &shape, "favourite_people");
    assert_eq!(to_fav, [("favourite_people".into(), Reached::JoinTable)]);
}

#[test]
fn every_reachable_table_is_a_node_and_schemas_are_found_by_table() {
    let graph = Graph::builder().register::<Post>().build().unwrap();
    let mut tables: Vec<_> = graph.tables().iter().map(|t| t.to_string()).collect();
    tables.sort();
    for t in [
        "\"posts_tags\"",
        "\"posts_labels\"",
        "\"favourite_people\"",
        "\"app\".\"widgets\"",
    ] {
        assert!(
            tables.contains(&t.to_string()),
            "{t} missing from {tables:?}"
        );
    }
    assert_eq!(
        graph.schema_of(table("tags")).map(|m| m.name),
        Some(Tag::meta().name)
    );
    assert!(
        graph.schema_of(table("posts_labels")).is_none(),
        "known by name only"
    );
    let tree = PreloadTree::parse(Tag::meta(), ["posts.labels"]).unwrap();
    assert!(graph
        .paths::<Tag>(&tree, table("labels"))
        .unwrap()
        .iter()
        .any(|p| p.dotted() == "posts.labels"));
}

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "broken")]
struct Broken {
    id: i64,
    #[rowsync(has_many(Post, foreign_key = "broken_id", order_by = "nope"))]
    posts: Assoc<Vec<Post>>,
    #[rowsync(has_many(Post, foreign_key = "person_id", filter(colour = "red")))]
    red_posts: Assoc<Vec<Post>>,
    #[rowsync(has_many(Tag, through(posts, tagz)))]
    tags: Assoc<Vec<Tag>>,
}

#[test]
fn bad_declarations_are_all_reported_at_once() {
    let err = Graph::builder().register::<Broken>().build().unwrap_err();
    let SchemaError::Invalid(problems) = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    let text = err.to_string();
    for needle in [
        "Broken.posts: foreign_key `broken_id` is not a column of `Post`",
        "Broken.posts: order_by column `nope`",
        "Broken.red_posts: filter column `colour`",
        "Broken.tags: `Post` has no association `tagz`",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert_eq!(problems.len(), 4, "{text}");
}
