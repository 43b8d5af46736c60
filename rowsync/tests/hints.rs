//! A notification is a hint, the database is the truth: forged, replayed or unreadable
//! changes never leave held data wrong or silently stale, and every update leaves rows in
//! the order a fresh load gives.

use std::time::Duration;

use rowsync::testing::{ListenEvent, Listener, ListenerConfig};
use rowsync::{Hub, ResyncReason, Schema, SyncError};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::hub::{start_hub, suite_hub};
use crate::support::schemas::{Person, Post, Sample, Tag};
use crate::support::{seeded, settle, Fixture};

const WAIT: Duration = Duration::from_secs(10);
/// The channel the test hubs notify on (the default).
const CHANNEL: &str = "rowsync";

/// The suite's hub capturing by triggers, whatever the run's source: forged and replayed
/// notifications are what anyone who can connect may send into a trigger hub's channel.
async fn trigger_hub(f: &Fixture) -> Hub {
    suite_hub(f).start().await.expect("hub starts")
}

/// Every payload the capture triggers send for `sql`, heard by a listener of our own.
async fn payloads_of(f: &Fixture, sql: &str) -> Vec<String> {
    let (tx, mut events) = mpsc::channel(64);
    let listener = Listener::start(ListenerConfig::new(f.db.url(), [CHANNEL]), tx)
        .await
        .expect("listener starts");
    f.sql.batch_execute(sql).await.expect("write");
    // the sentinel's payload marks the end
    let marker = "SELECT pg_notify('rowsync', 'end of test writes')";
    f.sql.batch_execute(marker).await.expect("marker");
    let mut out = Vec::new();
    loop {
        let event = timeout(WAIT, events.recv())
            .await
            .expect("an event in time");
        match event.expect("the listener is open") {
            ListenEvent::Notification { payload, .. } if payload == "end of test writes" => break,
            // the hub's own sync points (it sends one when a transaction may be open)
            ListenEvent::Notification { payload, .. }
                if payload.starts_with("rowsync-sync-point") => {}
            ListenEvent::Notification { payload, .. } => out.push(payload),
            _ => {}
        }
    }
    listener.shutdown().await;
    out
}

/// Sends `payload` on the hub's channel `times` times, each in its own transaction (so
/// none is folded into another), as any role that can connect may.
async fn replay(f: &Fixture, payload: &str, times: usize) {
    for _ in 0..times {
        f.sql
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .expect("pg_notify");
    }
}

async fn fresh_tags(f: &Fixture) -> Vec<Tag> {
    f.rowsync.query::<Tag>().all().await.unwrap()
}

#[tokio::test]
async fn a_replayed_delete_costs_at_most_a_read_and_changes_nothing() {
    let f = seeded().await;
    let hub = trigger_hub(&f).await;
    let mut tags = hub.live::<Tag>().all().await.unwrap();
    // a genuine delete of tag 3, then the row is back: its payload is a perfect forgery
    let payloads = payloads_of(
        &f,
        "DELETE FROM tags WHERE id = 3; INSERT INTO tags (id, name) VALUES (3, 'unused')",
    )
    .await;
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    settle(&f, &hub).await;
    tags.apply_pending().await.unwrap();
    assert_eq!(*tags, fresh_tags(&f).await);

    let reads_before = hub.stats().rows_loaded;
    replay(&f, &payloads[0], 50).await;
    settle(&f, &hub).await;
    tags.apply_pending().await.unwrap();
    assert_eq!(*tags, fresh_tags(&f).await, "a forged delete removed a row");
    let reads = hub.stats().rows_loaded - reads_before;
    assert!(
        (1..=50).contains(&reads),
        "50 forged deletes cost {reads} reads (at most one each)"
    );
}

