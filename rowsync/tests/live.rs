//! Live queries: no gap between load and subscribe, no change applied twice, membership
//! following the query, shared loads, and topics that leave with the value.

use std::time::Duration;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use rowsync::{Filter, Hub, Live, LiveValue};
use tokio::time::timeout;

use crate::hub::start_hub;
use crate::oracle::op;
use crate::support::schemas::{Person, Post, Tag};
use crate::support::{seeded, settle, Fixture};

const WAIT: Duration = Duration::from_secs(10);

/// One live value of some shape, with the query that gives the oracle's view of it.
enum AnyLive {
    People(Live<Vec<Person>>, Vec<&'static str>, Option<Filter>),
    Post(Live<Option<Post>>, Vec<&'static str>),
    Tags(Live<Vec<Tag>>, Vec<&'static str>),
    Posts(Live<Vec<Post>>, Vec<&'static str>, Filter),
}

async fn start(hub: &Hub, i: usize) -> AnyLive {
    match i % 5 {
        0 => {
            let shape = vec!["posts.tags", "posts.labels", "profile"];
            AnyLive::People(
                hub.live::<Person>().preload(&shape).all().await.unwrap(),
                shape,
                None,
            )
        }
        1 => {
            let shape = vec!["test_posts", "all_tags", "favourite_people.posts"];
            let filter = Filter::in_list("name", ["alice", "bob", "test", "zeta"]);
            let live = hub
                .live::<Person>()
                .filter(filter.clone())
                .preload(&shape)
                .all()
                .await
                .unwrap();
            AnyLive::People(live, shape, Some(filter))
        }
        2 => {
            let shape = vec!["tags", "person"];
            AnyLive::Post(
                hub.live::<Post>().preload(&shape).get(1i64).await.unwrap(),
                shape,
            )
        }
        3 => {
            let shape = vec!["posts"];
            AnyLive::Tags(
                hub.live::<Tag>().preload(&shape).all().await.unwrap(),
                shape,
            )
        }
        _ => {
            let shape = vec!["tags"];
            let filter = Filter::eq("name", "test");
            let live = hub
                .live::<Post>()
                .filter(filter.clone())
                .preload(&shape)
                .order_by_desc("id")
                .all()
                .await
                .unwrap();
            AnyLive::Posts(live, shape, filter)
        }
    }
}

async fn apply_and_check<T: LiveValue + PartialEq + std::fmt::Debug>(
    live: &mut Live<T>,
    expected: T,
    what: &str,
) {
    live.apply_pending().await.unwrap();
    assert_eq!(
        live.stats().duplicates,
        0,
        "{what}: a change was received twice"
    );
    assert_eq!(
        **live,
        expected,
        "{what} differs from a fresh load; stats {:?}",
        live.stats()
    );
}

impl AnyLive {
    async fn pending(&mut self) {
        match self {
            AnyLive::People(l, ..) => drop(l.apply_pending().await.unwrap()),
            AnyLive::Post(l, ..) => drop(l.apply_pending().await.unwrap()),
            AnyLive::Tags(l, ..) => drop(l.apply_pending().await.unwrap()),
            AnyLive::Posts(l, ..) => drop(l.apply_pending().await.unwrap()),
        }
    }

    async fn check(&mut self, f: &Fixture) {
        match self {
            AnyLive::People(live, shape, filter) => {
                let mut q = f.rowsync.query::<Person>().preload(&*shape);
                if let Some(filter) = filter {
                    q = q.filter(filter.clone());
                }
                apply_and_check(live, q.all().await.unwrap(), "people").await;
            }
            AnyLive::Post(live, shape) => {
                let expected = f
                    .rowsync
                    .query::<Post>()
                    .preload(&*shape)
                    .get(1i64)
                    .await
                    .unwrap();
                apply_and_check(live, expected, "post 1").await;
            }
            AnyLive::Tags(live, shape) => {
                let expected = f
                    .rowsync
                    .query::<Tag>()
                    .preload(&*shape)
                    .all()
                    .await
                    .unwrap();
                apply_and_check(live, expected, "tags").await;
            }
            AnyLive::Posts(live, shape, filter) => {
                let expected = f
                    .rowsync
                    .query::<Post>()
                    .filter(filter.clone())
                    .preload(&*shape)
                    .order_by_desc("id")
                    .all()
                    .await
                    .unwrap();
                apply_and_check(live, expected, "posts named test").await;
            }
        }
    }

    fn stats(&self) -> rowsync::SyncStats {
        match self {
            AnyLive::People(l, ..) => l.stats(),
            AnyLive::Post(l, ..) => l.stats(),
            AnyLive::Tags(l, ..) => l.stats(),
            AnyLive::Posts(l, ..) => l.stats(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_values_started_during_concurrent_writes_equal_a_fresh_load() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let url = f.db.url().to_owned();
    let mut writers = Vec::new();
    for seed in 0..3u64 {
        let url = url.clone();
        writers.push(tokio::spawn(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut runner = TestRunner::new_with_rng(
                proptest::test_runner::Config::default(),
                proptest::test_runner::TestRng::from_seed(
                    proptest::test_runner::RngAlgorithm::ChaCha,
                    &[seed as u8; 32],
                ),
            );
            for _ in 0..60 {
                let statements: Vec<String> = (0..3)
                    .map(|_| op().new_tree(&mut runner).unwrap().current().sql())
                    .collect();
                // concurrent writers may deadlock or conflict; PostgreSQL aborts one, which is fine
                let _ = client
                    .batch_execute(&format!("BEGIN; {}; COMMIT;", statements.join("; ")))
                    .await;
                let _ = client.batch_execute("ROLLBACK").await;
            }
        }));
    }
    let mut lives = Vec::new();
    for i in 0..25 {
        lives.push(start(&hub, i).await);
        for live in &mut lives {
            live.pending().await;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    settle(&f, &hub).await;
    let (mut applied, mut skipped, mut stale) = (0, 0, 0);
    for live in &mut lives {
        live.check(&f).await;
        applied += live.stats().applied;
        skipped += live.stats().skipped_visible;
        stale += live.stats().stale;
    }
    eprintln!("applied {applied} changes, skipped {skipped} already in the loaded data");
    assert!(applied > 0, "the writers' changes reached the live values");
    // changes are applied in commit order, the changes caught up for rows a sync took in
    // among them: none comes after a newer one of its row (applied late, old news undid
    // newer data: a delete took away a tag read since)
    assert_eq!(stale, 0, "changes applied out of commit order");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_filtered_live_list_gains_and_loses_rows() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut tests = hub
        .live::<Post>()
        .filter(Filter::eq("name", "test"))
        .preload(["tags"])
        .all()
        .await
        .unwrap();
    assert_eq!(tests.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 3]);
    // (statement, inserted, deleted, ids held after)
    type Step<'a> = (&'a str, &'a [i64], &'a [i64], &'a [i64]);
    let steps: [Step; 4] = [
        (
            "UPDATE posts SET name = 'test' WHERE id = 2",
            &[2],
            &[],
            &[1, 2, 3],
        ),
        (
            "UPDATE posts SET name = 'nope' WHERE id = 1",
            &[],
            &[1],
            &[2, 3],
        ),
        (
            "INSERT INTO posts (id, name) VALUES (9, 'test')",
            &[9],
            &[],
            &[2, 3, 9],
        ),
        ("DELETE FROM posts WHERE id = 3", &[], &[3], &[2, 9]),
    ];
    for (sql, inserted, deleted, now) in steps {
        f.sql.batch_execute(sql).await.unwrap();
        let changes = timeout(WAIT, tests.next()).await.unwrap().unwrap().unwrap();
        let keys = |ids: &[i64]| {
            ids.iter()
                .map(|&i| rowsync::Key::from(i))
                .collect::<Vec<_>>()
        };
        assert_eq!(changes.inserted, keys(inserted), "{sql}");
        assert_eq!(changes.deleted, keys(deleted), "{sql}");
        assert_eq!(tests.iter().map(|p| p.id).collect::<Vec<_>>(), now, "{sql}");
    }
    let fresh = f
        .rowsync
        .query::<Post>()
        .filter(Filter::eq("name", "test"))
        .preload(["tags"])
        .all()
        .await
        .unwrap();
    assert_eq!(*tests, fresh);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_thousand_concurrent_live_calls_share_one_load() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let stats_available = f
        .sql
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset();",
        )
        .await
        .is_ok();
    let before = hub.live_loads();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            hub.live::<Person>()
                .preload(["posts.tags"])
                .all()
                .await
                .unwrap()
        }));
    }
    let mut lives = Vec::new();
    for task in tasks {
        lives.push(task.await.unwrap());
    }
    assert_eq!(
        hub.live_loads() - before,
        1,
        "one load for 1,000 concurrent live() calls"
    );
    if stats_available {
        let calls: i64 = f
            .sql
            .query_one(
                "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND query LIKE 'SELECT %' AND query LIKE '%FROM \"persons\" AS t0%' AND query NOT LIKE '%ANY%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(calls, 1, "the server ran the root query once");
    }
    let fresh = f
        .rowsync
        .query::<Person>()
        .preload(["posts.tags"])
        .all()
        .await
        .unwrap();
    assert!(lives.iter().all(|l| **l == fresh));
    hub.shutdown().await;
}

#[tokio::test]
async fn dropping_a_live_value_removes_its_topics() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let baseline = hub.stats();
    let live = hub
        .live::<Person>()
        .preload(["posts.tags", "favourite_people"])
        .all()
        .await
        .unwrap();
    let moved = tokio::spawn(async move {
        // Live is Send: it can live in its own task
        live.len()
    });
    assert_eq!(moved.await.unwrap(), 3);
    let held = hub
        .live::<Post>()
        .preload(["tags"])
        .get(1i64)
        .await
        .unwrap();
    assert!(hub.stats().topics > baseline.topics);
    assert_eq!(hub.stats().subscriptions, baseline.subscriptions + 1);
    drop(held);
    assert_eq!(hub.stats().topics, baseline.topics);
    assert_eq!(hub.stats().subscriptions, baseline.subscriptions);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_resync_reloads_a_live_value_without_a_gap() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut people = hub
        .live::<Person>()
        .preload(["posts.tags"])
        .all()
        .await
        .unwrap();
    let pid = hub.listener_pid().await.unwrap();
    f.sql
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    f.sql
        .batch_execute("UPDATE posts SET person_id = 2 WHERE id = 1")
        .await
        .unwrap();
    let changes = timeout(WAIT, people.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(changes.reloaded);
    f.sql
        .batch_execute("INSERT INTO posts_tags VALUES (2, 3)")
        .await
        .unwrap();
    settle(&f, &hub).await;
    people.apply_pending().await.unwrap();
    let fresh = f
        .rowsync
        .query::<Person>()
        .preload(["posts.tags"])
        .all()
        .await
        .unwrap();
    assert_eq!(*people, fresh);
    assert_eq!(people.stats().loads, 2);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_transaction_in_progress_during_the_load_is_applied_when_it_commits() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let (mut writer, conn) = tokio_postgres::connect(f.db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tx = writer.transaction().await.unwrap();
    tx.batch_execute("UPDATE posts SET name = 'in flight' WHERE id = 2")
        .await
        .unwrap();
    let xid: String = tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap()
        .get(0);
    let mut posts = hub.live::<Post>().preload(["tags"]).all().await.unwrap();
    let xid: u64 = xid.parse().unwrap();
    assert!(
        !posts.snapshot().expect("loaded").sees(xid),
        "the writer was in progress at the snapshot"
    );
    assert_eq!(
        posts.iter().find(|p| p.id == 2).unwrap().name,
        "hello",
        "the load did not see it"
    );
    tx.commit().await.unwrap();
    let changes = timeout(WAIT, posts.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(changes.updated, vec![rowsync::Key::from(2i64)]);
    assert_eq!(posts.iter().find(|p| p.id == 2).unwrap().name, "in flight");
    assert_eq!(posts.stats().applied, 1);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_identical_live_queries_share_one_value_and_each_sees_every_transaction() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let baseline = hub.stats();
    let writes = [
        "UPDATE posts SET name = 'one' WHERE id = 1",
        "BEGIN; UPDATE posts SET name = 'two' WHERE id = 2; \
         INSERT INTO posts_tags VALUES (2, 3); COMMIT",
        "DELETE FROM posts_tags WHERE post_id = 3",
    ];
    let key = |id: i64| vec![rowsync::Key::from(id)];
    let expected = [key(1), key(2), key(3)];
    // every viewer in a task of its own from its start, as web sessions are: the later ones
    // join while the earlier ones wait for changes
    let mut tasks = Vec::new();
    let mut first = None;
    for _ in 0..1000 {
        let mut live = hub.live::<Post>().preload(["tags"]).all().await.unwrap();
        let value = live.snapshot_arc();
        let first = first.get_or_insert_with(|| value.clone());
        assert!(std::sync::Arc::ptr_eq(&value, first), "one value");
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for round in 0..3 {
                // why longer for the first: it spans the start of the other viewers too (the
                // writes come after the last joined), which takes seconds on a loaded machine
                let wait = if round == 0 { WAIT * 6 } else { WAIT };
                let changes = timeout(wait, live.next()).await.unwrap().unwrap().unwrap();
                let names: Vec<String> = live.iter().map(|p| p.name.clone()).collect();
                seen.push((changes.updated, names));
            }
            (live, seen)
        }));
    }
    assert_eq!(
        hub.stats().subscriptions,
        baseline.subscriptions + 1,
        "one subscription"
    );
    for sql in writes {
        f.sql.batch_execute(sql).await.unwrap();
    }
    let mut lives = Vec::new();
    for task in tasks {
        let (live, seen) = task.await.unwrap();
        let updated: Vec<_> = seen.iter().map(|(u, _)| u.clone()).collect();
        assert_eq!(updated, expected, "each transaction, whole and in order");
        assert_eq!(seen[0].1[..2], ["one".to_owned(), "hello".to_owned()]);
        assert_eq!(seen[1].1[..2], ["one".to_owned(), "two".to_owned()]);
        lives.push(live);
    }
    let fresh = f
        .rowsync
        .query::<Post>()
        .preload(["tags"])
        .all()
        .await
        .unwrap();
    let first = lives[0].snapshot_arc();
    assert_eq!(*first, fresh);
    assert!(lives
        .iter()
        .all(|l| std::sync::Arc::ptr_eq(&l.snapshot_arc(), &first)));
    // synced once per change, not once per viewer
    assert_eq!(lives[0].stats().applied, 4);
    drop(lives);
    assert_eq!(hub.stats().subscriptions, baseline.subscriptions);
    hub.shutdown().await;
}
