//! The logical replication capture source against a real server (`wal_level = logical`):
//! exactly once across a killed WAL sender, a server restart and a hub restart; rows carried
//! with their changes (no reads); TRUNCATE, schema drift, big transactions, TOASTed values;
//! the slot's lag, its bound, and clear errors when the server cannot do it.

mod drift;
mod resume;
mod rows;
mod slot;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rowsync::{Change, Hub, HubBuilder, Message, ReplicationConfig, Subscription, NO_PRELOADS};
use tokio::time::timeout;

use crate::support::schemas::Tag;
use crate::support::{logical_fixture, Fixture, SEED};

pub const WAIT: Duration = Duration::from_secs(30);

pub async fn seeded() -> Fixture {
    let f = logical_fixture().await;
    f.sql.batch_execute(SEED).await.expect("seed");
    f
}

/// A hub capturing `tags` by replication, with room to queue every change a test makes.
pub fn tags_hub(f: &Fixture, config: ReplicationConfig) -> HubBuilder {
    Hub::builder(f.db.url())
        .watch::<Tag>(NO_PRELOADS)
        .queue_capacity(1 << 20)
        .replication(config)
}

pub async fn next(sub: &mut Subscription) -> Message {
    timeout(WAIT, sub.next())
        .await
        .expect("a message within the timeout")
        .expect("the subscription is open")
}

/// A no-op update of tag 3; returns its transaction id.
pub async fn sentinel(client: &tokio_postgres::Client) -> u64 {
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
pub async fn changes_until(sub: &mut Subscription, xid: u64) -> Vec<Arc<Change>> {
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
pub async fn insert_tags(url: String, first: i64, transactions: i64, rows: i64) -> Vec<u64> {
    insert_tags_telling(url, first, transactions, rows, None).await
}

/// [`insert_tags`], sending the number of each transaction once it committed.
pub async fn insert_tags_telling(
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

pub fn keys(changes: &[Arc<Change>]) -> Vec<i64> {
    changes
        .iter()
        .map(|c| match c.key.0.as_slice() {
            [rowsync::Value::I64(id)] => *id,
            other => panic!("unexpected key {other:?}"),
        })
        .collect()
}

/// Every change once, in commit order, each of a transaction the writers ran.
pub fn assert_exactly_once(changes: &[Arc<Change>], expected: &BTreeSet<i64>, xids: &[u64]) {
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
pub async fn kill(f: &Fixture, hub: &Hub, killed: Option<i32>) -> i32 {
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
