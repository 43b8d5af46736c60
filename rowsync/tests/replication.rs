//! The logical replication capture source against a real server (`wal_level = logical`):
//! exactly once across a killed WAL sender, a server restart and a hub restart; rows carried
//! with their changes (no reads); TRUNCATE, schema drift, big transactions, TOASTed values;
//! the slot's lag, its bound, and clear errors when the server cannot do it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rowsync::{
    Change, Hub, HubBuilder, HubError, Message, Op, ReplicationConfig, ReplicationError,
    ResyncReason, Schema, Subscription, NO_PRELOADS,
};
use tokio::time::timeout;

use crate::support::schemas::{Person, Post, Tag};
use crate::support::{fixture_in, logical_fixture, slot_name, Fixture, SEED};

const WAIT: Duration = Duration::from_secs(30);

async fn seeded() -> Fixture {
    let f = logical_fixture().await;
    f.sql.batch_execute(SEED).await.expect("seed");
    f
}

/// A hub capturing `tags` by replication, with room to queue every change a test makes.
fn tags_hub(f: &Fixture, config: ReplicationConfig) -> HubBuilder {
    Hub::builder(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .queue_capacity(1 << 20)
        .replication(config)
}

async fn next(sub: &mut Subscription) -> Message {
    timeout(WAIT, sub.next())
        .await
        .expect("a message within the timeout")
        .expect("the subscription is open")
}

/// A no-op update of tag 3; returns its transaction id.
async fn sentinel(client: &tokio_postgres::Client) -> u64 {
    client
        .query_one(
            "WITH t AS (UPDATE tags SET name = name WHERE id = 3 RETURNING 1) \
             SELECT pg_current_xact_id()::text FROM t",
            &[],
        )
        .await
        .expect("sentinel")
        .get::<_, String>(0)
        .parse()
        .expect("xid")
}

/// Every change up to the transaction `xid` (not included); a resync fails the test.
async fn changes_until(sub: &mut Subscription, xid: u64) -> Vec<Arc<Change>> {
    let mut got = Vec::new();
    loop {
        match next(sub).await {
            Message::Change(c) if c.xid == xid => return got,
            Message::Change(c) => got.push(c),
            Message::Resync(reason) => panic!("unexpected resync {reason:?}"),
        }
    }
}

/// Inserts tags `first..first + transactions * rows` in `transactions` transactions of
/// `rows` rows; returns each transaction's id.
async fn insert_tags(url: String, first: i64, transactions: i64, rows: i64) -> Vec<u64> {
    insert_tags_telling(url, first, transactions, rows, None).await
}

/// [`insert_tags`], sending the number of each transaction once it committed.
async fn insert_tags_telling(
    url: String,
    first: i64,
    transactions: i64,
    rows: i64,
    committed: Option<tokio::sync::mpsc::Sender<i64>>,
) -> Vec<u64> {
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the writer connects");
    tokio::spawn(connection);
    let mut xids = Vec::new();
    for t in 0..transactions {
        let from = first + t * rows;
        let row = client
            .query_one(
                "WITH ins AS (INSERT INTO tags (id, name) \
                     SELECT g, 'bulk ' || g FROM generate_series($1::int8, $2::int8) g RETURNING 1) \
                 SELECT pg_current_xact_id()::text FROM ins LIMIT 1",
                &[&from, &(from + rows - 1)],
            )
            .await
            .expect("insert");
        xids.push(row.get::<_, String>(0).parse().expect("xid"));
        if let Some(committed) = &committed {
            let _ = committed.send(t).await;
        }
    }
    xids
}

fn keys(changes: &[Arc<Change>]) -> Vec<i64> {
    changes
        .iter()
        .map(|c| match c.key.0.as_slice() {
            [rowsync::Value::I64(id)] => *id,
            other => panic!("unexpected key {other:?}"),
        })
        .collect()
}

/// Every change once, in commit order, each of a transaction the writers ran.
fn assert_exactly_once(changes: &[Arc<Change>], expected: &BTreeSet<i64>, xids: &[u64]) {
    let got = keys(changes);
    let unique: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "a change arrived twice");
    assert_eq!(&unique, expected, "changes lost");
    assert!(
        changes.windows(2).all(|w| w[0].seq < w[1].seq),
        "commit order"
    );
    let seen: BTreeSet<u64> = changes.iter().map(|c| c.xid).collect();
    let written: BTreeSet<u64> = xids.iter().copied().collect();
    assert_eq!(
        seen, written,
        "each change names its writer's transaction id"
    );
}

