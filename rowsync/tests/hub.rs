//! The hub end to end: capture by triggers, routing to exactly the subscribers a change
//! concerns, the shared row cache, resyncs. Writes come from a separate plain SQL connection.

use std::sync::Arc;
use std::time::Duration;

use rowsync::{
    Change, Hub, HubError, Message, Op, ResyncReason, Schema, Selector, Subscription, Topic,
};
use tokio::time::timeout;

use crate::support::schemas::{Person, Post, Tag};
use crate::support::{replication, seeded, with_capture, Fixture};

const WAIT: Duration = Duration::from_secs(10);
/// Tag 3 ("unused") is the sentinel: every subscription of a test also listens to it, and
/// since changes arrive in commit order, a subscriber that receives the sentinel has
/// received everything routed to it before — so "not routed" needs no sleep.
const SENTINEL: &str = "WITH touched AS (UPDATE tags SET name = name WHERE id = 3 RETURNING 1) \
                        SELECT pg_current_xact_id()::text FROM touched";

/// The suite's hub, on the capture source `ROWSYNC_CAPTURE` names.
pub async fn start_hub(f: &Fixture) -> Hub {
    with_capture(suite_hub(f), f)
        .start()
        .await
        .expect("hub starts")
}

/// The suite's hub as configured, capturing by triggers until told otherwise.
pub fn suite_hub(f: &Fixture) -> rowsync::HubBuilder {
    Hub::builder(f.db.url())
        .watch::<Person>([
            "posts.tags",
            "posts.labels",
            "posts.person",
            "other_posts",
            "test_posts",
            "all_tags",
            "profile",
            "favourite_people",
        ])
        .watch::<Tag>(["posts"])
}

fn with_sentinel(sub: Subscription) -> Subscription {
    sub.add_topics([Topic {
        table: Tag::meta().table,
        selector: Selector::row(3i64),
    }]);
    sub
}

async fn next(sub: &mut Subscription) -> Message {
    timeout(WAIT, sub.next())
        .await
        .expect("a message within the timeout")
        .expect("the subscription is open")
}

