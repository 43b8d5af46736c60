//! One replication session: a `pgwire-replication` connection opened from the hub's URL,
//! its slot (a temporary one made on the session itself), then START_REPLICATION.

use std::str::FromStr;

use pgwire_replication::{Lsn, ReplicationClient, TlsConfig};
use tokio_postgres::config::Host;

use super::config::ReplicationConfig;
use crate::error::ReplicationError;
use crate::load::Tls;

/// Session settings that fix how values are written as text (pgoutput writes them with the
/// WAL sender's settings): ISO dates, hex `bytea`, floats that read back exactly.
const OPTIONS: &str = "-c datestyle=ISO,MDY -c bytea_output=hex -c extra_float_digits=3";

/// The connection settings of every session of a hub.
pub(crate) fn wire_config(
    url: &str,
    tls: &Tls,
    config: &ReplicationConfig,
) -> Result<pgwire_replication::ReplicationConfig, ReplicationError> {
    let parsed =
        tokio_postgres::Config::from_str(url).map_err(|e| ReplicationError::Url(e.to_string()))?;
    let user = parsed
        .get_user()
        .ok_or_else(|| ReplicationError::Url("no user name".to_owned()))?
        .to_owned();
    let password = match parsed.get_password() {
        Some(bytes) => String::from_utf8(bytes.to_vec())
            .map_err(|_| ReplicationError::Url("the password is not UTF-8".to_owned()))?,
        None => String::new(),
    };
    let database = parsed.get_dbname().unwrap_or(&user).to_owned();
    let port = parsed.get_ports().first().copied().unwrap_or(5432);
    let slot = config.slot.clone();
    let publication = config.publication.clone();
    let wire = match parsed.get_hosts().first() {
        None => return Err(ReplicationError::Url("no host".to_owned())),
        Some(Host::Tcp(host)) => pgwire_replication::ReplicationConfig::new(
            host.clone(),
            user,
            password,
            database,
            slot,
            publication,
        )
        .with_port(port)
        .with_tls(tls_config(&parsed, host, tls, config)),
        #[cfg(unix)]
        Some(Host::Unix(dir)) => pgwire_replication::ReplicationConfig::unix(
            dir.to_string_lossy().into_owned(),
            port,
            user,
            password,
            database,
            slot,
            publication,
        ),
        #[cfg(not(unix))]
        Some(_) => return Err(ReplicationError::Url("unsupported host".to_owned())),
    };
    let wakeup = config
        .status_interval
        .max(std::time::Duration::from_secs(1));
    Ok(wire
        .with_status_interval(config.status_interval)
        .with_wakeup_interval(wakeup)
        .with_options(OPTIONS)
        .with_application_name(format!("rowsync {}", config.slot)))
}

/// TLS for the replication connection: none when the hub uses none (or the URL says
/// `sslmode=disable`), else required and verified against the configured CA file (or the
/// public web roots): chain and host name, or the chain only for a host given as an IP
/// address (the replication client matches names only).
fn tls_config(
    url: &tokio_postgres::Config,
    host: &str,
    tls: &Tls,
    config: &ReplicationConfig,
) -> TlsConfig {
    let disabled = matches!(tls, Tls::Disabled)
        || url.get_ssl_mode() == tokio_postgres::config::SslMode::Disable;
    if disabled {
        return TlsConfig::disabled();
    }
    let ca = config.tls_ca_file.clone();
    if host.parse::<std::net::IpAddr>().is_ok() {
        TlsConfig::verify_ca(ca)
    } else {
        TlsConfig::verify_full(ca)
    }
}

/// A started session.
pub(crate) struct Session {
    pub client: ReplicationClient,
    /// The WAL sender's backend pid.
    pub pid: i32,
    /// A recent full xid of the server.
    pub xid_reference: u64,
    /// Where a temporary slot made on the session starts.
    pub consistent_point: Option<u64>,
}

/// Why a session could not start or ended.
#[derive(Debug)]
pub(crate) struct SessionError(pub pgwire_replication::PgWireError);

impl SessionError {
    /// The slot is gone: dropped, or invalidated by `max_slot_wal_keep_size`.
    pub fn slot_gone(&self) -> bool {
        let text = self.0.to_string();
        text.contains("can no longer get changes from replication slot")
            || (text.contains("replication slot") && text.contains("does not exist"))
    }
}

impl SessionError {
    /// Another process (a WAL sender on its way out) holds the slot.
    pub fn slot_busy(&self) -> bool {
        self.0.to_string().contains("is active for PID")
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<pgwire_replication::PgWireError> for SessionError {
    fn from(e: pgwire_replication::PgWireError) -> Self {
        SessionError(e)
    }
}

/// The first column of the first row, as text.
fn first(rows: &[pgwire_replication::QueryRow], what: &str) -> Result<String, SessionError> {
    rows.first()
        .and_then(|row| row.first())
        .and_then(|cell| cell.as_ref())
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .ok_or_else(|| {
            SessionError(pgwire_replication::PgWireError::Protocol(format!(
                "{what}: no value"
            )))
        })
}

fn number<T: FromStr>(text: &str, what: &str) -> Result<T, SessionError> {
    text.trim().parse().map_err(|_| {
        SessionError(pgwire_replication::PgWireError::Protocol(format!(
            "{what}: `{text}` is not a number"
        )))
    })
}

/// Opens a session streaming from `start` (the server starts at the slot's confirmed
/// position when that is later), reporting `ack` as done until told more. With
/// `temporary`, the slot is created on the session first.
pub(crate) async fn open(
    base: &pgwire_replication::ReplicationConfig,
    temporary: bool,
    start: u64,
    ack: u64,
) -> Result<Session, SessionError> {
    let config = base
        .clone()
        .with_start_lsn(Lsn(if temporary { 0 } else { start }))
        .with_ack_lsn(Lsn(ack));
    let mut client = ReplicationClient::connect_gated(config).await?;
    let pid = number(
        &first(
            &client.simple_query("SELECT pg_backend_pid()").await?,
            "pid",
        )?,
        "pid",
    )?;
    let xid_reference = number(
        &first(
            &client
                .simple_query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
                .await?,
            "next xid",
        )?,
        "next xid",
    )?;
    let mut consistent_point = None;
    if temporary {
        // slot names are checked to be [a-z0-9_]: nothing to quote
        let rows = client
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT",
                base.slot
            ))
            .await?;
        let point = rows
            .first()
            .and_then(|row| row.get(1))
            .and_then(|cell| cell.as_ref())
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default();
        consistent_point =
            Some(Lsn::parse(&point).map(|l| l.0).map_err(|e| {
                SessionError(pgwire_replication::PgWireError::Protocol(e.to_string()))
            })?);
    }
    client.start().await?;
    client.wait_started().await?;
    Ok(Session {
        client,
        pid,
        xid_reference,
        consistent_point,
    })
}

/// `ReplicationError::Connect` for a session that could not start.
pub(crate) fn connect_error(slot: &str, error: SessionError) -> ReplicationError {
    ReplicationError::Connect {
        slot: slot.to_owned(),
        source: Box::new(error.0),
    }
}
