//! Per-test databases cloned from fixture templates.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use crate::error::TestDbError;
use crate::server::{database_url, redact, server, Server};

/// The fixtures (server URL, hash) whose template was (re)built by this
/// process. Holding the lock also serializes every `CREATE DATABASE` of the
/// process. A tokio mutex does not belong to a runtime, so it works in a
/// static used by tests running on different runtimes.
static TEMPLATES: Mutex<BTreeSet<(String, u64)>> = Mutex::const_new(BTreeSet::new());

/// Numbers the databases of this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Advisory lock key (the bytes of "rowsyncT") that serializes template
/// builds and clones between processes sharing a `DATABASE_URL` server.
const ADVISORY_LOCK_KEY: i64 = 0x726f_7773_796e_6354;

/// A fresh database for one test, dropped when this value is dropped.
///
/// Created by [`TestDatabase::create`] as a copy of a template database
/// that holds the fixture SQL, so every test starts from the same state and
/// tests never see each other's rows.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a new database named `rowsync_t_<pid>_<counter>` holding
    /// `fixture_sql` (any number of `;`-separated statements).
    ///
    /// The fixture runs once per process per distinct SQL text, into the
    /// template database `rowsync_tpl_<hash>` (rebuilt on first use in each
    /// process, so a stale one left by an earlier run is replaced); each call
    /// then clones that template, which takes milliseconds.
    ///
    /// # Errors
    ///
    /// Whatever [`server`] returns, [`TestDbError::Fixture`] when the
    /// fixture SQL fails, and connection or SQL errors.
    pub async fn create(fixture_sql: &str) -> Result<TestDatabase, TestDbError> {
        Self::create_in(server().await?, fixture_sql).await
    }

    /// Like [`create`](Self::create), on the throwaway cluster (see
    /// [`throwaway`](crate::throwaway)) even when `DATABASE_URL` is set:
    /// for tests that need `wal_level = logical`.
    ///
    /// # Errors
    ///
    /// What [`create`](Self::create) returns.
    pub async fn create_logical(fixture_sql: &str) -> Result<TestDatabase, TestDbError> {
        Self::create_in(crate::throwaway().await?, fixture_sql).await
    }

    /// Like [`create`](Self::create), on `server` (e.g. a
    /// [`private_cluster`](crate::private_cluster)); drop the database before the server.
    ///
    /// # Errors
    ///
    /// What [`create`](Self::create) returns.
    pub async fn create_in(
        server: &Server,
        fixture_sql: &str,
    ) -> Result<TestDatabase, TestDbError> {
        let hash = fnv1a64(fixture_sql.as_bytes());
        let template = format!("rowsync_tpl_{hash:016x}");
        let name = format!(
            "rowsync_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );

        let mut ready = TEMPLATES.lock().await;
        let (admin, connection) = open(server.url()).await?;
        execute(
            &admin,
            &format!("SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})"),
        )
        .await?;
        let key = (server.url().to_owned(), hash);
        if !ready.contains(&key) {
            build_template(server, &admin, &template, fixture_sql).await?;
            ready.insert(key);
        }
        let quoted = quote_ident(&name);
        // A database of the same name can be left over by a killed earlier
        // run whose pid was the same (only possible with DATABASE_URL).
        execute(
            &admin,
            &format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
        )
        .await?;
        execute(
            &admin,
            &format!(
                "CREATE DATABASE {quoted} TEMPLATE {}",
                quote_ident(&template)
            ),
        )
        .await?;
        execute(
            &admin,
            &format!("SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})"),
        )
        .await?;
        close(admin, connection).await;
        drop(ready);

        Ok(TestDatabase {
            url: server.url_for(&name),
            admin_url: server.url().to_owned(),
            name,
        })
    }

    /// The connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of this database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a new connection to this database. Its connection future is
    /// spawned with `tokio::spawn` on the current runtime, so call this from
    /// the runtime that will use the client.
    ///
    /// # Errors
    ///
    /// [`TestDbError::Connect`] when the connection fails.
    pub async fn connect(&self) -> Result<Client, TestDbError> {
        let (client, _connection) = open(&self.url).await?;
        Ok(client)
    }
}

