//! The sync rules (issue "every copy fresh, stale messages harmless, read-your-writes"):
//! every place a row is held is refreshed, old news never overwrites newer data, options
//! merge on updates, and a writer can wait until its write is in the held data.

use std::time::Duration;

use rowsync::{Message, SyncOptions};
use tokio::time::timeout;

use crate::hub::start_hub;
use crate::support::schemas::{Person, Post, Tag};
use crate::support::{seeded, settle, Fixture};
use crate::sync::{fresh_people, pending, write_and_sync};

const WAIT: Duration = Duration::from_secs(10);

async fn fresh_post(f: &Fixture, id: i64, preloads: &[&str]) -> Option<Post> {
    f.rowsync
        .query::<Post>()
        .preload(preloads)
        .get(id)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_copy_held_deeper_than_the_subscription_names_is_kept_fresh() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let shape = ["posts.person.posts"];
    let mut alice = fresh_people(&f, &[1], &shape).await;
    // subscribed for `posts` only: the copies under posts[..].person.posts follow too
    let mut sub = hub.subscribe(&alice, ["posts"]).unwrap();
    write_and_sync(
        &f,
        &hub,
        &mut sub,
        &mut alice,
        "UPDATE posts SET name = 'everywhere' WHERE id = 2",
    )
    .await;
    assert_eq!(alice, fresh_people(&f, &[1], &shape).await);
    let copy = &alice[0].posts.loaded().unwrap()[0]
        .person
        .loaded()
        .unwrap()
        .as_ref()
        .unwrap()
        .posts;
    assert!(copy
        .loaded()
        .unwrap()
        .iter()
        .any(|p| p.name == "everywhere"));
    // and inserts reach the deeper copies too
    write_and_sync(
        &f,
        &hub,
        &mut sub,
        &mut alice,
        "INSERT INTO posts (id, name, person_id) VALUES (20, 'new', 1)",
    )
    .await;
    assert_eq!(alice, fresh_people(&f, &[1], &shape).await);
}

#[tokio::test]
async fn a_parent_loaded_but_not_subscribed_follows_its_foreign_key() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut post = fresh_post(&f, 3, &["person"]).await;
    let mut sub = hub.subscribe(post.iter(), rowsync::NO_PRELOADS).unwrap();
    write_and_sync(
        &f,
        &hub,
        &mut sub,
        &mut post,
        "UPDATE posts SET person_id = 1 WHERE id = 3",
    )
    .await;
    let held = post.as_ref().unwrap();
    assert_eq!(held.person_id, Some(1));
    assert_eq!(
        held.person.loaded().unwrap().as_ref().map(|p| p.id),
        Some(1),
        "the value contradicts itself"
    );
    assert_eq!(post, fresh_post(&f, 3, &["person"]).await);
}

#[tokio::test]
async fn every_sync_entry_point_gives_the_same_answer() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let shape = ["posts.person.posts", "posts.tags"];
    let mut by_subscription = fresh_people(&f, &[1], &shape).await;
    let mut detached = by_subscription.clone();
    let mut sub = hub.subscribe(&by_subscription, ["posts"]).unwrap();
    f.sql
        .batch_execute(
            "UPDATE posts SET name = 'one' WHERE id = 1; INSERT INTO posts_tags VALUES (2, 1);
             UPDATE tags SET name = 'renamed' WHERE id = 2",
        )
        .await
        .unwrap();
    for message in pending(&f, &hub, &mut sub).await {
        sub.sync(&mut by_subscription, &message).await.unwrap();
        hub.sync_with(&mut detached, &message, SyncOptions::new())
            .await
            .unwrap();
    }
    let fresh = fresh_people(&f, &[1], &shape).await;
    assert_eq!(by_subscription, fresh);
    assert_eq!(detached, fresh);
}

