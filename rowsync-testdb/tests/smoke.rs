//! Smoke test of the harness itself.

use rowsync_testdb::{server, TestDatabase};

const FIXTURE: &str = "CREATE TABLE t (id bigint primary key)";

#[tokio::test]
async fn databases_are_separate() {
    let a = TestDatabase::create(FIXTURE).await.expect("first database");
    let b = TestDatabase::create(FIXTURE)
        .await
        .expect("second database");
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());

    let ca = a.connect().await.expect("connect a");
    let cb = b.connect().await.expect("connect b");
    for client in [&ca, &cb] {
        let n: i64 = client
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .expect("table t exists")
            .get(0);
        assert_eq!(n, 0);
    }
    ca.execute("INSERT INTO t VALUES (1)", &[])
        .await
        .expect("insert");
    let in_a: i64 = ca
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count a")
        .get(0);
    let in_b: i64 = cb
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count b")
        .get(0);
    assert_eq!((in_a, in_b), (1, 0));

    let current: String = ca
        .query_one("SELECT current_database()", &[])
        .await
        .expect("current_database")
        .get(0);
    assert_eq!(current, a.name());
}

#[tokio::test]
async fn throwaway_server_has_logical_wal() {
    let server = server().await.expect("server");
    let db = TestDatabase::create(FIXTURE).await.expect("database");
    let client = db.connect().await.expect("connect");
    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .expect("SHOW wal_level")
        .get(0);
    if server.is_throwaway() {
        assert_eq!(wal_level, "logical");
        assert!(server.url().starts_with("postgres://postgres@127.0.0.1:"));
        let dir = server.throwaway_dir().expect("throwaway dir");
        assert!(dir.join("server.log").is_file());
        println!("throwaway cluster in {}", dir.display());
    } else {
        assert_eq!(
            Some(server.url()),
            std::env::var("DATABASE_URL").ok().as_deref()
        );
    }
}

#[tokio::test]
async fn dropped_database_is_gone() {
    let server = server().await.expect("server");
    let db = TestDatabase::create(FIXTURE).await.expect("database");
    let name = db.name().to_owned();
    let _open = db.connect().await.expect("connect");
    drop(db);
    let (admin, connection) = tokio_postgres::connect(server.url(), tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(connection);
    let left = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("lookup");
    assert!(left.is_none(), "database {name} still exists");
}

#[tokio::test]
async fn fixture_errors_are_reported() {
    let error = TestDatabase::create("CREATE TABLE broken (")
        .await
        .expect_err("broken fixture must fail");
    let message = error.to_string();
    println!("fixture error: {message}");
    assert!(message.contains("fixture"), "{message}");
    assert!(message.contains("syntax error"), "{message}");
}

#[tokio::test]
async fn database_url_or_throwaway_gives_a_usable_database() {
    let url = rowsync_testdb::database_url_or_throwaway("rowsync_smoke_example")
        .await
        .expect("url");
    match std::env::var("DATABASE_URL") {
        Ok(env_url) if !env_url.is_empty() => assert_eq!(url, env_url),
        _ => {
            assert!(url.ends_with("/rowsync_smoke_example"), "{url}");
            // A second call finds the database already there.
            let again = rowsync_testdb::database_url_or_throwaway("rowsync_smoke_example")
                .await
                .expect("second call");
            assert_eq!(url, again);
        }
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.expect("query");
}

#[test]
fn many_runtimes_at_once() {
    let threads: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    for _ in 0..3 {
                        let db = TestDatabase::create(FIXTURE).await.expect("database");
                        let client = db.connect().await.expect("connect");
                        client
                            .execute("INSERT INTO t VALUES (1)", &[])
                            .await
                            .expect("insert into a fresh table");
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
}
