//! The schema graph: paths computed once, and declarations checked all at once.

use rowsync::schema::TableName;
use rowsync::{Assoc, Graph, Reached, Schema, SchemaError};

use crate::support::schemas::{Person, Post, Tag};

fn table(name: &'static str) -> TableName {
    TableName { schema: None, name }
}

fn dotted(graph: &Graph, to: &'static str) -> Vec<(String, Reached)> {
    let mut paths: Vec<_> = graph
        .paths::<Person>(table(to))
        .iter()
        .map(|p| (p.dotted(), p.reached))
        .collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    paths
}

#[test]
fn person_reaches_tags_via_posts_tags_and_via_all_tags() {
    let graph = Graph::builder().register::<Person>().build().unwrap();
    let to_tags = dotted(&graph, "tags");
    for expected in [
        "posts.tags",
        "all_tags",
        "other_posts.tags",
        "test_posts.tags",
    ] {
        assert!(
            to_tags
                .iter()
                .any(|(p, r)| p == expected && *r == Reached::Related),
            "{expected} missing from {to_tags:?}"
        );
    }
    let to_join = dotted(&graph, "posts_tags");
    assert!(
        to_join.contains(&("posts.tags".into(), Reached::JoinTable)),
        "{to_join:?}"
    );
    assert!(
        to_join.contains(&("all_tags".into(), Reached::Through)),
        "{to_join:?}"
    );
    // a through association also depends on its intermediate table
    assert!(dotted(&graph, "posts").contains(&("all_tags".into(), Reached::Through)));
}

#[test]
fn self_reference_and_cycles_end_without_looping() {
    let graph = Graph::builder().register::<Person>().build().unwrap();
    let to_persons: Vec<_> = dotted(&graph, "persons")
        .into_iter()
        .map(|(p, r)| format!("{p} {r:?}"))
        .collect();
    // every simple path (no schema twice) that ends at a person, and only those
    assert_eq!(
        to_persons,
        [
            " Root",
            "all_tags.posts.person Related",
            "favourite_people Related",
            "other_posts.person Related",
            "posts.person Related",
            "test_posts.person Related",
            "widgets.owner Related",
        ]
    );
    let to_fav = dotted(&graph, "favourite_people");
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
    assert!(graph
        .paths::<Tag>(table("labels"))
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
