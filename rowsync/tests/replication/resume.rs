//! Exactly once across what breaks a stream: a killed WAL sender, a server restart, a hub
//! that goes away while writers go on.

use std::collections::BTreeSet;
use std::sync::Arc;

use rowsync::{Message, ReplicationConfig, NO_PRELOADS};

use super::*;
use crate::support::schemas::Tag;
use crate::support::{fixture_in, slot_name, SEED};

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
