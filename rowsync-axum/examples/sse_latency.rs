//! Commit → browser updated: how long a committed transaction takes to reach pages that
//! follow it, p50 / p99, for 1 and 100 open pages.
//!
//! `cargo run --release -p rowsync-axum --example sse_latency` (add `-- --quick` for a short
//! run, `-- --browser` for one real headless Chromium page too: the time until its DOM
//! shows the transaction). The board demo is served on a free port; each page is an SSE
//! client that reads the events and applies each patch to its copy of the rows (as the
//! JavaScript client does). A transaction updates one post; its clock starts just before
//! the committing statement is sent and stops when a page has applied the patch that shows
//! it. Transactions go one at a time: the next starts when every page has the last.
//! With `DATABASE_URL` unset it starts a throwaway PostgreSQL cluster of its own.

#[path = "board/app.rs"]
mod app;
#[path = "../tests/support/chromium.rs"]
mod chromium;
#[path = "../tests/support/sse.rs"]
mod sse;

use std::collections::HashMap;
use std::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rowsync_axum::FeedConfig;
use serde_json::Value;
use tokio::sync::mpsc;

/// A page: reads the events, keeps the rows by key, and reports when the tracked post's
/// title changes.
async fn page(
    address: SocketAddr,
    seen: mpsc::UnboundedSender<(String, Instant)>,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut client = sse::SseClient::connect(address, "/people/events", None).await?;
    let mut rows: HashMap<String, Value> = HashMap::new();
    while let Some(event) = client.next().await? {
        let data = event.json();
        match event.event.as_str() {
            "snapshot" | "reset" => {
                rows.clear();
                for pair in data["rows"].as_array().into_iter().flatten() {
                    rows.insert(pair["key"].to_string(), pair["row"].clone());
                }
            }
            _ => {
                for key in data["remove"].as_array().into_iter().flatten() {
                    rows.remove(&key.to_string());
                }
                for pair in data["upsert"].as_array().into_iter().flatten() {
                    rows.insert(pair["key"].to_string(), pair["row"].clone());
                }
            }
        }
        let title = rows
            .get("1")
            .and_then(|ada| ada["posts"][0]["title"].as_str())
            .unwrap_or_default()
            .to_owned();
        if seen.send((title, Instant::now())).is_err() {
            break;
        }
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn report(label: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "{label:<28} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} samples)",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or_default(),
        samples.len()
    );
}

/// Commits `transactions` updates, each once every page has the last, and returns every
/// page's commit → applied latency in ms.
async fn measure(
    address: SocketAddr,
    sql: &tokio_postgres::Client,
    pages: usize,
    transactions: usize,
    round: usize,
) -> Result<Vec<f64>, Box<dyn Error>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for _ in 0..pages {
        let tx = tx.clone();
        tasks.push(tokio::spawn(page(address, tx)));
    }
    drop(tx);
    // every page has its snapshot
    let mut ready = 0;
    while ready < pages {
        rx.recv().await.ok_or("a page ended")?;
        ready += 1;
    }
    let mut samples = Vec::with_capacity(pages * transactions);
    for i in 0..transactions {
        let title = format!("r{round} t{i}");
        let start = Instant::now();
        sql.execute("UPDATE board_posts SET title = $1 WHERE id = 1", &[&title])
            .await?;
        let mut arrived = 0;
        while arrived < pages {
            let (seen, at) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .map_err(|_| format!("transaction {i} did not reach every page in 20 s"))?
                .ok_or("a page ended")?;
            if seen == title {
                samples.push(at.duration_since(start).as_secs_f64() * 1e3);
                arrived += 1;
            }
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(samples)
}

/// One real Chromium page: commit → its DOM shows the transaction (the page stamps each
/// render with the machine's clock).
async fn measure_browser(
    address: SocketAddr,
    sql: &tokio_postgres::Client,
    transactions: usize,
) -> Result<Vec<f64>, Box<dyn Error>> {
    let browser = chromium::Browser::launch().await;
    let page = browser.open(&format!("http://{address}/")).await;
    page.wait_for(
        "the snapshot",
        "(window.boardLog || []).length > 0",
        Duration::from_secs(20),
    )
    .await;
    let mut samples = Vec::new();
    for i in 0..transactions {
        let title = format!("browser t{i}");
        let start = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64() * 1e3;
        sql.execute("UPDATE board_posts SET title = $1 WHERE id = 1", &[&title])
            .await?;
        let find = format!(
            "window.boardLog.find(e => e.state[0]?.posts[0]?.title === {})?.at ?? null",
            serde_json::to_string(&title)?
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let at = loop {
            if let Value::Number(at) = page.eval(&find).await? {
                break at.as_f64().unwrap_or_default();
            }
            if Instant::now() > deadline {
                return Err(format!("the page never showed {title}").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        samples.push(at - start);
    }
    Ok(samples)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let browser = args.iter().any(|a| a == "--browser");
    let transactions = if quick { 20 } else { 500 };
    let url = rowsync_testdb::database_url_or_throwaway("rowsync_sse_latency").await?;
    let (router, _board) = app::start(&url, FeedConfig::default()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (sql, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);

    println!("# commit → page updated ({transactions} transactions, one at a time)");
    // a warm-up round: connections and caches
    measure(address, &sql, 1, 10, 0).await?;
    for (round, pages) in [(1, 1usize), (2, 100)] {
        let samples = measure(address, &sql, pages, transactions, round).await?;
        report(&format!("{pages} SSE page(s)"), samples);
    }
    if browser {
        let samples = measure_browser(address, &sql, transactions.min(200)).await?;
        report("1 Chromium page (DOM)", samples);
    }
    Ok(())
}
