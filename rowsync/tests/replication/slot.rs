//! The slot and the server: lag reported and bounded, uninstall, hubs side by side, TLS,
//! and clear errors for what the server lacks.

use std::collections::HashMap;
use std::time::Duration;

use rowsync::{
    Hub, HubError, Message, ReplicationConfig, ReplicationError, ResyncReason, NO_PRELOADS,
};
use tokio::time::timeout;

use super::*;
use crate::support::schemas::{Person, Tag};
use crate::support::{fixture_in, slot_name};

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
