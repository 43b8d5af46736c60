//! The loader: every association kind, filters, ordering and keys, compared with plain SQL.

use rowsync::{Assoc, Filter, LoadError, Schema, SchemaError};

use crate::support::schemas::{Person, Post, PostsTags, Tag, Widget};
use crate::support::{ids, seeded};

fn loaded<T>(a: &Assoc<T>) -> &T {
    a.loaded().expect("association should be loaded")
}

fn pks<S: Schema>(rows: impl AsRef<[S]>) -> Vec<i64> {
    rows.as_ref()
        .iter()
        .map(|r| match &r.primary_key().0[0] {
            rowsync::Value::I64(v) => *v,
            rowsync::Value::I32(v) => i64::from(*v),
            other => panic!("unexpected key {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn has_many_with_nested_many_to_many_matches_sql() {
    let f = seeded().await;
    let people = f
        .rowsync
        .query::<Person>()
        .preload(["posts.tags", "posts.labels"])
        .all()
        .await
        .unwrap();
    assert_eq!(
        pks(&people),
        ids(&f.sql, "SELECT id FROM persons ORDER BY id", &[]).await
    );
    for person in &people {
        let posts = loaded(&person.posts);
        let expected = ids(
            &f.sql,
            "SELECT id FROM posts WHERE person_id = $1 ORDER BY id",
            &[&person.id],
        )
        .await;
        assert_eq!(pks(posts), expected, "posts of {}", person.name);
        for post in posts {
            let tags = ids(
                &f.sql,
                "SELECT t.id FROM tags t JOIN posts_tags j ON j.tag_id = t.id \
                 WHERE j.post_id = $1 ORDER BY t.id",
                &[&post.id],
            )
            .await;
            assert_eq!(pks(loaded(&post.tags)), tags, "tags of post {}", post.id);
            let labels = ids(
                &f.sql,
                "SELECT l.id FROM labels l JOIN posts_labels j ON j.label_id = l.id \
                 WHERE j.post_id = $1 ORDER BY l.name DESC, l.id",
                &[&post.id],
            )
            .await;
            assert_eq!(
                pks(loaded(&post.labels)),
                labels,
                "labels of post {}",
                post.id
            );
            assert!(!post.person.is_loaded(), "not asked for, so not loaded");
        }
        assert!(!person.profile.is_loaded());
    }
    // the seed gives this shape; a loader that returned nothing would not pass
    assert_eq!(pks(loaded(&people[0].posts)), [1, 2]);
    assert_eq!(pks(loaded(&loaded(&people[0].posts)[0].labels)), [2, 1]);
}

#[tokio::test]
async fn two_associations_to_one_table_use_their_own_keys() {
    let f = seeded().await;
    let people = f
        .rowsync
        .query::<Person>()
        .preload(["posts", "other_posts"])
        .all()
        .await
        .unwrap();
    for person in &people {
        let other = ids(
            &f.sql,
            "SELECT id FROM posts WHERE other_person_id = $1 ORDER BY id",
            &[&person.id],
        )
        .await;
        assert_eq!(pks(loaded(&person.other_posts)), other);
    }
    assert_eq!(pks(loaded(&people[0].other_posts)), [4]);
    assert_eq!(pks(loaded(&people[1].other_posts)), [1]);
}

#[tokio::test]
async fn filtered_has_many_keeps_only_matching_rows() {
    let f = seeded().await;
    let people = f
        .rowsync
        .query::<Person>()
        .preload(["test_posts"])
        .all()
        .await
        .unwrap();
    for person in &people {
        let expected = ids(
            &f.sql,
            "SELECT id FROM posts WHERE person_id = $1 AND name = 'test' ORDER BY id",
            &[&person.id],
        )
        .await;
        assert_eq!(pks(loaded(&person.test_posts)), expected);
    }
    assert_eq!(pks(loaded(&people[0].test_posts)), [1]);
}

#[tokio::test]
async fn has_many_through_yields_distinct_rows_at_the_end_of_the_chain() {
    let f = seeded().await;
    let people = f
        .rowsync
        .query::<Person>()
        .preload(["all_tags"])
        .all()
        .await
        .unwrap();
    for person in &people {
        let expected = ids(
            &f.sql,
            "SELECT DISTINCT t.id FROM tags t JOIN posts_tags j ON j.tag_id = t.id \
             JOIN posts p ON p.id = j.post_id WHERE p.person_id = $1 ORDER BY t.id",
            &[&person.id],
        )
        .await;
        assert_eq!(pks(loaded(&person.all_tags)), expected);
    }
    // alice reaches tag 2 through posts 1 and 2: held once
    assert_eq!(pks(loaded(&people[0].all_tags)), [1, 2]);
}

#[tokio::test]
async fn has_one_and_belongs_to_load_one_row_or_none() {
    let f = seeded().await;
    let people = f
        .rowsync
        .query::<Person>()
        .preload(["profile"])
        .all()
        .await
        .unwrap();
    assert_eq!(loaded(&people[0].profile).as_ref().map(|p| p.id), Some(1));
    assert_eq!(loaded(&people[1].profile).as_ref().map(|p| p.id), None);

    let posts = f
        .rowsync
        .query::<Post>()
        .preload(["person.profile"])
        .all()
        .await
        .unwrap();
    for post in &posts {
        let owner = loaded(&post.person).as_ref().map(|p| p.id);
        assert_eq!(owner, post.person_id, "post {}", post.id);
        if let Some(person) = loaded(&post.person) {
            assert!(person.profile.is_loaded());
        }
    }
    assert_eq!(loaded(&posts[3].person), &None, "orphan post has no person");
}

#[tokio::test]
async fn self_referential_many_to_many_and_deep_nesting() {
    let f = seeded().await;
    let people = f
        .rowsync
        .query::<Person>()
        .preload([
            "favourite_people.favourite_people",
            "favourite_people.posts",
        ])
        .all()
        .await
        .unwrap();
    for person in &people {
        let expected = ids(
            &f.sql,
            "SELECT favourite_id FROM favourite_people WHERE person_id = $1 ORDER BY favourite_id",
            &[&person.id],
        )
        .await;
        let favs = loaded(&person.favourite_people);
        assert_eq!(pks(favs), expected);
        for fav in favs {
            let theirs = ids(
                &f.sql,
                "SELECT favourite_id FROM favourite_people WHERE person_id = $1 ORDER BY 1",
                &[&fav.id],
            )
            .await;
            assert_eq!(pks(loaded(&fav.favourite_people)), theirs);
            assert!(loaded(&fav.posts)
                .iter()
                .all(|p| p.person_id == Some(fav.id)));
            // the third level was not asked for
            assert!(loaded(&fav.favourite_people)
                .iter()
                .all(|p| !p.favourite_people.is_loaded()));
        }
    }
    assert_eq!(pks(loaded(&people[0].favourite_people)), [2, 3]);
}

#[tokio::test]
async fn join_schema_with_composite_key_loads_and_gets() {
    let f = seeded().await;
    let links = f
        .rowsync
        .query::<PostsTags>()
        .preload(["post", "tag.posts"])
        .all()
        .await
        .unwrap();
    let expected: Vec<(i64, i64)> = f
        .sql
        .query("SELECT post_id, tag_id FROM posts_tags ORDER BY 1, 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let got: Vec<(i64, i64)> = links.iter().map(|l| (l.post_id, l.tag_id)).collect();
    assert_eq!(got, expected);
    for link in &links {
        assert_eq!(
            loaded(&link.post).as_ref().map(|p| p.id),
            Some(link.post_id)
        );
        let tag = loaded(&link.tag).as_ref().expect("tag");
        assert!(pks(loaded(&tag.posts)).contains(&link.post_id));
    }

    let one = f
        .rowsync
        .query::<PostsTags>()
        .get((1i64, 2i64))
        .await
        .unwrap();
    assert_eq!(one.map(|l| (l.post_id, l.tag_id)), Some((1, 2)));
    let none = f
        .rowsync
        .query::<PostsTags>()
        .get((2i64, 1i64))
        .await
        .unwrap();
    assert!(none.is_none());
    let wrong = f.rowsync.query::<PostsTags>().get(1i64).await;
    assert!(matches!(
        wrong,
        Err(LoadError::Schema(SchemaError::KeyArity {
            expected: 2,
            found: 1,
            ..
        }))
    ));
}

#[tokio::test]
async fn schema_qualified_table_loads_both_ways() {
    let f = seeded().await;
    let people = f
        .rowsync
        .query::<Person>()
        .preload(["widgets"])
        .all()
        .await
        .unwrap();
    assert_eq!(pks(loaded(&people[0].widgets)), [10]);
    let widgets = f
        .rowsync
        .query::<Widget>()
        .preload(["owner"])
        .all()
        .await
        .unwrap();
    assert_eq!(widgets.len(), 2);
    assert_eq!(loaded(&widgets[0].owner).as_ref().map(|p| p.id), Some(1));
    assert_eq!(loaded(&widgets[1].owner), &None);
}

#[tokio::test]
async fn filters_get_one_limit_and_order() {
    let f = seeded().await;
    let q = || f.rowsync.query::<Post>();
    let named_test = q().filter(Filter::eq("name", "test")).all().await.unwrap();
    assert_eq!(pks(&named_test), [1, 3]);
    let not_test = q().filter(Filter::ne("name", "test")).all().await.unwrap();
    assert_eq!(pks(&not_test), [2, 4]);
    let no_person = q()
        .filter(Filter::is_null("person_id"))
        .all()
        .await
        .unwrap();
    assert_eq!(pks(&no_person), [4]);
    let listed = q()
        .filter(Filter::in_list("id", [3i64, 4, 99]))
        .filter(Filter::not(Filter::eq("name", "orphan")))
        .all()
        .await
        .unwrap();
    assert_eq!(pks(&listed), [3]);
    let desc = q().order_by_desc("id").limit(2).all().await.unwrap();
    assert_eq!(pks(&desc), [4, 3]);

    let got = q()
        .preload(["tags"])
        .get(1i64)
        .await
        .unwrap()
        .expect("post 1");
    assert_eq!(pks(loaded(&got.tags)), [1, 2]);
    assert!(q().get(999i64).await.unwrap().is_none());

    let one = q().filter(Filter::eq("name", "hello")).one().await.unwrap();
    assert_eq!(one.map(|p| p.id), Some(2));
    let many = q().filter(Filter::eq("name", "test")).one().await;
    assert!(matches!(
        many,
        Err(LoadError::MultipleRows { count: 2, .. })
    ));
}

#[tokio::test]
async fn runs_on_a_client_or_inside_a_transaction() {
    let mut f = seeded().await;
    let tx = f.sql.transaction().await.unwrap();
    tx.execute("INSERT INTO tags (id, name) VALUES (50, 'in-tx')", &[])
        .await
        .unwrap();
    let tags = rowsync::query::<Tag>(&tx).all().await.unwrap();
    assert!(
        pks(&tags).contains(&50),
        "the transaction sees its own write"
    );
    tx.rollback().await.unwrap();
    let tags = rowsync::query::<Tag>(&f.sql).all().await.unwrap();
    assert_eq!(pks(&tags), [1, 2, 3]);
}

#[tokio::test]
async fn preload_into_rows_already_held() {
    let f = seeded().await;
    let mut posts = f.rowsync.query::<Post>().all().await.unwrap();
    rowsync::preload_into(&mut posts, ["tags"], &f.sql)
        .await
        .unwrap();
    assert_eq!(pks(loaded(&posts[0].tags)), [1, 2]);
    assert_eq!(pks(loaded(&posts[3].tags)), Vec::<i64>::new());
}

#[tokio::test]
async fn unknown_names_give_clear_errors() {
    let f = seeded().await;
    let err = f
        .rowsync
        .query::<Person>()
        .preload(["posts.tagz"])
        .all()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("`Post` has no association `tagz`") && message.contains("tags, labels"),
        "{message}"
    );
    let err = f
        .rowsync
        .query::<Person>()
        .filter(Filter::eq("nmae", "x"))
        .all()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no column `nmae`"), "{err}");
}

/// Filters of every form on associations: `in`, `null`, `!=`, `not(..)`, several at once.
mod association_filters {
    use super::*;

    #[derive(Schema, Clone, Debug, PartialEq)]
    #[rowsync(table = "persons")]
    pub struct Author {
        pub id: i64,
        #[rowsync(has_many(Post, foreign_key = "person_id", filter(name in ["hello", "nope"])))]
        pub listed: Assoc<Vec<Post>>,
        #[rowsync(has_many(Post, foreign_key = "person_id", filter(other_person_id = null)))]
        pub solo: Assoc<Vec<Post>>,
        #[rowsync(has_many(Post, foreign_key = "person_id", filter(other_person_id != null)))]
        pub shared: Assoc<Vec<Post>>,
        #[rowsync(has_many(Post, foreign_key = "person_id", filter(not(name = "test"))))]
        pub not_test: Assoc<Vec<Post>>,
        #[rowsync(has_many(Post, foreign_key = "person_id", filter(name = "test", id not in [3])))]
        pub several: Assoc<Vec<Post>>,
    }

    #[tokio::test]
    async fn every_filter_form_matches_the_same_where_in_sql() {
        let f = seeded().await;
        let authors = f
            .rowsync
            .query::<Author>()
            .preload(["listed", "solo", "shared", "not_test", "several"])
            .all()
            .await
            .unwrap();
        type Field = fn(&Author) -> &Assoc<Vec<Post>>;
        let cases: [(&str, Field); 5] = [
            ("name IN ('hello', 'nope')", |a| &a.listed),
            ("other_person_id IS NULL", |a| &a.solo),
            ("other_person_id IS NOT NULL", |a| &a.shared),
            ("NOT (name = 'test')", |a| &a.not_test),
            ("name = 'test' AND id NOT IN (3)", |a| &a.several),
        ];
        let mut non_empty = 0;
        for (condition, field) in cases {
            for author in &authors {
                let sql = format!(
                    "SELECT id FROM posts WHERE person_id = $1 AND {condition} ORDER BY id"
                );
                let expected = ids(&f.sql, &sql, &[&author.id]).await;
                non_empty += usize::from(!expected.is_empty());
                assert_eq!(pks(loaded(field(author))), expected, "{condition}");
            }
        }
        assert!(non_empty >= 5, "the seed exercises every filter");
    }
}
