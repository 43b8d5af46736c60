//! The error type of the harness.

use std::fmt;
use std::sync::Arc;

/// Everything that can go wrong while providing a test database.
///
/// The messages are meant to be read by a person staring at a failed test:
/// each one says what failed and, where there is one, how to fix it.
/// `Debug` prints the same text as `Display`, so `.unwrap()` and
/// `.expect()` in a test show a readable message instead of a struct dump.
///
/// The error is `Clone` (sources are behind [`Arc`]) because a failed start
/// of the throwaway cluster is remembered and returned again to every later
/// caller in the same process instead of being retried by each test.
#[derive(Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TestDbError {
    /// `DATABASE_URL` is unset and no PostgreSQL server binaries were found.
    #[error(
        "PostgreSQL server binaries not found (tried `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin and `initdb` on PATH): install PostgreSQL or set DATABASE_URL"
    )]
    BinariesNotFound,

    /// Running as root (where `initdb` refuses to run) and there is no
    /// `postgres` OS user to run the cluster as.
    #[error(
        "running as root, where PostgreSQL's initdb refuses to run, and no `postgres` OS user \
         was found to run the throwaway cluster as ({detail}): create one (e.g. \
         `useradd --system --user-group postgres`) or set DATABASE_URL"
    )]
    NoPostgresUser {
        /// What the user look-up said.
        detail: String,
    },

    /// `DATABASE_URL` is set but is not valid UTF-8 or not a connection string.
    #[error("DATABASE_URL is not a usable PostgreSQL connection string: {detail}")]
    InvalidDatabaseUrl {
        /// Why it was rejected.
        detail: String,
    },

    /// A file-system or process operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "creating directory /tmp/...".
        action: String,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },

    /// An external command (`initdb`, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line that was run.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard output and standard error.
        output: String,
    },

    /// The throwaway server did not come up.
    #[error(
        "the throwaway PostgreSQL server did not start: {reason}\n\
         --- last lines of {log} ---\n{log_tail}"
    )]
    ServerStart {
        /// What went wrong (usually `pg_ctl`'s own output).
        reason: String,
        /// Path of the server log.
        log: String,
        /// The last lines of the server log.
        log_tail: String,
    },

    /// Opening a connection failed.
    #[error("could not connect to {url}: {}", chain(.source.as_ref()))]
    Connect {
        /// The URL (password removed).
        url: String,
        /// The underlying error.
        source: Arc<tokio_postgres::Error>,
    },

    /// A statement run by the harness failed.
    #[error("{action} failed: {}", chain(.source.as_ref()))]
    Sql {
        /// What the harness was doing, e.g. `CREATE DATABASE "x"`.
        action: String,
        /// The underlying error.
        source: Arc<tokio_postgres::Error>,
    },

    /// The fixture SQL given to
    /// [`TestDatabase::create`](crate::TestDatabase::create) failed.
    #[error(
        "applying the fixture SQL to template database {template} failed: {}",
        chain(.source.as_ref())
    )]
    Fixture {
        /// Name of the template database.
        template: String,
        /// The underlying error.
        source: Arc<tokio_postgres::Error>,
    },
}

impl fmt::Debug for TestDbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The error and all its sources, `": "`-separated: tokio-postgres shows
/// only "db error" for a server error, the server's message is its source.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        if let Some(db) = cause.downcast_ref::<tokio_postgres::error::DbError>() {
            text.push_str(&format!(" (SQLSTATE {})", db.code().code()));
        }
        source = cause.source();
    }
    text
}

impl TestDbError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn sql(action: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Self::Sql {
            action: action.into(),
            source: Arc::new(source),
        }
    }
}
