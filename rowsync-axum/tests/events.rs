//! What a connection receives, without a browser: a snapshot, one patch per transaction
//! (insert, update, delete, a row moving between parents), a reset for a resync, resuming
//! from `Last-Event-ID`, and a slow reader that costs bounded memory.

use rowsync_axum::FeedConfig;
use serde_json::{json, Value};
use tokio::time::timeout;

use crate::support::sse::{SseClient, SseEvent};
use crate::support::{serve, Served, WAIT};

async fn next(client: &mut SseClient) -> SseEvent {
    timeout(WAIT, client.next())
        .await
        .expect("an event in time")
        .expect("the stream reads")
        .expect("the stream goes on")
}

async fn connect(served: &Served, last_event_id: Option<&str>) -> SseClient {
    SseClient::connect(served.address, "/people/events", last_event_id)
        .await
        .expect("connect")
}

/// `(key, name, [post titles])` of each upserted row of a patch, or of each row of a
/// snapshot.
fn people(rows: &Value) -> Vec<(i64, String, Vec<String>)> {
    rows.as_array()
        .expect("an array")
        .iter()
        .map(|pair| {
            let row = &pair["row"];
            let posts = row["posts"].as_array().expect("posts preloaded");
            (
                pair["key"].as_i64().expect("a bigint key"),
                row["name"].as_str().unwrap_or_default().to_owned(),
                posts
                    .iter()
                    .map(|p| p["title"].as_str().unwrap_or_default().to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_transaction_is_one_patch_and_a_resync_is_a_reset() {
    let served = serve(FeedConfig::default()).await;
    let mut client = connect(&served, None).await;

    let snapshot = next(&mut client).await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.seq(), 0);
    let rows = people(&snapshot.json()["rows"]);
    assert_eq!(
        rows.iter()
            .map(|(k, n, _)| (*k, n.as_str()))
            .collect::<Vec<_>>(),
        [(1, "Ada"), (2, "Grace"), (3, "Edsger")]
    );
    assert_eq!(rows[0].2, ["Notes on the engine", "Loops"]);
    // nested associations come whole: post 1's tags
    assert_eq!(
        snapshot.json()["rows"][0]["row"]["posts"][0]["tags"],
        json!([{"id": 1, "name": "rust"}, {"id": 2, "name": "sql"}])
    );

    // insert
    served
        .sql
        .batch_execute("INSERT INTO board_posts (person_id, title) VALUES (2, 'Debugging')")
        .await
        .unwrap();
    let patch = next(&mut client).await;
    assert_eq!((patch.event.as_str(), patch.seq()), ("patch", 1));
    assert_eq!(
        people(&patch.json()["upsert"]),
        [(
            2,
            "Grace".into(),
            vec!["Compilers".into(), "Debugging".into()]
        )]
    );
    assert_eq!(patch.json()["remove"], json!([]));

    // update
    served
        .sql
        .batch_execute("UPDATE board_people SET name = 'Grace H.' WHERE id = 2")
        .await
        .unwrap();
    let patch = next(&mut client).await;
    assert_eq!(patch.seq(), 2);
    assert_eq!(people(&patch.json()["upsert"])[0].1, "Grace H.");

    // move: a post from Ada to Edsger is one transaction, both people in one patch
    served
        .sql
        .batch_execute("UPDATE board_posts SET person_id = 3 WHERE id = 2")
        .await
        .unwrap();
    let patch = next(&mut client).await;
    assert_eq!(patch.seq(), 3);
    let mut moved = people(&patch.json()["upsert"]);
    moved.sort();
    assert_eq!(
        moved,
        [
            (1, "Ada".into(), vec!["Notes on the engine".into()]),
            (3, "Edsger".into(), vec!["Loops".into(), "Go to".into()]),
        ]
    );

    // several rows, one transaction, one patch
    served
        .sql
        .batch_execute(
            "BEGIN;
             INSERT INTO board_people (id, name) VALUES (10, 'Barbara');
             INSERT INTO board_posts (person_id, title) VALUES (10, 'Abstraction'), (1, 'Tables');
             UPDATE board_tags SET name = 'rustlang' WHERE id = 1;
             COMMIT;",
        )
        .await
        .unwrap();
    let patch = next(&mut client).await;
    assert_eq!(patch.seq(), 4);
    let json = patch.json();
    let mut keys: Vec<i64> = people(&json["upsert"]).iter().map(|r| r.0).collect();
    keys.sort();
    // Edsger too: a post of his has the renamed tag
    assert_eq!(keys, [1, 3, 10], "{json}");
    assert_eq!(
        json["order"],
        json!([1, 2, 3, 10]),
        "a new row: the order comes along"
    );
    let ada = &json["upsert"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == 1)
        .unwrap()["row"];
    assert_eq!(ada["posts"][0]["tags"][0]["name"], "rustlang");
    assert_eq!(ada["posts"][1]["title"], "Tables");

    // delete
    served
        .sql
        .batch_execute("DELETE FROM board_people WHERE id = 3")
        .await
        .unwrap();
    let patch = next(&mut client).await;
    assert_eq!(patch.seq(), 5);
    assert_eq!(patch.json()["remove"], json!([3]));
    assert_eq!(patch.json()["upsert"], json!([]));

    // TRUNCATE: a reset with the value as it is now
    served
        .sql
        .batch_execute("TRUNCATE board_posts CASCADE")
        .await
        .unwrap();
    let reset = next(&mut client).await;
    assert_eq!(reset.event, "reset");
    let rows = people(&reset.json()["rows"]);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 10]);
    assert!(rows.iter().all(|r| r.2.is_empty()), "{rows:?}");

    // the capture connection killed: a reset, then changes flow again
    let before = reset.seq();
    served.kill_listener().await;
    let reset = next(&mut client).await;
    assert_eq!(reset.event, "reset");
    assert_eq!(reset.seq(), before + 1);
    served
        .sql
        .batch_execute("INSERT INTO board_posts (person_id, title) VALUES (1, 'Back')")
        .await
        .unwrap();
    let patch = loop {
        // why a loop: a second reset may come (the check after the reconnect)
        let event = next(&mut client).await;
        if event.event == "patch" {
            break event;
        }
    };
    assert_eq!(people(&patch.json()["upsert"])[0].2, ["Back"]);
}

#[tokio::test]
async fn a_reconnecting_browser_resumes_after_its_last_transaction() {
    let served = serve(FeedConfig {
        replay: 3,
        ..FeedConfig::default()
    })
    .await;
    let mut client = connect(&served, None).await;
    let snapshot = next(&mut client).await;
    let last = snapshot.id.clone();
    drop(client);

    for title in ["one", "two", "three"] {
        served
            .sql
            .execute(
                "INSERT INTO board_posts (person_id, title) VALUES (1, $1)",
                &[&title],
            )
            .await
            .unwrap();
    }
    timeout(WAIT, served.board.feed.published(3)).await.unwrap();

    // resumed: the three transactions it missed, no snapshot
    let mut client = connect(&served, Some(&last)).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = next(&mut client).await;
        assert_eq!(event.event, "patch", "{event:?}");
        seen.push(event.seq());
    }
    assert_eq!(seen, [1, 2, 3]);
    assert_eq!(served.board.feed.stats().resumed, 1);
    drop(client);

    // an id from another feed (a server restart): a snapshot
    let mut client = connect(&served, Some("abc-1")).await;
    let event = next(&mut client).await;
    assert_eq!((event.event.as_str(), event.seq()), ("snapshot", 3));
    drop(client);

    // further behind than the replay buffer (3 transactions): a snapshot
    for title in ["four", "five", "six", "seven"] {
        served
            .sql
            .execute(
                "INSERT INTO board_posts (person_id, title) VALUES (2, $1)",
                &[&title],
            )
            .await
            .unwrap();
    }
    timeout(WAIT, served.board.feed.published(7)).await.unwrap();
    let mut client = connect(&served, Some(&last)).await;
    let event = next(&mut client).await;
    assert_eq!((event.event.as_str(), event.seq()), ("snapshot", 7));
    let rows = people(&event.json()["rows"]);
    assert_eq!(rows[1].2, ["Compilers", "four", "five", "six", "seven"]);
    assert_eq!(served.board.feed.stats().resumed, 1);
}

#[tokio::test]
async fn a_slow_browser_holds_bounded_memory_and_catches_up_with_a_reset() {
    let replay = 8;
    let served = serve(FeedConfig {
        replay,
        replay_bytes: 1 << 20,
    })
    .await;
    // a reader that does not read: a tiny receive buffer, full after the first events
    let mut slow = SseClient::connect_with(served.address, "/people/events", None, Some(4096))
        .await
        .expect("connect");
    let mut fast = connect(&served, None).await;
    assert_eq!(next(&mut fast).await.event, "snapshot");
    let transactions = 200u64;
    let done = format!("{}:", transactions - 1);
    let title = |event: &SseEvent, rows: &str| -> String {
        let json = event.json();
        let ada = json[rows]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["key"] == 1)
            .map(|p| p["row"]["posts"][0]["title"].as_str().unwrap().to_owned());
        ada.unwrap_or_default()
    };
    // a reader that keeps up gets every transaction (a row read after a later transaction
    // committed shows that one already: the later one's patch is then no news, and not sent)
    let until = done.clone();
    // why the writer waits for the fast reader: "keeps up" is then true by construction,
    // whatever else loads the machine (a reader more than `replay` transactions behind is
    // rightly reset, which is the slow reader's case below)
    let (progress, mut seen) = tokio::sync::watch::channel(-1i64);
    let fast = tokio::spawn(async move {
        let mut last = 0;
        loop {
            let event = next(&mut fast).await;
            assert_eq!(event.event, "patch");
            assert_eq!(event.seq(), last + 1, "no transaction skipped");
            last = event.seq();
            let shown = title(&event, "upsert");
            if let Some(i) = shown.split(':').next().and_then(|i| i.parse().ok()) {
                progress.send_replace(i);
            }
            if shown.starts_with(&until) {
                break;
            }
        }
    });

    // 200 transactions of 40 KB: 8 MB, far more than the socket buffers (at most 4 MB
    // here) and the replay buffer hold
    let big = "x".repeat(40_000);
    for i in 0..transactions {
        served
            .sql
            .execute(
                "UPDATE board_posts SET title = $1 || ':' || $2 WHERE id = 1",
                &[&i.to_string(), &big],
            )
            .await
            .unwrap();
        let stats = served.board.feed.stats();
        assert!(stats.replay_len <= replay, "{stats:?}");
        let i = i as i64;
        timeout(WAIT, seen.wait_for(|shown| *shown >= i))
            .await
            .expect("the fast reader shows each transaction in time")
            .expect("the fast reader is running");
    }
    timeout(WAIT, fast)
        .await
        .expect("in time")
        .expect("the fast reader");

    // the slow one: what its socket held, then a reset with everything, never a gap
    let mut seq = 0;
    let mut resets = 0;
    loop {
        let event = next(&mut slow).await;
        match event.event.as_str() {
            "snapshot" => assert_eq!(seq, 0),
            "patch" => assert_eq!(event.seq(), seq + 1, "a gap without a reset"),
            "reset" => resets += 1,
            other => panic!("unexpected event {other}"),
        }
        seq = event.seq();
        let rows = if event.event == "patch" {
            "upsert"
        } else {
            "rows"
        };
        if title(&event, rows).starts_with(&done) {
            break;
        }
    }
    assert!(resets >= 1, "the slow reader fell behind the replay buffer");
    let stats = served.board.feed.stats();
    assert!(stats.lagged >= 1, "{stats:?}");
    assert!(stats.replay_len <= replay, "{stats:?}");
}

