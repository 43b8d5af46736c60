//! sync: every change applied to held data equals a fresh load with the same preloads
//! (the oracle), for every association kind.

use std::time::Duration;

use rowsync::{Changes, Hub, Message, Op, Schema, Selector, Subscription, SyncOptions};
use tokio::time::timeout;

use crate::hub::start_hub;
use crate::support::schemas::{Person, Post, Tag};
use crate::support::{replication, seeded, wait_for_xid, with_capture, write_sentinel, Fixture};

const WAIT: Duration = Duration::from_secs(10);

/// Every message routed to `sub` so far, in order: a witness subscription hears the
/// sentinel after everything committed before it was queued for `sub`.
pub async fn pending(f: &Fixture, hub: &Hub, sub: &mut Subscription) -> Vec<Message> {
    let mut witness = hub
        .subscribe_to::<Person>(Op::Updated, Selector::row(3i64))
        .unwrap();
    let xid = write_sentinel(&f.sql).await;
    wait_for_xid(&mut witness, xid).await;
    let mut out = Vec::new();
    while let Some(message) = sub.try_next() {
        out.push(message);
    }
    out
}

/// Writes `sql`, then syncs every message it caused into `data`.
pub async fn write_and_sync<S: Schema, H: rowsync::Held<S>>(
    f: &Fixture,
    hub: &Hub,
    sub: &mut Subscription,
    data: &mut H,
    sql: &str,
) -> Changes {
    f.sql
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut all = Changes::default();
    for message in pending(f, hub, sub).await {
        let changes = sub.sync(data, &message).await.unwrap();
        all.inserted.extend(changes.inserted);
        all.updated.extend(changes.updated);
        all.deleted.extend(changes.deleted);
        all.reloaded |= changes.reloaded;
    }
    all
}

pub async fn fresh_people(f: &Fixture, ids: &[i64], preloads: &[&str]) -> Vec<Person> {
    let mut out = Vec::new();
    for id in ids {
        out.extend(
            f.rowsync
                .query::<Person>()
                .preload(preloads)
                .get(*id)
                .await
                .unwrap(),
        );
    }
    out
}

const PEOPLE_SHAPE: [&str; 8] = [
    "posts.tags",
    "posts.labels",
    "other_posts",
    "test_posts",
    "all_tags",
    "profile",
    "favourite_people",
    "posts.person",
];

