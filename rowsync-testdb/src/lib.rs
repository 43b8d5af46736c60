//! The PostgreSQL test harness shared by rowsync's integration tests,
//! examples and benchmark.
//!
//! # Why
//!
//! rowsync's tests need a real PostgreSQL with `wal_level = logical`, and
//! they must run on a fresh machine, as root (CI, containers) or as a normal
//! user, without manual setup. Crates such as `pgtemp` shell out to `sudo`
//! or refuse root (PostgreSQL's `initdb` and `pg_ctl` refuse to run as
//! root), so this crate does it itself:
//!
//! * With `DATABASE_URL` set, that server is used (its URL is the admin
//!   connection; the role must be allowed to create databases).
//! * Otherwise one throwaway cluster is started per process on first use:
//!   binaries from `pg_config --bindir`, else `/usr/lib/postgresql/*/bin`
//!   (newest first), else `PATH`; `initdb` into
//!   `<dir>/rowsync-pg-<pid>-<random>` (as the `postgres` OS user when
//!   running as root), where `<dir>` is `$ROWSYNC_TESTDB_DIR`, else
//!   `/dev/shm` when it has 1 GiB free (a tmpfs makes `CREATE DATABASE`
//!   about ten times faster), else [`std::env::temp_dir`]; started on a free port of 127.0.0.1 with
//!   `wal_level = logical`, `pg_stat_statements` preloaded, `fsync = off`
//!   and `max_connections = 300`, and TLS on (a certificate for 127.0.0.1
//!   signed by a throwaway CA: [`Server::tls_root_pem`]). A detached
//!   watchdog stops it and removes the directory when the process ends,
//!   even on a panic or SIGKILL.
//! * [`throwaway`] starts that cluster even when `DATABASE_URL` is set, for
//!   tests that need what only their own cluster has (TLS, logical
//!   replication).
//! * [`private_cluster`] starts a cluster of the caller's own (extra
//!   settings allowed), for tests that restart the server
//!   ([`Server::restart`]) or need other settings; it goes when dropped.
//! * Neither `DATABASE_URL` nor PostgreSQL installed is an error
//!   ([`TestDbError::BinariesNotFound`]), never a silently skipped test.
//!
//! Each test gets its own database from [`TestDatabase::create`], cloned
//! from a template holding the fixture SQL, and dropped again when the
//! value is dropped.
//!
//! No connection is kept in a static: every `#[tokio::test]` has its own
//! runtime, and a connection spawned on one runtime dies with it. The
//! harness opens short-lived connections instead.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), rowsync_testdb::TestDbError> {
//! let db = rowsync_testdb::TestDatabase::create("CREATE TABLE t (id bigint primary key)").await?;
//! let client = db.connect().await?;
//! client.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
//! # Ok(()) }
//! ```

mod cluster;
mod database;
mod error;
mod server;

pub use database::{database_url_or_throwaway, TestDatabase};
pub use error::TestDbError;
pub use server::{private_cluster, server, throwaway, Server};