impl Drop for TestDatabase {
    /// Drops the database (`WITH (FORCE)`, closing open connections) on a
    /// separate thread with its own runtime, so it works inside or outside
    /// a tokio runtime. Failures are only reported on stderr.
    ///
    /// A logical replication slot still streaming from the database blocks
    /// `DROP DATABASE` (an idle one is dropped with it): its WAL sender is
    /// ended first, and the drop retried while a consumer reconnects.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("building a tokio runtime: {e}"))?;
            runtime.block_on(async {
                let (client, connection) = open(&admin_url).await.map_err(|e| e.to_string())?;
                let result = drop_database(&client, &name).await;
                close(client, connection).await;
                result.map_err(|e| e.to_string())
            })
        })
        .join();
        let problem = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(message)) => message,
            Err(_) => "the dropping thread panicked".to_owned(),
        };
        eprintln!(
            "rowsync-testdb: could not drop test database {}: {problem}",
            self.name
        );
    }
}

/// How often a drop blocked by a replication slot in use is tried.
const DROP_ATTEMPTS: usize = 50;

/// `DROP DATABASE .. WITH (FORCE)`, ending the WAL senders of slots of the
/// database first.
async fn drop_database(client: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    let mut attempt = 0;
    loop {
        attempt += 1;
        client
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE database = $1 AND active_pid IS NOT NULL",
                &[&name],
            )
            .await?;
        match client.batch_execute(&sql).await {
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    && attempt < DROP_ATTEMPTS =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// For examples and benchmarks: `DATABASE_URL` unchanged when it is set;
/// otherwise starts the throwaway cluster, creates database `dbname` in it
/// if missing, and returns its URL.
///
/// # Errors
///
/// Whatever [`server`] returns, and connection or SQL errors.
pub async fn database_url_or_throwaway(dbname: &str) -> Result<String, TestDbError> {
    if let Some(url) = database_url()? {
        return Ok(url);
    }
    let server = server().await?;
    let _serialized = TEMPLATES.lock().await;
    let (admin, connection) = open(server.url()).await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await
        .map_err(|e| TestDbError::sql(format!("looking up database {dbname}"), e))?
        .is_some();
    if !exists {
        execute(&admin, &format!("CREATE DATABASE {}", quote_ident(dbname))).await?;
    }
    close(admin, connection).await;
    Ok(server.url_for(dbname))
}

/// Drops and recreates `template` from `template0`, then runs the fixture.
async fn build_template(
    server: &Server,
    admin: &Client,
    template: &str,
    fixture_sql: &str,
) -> Result<(), TestDbError> {
    let quoted = quote_ident(template);
    execute(
        admin,
        &format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
    )
    .await?;
    execute(
        admin,
        &format!("CREATE DATABASE {quoted} TEMPLATE template0"),
    )
    .await?;
    let (client, connection) = open(&server.url_for(template)).await?;
    let result = client.batch_execute(fixture_sql).await;
    // The template must have no session left before it can be cloned;
    // CREATE DATABASE waits a few seconds for a closing backend to go.
    close(client, connection).await;
    if result.is_err() {
        // Leave no half-built template behind; the next call rebuilds it.
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            .await;
    }
    result.map_err(|e| TestDbError::Fixture {
        template: template.to_owned(),
        source: Arc::new(e),
    })
}

/// Opens a connection and spawns its future on the current runtime.
async fn open(url: &str) -> Result<(Client, JoinHandle<()>), TestDbError> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| TestDbError::Connect {
                url: redact(url),
                source: Arc::new(e),
            })?;
    let handle = tokio::spawn(async move {
        // Errors surface through the client; a forced DROP DATABASE ends
        // connections on purpose.
        let _ = connection.await;
    });
    Ok((client, handle))
}

/// Closes a connection opened by [`open`] and waits until it is closed.
async fn close(client: Client, connection: JoinHandle<()>) {
    drop(client);
    let _ = connection.await;
}

async fn execute(client: &Client, sql: &str) -> Result<(), TestDbError> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| TestDbError::sql(sql, e))
}

/// Quotes an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// 64-bit FNV-1a: stable across processes and Rust versions, unlike
/// `DefaultHasher`, so template names match between runs.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::{fnv1a64, quote_ident};

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
