//! The board demo: a page listing people with their posts and tags, live in every browser
//! that opens it, with a form that adds a post through the server.
//!
//! `cargo run -p rowsync-axum --example board [ADDRESS]`, then open the printed address in
//! two browsers and add a post in one, or write in psql (the printed database URL). The
//! listen address is the argument, else `BOARD_ADDR`, else `127.0.0.1:3000`. With
//! `DATABASE_URL` unset it starts a throwaway PostgreSQL cluster of its own (gone when it
//! exits); with it set, it uses that database and (re)creates the `board_*` tables there.

mod app;

use rowsync_axum::FeedConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BOARD_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let url = rowsync_testdb::database_url_or_throwaway("rowsync_board").await?;
    println!("database: {url}");
    let (router, _board) = app::start(&url, FeedConfig::default()).await?;
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    println!("board: http://{}/", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