#[tokio::test]
async fn people_with_every_association_kind_follow_every_change() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let ids = [1i64, 2];
    let mut people = fresh_people(&f, &ids, &PEOPLE_SHAPE).await;
    let mut sub = hub.subscribe(&people, PEOPLE_SHAPE).unwrap();

    let steps = [
        ("root update", "UPDATE persons SET name = 'alicia' WHERE id = 1"),
        ("has_many insert", "INSERT INTO posts (id, name, person_id) VALUES (10, 'fresh', 1)"),
        ("has_many insert with links in one tx", "BEGIN; INSERT INTO posts (id, name, person_id) VALUES (11, 'linked', 2); INSERT INTO posts_tags VALUES (11, 1), (11, 2); COMMIT;"),
        ("nested update keeps loaded associations", "UPDATE posts SET name = 'renamed' WHERE id = 1"),
        ("has_many move to another parent", "UPDATE posts SET person_id = 2 WHERE id = 2"),
        ("many_to_many link insert (join schema)", "INSERT INTO posts_tags VALUES (3, 3)"),
        ("many_to_many link moved", "UPDATE posts_tags SET tag_id = 2 WHERE post_id = 3 AND tag_id = 3"),
        ("many_to_many link delete", "DELETE FROM posts_tags WHERE post_id = 1 AND tag_id = 1"),
        ("many_to_many link insert (join table by name)", "INSERT INTO posts_labels VALUES (10, 1), (10, 2)"),
        ("related row update changes its order", "UPDATE labels SET name = 'z' WHERE id = 1"),
        ("related row held in many places", "UPDATE tags SET name = 'everywhere' WHERE id = 2"),
        ("related row deleted (links cascade)", "DELETE FROM tags WHERE id = 1"),
        ("has_one insert", "INSERT INTO profiles (id, person_id, bio) VALUES (7, 2, 'bob')"),
        ("has_one update", "UPDATE profiles SET bio = 'changed' WHERE id = 1"),
        ("has_one delete", "DELETE FROM profiles WHERE id = 1"),
        ("self-referential link insert", "INSERT INTO favourite_people VALUES (2, 3)"),
        ("self-referential row update", "UPDATE persons SET name = 'caroline' WHERE id = 3"),
        ("self-referential link delete", "DELETE FROM favourite_people WHERE person_id = 1 AND favourite_id = 2"),
        ("filter: starts matching", "UPDATE posts SET name = 'test' WHERE id = 10"),
        ("filter: stops matching", "UPDATE posts SET name = 'not test' WHERE id = 1"),
        ("filter: inserted non-matching", "INSERT INTO posts (id, name, person_id) VALUES (12, 'nope', 1)"),
        ("other_posts foreign key set", "UPDATE posts SET other_person_id = 2 WHERE id = 10"),
        ("belongs_to parent updated", "UPDATE persons SET name = 'bobby' WHERE id = 2"),
        ("foreign key to NULL", "UPDATE posts SET person_id = NULL WHERE id = 12"),
        ("child deleted", "DELETE FROM posts WHERE id = 3"),
        ("several changes in one transaction", "BEGIN; UPDATE posts SET person_id = 1 WHERE id = 11; INSERT INTO posts_tags VALUES (10, 2); DELETE FROM posts_labels WHERE post_id = 10 AND label_id = 2; UPDATE persons SET name = 'al' WHERE id = 1; COMMIT;"),
    ];
    for (what, sql) in steps {
        write_and_sync(&f, &hub, &mut sub, &mut people, sql).await;
        let expected = fresh_people(&f, &ids, &PEOPLE_SHAPE).await;
        assert_eq!(people, expected, "after: {what} ({sql})");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn the_subscription_follows_the_data() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut bob = fresh_people(&f, &[2], &["posts.tags"]).await;
    let mut sub = hub.subscribe(&bob, ["posts.tags"]).unwrap();
    // a post sync inserts is subscribed: its later updates arrive
    write_and_sync(&f, &hub, &mut sub, &mut bob, "INSERT INTO posts (id, name, person_id) VALUES (40, 'a', 2); INSERT INTO posts_tags VALUES (40, 2)").await;
    let changes = write_and_sync(
        &f,
        &hub,
        &mut sub,
        &mut bob,
        "UPDATE tags SET name = 'seen' WHERE id = 2",
    )
    .await;
    assert_eq!(changes.updated, vec![2i64.into()]);
    assert_eq!(bob, fresh_people(&f, &[2], &["posts.tags"]).await);
    // a post sync removes is unsubscribed: its later changes do not arrive
    write_and_sync(
        &f,
        &hub,
        &mut sub,
        &mut bob,
        "UPDATE posts SET person_id = 1 WHERE id = 40",
    )
    .await;
    f.sql
        .batch_execute("UPDATE posts SET name = 'unseen' WHERE id = 40")
        .await
        .unwrap();
    assert!(pending(&f, &hub, &mut sub).await.is_empty());
    assert_eq!(bob, fresh_people(&f, &[2], &["posts.tags"]).await);
    // tag 2 is no longer held, so its changes do not arrive either; tag 1 still is (post 3)
    f.sql
        .batch_execute("UPDATE tags SET name = 'unseen' WHERE id = 2")
        .await
        .unwrap();
    assert!(pending(&f, &hub, &mut sub).await.is_empty());
    hub.shutdown().await;
}

