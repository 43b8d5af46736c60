//! Rows carried with their changes: nothing read to apply them, whatever the transaction
//! holds, however large, whatever the types.

use std::collections::BTreeSet;

use rowsync::{Hub, Message, Op, ReplicationConfig, Schema, Subscription, NO_PRELOADS};

use super::*;
use crate::support::schemas::{Person, Tag};
use crate::support::{slot_name, Fixture};

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
