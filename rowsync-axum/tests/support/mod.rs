//! The harness: the board demo on a fresh database, served on a free port.

#![allow(dead_code)]

#[path = "../../examples/board/app.rs"]
pub mod app;
pub mod chromium;
pub mod sse;

use std::net::SocketAddr;
use std::time::Duration;

use rowsync_axum::FeedConfig;
use rowsync_testdb::TestDatabase;
use tokio_postgres::Client;

/// Long enough for any one event on a loaded machine; a test waits for events, never sleeps.
pub const WAIT: Duration = Duration::from_secs(20);

/// The board on its own database.
pub struct Served {
    pub db: TestDatabase,
    /// A plain SQL connection: the "third connection" that writes behind the server's back.
    pub sql: Client,
    pub board: app::Board,
    pub address: SocketAddr,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Ends the hub's listener connection (the capture reconnects; every holder resyncs).
    pub async fn kill_listener(&self) {
        let pid = self
            .board
            .hub
            .listener_pid()
            .await
            .expect("the listener's pid");
        self.sql
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate the listener");
    }
}

/// Starts the board on a fresh database (fails loudly without PostgreSQL).
pub async fn serve(config: FeedConfig) -> Served {
    let db = TestDatabase::create("")
        .await
        .unwrap_or_else(|e| panic!("no test database: {e}"));
    let sql = db.connect().await.expect("connect");
    let (router, board) = app::start(db.url(), config)
        .await
        .unwrap_or_else(|e| panic!("the board does not start: {e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    Served {
        db,
        sql,
        board,
        address,
    }
}