#[tokio::test]
async fn belongs_to_follows_a_changed_foreign_key() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let shape = ["person.profile"];
    let load = || async {
        f.rowsync
            .query::<Post>()
            .preload(shape)
            .get(1i64)
            .await
            .unwrap()
    };
    let mut post: Option<Post> = load().await;
    let mut sub = hub.subscribe(post.iter(), shape).unwrap();
    for sql in [
        "UPDATE persons SET name = 'new name' WHERE id = 1",
        "UPDATE posts SET person_id = 2 WHERE id = 1",
        "INSERT INTO profiles (id, person_id) VALUES (9, 2)",
        "UPDATE posts SET person_id = NULL WHERE id = 1",
        "UPDATE posts SET person_id = 1 WHERE id = 1",
    ] {
        write_and_sync(&f, &hub, &mut sub, &mut post, sql).await;
        assert_eq!(post, load().await, "after {sql}");
    }
    let changes = write_and_sync(
        &f,
        &hub,
        &mut sub,
        &mut post,
        "DELETE FROM posts WHERE id = 1",
    )
    .await;
    assert_eq!(changes.deleted, vec![1i64.into()]);
    assert_eq!(post, None);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_table_list_follows_inserts_and_deletes() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let load = || async {
        f.rowsync
            .query::<Tag>()
            .preload(["posts"])
            .all()
            .await
            .unwrap()
    };
    let mut tags = load().await;
    let mut sub = hub.subscribe_table::<Tag>(["posts"]).unwrap();
    let changes = write_and_sync(
        &f,
        &hub,
        &mut sub,
        &mut tags,
        "INSERT INTO tags (id, name) VALUES (50, 'new')",
    )
    .await;
    assert_eq!(changes.inserted, vec![50i64.into()]);
    for sql in [
        "INSERT INTO posts_tags VALUES (2, 50), (4, 50)",
        "UPDATE posts SET name = 'renamed' WHERE id = 2",
        "DELETE FROM posts WHERE id = 4",
        "DELETE FROM tags WHERE id = 1",
    ] {
        write_and_sync(&f, &hub, &mut sub, &mut tags, sql).await;
        assert_eq!(tags, load().await, "after {sql}");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn applying_a_change_twice_changes_nothing_more() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut people = fresh_people(&f, &[1], &["posts.tags"]).await;
    let mut sub = hub.subscribe(&people, ["posts.tags"]).unwrap();
    f.sql
        .batch_execute("INSERT INTO posts (id, name, person_id) VALUES (60, 'x', 1); INSERT INTO posts_tags VALUES (60, 1); DELETE FROM posts_tags WHERE post_id = 1 AND tag_id = 2;")
        .await
        .unwrap();
    let messages = pending(&f, &hub, &mut sub).await;
    // the link of post 60 is not routed (post 60 is not held yet); loading post 60 with
    // its tags covers it
    assert_eq!(messages.len(), 2);
    for message in &messages {
        sub.sync(&mut people, message).await.unwrap();
    }
    let once = people.clone();
    for message in &messages {
        sub.sync(&mut people, message).await.unwrap();
    }
    assert_eq!(people, once);
    assert_eq!(people, fresh_people(&f, &[1], &["posts.tags"]).await);
}

#[tokio::test]
async fn a_resync_reloads_and_older_changes_are_not_applied_again() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let shape = ["posts.tags"];
    let mut people = fresh_people(&f, &[1, 2], &shape).await;
    let mut sub = hub.subscribe(&people, shape).unwrap();
    f.sql
        .batch_execute("UPDATE posts SET name = 'before' WHERE id = 1")
        .await
        .unwrap();
    let before = pending(&f, &hub, &mut sub).await;
    // the listener dies; changes in the gap are lost for the listener
    let pid = hub.listener_pid().await.unwrap();
    f.sql
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let resync = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert!(matches!(resync, Message::Resync(_)), "{resync:?}");
    f.sql
        .batch_execute("UPDATE posts SET person_id = 2 WHERE id = 2")
        .await
        .unwrap();
    let changes = sub.sync(&mut people, &resync).await.unwrap();
    assert!(changes.reloaded);
    assert_eq!(people, fresh_people(&f, &[1, 2], &shape).await);
    // a change received before the reload is already in it: applying it is a no-op
    for message in &before {
        assert!(sub.sync(&mut people, message).await.unwrap().is_empty());
    }
    // and the re-derived topics route new changes
    write_and_sync(
        &f,
        &hub,
        &mut sub,
        &mut people,
        "INSERT INTO posts_tags VALUES (2, 1)",
    )
    .await;
    assert_eq!(people, fresh_people(&f, &[1, 2], &shape).await);
    hub.shutdown().await;
}

