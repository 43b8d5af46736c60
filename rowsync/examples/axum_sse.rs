//! A live list pushed to browsers: an axum server-sent-events endpoint where every client
//! holds a `Live<Vec<Post>>` and receives the list again after each change.
//!
//! Run: `cargo run -p rowsync --example axum_sse -- --serve` and open
//! `http://127.0.0.1:3000/posts` (then change `sse_posts` in psql and watch the events).
//! Without `--serve` it checks itself and exits: it starts the server on a free port, reads
//! the stream as a browser would, updates a row, and waits for the event that shows it.
//! With `DATABASE_URL` unset it starts a throwaway PostgreSQL cluster of its own; with it
//! set, it uses that database (it creates and drops the table `sse_posts`).

// why: the fields of an example's structs speak for themselves.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use futures_util::StreamExt;
use rowsync::{Hub, Live, Schema};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Schema, Clone, Debug, PartialEq)]
#[rowsync(table = "sse_posts")]
pub struct Post {
    pub id: i64,
    pub title: String,
}

const SETUP: &str = "
    DROP TABLE IF EXISTS sse_posts;
    CREATE TABLE sse_posts (id bigint PRIMARY KEY, title text NOT NULL);
    INSERT INTO sse_posts VALUES (1, 'Hello'), (2, 'World');
";

/// The list as the browser gets it.
fn event(posts: &[Post]) -> Event {
    let json: Vec<_> = posts
        .iter()
        .map(|p| serde_json::json!({ "id": p.id, "title": p.title }))
        .collect();
    Event::default()
        .event("posts")
        .data(serde_json::Value::from(json).to_string())
}

/// `GET /posts`: the current list, then the list again after every change to it.
async fn posts(
    State(hub): State<Hub>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, String> {
    // one live query per client: subscribed before it loads, so no change falls in between
    let live = hub
        .live::<Post>()
        .order_by("id")
        .all()
        .await
        .map_err(|e| e.to_string())?;
    let first = event(&live);
    let changes = stream::unfold(live, |mut live: Live<Vec<Post>>| async move {
        match live.next().await {
            Some(Ok(_changes)) => Some((Ok(event(&live)), live)),
            // a failed resync or a closed hub ends the stream; the browser reconnects
            Some(Err(_)) | None => None,
        }
    });
    let events = stream::once(async move { Ok(first) }).chain(changes);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = rowsync_testdb::database_url_or_throwaway("rowsync_sse_example").await?;
    let (writer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    writer.batch_execute(SETUP).await?;
    let hub = Hub::builder(&url)
        .watch::<Post>(Vec::<&str>::new())
        .start()
        .await?;
    let app = Router::new().route("/posts", get(posts)).with_state(hub);

    if std::env::args().any(|a| a == "--serve") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("serving http://127.0.0.1:3000/posts");
        axum::serve(listener, app).await?;
        return Ok(());
    }

    // self-check: a client reads the stream while the writer changes a row
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut client = tokio::net::TcpStream::connect(address).await?;
    client
        .write_all(b"GET /posts HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .await?;
    let mut lines = BufReader::new(client).lines();
    let mut next_data = async || -> Result<String, Box<dyn std::error::Error>> {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .map_err(|_| "no event within 10 s")??
                .ok_or("the stream ended")?;
            // chunk sizes and event names sit between the data lines; the data is the list
            if let Some(data) = line.strip_prefix("data: ") {
                return Ok(data.to_owned());
            }
        }
    };
    let first = next_data().await?;
    println!("first event: {first}");
    writer
        .batch_execute("UPDATE sse_posts SET title = 'Hello, live' WHERE id = 1")
        .await?;
    let second = next_data().await?;
    println!("after the update: {second}");
    if !second.contains("Hello, live") {
        return Err(format!("the event after the update does not show it: {second}").into());
    }
    writer.batch_execute("DROP TABLE sse_posts").await?;
    Ok(())
}
