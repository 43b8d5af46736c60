//! The listener: notifications in commit order, reconnects that announce themselves, and no
//! leaked connections.

use std::time::Duration;

use rowsync::testing::{ListenEvent, Listener, ListenerConfig};
use rowsync::ListenError;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::support::fixture;

const CHANNEL: &str = "rowsync_test";

/// Long enough for a slow CI machine; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(10);

/// The next event, or a test failure if none comes in time.
async fn next_event(events: &mut mpsc::Receiver<ListenEvent>) -> ListenEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("no listener event in time")
        .expect("the listener ended its events channel")
}

/// Waits for the next notification, and returns its payload.
async fn next_payload(events: &mut mpsc::Receiver<ListenEvent>) -> String {
    match next_event(events).await {
        ListenEvent::Notification {
            channel, payload, ..
        } => {
            assert_eq!(channel, CHANNEL);
            payload
        }
        other => panic!("expected a notification, got {other:?}"),
    }
}

/// A listener on [`CHANNEL`] that has announced itself.
async fn listening(url: &str) -> (Listener, mpsc::Receiver<ListenEvent>) {
    let (tx, mut events) = mpsc::channel(64);
    let listener = Listener::start(ListenerConfig::new(url, [CHANNEL]), tx)
        .await
        .expect("listener starts");
    assert_eq!(
        next_event(&mut events).await,
        ListenEvent::Listening { reconnect: false }
    );
    (listener, events)
}

async fn notify(sql: &Client, channel: &str, payload: &str) {
    sql.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .await
        .expect("pg_notify");
}

async fn backend_exists(sql: &Client, pid: i32) -> bool {
    let row = sql
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .expect("pg_stat_activity");
    row.get::<_, i64>(0) > 0
}

/// Polls `pg_stat_activity` until backend `pid` is gone; fails the test if it stays.
async fn assert_backend_exits(sql: &Client, pid: i32) {
    let gone = tokio::time::timeout(WAIT, async {
        while backend_exists(sql, pid).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "backend {pid} is still connected");
}

#[tokio::test]
async fn notifications_arrive_in_commit_order_on_the_listened_channel_only() {
    let f = fixture().await;
    let (listener, mut events) = listening(f.db.url()).await;
    let writer_pid: i32 = f
        .sql
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    notify(&f.sql, CHANNEL, "a").await;
    notify(&f.sql, "rowsync_other", "not for us").await;
    notify(&f.sql, CHANNEL, "b").await;
    f.sql
        .batch_execute(
            "BEGIN;
             SELECT pg_notify('rowsync_test', 'c');
             SELECT pg_notify('rowsync_other', 'not for us either');
             SELECT pg_notify('rowsync_test', 'd');
             SELECT pg_notify('rowsync_test', 'e');
             COMMIT;",
        )
        .await
        .unwrap();

    assert_eq!(
        next_event(&mut events).await,
        ListenEvent::Notification {
            channel: CHANNEL.to_owned(),
            payload: "a".to_owned(),
            process_id: writer_pid,
        }
    );
    // The other channel's notifications were sent in between; the next events skip them.
    for expected in ["b", "c", "d", "e"] {
        assert_eq!(next_payload(&mut events).await, expected);
    }
    listener.shutdown().await;
}

#[tokio::test]
async fn a_killed_connection_is_reported_and_replaced() {
    let f = fixture().await;
    let (listener, mut events) = listening(f.db.url()).await;
    let old_pid = listener.process_id().expect("connected");

    let killed: bool = f
        .sql
        .query_one("SELECT pg_terminate_backend($1)", &[&old_pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);

    match next_event(&mut events).await {
        // Usually the server's "terminating connection" error; a reset socket is as good.
        ListenEvent::Disconnected { error } => assert!(!error.is_empty()),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert_eq!(
        next_event(&mut events).await,
        ListenEvent::Listening { reconnect: true }
    );
    let new_pid = listener.process_id().expect("reconnected");
    assert_ne!(new_pid, old_pid);

    notify(&f.sql, CHANNEL, "after the reconnect").await;
    assert_eq!(next_payload(&mut events).await, "after the reconnect");
    listener.shutdown().await;
}

#[tokio::test]
async fn start_fails_fast_when_nothing_listens_on_the_port() {
    let port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let (tx, _events) = mpsc::channel(1);

    let started = tokio::time::timeout(
        WAIT,
        Listener::start(ListenerConfig::new(url, [CHANNEL]), tx),
    )
    .await
    .expect("start must fail, not hang");

    match started {
        Err(error @ ListenError::Connect { .. }) => {
            assert!(
                error.to_string().contains("check the database URL"),
                "{error}"
            );
        }
        Err(other) => panic!("expected a connect error, got {other:?}"),
        Ok(_) => panic!("started with no server"),
    }
}

#[tokio::test]
async fn start_rejects_a_channel_the_server_cannot_listen_on() {
    let f = fixture().await;
    let (tx, _events) = mpsc::channel(1);

    // An empty quoted identifier is a syntax error in PostgreSQL.
    let started = Listener::start(ListenerConfig::new(f.db.url(), [CHANNEL, ""]), tx).await;

    match started {
        Err(ListenError::Listen { channel, .. }) => assert_eq!(channel, ""),
        Err(other) => panic!("expected a LISTEN error, got {other:?}"),
        Ok(_) => panic!("listened on an empty channel name"),
    }
}

#[tokio::test]
async fn shutdown_closes_the_connection() {
    let f = fixture().await;
    let (listener, _events) = listening(f.db.url()).await;
    let pid = listener.process_id().expect("connected");
    assert!(backend_exists(&f.sql, pid).await);

    listener.shutdown().await;

    assert_backend_exits(&f.sql, pid).await;
}

#[tokio::test]
async fn dropping_the_listener_closes_the_connection() {
    let f = fixture().await;
    let (listener, _events) = listening(f.db.url()).await;
    let pid = listener.process_id().expect("connected");

    drop(listener);

    assert_backend_exits(&f.sql, pid).await;
}

#[tokio::test]
async fn dropping_the_events_receiver_ends_the_listener() {
    let f = fixture().await;
    let (listener, events) = listening(f.db.url()).await;
    let pid = listener.process_id().expect("connected");

    drop(events);
    // The task learns the receiver is gone when it next has something to send.
    notify(&f.sql, CHANNEL, "no one reads this").await;

    assert_backend_exits(&f.sql, pid).await;
    assert_eq!(listener.process_id(), None);
}
