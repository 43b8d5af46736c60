//! The process-wide server: `DATABASE_URL` or the throwaway cluster.

use tokio::sync::OnceCell;

use crate::cluster::{self, Cluster};
use crate::error::TestDbError;

/// The PostgreSQL server the tests of this process use.
///
/// Obtained with [`server`]. Either the server named by `DATABASE_URL` or a
/// throwaway cluster started for this process (see the crate docs).
#[derive(Debug)]
pub struct Server {
    url: String,
    cluster: Option<Cluster>,
}

static SERVER: OnceCell<Result<Server, TestDbError>> = OnceCell::const_new();

/// Returns the server of this process, starting the throwaway cluster on
/// the first call when `DATABASE_URL` is unset.
///
/// Safe to call from many tests at once, each on its own tokio runtime: one
/// caller starts the cluster, the others wait for it. A failure is
/// remembered and returned again to every later caller of the process.
///
/// # Errors
///
/// [`TestDbError::InvalidDatabaseUrl`] for an unusable `DATABASE_URL`;
/// [`TestDbError::BinariesNotFound`] when it is unset and PostgreSQL is not
/// installed; the other variants when the cluster cannot be set up.
pub async fn server() -> Result<&'static Server, TestDbError> {
    SERVER
        .get_or_init(init)
        .await
        .as_ref()
        .map_err(Clone::clone)
}

async fn init() -> Result<Server, TestDbError> {
    if let Some(url) = database_url()? {
        return Ok(Server { url, cluster: None });
    }
    // why not a second cluster: without DATABASE_URL the throwaway one is the server
    throwaway().await.map(|server| Server {
        url: server.url.clone(),
        cluster: None,
    })
}

static THROWAWAY: OnceCell<Result<Server, TestDbError>> = OnceCell::const_new();

/// The throwaway cluster of this process, started on the first call even when
/// `DATABASE_URL` is set: for tests that need what only a cluster of their
/// own has (TLS with a known root, `wal_level = logical`). Without
/// `DATABASE_URL` it is the same server as [`server`].
///
/// # Errors
///
/// [`TestDbError::BinariesNotFound`] when PostgreSQL is not installed; the
/// other variants when the cluster cannot be set up.
pub async fn throwaway() -> Result<&'static Server, TestDbError> {
    THROWAWAY
        .get_or_init(start_throwaway)
        .await
        .as_ref()
        .map_err(Clone::clone)
}

/// A throwaway cluster of the caller's own, shared with no other test: for tests that
/// restart the server, or need settings of their own (`name = value` lines appended to
/// `postgresql.conf`, e.g. `"wal_level = replica"`). It is stopped and removed when the
/// value is dropped, or when the process ends. Create databases on it with
/// [`TestDatabase::create_in`](crate::TestDatabase::create_in).
///
/// # Errors
///
/// What [`throwaway`] returns.
pub async fn private_cluster(settings: &[&str]) -> Result<Server, TestDbError> {
    let settings: Vec<String> = settings.iter().map(|s| (*s).to_owned()).collect();
    blocking(move || {
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        cluster::start_with(&settings)
    })
    .await
    .map(Server::of)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TestDbError> + Send + 'static,
) -> Result<T, TestDbError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join_error) => match join_error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => Err(TestDbError::io(
                "running a cluster command",
                std::io::Error::other(e),
            )),
        },
    }
}

async fn start_throwaway() -> Result<Server, TestDbError> {
    blocking(cluster::start).await.map(Server::of)
}

/// `DATABASE_URL`, if set and not empty, after checking that it parses.
pub(crate) fn database_url() -> Result<Option<String>, TestDbError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.trim().is_empty() => Ok(None),
        Ok(url) => match url.parse::<tokio_postgres::Config>() {
            Ok(_) => Ok(Some(url)),
            Err(e) => Err(TestDbError::InvalidDatabaseUrl {
                detail: e.to_string(),
            }),
        },
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(TestDbError::InvalidDatabaseUrl {
            detail: "it is not valid UTF-8".to_owned(),
        }),
    }
}