/// Changes received up to (not including) the sentinel, after writing the sentinel.
async fn changes_before_sentinel(
    f: &Fixture,
    subs: &mut [&mut Subscription],
) -> Vec<Vec<Arc<Change>>> {
    let xid: u64 = f
        .sql
        .query_one(SENTINEL, &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    let mut all = Vec::new();
    for sub in subs.iter_mut() {
        let mut got = Vec::new();
        loop {
            match next(sub).await {
                Message::Change(c) if c.xid == xid => break,
                Message::Change(c) => got.push(c),
                Message::Resync(r) => panic!("unexpected resync {r:?}"),
            }
        }
        all.push(got);
    }
    all
}

fn summary(changes: &[Arc<Change>]) -> Vec<String> {
    changes
        .iter()
        .map(|c| format!("{:?} {} {:?}", c.op, c.table.name, c.key.0))
        .collect()
}

async fn person(f: &Fixture, id: i64, preloads: &[&str]) -> Person {
    f.rowsync
        .query::<Person>()
        .preload(preloads)
        .get(id)
        .await
        .unwrap()
        .expect("person exists")
}

const SHAPE: [&str; 6] = [
    "posts.tags",
    "posts.labels",
    "profile",
    "favourite_people",
    "test_posts",
    "other_posts",
];

#[tokio::test]
async fn each_association_kind_routes_to_its_holders_only() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let alice = person(&f, 1, &SHAPE).await;
    let bob = person(&f, 2, &SHAPE).await;
    let mut a = with_sentinel(hub.subscribe([&alice], SHAPE).unwrap());
    let mut b = with_sentinel(hub.subscribe([&bob], SHAPE).unwrap());

    let cases: [(&str, &[&str], &[&str]); 12] = [
        // root row update: by primary key
        // (bob holds alice too, as a favourite person)
        (
            "UPDATE persons SET name = 'alicia' WHERE id = 1",
            &["Updated persons [I64(1)]"],
            &["Updated persons [I64(1)]"],
        ),
        // has_many insert: by foreign key into the held collection
        (
            "INSERT INTO posts (id, name, person_id) VALUES (20, 'new', 2)",
            &[],
            &["Inserted posts [I64(20)]"],
        ),
        // a held child row updated
        (
            "UPDATE posts SET name = 'hi' WHERE id = 2",
            &["Updated posts [I64(2)]"],
            &[],
        ),
        // a row moving to another parent: the old and the new parent hear of it
        (
            "UPDATE posts SET person_id = 2 WHERE id = 2",
            &["Updated posts [I64(2)]"],
            &["Updated posts [I64(2)]"],
        ),
        // many_to_many with a join schema: link inserted (bob holds post 3)
        (
            "INSERT INTO posts_tags (post_id, tag_id) VALUES (3, 2)",
            &[],
            &["Inserted posts_tags [I64(3), I64(2)]"],
        ),
        // many_to_many row held by alice (tag 2 via post 1) and, now, bob (post 3)
        (
            "UPDATE tags SET name = 'postgres' WHERE id = 2",
            &["Updated tags [I64(2)]"],
            &[],
        ),
        // many_to_many with a join table by name: link deleted (post 1 is alice's)
        (
            "DELETE FROM posts_labels WHERE post_id = 1 AND label_id = 2",
            &["Deleted posts_labels [I64(1), I64(2)]"],
            &[],
        ),
        // self-referential many_to_many
        (
            "INSERT INTO favourite_people (person_id, favourite_id) VALUES (2, 3)",
            &[],
            &["Inserted favourite_people [I64(2), I64(3)]"],
        ),
        // has_one: held row updated / inserted for the other parent
        (
            "UPDATE profiles SET bio = 'hello' WHERE id = 1",
            &["Updated profiles [I64(1)]"],
            &[],
        ),
        (
            "INSERT INTO profiles (id, person_id) VALUES (5, 2)",
            &[],
            &["Inserted profiles [I64(5)]"],
        ),
        // a row neither holds
        ("UPDATE profiles SET bio = 'x' WHERE id = 2", &[], &[]),
        // delete of a held child; its links go with it (ON DELETE CASCADE)
        (
            "DELETE FROM posts WHERE id = 1",
            &[
                "Deleted posts [I64(1)]",
                "Deleted posts_tags [I64(1), I64(1)]",
                "Deleted posts_tags [I64(1), I64(2)]",
                "Deleted posts_labels [I64(1), I64(1)]",
            ],
            // bob holds post 1 among his other_posts
            &["Deleted posts [I64(1)]"],
        ),
    ];
    for (sql, for_alice, for_bob) in cases {
        f.sql.batch_execute(sql).await.unwrap();
        let got = changes_before_sentinel(&f, &mut [&mut a, &mut b]).await;
        assert_eq!(summary(&got[0]), for_alice, "alice after {sql}");
        assert_eq!(summary(&got[1]), for_bob, "bob after {sql}");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn belongs_to_and_through_route_to_holders() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    // posts held with their person (belongs_to)
    let post3 = f
        .rowsync
        .query::<Post>()
        .preload(["person"])
        .get(3i64)
        .await
        .unwrap()
        .unwrap();
    let mut p = with_sentinel(hub.subscribe([&post3], ["person"]).unwrap());
    // alice with all_tags (through posts.tags)
    let alice = person(&f, 1, &["all_tags"]).await;
    let mut t = with_sentinel(hub.subscribe([&alice], ["all_tags"]).unwrap());

    f.sql
        .batch_execute("UPDATE persons SET name = 'robert' WHERE id = 2")
        .await
        .unwrap();
    f.sql
        .batch_execute("INSERT INTO posts_tags (post_id, tag_id) VALUES (2, 1)")
        .await
        .unwrap();
    let got = changes_before_sentinel(&f, &mut [&mut p, &mut t]).await;
    assert_eq!(summary(&got[0]), ["Updated persons [I64(2)]"]);
    assert_eq!(summary(&got[1]), ["Inserted posts_tags [I64(2), I64(1)]"]);
    hub.shutdown().await;
}

#[tokio::test]
async fn table_and_direct_subscriptions_and_unsubscribe() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut table = with_sentinel(hub.subscribe_table::<Post>(["tags"]).unwrap());
    let mut direct = with_sentinel(
        hub.subscribe_to::<Post>(Op::Updated, Selector::foreign("person_id", 1i64))
            .unwrap(),
    );
    let before = hub.stats();

    f.sql
        .batch_execute(
            "UPDATE persons SET name = 'z' WHERE id = 1;
             INSERT INTO posts (id, name, person_id) VALUES (30, 'p', 1);
             UPDATE posts SET name = 'q' WHERE id = 2;
             INSERT INTO posts_tags VALUES (30, 1);
             UPDATE labels SET name = 'c' WHERE id = 1;",
        )
        .await
        .unwrap();
    let got = changes_before_sentinel(&f, &mut [&mut table, &mut direct]).await;
    assert_eq!(
        summary(&got[0]),
        [
            "Inserted posts [I64(30)]",
            "Updated posts [I64(2)]",
            "Inserted posts_tags [I64(30), I64(1)]"
        ]
    );
    assert_eq!(summary(&got[1]), ["Updated posts [I64(2)]"]);
    // all five statements ran in one transaction
    assert!(got[0].iter().all(|c| c.xid == got[0][0].xid));

    let topics = direct.topics();
    assert!(topics.contains(&Topic {
        table: Post::meta().table,
        selector: Selector::foreign("person_id", 1i64)
    }));
    drop(direct);
    drop(table);
    let after = hub.stats();
    assert_eq!(after.subscriptions, before.subscriptions - 2);
    assert_eq!(
        after.topics, 0,
        "dropping the last subscriptions empties the index"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_thousand_subscribers_of_one_row_cause_one_read() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let post = f.rowsync.query::<Post>().get(1i64).await.unwrap().unwrap();
    let mut subs: Vec<Subscription> = (0..1000)
        .map(|_| hub.subscribe([&post], Vec::<&str>::new()).unwrap())
        .collect();
    let loads_before = hub.stats().rows_loaded;
    f.sql
        .batch_execute("UPDATE posts SET name = 'changed' WHERE id = 1")
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for mut sub in subs.drain(..) {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let Message::Change(change) = timeout(WAIT, sub.next()).await.unwrap().unwrap() else {
                panic!("expected a change");
            };
            hub.get::<Post>(&change).await.unwrap().map(|p| p.name)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().as_deref(), Some("changed"));
    }
    let stats = hub.stats();
    // a replication stream carries the row: no read at all
    let reads = if replication() { 0 } else { 1 };
    assert_eq!(
        stats.rows_loaded - loads_before,
        reads,
        "{reads} read(s) for 1,000 subscribers"
    );
    // the read (if any) starts when the change is routed, so every subscriber's is a hit
    assert_eq!(stats.cache_hits, 1000);
    hub.shutdown().await;
}

