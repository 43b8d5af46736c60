//! A live value as a stream: one item per committed transaction, a reset for a resync,
//! never a state in between; and the value as JSON.

use std::time::Duration;

use futures_util::StreamExt;
use rowsync::{Key, LiveUpdate};
use tokio::time::timeout;

use crate::hub::start_hub;
use crate::support::schemas::Person;
use crate::support::seeded;

const WAIT: Duration = Duration::from_secs(10);

fn post_names(people: &[Person]) -> Vec<(i64, Vec<String>)> {
    people
        .iter()
        .map(|p| {
            let posts = p.posts.loaded().map(Vec::as_slice).unwrap_or_default();
            (p.id, posts.iter().map(|post| post.name.clone()).collect())
        })
        .collect()
}

#[tokio::test]
async fn one_item_per_transaction_and_a_reset_for_a_truncate() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut people = hub
        .live::<Person>()
        .order_by("id")
        .preload(["posts.tags"])
        .all()
        .await
        .unwrap();

    // a poll given up while nothing came (a select! that lost) leaves the value readable
    assert!(timeout(Duration::from_millis(100), people.next())
        .await
        .is_err());
    assert_eq!(people.len(), 3);

    // one transaction writing rows under two people: one item, both rows in it
    f.sql
        .batch_execute(
            "BEGIN;
             INSERT INTO posts (id, name, person_id) VALUES (10, 'ten', 1), (11, 'eleven', 2);
             UPDATE persons SET name = 'carola' WHERE id = 3;
             COMMIT;",
        )
        .await
        .unwrap();
    let item = timeout(WAIT, StreamExt::next(&mut people))
        .await
        .expect("an item")
        .expect("the hub runs")
        .expect("applied");
    let LiveUpdate::Transaction(changes) = item else {
        panic!("expected a transaction, got {item:?}");
    };
    let mut updated = changes.updated.clone();
    updated.sort_by_key(|k| k.to_string());
    assert_eq!(
        updated,
        vec![Key::from(1i64), Key::from(2i64), Key::from(3i64)]
    );
    assert_eq!(
        changes.describe("Person").to_string(),
        format!(
            "updated {}",
            changes
                .updated
                .iter()
                .map(|k| k.of("Person").to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
    let names = post_names(&people);
    assert!(names[0].1.contains(&"ten".to_owned()), "{names:?}");
    assert!(names[1].1.contains(&"eleven".to_owned()), "{names:?}");
    assert_eq!(people[2].name, "carola");

    // TRUNCATE: an explicit reset, and the value reloaded
    f.sql.batch_execute("TRUNCATE posts CASCADE").await.unwrap();
    let item = loop {
        let item = timeout(WAIT, StreamExt::next(&mut people))
            .await
            .expect("an item")
            .expect("the hub runs")
            .expect("applied");
        // why a loop: a posts_tags change may come first as a transaction of its own
        if item == LiveUpdate::Reset {
            break item;
        }
    };
    assert_eq!(item, LiveUpdate::Reset);
    assert!(post_names(&people)
        .iter()
        .all(|(_, posts)| posts.is_empty()));
}

#[tokio::test]
async fn a_schema_with_associations_goes_to_json() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let people = hub
        .live::<Person>()
        .filter(rowsync::Filter::eq("id", 2i64))
        .preload(["posts.tags"])
        .all()
        .await
        .unwrap();
    let json = serde_json::to_value(&people[0]).unwrap();
    assert_eq!(json["name"], "bob");
    assert_eq!(json["posts"][0]["name"], "test");
    assert_eq!(json["posts"][0]["tags"][0]["name"], "rust");
    // not preloaded: null
    assert!(json["profile"].is_null());
    assert!(json["posts"][0]["labels"].is_null());
}

#[tokio::test]
async fn a_subscription_streams_whole_transactions() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let (_people, mut sub) = hub
        .live::<Person>()
        .preload(["posts"])
        .subscribe()
        .await
        .unwrap();
    f.sql
        .batch_execute(
            "BEGIN;
             UPDATE posts SET name = 'one' WHERE id = 1;
             UPDATE posts SET name = 'two' WHERE id = 2;
             COMMIT;
             UPDATE persons SET name = 'bobby' WHERE id = 2;",
        )
        .await
        .unwrap();
    let mut transactions = sub.transactions();
    let first = timeout(WAIT, transactions.next()).await.unwrap().unwrap();
    let second = timeout(WAIT, transactions.next()).await.unwrap().unwrap();
    let xids = |batch: &[rowsync::Message]| -> Vec<u64> {
        batch
            .iter()
            .map(|m| match m {
                rowsync::Message::Change(c) => c.xid,
                other => panic!("expected changes, got {other:?}"),
            })
            .collect()
    };
    let (first, second) = (xids(&first), xids(&second));
    assert_eq!(
        first.len(),
        2,
        "both rows of the first transaction together"
    );
    assert_eq!(first[0], first[1]);
    assert_eq!(second.len(), 1);
    assert_ne!(second[0], first[0]);
}

#[tokio::test]
async fn polls_given_up_halfway_lose_nothing_and_never_show_part_of_a_transaction() {
    let f = seeded().await;
    let hub = start_hub(&f).await;
    let mut people = hub
        .live::<Person>()
        .order_by("id")
        .preload(["posts"])
        .all()
        .await
        .unwrap();
    let posts_of_carol =
        |people: &[Person]| people[2].posts.loaded().map(Vec::len).unwrap_or_default();
    let writer = {
        let url = f.db.url().to_owned();
        tokio::spawn(async move {
            let (sql, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            for i in 0..20 {
                // two posts for carol in each transaction
                sql.batch_execute(&format!(
                    "INSERT INTO posts (name, person_id) VALUES ('a{i}', 3), ('b{i}', 3)"
                ))
                .await
                .unwrap();
            }
        })
    };
    // a select! that keeps losing: polls given up after 1 ms, whatever they were doing
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut given_up_while_applying = 0;
    while posts_of_carol(&people) < 40 {
        assert!(tokio::time::Instant::now() < deadline, "not all applied");
        if let Ok(Some(item)) =
            timeout(Duration::from_millis(1), StreamExt::next(&mut people)).await
        {
            item.unwrap();
        }
        // between polls the value is a whole state: never one post of a pair
        assert_eq!(
            posts_of_carol(&people) % 2,
            0,
            "part of a transaction shown"
        );
        // a transaction is being applied
        if people.is_applying() {
            given_up_while_applying += 1;
        }
    }
    assert!(
        given_up_while_applying > 0,
        "no poll was given up while a transaction was being applied: the test proves nothing"
    );
    writer.await.unwrap();
    assert_eq!(posts_of_carol(&people), 40);
    // the inherent methods finish what a given-up poll started
    people.catch_up().await.unwrap();
    assert_eq!(posts_of_carol(&people), 40);
}
