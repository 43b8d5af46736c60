//! What a stream cannot describe as row changes: TRUNCATE and columns changed under the hub.

use rowsync::{Hub, Message, ReplicationConfig, ResyncReason, NO_PRELOADS};

use super::*;
use crate::support::schemas::{Person, Post, Tag};
use crate::support::slot_name;

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
    // the two transactions; resyncs waiting to be taken are one)
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
    match next(&mut posts).await {
        Message::Resync(ResyncReason::SchemaChanged { table, detail }) => {
            assert_eq!(table.name, "posts");
            assert!(detail.contains("person_id"), "{detail}");
        }
        other => panic!("expected SchemaChanged, got {other:?}"),
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