#[tokio::test]
async fn old_news_never_overwrites_newer_data() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut tags = f.rowsync.query::<Tag>().all().await.unwrap();
    let mut sub = hub.subscribe_table::<Tag>(rowsync::NO_PRELOADS).unwrap();
    // another subscriber reads each change as it comes, so the shared cache holds reads of
    // each change's own time
    let mut early = f.rowsync.query::<Tag>().all().await.unwrap();
    let mut early_sub = hub.subscribe_table::<Tag>(rowsync::NO_PRELOADS).unwrap();
    for sql in [
        "UPDATE tags SET name = 'v1' WHERE id = 1",
        "UPDATE tags SET name = 'v2' WHERE id = 1",
        "UPDATE tags SET name = 'gone soon' WHERE id = 3",
        "DELETE FROM tags WHERE id = 3",
    ] {
        write_and_sync(&f, &hub, &mut early_sub, &mut early, sql).await;
    }
    let messages = pending(&f, &hub, &mut sub).await;
    // newest first, then everything again
    let mut order: Vec<Message> = messages.iter().rev().cloned().collect();
    order.extend(messages.iter().cloned());
    for message in &order {
        sub.sync(&mut tags, message).await.unwrap();
    }
    let fresh = f.rowsync.query::<Tag>().all().await.unwrap();
    assert_eq!(tags, fresh);
    assert_eq!(tags[0].name, "v2", "an older update came back");
    assert!(!tags.iter().any(|t| t.id == 3), "a deleted row came back");
    assert!(sub.stats().stale + sub.stats().duplicates > 0);
}

#[tokio::test]
async fn options_on_an_update_add_to_the_shape_held() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut alice = fresh_people(&f, &[1], &["posts.tags"]).await;
    let mut sub = hub.subscribe(&alice, ["posts.tags"]).unwrap();
    f.sql
        .batch_execute("UPDATE posts SET name = 'with person now' WHERE id = 1")
        .await
        .unwrap();
    let options = SyncOptions::new().preload::<Post>(["person"]);
    for message in pending(&f, &hub, &mut sub).await {
        sub.sync_with(&mut alice, &message, options.clone())
            .await
            .unwrap();
    }
    let post = &alice[0].posts.loaded().unwrap()[0];
    assert!(post.person.is_loaded(), "the option's path was not added");
    assert!(post.tags.is_loaded(), "what was held was dropped");
    let expected = fresh_post(&f, 1, &["tags", "person"]).await.unwrap();
    assert_eq!(*post, expected);
    // the grown shape is followed: a change of the person now held reaches the copy
    f.sql
        .batch_execute("UPDATE persons SET name = 'alice again' WHERE id = 1")
        .await
        .unwrap();
    for message in pending(&f, &hub, &mut sub).await {
        sub.sync_with(&mut alice, &message, options.clone())
            .await
            .unwrap();
    }
    let person = alice[0].posts.loaded().unwrap()[0].person.loaded().unwrap();
    assert_eq!(person.as_ref().unwrap().name, "alice again");
}

#[tokio::test]
async fn a_sync_point_means_every_earlier_write_is_delivered() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut tags = hub.live::<Tag>().all().await.unwrap();
    for i in 0..20 {
        f.sql
            .execute(
                "UPDATE tags SET name = $1 WHERE id = 2",
                &[&format!("n{i}")],
            )
            .await
            .unwrap();
    }
    // no marker row, no polling: one call, then the value holds the last write
    timeout(WAIT, tags.catch_up()).await.unwrap().unwrap();
    assert_eq!(tags[1].name, "n19");
    assert_eq!(*tags, f.rowsync.query::<Tag>().all().await.unwrap());
}

#[tokio::test]
async fn waiting_for_a_transaction_sees_its_write_with_writers_around() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut tags = hub.live::<Tag>().all().await.unwrap();
    // writers keep changing other rows meanwhile
    let busy = {
        let client = f.db.connect().await.unwrap();
        tokio::spawn(async move {
            for i in 0..300 {
                let _ = client
                    .execute(
                        "UPDATE tags SET name = $1 WHERE id = 1",
                        &[&format!("w{i}")],
                    )
                    .await;
            }
        })
    };
    for round in 0..10 {
        let mut client = f.db.connect().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute(
            "UPDATE tags SET name = $1 WHERE id = 3",
            &[&format!("mine {round}")],
        )
        .await
        .unwrap();
        let xid = rowsync::current_xid(&tx).await.unwrap();
        tx.commit().await.unwrap();
        timeout(WAIT, tags.wait_for(xid)).await.unwrap().unwrap();
        assert_eq!(
            tags[2].name,
            format!("mine {round}"),
            "my write is not there"
        );
    }
    busy.await.unwrap();
    tags.catch_up().await.unwrap();
    assert_eq!(*tags, f.rowsync.query::<Tag>().all().await.unwrap());
}