impl Server {
    fn of(cluster: Cluster) -> Server {
        Server {
            url: format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port),
            cluster: Some(cluster),
        }
    }

    /// Restarts a cluster of this process (`pg_ctl restart -m fast`): every connection
    /// ends, and the server is back, same port and data, when this returns. Meant for
    /// [`private_cluster`]s: restarting the shared one disturbs every test using it.
    ///
    /// # Errors
    ///
    /// [`TestDbError::CommandFailed`] when `pg_ctl` fails, and an error for a server that
    /// is not a cluster of this process (`DATABASE_URL`).
    pub async fn restart(&self) -> Result<(), TestDbError> {
        let Some(cluster) = &self.cluster else {
            return Err(TestDbError::io(
                "restarting the server",
                std::io::Error::other("only a cluster of this process can be restarted"),
            ));
        };
        let restart = cluster.restart_command();
        blocking(move || restart.run()).await
    }

    /// The admin connection URL: `DATABASE_URL` itself, or
    /// `postgres://postgres@127.0.0.1:PORT/postgres` for the throwaway
    /// cluster (superuser `postgres`, trust authentication).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of database `dbname` on this server: [`url`](Self::url)
    /// with the database replaced. The database is not created.
    pub fn url_for(&self, dbname: &str) -> String {
        with_dbname(&self.url, dbname)
    }

    /// `true` for the throwaway cluster of this process, `false` when
    /// `DATABASE_URL` is used.
    pub fn is_throwaway(&self) -> bool {
        self.cluster().is_some()
    }

    /// The temporary directory of the throwaway cluster (data, socket and
    /// `server.log`), or `None` with `DATABASE_URL`. It is removed when
    /// the process ends.
    pub fn throwaway_dir(&self) -> Option<&std::path::Path> {
        self.cluster().map(|c| c.root.as_path())
    }

    /// The PEM of the CA that signed the throwaway cluster's TLS certificate
    /// (valid for `127.0.0.1` and `localhost`; the server accepts TLS and
    /// plain connections), or `None` with `DATABASE_URL`.
    pub fn tls_root_pem(&self) -> Option<&str> {
        self.cluster().map(|c| c.tls_root_pem.as_str())
    }

    fn cluster(&self) -> Option<&Cluster> {
        match &self.cluster {
            Some(cluster) => Some(cluster),
            // the process server without DATABASE_URL is the throwaway one
            None if database_url().ok().flatten().is_none() => THROWAWAY
                .get()
                .and_then(|started| started.as_ref().ok())
                .and_then(|server| server.cluster.as_ref()),
            None => None,
        }
    }
}

/// Replaces the database of a connection string, URL (`postgres://...`)
/// or key/value (`host=... dbname=...`) form.
pub(crate) fn with_dbname(url: &str, dbname: &str) -> String {
    for scheme in ["postgres://", "postgresql://"] {
        let Some(rest) = url.strip_prefix(scheme) else {
            continue;
        };
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let host_start = main.rfind('@').map_or(0, |at| at + 1);
        let authority = match main[host_start..].find('/') {
            Some(slash) => &main[..host_start + slash],
            None => main,
        };
        let query: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty() && !pair.starts_with("dbname="))
            .collect();
        let mut out = format!("{scheme}{authority}/{}", percent_encode(dbname));
        if !query.is_empty() {
            out.push('?');
            out.push_str(&query.join("&"));
        }
        return out;
    }
    // Key/value form: a later `dbname` overrides an earlier one.
    let escaped = dbname.replace('\\', "\\\\").replace('\'', "\\'");
    format!("{url} dbname='{escaped}'")
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The URL with any password replaced by `***`, for error messages.
pub(crate) fn redact(url: &str) -> String {
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            if let Some(at) = rest.rfind('@') {
                let userinfo = &rest[..at];
                if let Some((user, _password)) = userinfo.split_once(':') {
                    return format!("{scheme}{user}:***{}", &rest[at..]);
                }
            }
            return url.to_owned();
        }
    }
    url.split_whitespace()
        .map(|pair| {
            if pair.starts_with("password=") {
                "password=***"
            } else {
                pair
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::{redact, with_dbname};

    #[test]
    fn replaces_database_in_urls() {
        assert_eq!(
            with_dbname("postgres://postgres@127.0.0.1:5432/test", "x_1"),
            "postgres://postgres@127.0.0.1:5432/x_1"
        );
        assert_eq!(
            with_dbname("postgresql://u:p@h", "db"),
            "postgresql://u:p@h/db"
        );
        assert_eq!(
            with_dbname(
                "postgres://u:a/b@h:1/old?sslmode=disable&dbname=old",
                "new db"
            ),
            "postgres://u:a/b@h:1/new%20db?sslmode=disable"
        );
        assert_eq!(
            with_dbname("host=localhost dbname=old", "new"),
            "host=localhost dbname=old dbname='new'"
        );
        let config: tokio_postgres::Config = with_dbname("host=localhost dbname=old", "new")
            .parse()
            .expect("parses");
        assert_eq!(config.get_dbname(), Some("new"));
    }

    #[test]
    fn hides_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("host=h password=secret"), "host=h password=***");
    }
}