/// Runs `first` (one change, so a sync's own read teaches the hub the row type), then
/// `burst` (one transaction of `count` changes), syncing each into `data`; returns the rows
/// read for the burst.
async fn sync_burst<S: Schema, H: rowsync::Held<S>>(
    f: &Fixture,
    hub: &Hub,
    sub: &mut Subscription,
    data: &mut H,
    first: &str,
    burst: &str,
    count: usize,
) -> u64 {
    f.sql.batch_execute(first).await.unwrap();
    let message = next(sub).await;
    sub.sync(data, &message).await.unwrap();
    let before = hub.stats().rows_loaded;
    f.sql.batch_execute(burst).await.unwrap();
    for _ in 0..count {
        let message = next(sub).await;
        assert!(matches!(message, Message::Change(_)), "{message:?}");
        sub.sync(data, &message).await.unwrap();
    }
    hub.stats().rows_loaded - before
}

const FORTY_POSTS: &str = "INSERT INTO posts (id, name, person_id) \
                           SELECT g, 'post ' || g, 1 FROM generate_series(100, 139) AS g";

#[tokio::test]
async fn a_burst_of_updates_to_held_rows_is_read_together() {
    let f = seeded().await;
    f.sql.batch_execute(FORTY_POSTS).await.unwrap();
    let hub = start_hub(&f).await;
    let shape = ["tags"];
    let all_posts = || f.rowsync.query::<Post>().preload(shape).all();
    let mut posts = all_posts().await.unwrap();
    let mut sub = hub.subscribe(&posts, shape).unwrap();
    let reads = sync_burst(
        &f,
        &hub,
        &mut sub,
        &mut posts,
        "UPDATE posts SET name = 'first' WHERE id = 1",
        "UPDATE posts SET name = name || ' changed' WHERE id >= 100",
        40,
    )
    .await;
    assert_eq!(
        posts,
        all_posts().await.unwrap(),
        "synced list equals a reload"
    );
    assert!(
        reads < 40,
        "40 updates of one transaction shared reads: {reads} reads"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_inserts_into_a_held_collection_is_read_together() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let shape = ["posts"];
    let mut alice = person(&f, 1, &shape).await;
    let mut sub = hub.subscribe([&alice], shape).unwrap();
    let reads = sync_burst(
        &f,
        &hub,
        &mut sub,
        &mut alice,
        "INSERT INTO posts (id, name, person_id) VALUES (99, 'first', 1)",
        FORTY_POSTS,
        40,
    )
    .await;
    assert_eq!(alice, person(&f, 1, &shape).await, "synced equals a reload");
    assert_eq!(alice.posts.loaded().unwrap().len(), 43);
    assert!(
        reads < 40,
        "40 inserts of one transaction shared reads: {reads} reads"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_killed_listener_reconnects_and_every_subscriber_resyncs() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut subs: Vec<Subscription> = (0..5)
        .map(|_| hub.subscribe_table::<Tag>(["posts"]).unwrap())
        .collect();
    let pid = hub.listener_pid().await.expect("listening");
    f.sql
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    for sub in &mut subs {
        assert_eq!(next(sub).await, Message::Resync(ResyncReason::Reconnected));
    }
    assert_ne!(hub.listener_pid().await, Some(pid));
    assert_eq!(hub.stats().reconnects, 1);
    f.sql
        .batch_execute("UPDATE tags SET name = 'after' WHERE id = 1")
        .await
        .unwrap();
    for sub in &mut subs {
        let Message::Change(c) = next(sub).await else {
            panic!("expected a change")
        };
        assert_eq!(c.key, 1i64.into());
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn bad_payloads_and_unknown_tables_are_counted_not_fatal() {
    if replication() {
        return; // trigger capture only: NOTIFY payloads
    }
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut sub = hub.subscribe_table::<Tag>(Vec::<&str>::new()).unwrap();
    f.sql
        .batch_execute(
            r#"SELECT pg_notify('rowsync', 'not json');
               SELECT pg_notify('rowsync', '{"v":2,"o":"X","s":"public","t":"tags","x":"1","i":1,"n":{"id":"1"}}');
               SELECT pg_notify('rowsync', '{"v":2,"o":"I","s":"public","t":"tags","x":"1","n":{"id":"1"}}');
               SELECT pg_notify('rowsync', '{"v":2,"o":"I","s":"public","t":"nope","x":"1","i":1,"n":{"id":"1"}}');
               UPDATE tags SET name = 'still works' WHERE id = 2;"#,
        )
        .await
        .unwrap();
    let Message::Change(c) = next(&mut sub).await else {
        panic!("expected a change")
    };
    assert_eq!(c.key, 2i64.into());
    let stats = hub.stats();
    assert_eq!(stats.malformed_payloads, 3);
    assert_eq!(stats.unknown_tables, 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_database_that_does_not_match_is_a_clear_error_at_start() {
    let f = seeded().await;
    f.sql
        .batch_execute(
            "ALTER TABLE posts DROP COLUMN other_person_id;
             ALTER TABLE persons ALTER COLUMN name TYPE int4 USING 0;
             DROP TABLE posts_labels;",
        )
        .await
        .unwrap();
    let err = with_capture(
        Hub::builder(f.db.url()).watch::<Person>(["posts.labels", "other_posts"]),
        &f,
    )
    .start()
    .await
    .unwrap_err();
    let HubError::DatabaseMismatch(problems) = &err else {
        panic!("expected DatabaseMismatch, got {err:?}");
    };
    let text = err.to_string();
    for needle in [
        "table \"posts_labels\" does not exist",
        "\"posts\".other_person_id: no such column",
        "\"persons\".name: column is `int4`, but field `Person::name` (String)",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert_eq!(problems.len(), 3, "{text}");

    let err = with_capture(Hub::builder(f.db.url()).watch::<Person>(["postz"]), &f)
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("has no association `postz`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_slow_subscriber_gets_a_resync_and_nothing_vanishes() {
    let f = seeded().await;
    let hub = with_capture(
        Hub::builder(f.db.url())
            .watch::<Tag>(Vec::<&str>::new())
            .queue_capacity(4),
        &f,
    )
    .start()
    .await
    .unwrap();
    let mut slow = hub.subscribe_table::<Tag>(Vec::<&str>::new()).unwrap();
    let mut fast = hub.subscribe_table::<Tag>(Vec::<&str>::new()).unwrap();
    // why in step: the hub routes a burst of queued notifications at once, so a reader that
    // lets 20 pile up in a queue of 4 would lag too; this one takes each before the next write
    let mut seen = Vec::new();
    for i in 0..20 {
        f.sql
            .execute(
                "UPDATE tags SET name = $1 WHERE id = 1",
                &[&format!("n{i}")],
            )
            .await
            .unwrap();
        match timeout(WAIT, fast.next()).await.unwrap().unwrap() {
            Message::Change(c) => seen.push(c.seq),
            other => panic!("fast reader got {other:?}"),
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "commit order: {seen:?}"
    );
    assert_eq!(
        slow.delivered() + slow.dropped(),
        20,
        "every change was queued or counted as dropped"
    );
    assert!(slow.dropped() >= 16);
    match next(&mut slow).await {
        Message::Resync(ResyncReason::Lagged { missed }) => assert_eq!(missed, slow.dropped()),
        other => panic!("expected a resync, got {other:?}"),
    }
    f.sql
        .batch_execute("UPDATE tags SET name = 'later' WHERE id = 2")
        .await
        .unwrap();
    let Message::Change(c) = next(&mut slow).await else {
        panic!("expected a change")
    };
    assert_eq!(
        c.key,
        2i64.into(),
        "queued changes before the resync were dropped; new ones flow"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn one_transaction_arrives_as_one_batch_in_commit_order() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut batched = with_sentinel(hub.subscribe_table::<Tag>(Vec::<&str>::new()).unwrap());
    let mut witness = with_sentinel(
        hub.subscribe_to::<Person>(Op::Updated, Selector::row(1i64))
            .unwrap(),
    );
    f.sql
        .batch_execute(
            "BEGIN; UPDATE tags SET name = 'a' WHERE id = 1; UPDATE tags SET name = 'b' WHERE id = 2; COMMIT;
             UPDATE tags SET name = 'c' WHERE id = 1;",
        )
        .await
        .unwrap();
    changes_before_sentinel(&f, &mut [&mut witness]).await;
    let first = timeout(WAIT, batched.next_batch()).await.unwrap().unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    let second = timeout(WAIT, batched.next_batch()).await.unwrap().unwrap();
    assert_eq!(second.len(), 1);
    let (Message::Change(a), Message::Change(c)) = (&first[0], &second[0]) else {
        panic!()
    };
    assert!(a.seq < c.seq && a.xid != c.xid);
    hub.shutdown().await;
}

#[tokio::test]
async fn subscribing_to_tables_the_hub_does_not_capture_is_an_error() {
    let f = seeded().await;
    let hub = with_capture(
        Hub::builder(f.db.url()).watch::<Tag>(rowsync::NO_PRELOADS),
        &f,
    )
    .start()
    .await
    .unwrap();
    let err = hub.subscribe_table::<Tag>(["posts"]).unwrap_err();
    assert!(
        matches!(&err, HubError::NotWatched { tables } if tables == &["\"posts\"", "\"posts_tags\""]),
        "{err}"
    );
    assert!(err.to_string().contains(".watch::<Schema>"), "{err}");
    assert!(hub.live::<Person>().all().await.is_err());
    hub.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_subscriptions() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut sub = hub.subscribe_table::<Tag>(Vec::<&str>::new()).unwrap();
    hub.shutdown().await;
    assert_eq!(timeout(WAIT, sub.next()).await.unwrap(), None);
}

#[tokio::test]
async fn a_connection_error_says_what_the_server_said() {
    let f = seeded().await;
    let url = f.db.url().replace(f.db.name(), "no_such_database_here");
    let error = Hub::builder(url)
        .watch::<Tag>(rowsync::NO_PRELOADS)
        .start()
        .await
        .expect_err("the database does not exist");
    let text = error.to_string();
    assert!(
        text.contains("no_such_database_here") && text.contains("does not exist"),
        "the server's message is lost: {text}"
    );
}