#[tokio::test]
async fn waiting_for_a_transaction_that_touched_nothing_held_returns() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut post = hub.live::<Post>().get(1i64).await.unwrap();
    let mut client = f.db.connect().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("UPDATE labels SET name = 'elsewhere' WHERE id = 1", &[])
        .await
        .unwrap();
    let xid = rowsync::current_xid(&tx).await.unwrap();
    // not committed yet: a clear error, not a wait that ends too early
    let early = post.wait_for(xid).await.unwrap_err();
    assert!(early.to_string().contains("in progress"), "{early}");
    tx.commit().await.unwrap();
    let changes = timeout(WAIT, post.wait_for(xid)).await.unwrap().unwrap();
    assert!(changes.is_empty());
}

#[tokio::test]
async fn a_live_value_never_shows_half_a_transaction() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut tags = hub.live::<Tag>().all().await.unwrap();
    let writer = {
        let client = f.db.connect().await.unwrap();
        tokio::spawn(async move {
            for i in 0..30 {
                client
                    .batch_execute(&format!(
                        "BEGIN; UPDATE tags SET name = 'r{i}' WHERE id = 1;
                         UPDATE tags SET name = 'r{i}' WHERE id = 2;
                         UPDATE tags SET name = 'r{i}' WHERE id = 3; COMMIT;"
                    ))
                    .await
                    .unwrap();
            }
        })
    };
    let mut states = 0;
    while states < 200 {
        let Ok(Some(changes)) = timeout(Duration::from_millis(500), tags.next()).await else {
            break;
        };
        changes.unwrap();
        states += 1;
        // every state shown is one the database was in: the three names agree
        let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
        assert!(
            names.iter().all(|n| *n == names[0]),
            "half a transaction: {names:?}"
        );
        if names[0] == "r29" {
            break;
        }
    }
    writer.await.unwrap();
    assert!(states > 0);
    settle(&f, &hub).await;
    tags.catch_up().await.unwrap();
    assert_eq!(*tags, f.rowsync.query::<Tag>().all().await.unwrap());
}

#[tokio::test]
async fn a_live_query_takes_sync_options_and_gives_its_subscription() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let options = SyncOptions::new().preload::<Post>(["tags"]);
    let mut alice = hub
        .live::<Person>()
        .preload(["posts"])
        .sync_options(options)
        .get(1i64)
        .await
        .unwrap();
    // loaded with the option's shape too
    assert!(alice.as_ref().unwrap().posts.loaded().unwrap()[0]
        .tags
        .is_loaded());
    f.sql
        .batch_execute("INSERT INTO posts (id, name, person_id) VALUES (30, 'p', 1); INSERT INTO posts_tags VALUES (30, 2)")
        .await
        .unwrap();
    alice.catch_up().await.unwrap();
    let fresh = f
        .rowsync
        .query::<Person>()
        .preload(["posts.tags"])
        .get(1i64)
        .await
        .unwrap();
    assert_eq!(*alice, fresh);

    // by hand: the filtered query's rows and a subscription with the same no-gap load
    let (mut rows, mut sub) = hub
        .live::<Post>()
        .filter(rowsync::Filter::eq("name", "test"))
        .subscribe()
        .await
        .unwrap();
    f.sql
        .batch_execute("UPDATE posts SET name = 'test' WHERE id = 2")
        .await
        .unwrap();
    hub.sync_point().await.unwrap();
    while let Some(message) = sub.try_next() {
        sub.sync(&mut rows, &message).await.unwrap();
    }
    let fresh = f
        .rowsync
        .query::<Post>()
        .filter(rowsync::Filter::eq("name", "test"))
        .all()
        .await
        .unwrap();
    assert_eq!(rows, fresh);
}