#[tokio::test]
async fn a_replayed_link_changes_nothing() {
    let f = seeded().await;
    let hub = trigger_hub(&f).await;
    let mut post = hub
        .live::<Post>()
        .preload(["tags"])
        .get(2i64)
        .await
        .unwrap();
    // post 2 is linked to tag 2; a link to tag 1 comes and goes
    let payloads = payloads_of(
        &f,
        "INSERT INTO posts_tags VALUES (2, 1); DELETE FROM posts_tags WHERE post_id = 2 AND tag_id = 1;",
    )
    .await;
    settle(&f, &hub).await;
    post.apply_pending().await.unwrap();
    async fn fresh(f: &Fixture) -> Option<Post> {
        f.rowsync
            .query::<Post>()
            .preload(["tags"])
            .get(2i64)
            .await
            .unwrap()
    }
    assert_eq!(*post, fresh(&f).await);
    // the insert replayed after the delete: the link is not there
    replay(&f, &payloads[0], 5).await;
    settle(&f, &hub).await;
    post.apply_pending().await.unwrap();
    assert_eq!(*post, fresh(&f).await, "a forged link was taken in");
    // and the delete replayed while it is there again
    f.sql
        .batch_execute("INSERT INTO posts_tags VALUES (2, 1)")
        .await
        .unwrap();
    replay(&f, &payloads[1], 5).await;
    settle(&f, &hub).await;
    post.apply_pending().await.unwrap();
    assert_eq!(*post, fresh(&f).await, "a forged unlink removed a tag");
    let tags: Vec<i64> = post
        .as_ref()
        .unwrap()
        .tags
        .loaded()
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(tags, [1, 2]);
}

/// The payload of `template` turned into the one the triggers send for a row too large to
/// describe.
fn overflow_of(template: &str) -> String {
    let mut json: serde_json::Value = serde_json::from_str(template).expect("a JSON payload");
    let object = json.as_object_mut().expect("an object");
    object.retain(|k, _| ["v", "o", "s", "t", "x", "i"].contains(&k.as_str()));
    object.insert("big".into(), serde_json::Value::Bool(true));
    json.to_string()
}

#[tokio::test]
async fn a_flood_of_forged_overflows_costs_a_bounded_number_of_reloads() {
    let f = seeded().await;
    let hub = trigger_hub(&f).await;
    let mut holders = Vec::new();
    for _ in 0..10 {
        holders.push(hub.live::<Tag>().all().await.unwrap());
    }
    let payloads = payloads_of(&f, "UPDATE tags SET name = 'sql' WHERE id = 2").await;
    let forged = overflow_of(&payloads[0]);
    let loads_before = hub.live_loads();
    replay(&f, &forged, 200).await;
    settle(&f, &hub).await;
    for live in &mut holders {
        let changes = live.apply_pending().await.unwrap();
        assert!(
            changes.reloaded,
            "an overflow must resync the table's holders"
        );
        assert_eq!(**live, fresh_tags(&f).await);
        assert!(
            live.stats().loads <= 3,
            "200 overflows made one holder reload {} times",
            live.stats().loads
        );
    }
    let reloads = hub.live_loads() - loads_before;
    assert!(
        reloads <= 20,
        "200 overflows × 10 holders cost {reloads} reloads"
    );
}