#[tokio::test]
async fn sync_with_options_shapes_inserted_rows() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut tags: Vec<Tag> = f.rowsync.query::<Tag>().all().await.unwrap();
    let mut sub = hub.subscribe_table::<Tag>(Vec::<&str>::new()).unwrap();
    f.sql.batch_execute("INSERT INTO tags (id, name) VALUES (70, 'shaped'); INSERT INTO posts_tags VALUES (1, 70);").await.unwrap();
    for message in pending(&f, &hub, &mut sub).await {
        hub.sync_with(
            &mut tags,
            &message,
            SyncOptions::new().preload::<Tag>(["posts"]),
        )
        .await
        .unwrap();
    }
    let inserted = tags.iter().find(|t| t.id == 70).expect("inserted");
    let fresh = f
        .rowsync
        .query::<Tag>()
        .preload(["posts"])
        .get(70i64)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        inserted, &fresh,
        "the inserted row got the shape from the options"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_thousand_subscribers_inserting_one_row_cause_one_load() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let shape = ["posts.tags"];
    let people = fresh_people(&f, &[2], &shape).await;
    let mut holders = Vec::new();
    for _ in 0..1000 {
        holders.push((people.clone(), hub.subscribe(&people, shape).unwrap()));
    }
    let before = hub.stats().rows_loaded;
    f.sql
        .batch_execute("INSERT INTO posts (id, name, person_id) VALUES (80, 'for all', 2)")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (mut data, mut sub) in holders {
        tasks.push(tokio::spawn(async move {
            let message = timeout(WAIT, sub.next()).await.unwrap().unwrap();
            sub.sync(&mut data, &message).await.unwrap();
            data
        }));
    }
    let expected = fresh_people(&f, &[2], &shape).await;
    for task in tasks {
        assert_eq!(task.await.unwrap(), expected);
    }
    // a replication stream carries the row: no load at all
    let loads = if replication() { 0 } else { 1 };
    assert_eq!(
        hub.stats().rows_loaded - before,
        loads,
        "{loads} load(s) for 1,000 subscribers"
    );
    hub.shutdown().await;
}

/// A has_many that joins on a column other than the owner's key (`references`).
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "teams")]
struct Team {
    id: i64,
    code: String,
    #[rowsync(has_many(
        Member,
        foreign_key = "team_code",
        references = "code",
        order_by = "id"
    ))]
    members: rowsync::Assoc<Vec<Member>>,
}

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "members")]
struct Member {
    id: i64,
    team_code: String,
    name: String,
}

#[tokio::test]
async fn a_changed_referenced_column_brings_the_children_it_now_points_at() {
    let f = seeded().await;
    f.sql
        .batch_execute(
            "CREATE TABLE teams (id bigint PRIMARY KEY, code text NOT NULL UNIQUE);
             CREATE TABLE members (id bigint PRIMARY KEY, team_code text NOT NULL, name text NOT NULL);
             INSERT INTO teams VALUES (1, 'red'), (2, 'blue');
             INSERT INTO members VALUES (1, 'red', 'ann'), (2, 'red', 'bo'), (3, 'green', 'cy');",
        )
        .await
        .unwrap();
    let hub = with_capture(Hub::builder(f.db.url()).watch::<Team>(["members"]), &f)
        .start()
        .await
        .expect("hub starts");
    let reload = || async {
        f.rowsync
            .query::<Team>()
            .preload(["members"])
            .order_by("id")
            .all()
            .await
            .unwrap()
    };
    let mut teams = reload().await;
    let mut sub = hub.subscribe(&teams, ["members"]).unwrap();
    f.sql
        .batch_execute("UPDATE teams SET code = 'green' WHERE id = 1")
        .await
        .unwrap();
    let message = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    sub.sync(&mut teams, &message).await.unwrap();
    let fresh = reload().await;
    assert_eq!(teams, fresh, "team 1 now holds green's member, not red's");
    assert_eq!(teams[0].members.loaded().unwrap().len(), 1);

    // and the topics followed: a member inserted into green reaches the team
    f.sql
        .batch_execute("INSERT INTO members VALUES (4, 'green', 'di')")
        .await
        .unwrap();
    let message = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    sub.sync(&mut teams, &message).await.unwrap();
    assert_eq!(teams, reload().await);
    hub.shutdown().await;
}