/// Terminates the hub's WAL sender (a new one: not `killed` before); returns its pid.
async fn kill(f: &Fixture, hub: &Hub, killed: Option<i32>) -> i32 {
    let pid = loop {
        match hub.listener_pid().await {
            Some(pid) if Some(pid) != killed => break pid,
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    f.sql
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminates the WAL sender");
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_wal_sender_mid_burst_loses_and_repeats_nothing() {
    let f = seeded().await;
    let hub = tags_hub(&f, ReplicationConfig::new(slot_name(&f)))
        .start()
        .await
        .expect("hub starts");
    let mut sub = hub.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    let (tell, mut committed) = tokio::sync::mpsc::channel(8);
    let writer = tokio::spawn(insert_tags_telling(
        f.db.url().to_owned(),
        1000,
        4,
        500,
        Some(tell),
    ));
    // the WAL sender dies right after the 2nd and the 3rd transaction committed: while it
    // streams them, most likely inside one
    let mut killed = None;
    while let Some(t) = committed.recv().await {
        if t == 1 || t == 2 {
            killed = Some(kill(&f, &hub, killed).await);
        }
    }
    let xids = writer.await.unwrap();
    let end = sentinel(&f.sql).await;
    let got = changes_until(&mut sub, end).await;
    assert_exactly_once(&got, &(1000..3000).collect(), &xids);
    let stats = hub.stats();
    assert!(stats.reconnects >= 2, "{stats:?}");
    eprintln!(
        "reconnects {}, changes sent again and skipped {}",
        stats.reconnects, stats.duplicates_skipped
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_loses_and_repeats_nothing() {
    let server = rowsync_testdb::private_cluster(&[])
        .await
        .expect("a private cluster");
    let f = fixture_in(&server).await;
    f.sql.batch_execute(SEED).await.unwrap();
    let hub = tags_hub(&f, ReplicationConfig::new("restart_slot"))
        .start()
        .await
        .expect("hub starts");
    let mut sub = hub.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    let mut xids = insert_tags(f.db.url().to_owned(), 1000, 10, 20).await;
    let mut got = Vec::new();
    while got.len() < 50 {
        if let Message::Change(c) = next(&mut sub).await {
            got.push(c);
        }
    }
    server.restart().await.expect("the server restarts");
    xids.extend(insert_tags(f.db.url().to_owned(), 2000, 10, 20).await);
    let client = f.db.connect().await.expect("connects after the restart");
    let end = sentinel(&client).await;
    got.extend(changes_until(&mut sub, end).await);
    let expected = (1000..1200).chain(2000..2200).collect();
    assert_exactly_once(&got, &expected, &xids);
    assert!(hub.stats().reconnects >= 1);
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_resumes_from_its_slot_while_writers_continue() {
    let f = seeded().await;
    let slot = slot_name(&f);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (f.db.url().to_owned(), stop.clone());
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let mut id = 1000i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                client
                    .execute("INSERT INTO tags (id, name) VALUES ($1, 'w')", &[&id])
                    .await
                    .unwrap();
                id += 1;
            }
            id - 1
        })
    };
    let first = tags_hub(&f, ReplicationConfig::new(&slot))
        .start()
        .await
        .unwrap();
    let mut sub = first.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    for _ in 0..20 {
        next(&mut sub).await;
    }
    // the first hub goes away without a word (as a crashed process would)
    drop(sub);
    drop(first);
    let second = tags_hub(&f, ReplicationConfig::new(&slot))
        .start()
        .await
        .unwrap();
    let mut sub = second.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    let boundary: i64 = f
        .sql
        .query_one("SELECT max(id) FROM tags", &[])
        .await
        .unwrap()
        .get(0);
    let mut got = Vec::new();
    while keys(&got).iter().filter(|&&k| k > boundary).count() < 100 {
        match next(&mut sub).await {
            Message::Change(c) => got.push(c),
            Message::Resync(reason) => panic!("unexpected resync {reason:?}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = writer.await.unwrap();
    let end = sentinel(&f.sql).await;
    got.extend(changes_until(&mut sub, end).await);
    let ids = keys(&got);
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a change arrived twice");
    let after: BTreeSet<i64> = unique.into_iter().filter(|&k| k > boundary).collect();
    assert_eq!(
        after,
        (boundary + 1..=last).collect(),
        "every row written after the subscription arrived"
    );
    second.shutdown().await;
}

#[tokio::test]
async fn insert_delete_insert_of_one_row_in_one_transaction_arrives_in_order_and_unread() {
    let f = seeded().await;
    let hub = tags_hub(&f, ReplicationConfig::temporary(slot_name(&f)))
        .start()
        .await
        .unwrap();
    let mut tags: Vec<Tag> = f.rowsync.query::<Tag>().all().await.unwrap();
    let mut sub = hub.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    f.sql
        .batch_execute(
            "BEGIN;
             INSERT INTO tags (id, name) VALUES (50, 'first');
             DELETE FROM tags WHERE id = 50;
             INSERT INTO tags (id, name) VALUES (50, 'again');
             COMMIT;",
        )
        .await
        .unwrap();
    let mut ops = Vec::new();
    let mut xids = BTreeSet::new();
    for _ in 0..3 {
        let message = next(&mut sub).await;
        let Message::Change(c) = &message else {
            panic!("{message:?}")
        };
        ops.push(c.op);
        xids.insert(c.xid);
        sub.sync(&mut tags, &message).await.unwrap();
    }
    assert_eq!(ops, [Op::Inserted, Op::Deleted, Op::Inserted]);
    assert_eq!(xids.len(), 1, "one transaction");
    tags.sort_by_key(|t| t.id);
    assert_eq!(tags, f.rowsync.query::<Tag>().all().await.unwrap());
    assert_eq!(hub.stats().rows_loaded, 0, "every row came with its change");
    hub.shutdown().await;
}

#[tokio::test]
async fn truncate_resyncs_the_subscribers_of_the_table() {
    let f = seeded().await;
    let hub = Hub::builder(f.db.url())
        .watch::<Post>(["tags"])
        .replication(ReplicationConfig::temporary(slot_name(&f)))
        .start()
        .await
        .unwrap();
    let mut posts = f
        .rowsync
        .query::<Post>()
        .preload(["tags"])
        .all()
        .await
        .unwrap();
    let mut post_sub = hub.subscribe(&posts, ["tags"]).unwrap();
    let mut tag_sub = hub.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    f.sql.batch_execute("TRUNCATE posts_tags").await.unwrap();
    let message = next(&mut post_sub).await;
    assert!(
        matches!(&message, Message::Resync(ResyncReason::Truncated { table }) if table.name == "posts_tags"),
        "{message:?}"
    );
    post_sub.sync(&mut posts, &message).await.unwrap();
    assert_eq!(
        posts,
        f.rowsync
            .query::<Post>()
            .preload(["tags"])
            .all()
            .await
            .unwrap()
    );
    // the tags' subscriber holds no link row: it hears nothing of it
    let end = sentinel(&f.sql).await;
    assert!(changes_until(&mut tag_sub, end).await.is_empty());
    hub.shutdown().await;
}

#[tokio::test]
async fn a_renamed_or_dropped_mapped_column_resyncs_with_schema_changed() {
    let f = seeded().await;
    let hub = Hub::builder(f.db.url())
        .watch::<Person>(["posts"])
        .watch::<Tag>(NO_PRELOADS)
        .replication(ReplicationConfig::temporary(slot_name(&f)))
        .start()
        .await
        .unwrap();
    let mut tags = hub.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    let mut posts = hub.subscribe_table::<Post>(NO_PRELOADS).unwrap();

    // a mapped column renamed: the change still routes, its row is no longer carried
    f.sql
        .batch_execute(
            "ALTER TABLE tags RENAME COLUMN name TO title;
             UPDATE tags SET title = 'x' WHERE id = 1;",
        )
        .await
        .unwrap();
    match next(&mut tags).await {
        Message::Resync(ResyncReason::SchemaChanged { table, detail }) => {
            assert_eq!(table.name, "tags");
            assert!(detail.contains("`name` is gone"), "{detail}");
        }
        other => panic!("expected SchemaChanged, got {other:?}"),
    }
    assert!(matches!(next(&mut tags).await, Message::Change(c) if c.key == 1i64.into()));

    // a routing column dropped: the table's changes cannot be described any more, and each
    // transaction touching it resyncs its subscribers instead (the Relation message, then
    // the two transactions)
    f.sql
        .batch_execute(
            "ALTER TABLE posts DROP COLUMN person_id;
             UPDATE posts SET name = 'y' WHERE id = 1;",
        )
        .await
        .unwrap();
    f.sql
        .batch_execute("UPDATE posts SET name = 'z' WHERE id = 2")
        .await
        .unwrap();
    for _ in 0..3 {
        match next(&mut posts).await {
            Message::Resync(ResyncReason::SchemaChanged { table, detail }) => {
                assert_eq!(table.name, "posts");
                assert!(detail.contains("person_id"), "{detail}");
            }
            other => panic!("expected SchemaChanged, got {other:?}"),
        }
    }
    // the stream goes on for the other tables
    let end: u64 = f
        .sql
        .query_one(
            "WITH t AS (UPDATE tags SET title = title WHERE id = 3 RETURNING 1) \
             SELECT pg_current_xact_id()::text FROM t",
            &[],
        )
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    changes_until(&mut tags, end).await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_of_100000_rows_arrives_whole() {
    let f = seeded().await;
    let hub = tags_hub(&f, ReplicationConfig::new(slot_name(&f)))
        .start()
        .await
        .unwrap();
    let mut sub = hub.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    let xids = insert_tags(f.db.url().to_owned(), 1000, 1, 100_000).await;
    let end = sentinel(&f.sql).await;
    let got = changes_until(&mut sub, end).await;
    assert_exactly_once(&got, &(1000..101_000).collect(), &xids);
    assert_eq!(hub.stats().rows_loaded, 0);
    hub.shutdown().await;
}

/// A table with a large, out-of-line (TOASTed) column.
#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "docs")]
struct Doc {
    id: i64,
    title: String,
    body: String,
}

/// Rows read to apply what `sql` changes; the held docs must then equal a fresh load.
async fn reads_for(
    f: &Fixture,
    hub: &Hub,
    sub: &mut Subscription,
    docs: &mut Vec<Doc>,
    sql: &str,
) -> u64 {
    let before = hub.stats().rows_loaded;
    f.sql.batch_execute(sql).await.unwrap();
    let message = next(sub).await;
    sub.sync(docs, &message).await.unwrap();
    assert_eq!(
        *docs,
        f.rowsync.query::<Doc>().all().await.unwrap(),
        "after {sql}"
    );
    hub.stats().rows_loaded - before
}

#[tokio::test]
async fn a_one_megabyte_value_updated_and_left_unchanged() {
    let f = seeded().await;
    f.sql
        .batch_execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL);
             -- EXTERNAL: out of line, uncompressed, so the value surely is TOASTed
             ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
             INSERT INTO docs VALUES (1, 'one', repeat('x', 1000000));",
        )
        .await
        .unwrap();
    let hub = Hub::builder(f.db.url())
        .watch::<Doc>(NO_PRELOADS)
        .replication(ReplicationConfig::temporary(slot_name(&f)))
        .start()
        .await
        .unwrap();
    let mut docs: Vec<Doc> = f.rowsync.query::<Doc>().all().await.unwrap();
    let mut sub = hub.subscribe(&docs, NO_PRELOADS).unwrap();
    // a new value is sent: carried
    let sql = "UPDATE docs SET body = repeat('y', 1000000)";
    assert_eq!(reads_for(&f, &hub, &mut sub, &mut docs, sql).await, 0);
    // left unchanged, DEFAULT identity: the value is not sent, the row is read once
    let sql = "UPDATE docs SET title = 'two'";
    assert_eq!(reads_for(&f, &hub, &mut sub, &mut docs, sql).await, 1);
    // FULL identity: the old row holds the value, the row is carried again
    f.sql
        .batch_execute("ALTER TABLE docs REPLICA IDENTITY FULL")
        .await
        .unwrap();
    let sql = "UPDATE docs SET title = 'three'";
    assert_eq!(reads_for(&f, &hub, &mut sub, &mut docs, sql).await, 0);
    assert_eq!(docs[0].body.len(), 1_000_000);
    hub.shutdown().await;
}

#[tokio::test]
async fn updates_of_held_rows_and_inserts_into_held_collections_read_nothing() {
    let f = seeded().await;
    let shape = ["posts", "profile"];
    let hub = Hub::builder(f.db.url())
        .watch::<Person>(shape)
        .replication(ReplicationConfig::temporary(slot_name(&f)))
        .start()
        .await
        .unwrap();
    let fresh = || async {
        f.rowsync
            .query::<Person>()
            .preload(shape)
            .order_by("id")
            .all()
            .await
            .unwrap()
    };
    let mut people = fresh().await;
    let mut sub = hub.subscribe(&people, shape).unwrap();
    for sql in [
        "UPDATE persons SET name = 'alicia' WHERE id = 1",
        "UPDATE posts SET name = 'renamed' WHERE id = 1",
        "INSERT INTO posts (id, name, person_id) VALUES (60, 'new', 2)",
        "UPDATE posts SET person_id = 1 WHERE id = 60",
        "UPDATE profiles SET bio = 'hello' WHERE id = 1",
        "DELETE FROM posts WHERE id = 2",
    ] {
        f.sql.batch_execute(sql).await.unwrap();
        let message = next(&mut sub).await;
        sub.sync(&mut people, &message).await.unwrap();
        assert_eq!(people, fresh().await, "after {sql}");
    }
    assert_eq!(hub.stats().rows_loaded, 0, "every row came with its change");
    hub.shutdown().await;
}

#[tokio::test]
async fn the_slot_lag_is_reported_and_uninstall_removes_slot_and_publication() {
    let f = seeded().await;
    let slot = slot_name(&f);
    let config = ReplicationConfig::new(&slot).lag_check_interval(Duration::from_millis(50));
    let sql = tags_hub(&f, config.clone())
        .publication_sql(&config)
        .unwrap();
    assert_eq!(
        sql,
        format!("CREATE PUBLICATION \"{slot}\" FOR TABLE \"tags\";\n"),
        "what the hub creates, for migrations"
    );
    let hub = tags_hub(&f, config.clone()).start().await.unwrap();
    let found = |sql: &'static str| {
        let (client, slot) = (&f.sql, slot.clone());
        async move {
            client
                .query_one(sql, &[&slot])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        found("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1").await,
        1
    );
    assert_eq!(
        found("SELECT count(*) FROM pg_publication WHERE pubname = $1").await,
        1
    );
    let measured = async {
        loop {
            if hub.stats().slot_lag_bytes.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WAIT, measured).await.expect("the lag is measured");
    hub.shutdown().await;
    tags_hub(&f, config).uninstall().await.expect("uninstalls");
    assert_eq!(
        found("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1").await,
        0
    );
    assert_eq!(
        found("SELECT count(*) FROM pg_publication WHERE pubname = $1").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_past_its_lag_bound_is_replaced_and_everyone_resyncs() {
    let f = seeded().await;
    let config = ReplicationConfig::new(slot_name(&f))
        .lag_check_interval(Duration::from_millis(20))
        .max_lag_bytes(4 << 20);
    let hub = tags_hub(&f, config).start().await.unwrap();
    let mut sub = hub.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    f.sql
        .batch_execute("CREATE TABLE ballast (n bigint)")
        .await
        .unwrap();
    // megabytes of WAL the slot does not publish, until the slot is seen that far behind
    let replaced = async {
        while hub.stats().slot_resets == 0 {
            f.sql
                .batch_execute("INSERT INTO ballast SELECT generate_series(1, 100000)")
                .await
                .unwrap();
        }
    };
    timeout(WAIT, replaced).await.expect("the slot is replaced");
    // why no more writes: a new slot starts once the transactions running meanwhile ended
    let message = next(&mut sub).await;
    assert_eq!(message, Message::Resync(ResyncReason::Reconnected));
    assert!(hub.stats().slot_resets >= 1);
    // and changes flow on the new slot (WAL other tests write may push it past the bound
    // again, losing a sentinel to the next resync: write another)
    let flowing = async {
        loop {
            let end = sentinel(&f.sql).await;
            while let Ok(Some(message)) = timeout(Duration::from_secs(2), sub.next()).await {
                if matches!(&message, Message::Change(c) if c.xid == end) {
                    return;
                }
            }
        }
    };
    timeout(WAIT, flowing).await.expect("changes flow again");
    hub.shutdown().await;
}

fn replication_error(error: HubError) -> ReplicationError {
    match error {
        HubError::Replication(error) => error,
        other => panic!("expected a replication error, got {other:?}"),
    }
}

#[tokio::test]
async fn what_the_server_lacks_is_a_clear_error() {
    let f = seeded().await;
    let start = |config: ReplicationConfig| tags_hub(&f, config).start();

    let error = replication_error(start(ReplicationConfig::new("Bad-Name")).await.unwrap_err());
    assert!(
        matches!(error, ReplicationError::InvalidName { .. }),
        "{error}"
    );

    // a role without REPLICATION
    let role = format!("norepl_{}", f.db.name());
    f.sql
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    let url = f.db.url().replace("postgres@", &format!("{role}@"));
    let error = Hub::builder(&url)
        .watch::<Tag>(NO_PRELOADS)
        .replication(ReplicationConfig::temporary(slot_name(&f)))
        .start()
        .await
        .unwrap_err();
    let error = replication_error(error);
    assert!(
        error
            .to_string()
            .contains(&format!("ALTER ROLE {role} REPLICATION")),
        "{error}"
    );

    // a table without a replica identity
    f.sql
        .batch_execute("ALTER TABLE tags REPLICA IDENTITY NOTHING")
        .await
        .unwrap();
    let error = replication_error(
        start(ReplicationConfig::temporary(slot_name(&f)))
            .await
            .unwrap_err(),
    );
    assert!(
        error.to_string().contains("REPLICA IDENTITY NOTHING"),
        "{error}"
    );
    f.sql
        .batch_execute("ALTER TABLE tags REPLICA IDENTITY DEFAULT")
        .await
        .unwrap();

    // routing columns outside the key, and the hub may not set FULL itself
    let error = Hub::builder(f.db.url())
        .watch::<Person>(["posts"])
        .replication(ReplicationConfig::temporary(slot_name(&f)).manage_replica_identity(false))
        .start()
        .await
        .unwrap_err();
    let text = replication_error(error).to_string();
    assert!(
        text.contains("ALTER TABLE \"posts\" REPLICA IDENTITY FULL"),
        "{text}"
    );

    // a slot of that name that is not ours
    let physical = slot_name(&f);
    f.sql
        .execute(
            "SELECT pg_create_physical_replication_slot($1)",
            &[&physical],
        )
        .await
        .unwrap();
    let error = replication_error(start(ReplicationConfig::new(&physical)).await.unwrap_err());
    assert!(error.to_string().contains("is a physical slot"), "{error}");
    f.sql
        .execute("SELECT pg_drop_replication_slot($1)", &[&physical])
        .await
        .unwrap();

    // a publication someone else manages that lacks a table
    f.sql
        .batch_execute("CREATE PUBLICATION theirs FOR TABLE persons")
        .await
        .unwrap();
    let error = replication_error(
        start(
            ReplicationConfig::temporary(slot_name(&f))
                .publication("theirs")
                .manage_publication(false),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        matches!(&error, ReplicationError::PublicationMissing { tables, .. } if tables == &["\"public\".\"tags\""]),
        "{error}"
    );
    f.sql
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_without_logical_wal_or_free_slots_is_a_clear_error() {
    let replica = rowsync_testdb::private_cluster(&["wal_level = replica"])
        .await
        .expect("a private cluster");
    let f = fixture_in(&replica).await;
    let error = tags_hub(&f, ReplicationConfig::temporary("any"))
        .start()
        .await
        .unwrap_err();
    let text = replication_error(error).to_string();
    assert!(text.contains("`wal_level = logical`"), "{text}");
    assert!(text.contains("`replica`"), "{text}");
    drop(f);

    let full = rowsync_testdb::private_cluster(&["max_replication_slots = 1"])
        .await
        .expect("a private cluster");
    let f = fixture_in(&full).await;
    f.sql
        .execute(
            "SELECT pg_create_logical_replication_slot('taken', 'pgoutput')",
            &[],
        )
        .await
        .unwrap();
    let error = tags_hub(&f, ReplicationConfig::new("mine"))
        .start()
        .await
        .unwrap_err();
    let error = replication_error(error);
    assert!(
        matches!(error, ReplicationError::NoFreeSlot { max: 1 }),
        "{error}"
    );
    assert!(error.to_string().contains("max_replication_slots"));
    f.sql
        .execute("SELECT pg_drop_replication_slot('taken')", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn two_hubs_side_by_side_keep_their_own_slots_and_publications() {
    let f = seeded().await;
    let a = Hub::builder(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .replication(ReplicationConfig::new(slot_name(&f)))
        .start()
        .await
        .unwrap();
    let b = Hub::builder(f.db.url())
        .watch::<Person>(NO_PRELOADS)
        .replication(ReplicationConfig::new(slot_name(&f)))
        .start()
        .await
        .unwrap();
    let mut tags = a.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    let mut people = b.subscribe_table::<Person>(NO_PRELOADS).unwrap();
    f.sql
        .batch_execute(
            "UPDATE tags SET name = 'a' WHERE id = 1; UPDATE persons SET name = 'b' WHERE id = 1;",
        )
        .await
        .unwrap();
    assert!(matches!(next(&mut tags).await, Message::Change(c) if c.table.name == "tags"));
    assert!(matches!(next(&mut people).await, Message::Change(c) if c.table.name == "persons"));
    let publications: HashMap<String, i64> = f
        .sql
        .query(
            "SELECT pubname::text, count(*) FROM pg_publication_tables GROUP BY pubname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(publications.len(), 2, "{publications:?}");
    assert!(publications.values().all(|&n| n == 1), "{publications:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_replication_connection_uses_tls_when_the_hub_does() {
    let f = seeded().await;
    let server = rowsync_testdb::throwaway().await.unwrap();
    let root = server
        .tls_root_pem()
        .expect("the throwaway cluster has TLS");
    let ca_file = std::env::temp_dir().join(format!("rowsync-ca-{}.pem", f.db.name()));
    std::fs::write(&ca_file, root).unwrap();
    let url = format!("{}?sslmode=require", f.db.url());
    let hub = Hub::builder(&url)
        .tls(rowsync::Tls::with_root_pem(root.as_bytes()).unwrap())
        .watch::<Tag>(NO_PRELOADS)
        .replication(ReplicationConfig::temporary(slot_name(&f)).tls_ca_file(&ca_file))
        .start()
        .await
        .expect("the hub starts over TLS");
    let mut sub = hub.subscribe_table::<Tag>(NO_PRELOADS).unwrap();
    let end = sentinel(&f.sql).await;
    changes_until(&mut sub, end).await;
    let pid = hub.listener_pid().await.expect("streaming");
    let encrypted: bool = f
        .sql
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the WAL sender's connection uses TLS");
    hub.shutdown().await;
    let _ = std::fs::remove_file(&ca_file);
}

#[tokio::test]
async fn every_field_type_carried_in_text_decodes_as_a_fresh_load_does() {
    use crate::support::schemas::Sample;
    let f = seeded().await;
    let hub = Hub::builder(f.db.url())
        .watch::<Sample>(NO_PRELOADS)
        .replication(ReplicationConfig::temporary(slot_name(&f)))
        .start()
        .await
        .unwrap();
    let mut sub = hub.subscribe_table::<Sample>(NO_PRELOADS).unwrap();
    // the server's own settings write the values; a writer's settings must not matter
    f.sql
        .batch_execute(
            r#"SET TimeZone = 'Asia/Kolkata'; SET DateStyle = 'SQL, DMY';
             INSERT INTO samples VALUES (
                 '12345678-9abc-def0-1234-56789abcdef0', -7, 70000, 9000000000, 0.1, 1.0 / 3.0,
                 true, E'héllo "quoted"\n', 'short', '\x0001ff', '1990-02-28',
                 '06:30:15.25', '2024-01-02 03:04:05.000006', '2023-11-14 22:13:20.000123+00',
                 '{"a": [1, 2, {"b": null}], "c": "d"}', 'in-review', 'so_so',
                 -1234567890.1234);
             INSERT INTO samples (id, small, medium, ratio, flag, body, created_at, status)
                 VALUES ('00000000-0000-0000-0000-000000000002', 0, 0, -0.0, false, '',
                         '1970-01-01 00:00:00+00', 'draft');
             RESET TimeZone; RESET DateStyle;"#,
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let Message::Change(change) = next(&mut sub).await else {
            panic!("expected a change")
        };
        let carried = hub.get::<Sample>(&change).await.unwrap().expect("carried");
        let fresh = f
            .rowsync
            .query::<Sample>()
            .get(carried.id)
            .await
            .unwrap()
            .expect("exists");
        assert_eq!(carried, fresh);
    }
    assert_eq!(
        hub.stats().rows_loaded,
        0,
        "both rows came with their changes"
    );
    hub.shutdown().await;
}