#[tokio::test]
async fn a_query_built_per_request_follows_what_that_request_asked_for() {
    use axum::http::request::Parts;
    use axum::http::StatusCode;

    use crate::support::app::Person;

    let served = serve(FeedConfig::default()).await;
    let hub = served.board.hub.clone();
    // one person's board, chosen by the request (a per-user filter would read a session)
    let router = axum::Router::new().route(
        "/person",
        axum::routing::get(rowsync_axum::sse_per_request(
            move |parts: &Parts| -> Result<_, (StatusCode, &str)> {
                let id: i64 = parts
                    .uri
                    .query()
                    .and_then(|q| q.strip_prefix("id="))
                    .and_then(|id| id.parse().ok())
                    .ok_or((StatusCode::BAD_REQUEST, "?id=<person>"))?;
                Ok(hub
                    .live::<Person>()
                    .filter(rowsync::Filter::eq("id", id))
                    .preload(["posts.tags"]))
            },
        )),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });

    assert!(SseClient::connect(address, "/person?id=x", None)
        .await
        .is_err_and(|e| e.to_string().contains("400")));
    let mut grace = SseClient::connect(address, "/person?id=2", None)
        .await
        .unwrap();
    let snapshot = next(&mut grace).await;
    assert_eq!(
        people(&snapshot.json()["rows"]),
        [(2, "Grace".into(), vec!["Compilers".into()])]
    );
    served
        .sql
        .batch_execute(
            "UPDATE board_people SET name = 'not news for Grace' WHERE id = 1;
             UPDATE board_people SET name = 'Grace Hopper' WHERE id = 2;",
        )
        .await
        .unwrap();
    let patch = next(&mut grace).await;
    assert_eq!(people(&patch.json()["upsert"])[0].1, "Grace Hopper");
}