/// A table keyed by a timestamp: its key travels in the payload.
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "readings")]
struct Reading {
    #[rowsync(primary_key)]
    taken_at: chrono::DateTime<chrono::Utc>,
    value: i64,
}

#[tokio::test]
async fn a_timestamp_key_routes_whatever_the_writers_date_style() {
    let f = seeded().await;
    f.sql
        .batch_execute(
            "CREATE TABLE readings (taken_at timestamptz PRIMARY KEY, value bigint NOT NULL);
             INSERT INTO readings VALUES ('2024-03-04 05:06:07.25+00', 1);",
        )
        .await
        .unwrap();
    let hub = with_capture(
        Hub::builder(f.db.url()).watch::<Reading>(Vec::<&str>::new()),
        &f,
    )
    .start()
    .await
    .expect("hub starts");
    let mut readings = f.rowsync.query::<Reading>().all().await.unwrap();
    let mut sub = hub.subscribe(&readings, Vec::<&str>::new()).unwrap();
    f.sql
        .batch_execute(
            "SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Kolkata';
             UPDATE readings SET value = 2;
             RESET DateStyle; RESET TimeZone;",
        )
        .await
        .unwrap();
    let message = timeout(WAIT, sub.next())
        .await
        .expect("the change is routed, not dropped as malformed")
        .unwrap();
    sub.sync(&mut readings, &message).await.unwrap();
    assert_eq!(readings, f.rowsync.query::<Reading>().all().await.unwrap());
    assert_eq!(readings[0].value, 2);
    assert_eq!(hub.stats().malformed_payloads, 0);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_large_list_synced_through_its_index_equals_a_fresh_load() {
    let f = seeded().await;
    // 300 posts, enough for the list to be indexed, three tags each
    f.sql
        .batch_execute(
            "INSERT INTO posts (id, name, person_id) SELECT i, 'p' || i, 1 FROM generate_series(100, 399) i;
             INSERT INTO posts_tags SELECT i, i % 3 + 1 FROM generate_series(100, 399) i;
             INSERT INTO posts_tags SELECT i, (i + 1) % 3 + 1 FROM generate_series(100, 399) i;",
        )
        .await
        .unwrap();
    let hub = start_hub(&f).await;
    let fresh = || async {
        f.rowsync
            .query::<Post>()
            .preload(["tags"])
            .all()
            .await
            .unwrap()
    };
    let (mut posts, mut sub) = hub
        .live::<Post>()
        .preload(["tags"])
        .subscribe()
        .await
        .unwrap();
    assert!(posts.len() >= 300);
    let steps = [
        ("a tag held by a third of the posts", "UPDATE tags SET name = 'x' WHERE id = 2"),
        ("a post", "UPDATE posts SET name = 'renamed' WHERE id = 250"),
        ("a post again", "UPDATE posts SET name = 'again' WHERE id = 250"),
        ("a link added", "INSERT INTO posts_tags VALUES (250, 1)"),
        ("the tag it links", "UPDATE tags SET name = 'y' WHERE id = 1"),
        ("a link removed", "DELETE FROM posts_tags WHERE post_id = 101 AND tag_id = 2"),
        ("a tag again", "UPDATE tags SET name = 'z' WHERE id = 2"),
        ("a post inserted", "INSERT INTO posts (id, name, person_id) VALUES (99, 'new', 2); INSERT INTO posts_tags VALUES (99, 1)"),
        ("a post deleted", "DELETE FROM posts WHERE id = 120"),
        ("a tag after the list moved", "UPDATE tags SET name = 'w' WHERE id = 1"),
        ("a post after the list moved", "UPDATE posts SET name = 'last' WHERE id = 399"),
        ("a tag deleted", "DELETE FROM tags WHERE id = 3"),
    ];
    for (what, sql) in steps {
        write_and_sync(&f, &hub, &mut sub, &mut posts, sql).await;
        let expected = fresh().await;
        let differs = posts.iter().zip(&expected).find(|(a, b)| a != b);
        assert!(
            posts.len() == expected.len() && differs.is_none(),
            "after {what} ({sql}): held {} rows, a fresh load {}; first difference {differs:?}",
            posts.len(),
            expected.len()
        );
    }
    hub.shutdown().await;
}