/// A hub watching `samples`, which holds one row.
async fn one_sample_watched(f: &Fixture) -> Hub {
    f.sql
        .batch_execute(
            "INSERT INTO samples (id, small, medium, ratio, flag, body, created_at, status) \
             VALUES ('00000000-0000-0000-0000-000000000001', 1, 2, 0.5, true, 'b', now(), 'draft')",
        )
        .await
        .unwrap();
    Hub::builder(f.db.url())
        .watch::<Sample>(rowsync::NO_PRELOADS)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_change_that_cannot_be_read_resyncs_until_a_reload_succeeds() {
    let f = seeded().await;
    let hub = one_sample_watched(&f).await;
    let mut samples = hub.live::<Sample>().all().await.unwrap();
    // a value the field's enum cannot hold: the changed row does not decode
    f.sql
        .batch_execute("UPDATE samples SET status = 'bogus'")
        .await
        .unwrap();
    let error = timeout(WAIT, samples.next())
        .await
        .expect("in time")
        .expect("open")
        .expect_err("the reload cannot decode the row either");
    assert!(matches!(error, SyncError::Reload(_)), "{error}");
    assert!(error.to_string().contains("status"), "{error}");
    // repaired: the resync is tried again, and the value follows the database
    f.sql
        .batch_execute("UPDATE samples SET status = 'draft', body = 'fixed'")
        .await
        .unwrap();
    let changes = timeout(WAIT, samples.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("the reload succeeds now");
    assert!(changes.reloaded);
    let fresh = f.rowsync.query::<Sample>().all().await.unwrap();
    assert_eq!(*samples, fresh);
    assert_eq!(samples[0].body, "fixed");
}

#[tokio::test]
async fn an_unreadable_change_reaches_a_manual_subscriber_as_a_resync() {
    let f = seeded().await;
    let hub = one_sample_watched(&f).await;
    let mut data = f.rowsync.query::<Sample>().all().await.unwrap();
    let mut sub = hub.subscribe(&data, rowsync::NO_PRELOADS).unwrap();
    f.sql
        .batch_execute("UPDATE samples SET status = 'bogus'")
        .await
        .unwrap();
    let change = timeout(WAIT, sub.next()).await.expect("in time").unwrap();
    assert!(matches!(change, rowsync::Message::Change(_)), "{change:?}");
    let error = sub.sync(&mut data, &change).await.unwrap_err();
    assert!(error.to_string().contains("status"), "{error}");
    // the change is not dropped: a resync naming it comes next, and comes again while the
    // reload fails
    for _ in 0..2 {
        let resync = timeout(WAIT, sub.next()).await.expect("in time").unwrap();
        let rowsync::Message::Resync(reason) = &resync else {
            panic!("expected a resync, got {resync:?}");
        };
        assert!(
            matches!(reason, ResyncReason::Unreadable { table, .. } if *table == Sample::meta().table),
            "{reason:?}"
        );
        let error = sub.sync(&mut data, &resync).await.unwrap_err();
        assert!(matches!(error, SyncError::Reload(_)), "{error}");
    }
    f.sql
        .batch_execute("UPDATE samples SET status = 'published'")
        .await
        .unwrap();
    let resync = timeout(WAIT, sub.next()).await.expect("in time").unwrap();
    assert!(matches!(resync, rowsync::Message::Resync(_)), "{resync:?}");
    let changes = sub.sync(&mut data, &resync).await.unwrap();
    assert!(changes.reloaded);
    assert_eq!(data, f.rowsync.query::<Sample>().all().await.unwrap());
}

#[tokio::test]
async fn a_key_update_moves_the_row_where_a_fresh_load_puts_it() {
    let f = seeded().await;
    f.sql
        .batch_execute(
            "INSERT INTO tags (id, name) VALUES (10, 'a'), (20, 'b'), (30, 'c');
             INSERT INTO posts (id, name, person_id) VALUES (50, 'x', 1), (60, 'y', 1);",
        )
        .await
        .unwrap();
    let hub = start_hub(&f).await;
    let mut tags = hub.live::<Tag>().all().await.unwrap();
    let mut alice = hub
        .live::<Person>()
        .preload(["posts"])
        .get(1i64)
        .await
        .unwrap();
    f.sql
        .batch_execute(
            "UPDATE tags SET id = 25 WHERE id = 10; UPDATE posts SET id = 70 WHERE id = 50",
        )
        .await
        .unwrap();
    settle(&f, &hub).await;
    tags.apply_pending().await.unwrap();
    alice.apply_pending().await.unwrap();
    let ids: Vec<i64> = tags.iter().map(|t| t.id).collect();
    assert_eq!(ids, [1, 2, 3, 20, 25, 30]);
    assert_eq!(*tags, fresh_tags(&f).await);
    let fresh = f
        .rowsync
        .query::<Person>()
        .preload(["posts"])
        .get(1i64)
        .await
        .unwrap();
    assert_eq!(*alice, fresh);
    let posts: Vec<i64> = alice
        .as_ref()
        .unwrap()
        .posts
        .loaded()
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(posts, [1, 2, 60, 70]);
}
