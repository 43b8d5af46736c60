//! A hub over TLS, end to end, on the throwaway cluster (it has TLS with a known root even
//! when `DATABASE_URL` names another server).

use std::time::Duration;

use rowsync::{Db, Hub, Message, Schema, Tls};
use tokio::time::timeout;

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "items")]
struct Item {
    id: i64,
    name: String,
}

const NONE: [&str; 0] = [];

async fn plain(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("plain connection");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn a_hub_syncs_over_tls_and_refuses_an_unknown_root() {
    let server = rowsync_testdb::throwaway()
        .await
        .expect("the throwaway cluster starts");
    let root = server
        .tls_root_pem()
        .expect("the throwaway cluster has TLS");
    let dbname = format!("rowsync_tls_{}", std::process::id());
    let admin = plain(server.url()).await;
    for statement in [
        format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"),
        format!("CREATE DATABASE {dbname}"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let sql = plain(&server.url_for(&dbname)).await;
    sql.batch_execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO items VALUES (1, 'one'), (2, 'two');",
    )
    .await
    .unwrap();
    let url = format!("{}?sslmode=require", server.url_for(&dbname));
    let tls = Tls::with_root_pem(root.as_bytes()).expect("the root parses");

    // sslmode=require without TLS configured cannot connect: the setting is honoured
    let no_tls = Db::connect(&url).unwrap();
    assert!(no_tls.query::<Item>().all().await.is_err());

    let hub = Hub::builder(&url)
        .tls(tls.clone())
        .watch::<Item>(NONE)
        .start()
        .await
        .expect("the hub starts over TLS");
    let db = Db::connect_with(&url, &tls).unwrap();
    let mut items = db.query::<Item>().order_by("id").all().await.unwrap();
    assert_eq!(items.len(), 2);
    let mut sub = hub.subscribe(&items, NONE).unwrap();
    sql.batch_execute("UPDATE items SET name = 'uno' WHERE id = 1")
        .await
        .unwrap();
    let message = timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("the change arrives over the TLS listener")
        .unwrap();
    assert!(matches!(message, Message::Change(_)));
    sub.sync(&mut items, &message).await.unwrap();
    assert_eq!(
        items,
        db.query::<Item>().order_by("id").all().await.unwrap()
    );
    assert_eq!(items[0].name, "uno");

    // the listener's connection is encrypted, as the pool's are
    let pid = hub.listener_pid().await.expect("the listener runs");
    let row = sql
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "listener connection uses TLS");
    let ssl_backends: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = current_database() AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl_backends >= 2, "listener and pool: {ssl_backends}");

    // a root that did not sign the server's certificate is refused
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .cert
        .pem();
    let wrong = Tls::with_root_pem(stranger.as_bytes()).unwrap();
    let refused = Db::connect_with(&url, &wrong).unwrap();
    assert!(refused.query::<Item>().all().await.is_err());
    assert!(Tls::with_root_pem(b"not a certificate").is_err());

    hub.shutdown().await;
    drop((db, sql));
    admin
        .batch_execute(&format!("DROP DATABASE {dbname} WITH (FORCE)"))
        .await
        .unwrap();
}
