//! The test harness: a fresh database per test with the fixture schema, seed data, and
//! plain-SQL helpers that serve as the oracle.

#![allow(dead_code)]

pub mod schemas;

use rowsync_testdb::TestDatabase;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// The fixture schema every test database starts with.
pub const FIXTURE: &str = include_str!("fixture.sql");

/// A fresh database with the fixture schema, and a plain SQL connection to it.
pub struct Fixture {
    pub db: TestDatabase,
    pub sql: Client,
    pub rowsync: rowsync::Db,
}

/// The capture source hubs of the suite use: `ROWSYNC_CAPTURE=triggers` (the default) or
/// `replication` (then every test database is on the throwaway cluster, which has
/// `wal_level = logical`).
pub fn replication() -> bool {
    match std::env::var("ROWSYNC_CAPTURE").as_deref() {
        Ok("replication") => true,
        Ok("triggers") | Ok("") | Err(_) => false,
        Ok(other) => panic!("ROWSYNC_CAPTURE={other}: use `triggers` or `replication`"),
    }
}

/// The builder with the capture source of the run: with replication, a temporary slot of
/// its own (named after the test database) that goes with its connection.
pub fn with_capture(builder: rowsync::HubBuilder, f: &Fixture) -> rowsync::HubBuilder {
    if replication() {
        builder.replication(rowsync::ReplicationConfig::temporary(slot_name(f)))
    } else {
        builder
    }
}

/// A slot (and publication) name no other hub of this process uses.
pub fn slot_name(f: &Fixture) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("s{n}_{}", f.db.name())
}

/// A fresh database; fails loudly (never skips) when no PostgreSQL can be had.
pub async fn fixture() -> Fixture {
    if replication() {
        logical_fixture().await
    } else {
        made(TestDatabase::create(FIXTURE).await).await
    }
}

/// A fresh database on a server with `wal_level = logical`, whatever the run's capture.
pub async fn logical_fixture() -> Fixture {
    made(TestDatabase::create_logical(FIXTURE).await).await
}

/// A fresh database on `server` (a private cluster).
pub async fn fixture_in(server: &rowsync_testdb::Server) -> Fixture {
    made(TestDatabase::create_in(server, FIXTURE).await).await
}

async fn made(created: Result<TestDatabase, rowsync_testdb::TestDbError>) -> Fixture {
    let db = created.unwrap_or_else(|e| panic!("no test database: {e}"));
    let sql = db
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"));
    let rowsync = rowsync::Db::connect(db.url()).expect("valid url");
    Fixture { db, sql, rowsync }
}

/// Seed data used by the loader tests:
/// - alice (1): posts 1 "test" and 2 "hello"; profile; favourites bob and carol
/// - bob (2): post 3 "test" (also other_person of post 1); no profile; favourite alice
/// - carol (3): nothing
/// - post 4 "orphan" has no person
/// - tags: 1 rust, 2 sql, 3 unused; posts_tags: 1-1, 1-2, 2-2, 3-1
/// - labels: 1 a, 2 b; posts_labels: 1-1, 1-2, 3-2
/// - widgets: 10 (alice), 11 (none)
pub const SEED: &str = "
    INSERT INTO persons (id, name) VALUES (1, 'alice'), (2, 'bob'), (3, 'carol');
    INSERT INTO posts (id, name, person_id, other_person_id) VALUES
        (1, 'test', 1, 2), (2, 'hello', 1, NULL), (3, 'test', 2, NULL), (4, 'orphan', NULL, 1);
    INSERT INTO tags (id, name) VALUES (1, 'rust'), (2, 'sql'), (3, 'unused');
    INSERT INTO posts_tags (post_id, tag_id) VALUES (1, 1), (1, 2), (2, 2), (3, 1);
    INSERT INTO labels (id, name) VALUES (1, 'a'), (2, 'b');
    INSERT INTO posts_labels (post_id, label_id) VALUES (1, 1), (1, 2), (3, 2);
    INSERT INTO favourite_people (person_id, favourite_id) VALUES (1, 2), (1, 3), (2, 1);
    INSERT INTO profiles (id, person_id, bio) VALUES (1, 1, 'hi'), (2, NULL, 'nobody');
    INSERT INTO app.widgets (id, label, owner_id) VALUES (10, 'gear', 1), (11, 'cog', NULL);
    SELECT setval('persons_id_seq', 100), setval('posts_id_seq', 100), setval('tags_id_seq', 100);
";

/// A fixture with [`SEED`] loaded.
pub async fn seeded() -> Fixture {
    let f = fixture().await;
    f.sql.batch_execute(SEED).await.expect("seed");
    f
}

/// The first column (bigint) of every row of `sql`: the oracle's view of a list of ids.
pub async fn ids(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<i64> {
    client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("oracle query failed: {sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

/// Writes the sentinel (a no-op update of person 3, a row no test deletes) and returns its
/// transaction id: a subscriber that receives this transaction has received everything
/// committed before it that was routed to it (changes arrive in commit order).
pub async fn write_sentinel(client: &Client) -> u64 {
    let row = client
        .query_one(
            "WITH touched AS (UPDATE persons SET name = name WHERE id = 3 RETURNING 1) \
             SELECT pg_current_xact_id()::text FROM touched",
            &[],
        )
        .await
        .expect("sentinel write");
    row.get::<_, String>(0).parse().expect("xid")
}

/// Waits (bounded) until `sub` receives the transaction `xid`, skipping everything else.
pub async fn wait_for_xid(sub: &mut rowsync::Subscription, xid: u64) {
    let deadline = std::time::Duration::from_secs(10);
    loop {
        match tokio::time::timeout(deadline, sub.next()).await {
            Ok(Some(rowsync::Message::Change(c))) if c.xid == xid => return,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the subscription ended before the sentinel"),
            Err(_) => panic!("the sentinel did not arrive within {deadline:?}"),
        }
    }
}

/// Waits until every change committed so far has been routed to every subscriber: a
/// witness hears the sentinel written after them (changes are routed in commit order).
pub async fn settle(f: &Fixture, hub: &rowsync::Hub) {
    let mut witness = hub
        .subscribe_to::<schemas::Person>(rowsync::Op::Updated, rowsync::Selector::row(3i64))
        .unwrap();
    let xid = write_sentinel(&f.sql).await;
    wait_for_xid(&mut witness, xid).await;
}
