//! How connections to PostgreSQL are encrypted: not at all, or (with the `tls` cargo
//! feature) TLS with rustls.
//!
//! One [`Tls`] value is used by every connection a hub opens (the pool, the listener, the
//! start-up check), so a managed database that requires TLS works end to end.

#[cfg(feature = "tls")]
use std::sync::Arc;
use std::task::{Context, Poll};

#[cfg(feature = "tls")]
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls};
#[cfg(feature = "tls")]
use tokio_postgres_rustls::MakeRustlsConnect;

#[cfg(feature = "tls")]
use crate::error::ConnectError;

/// The encryption of connections to PostgreSQL: [`Tls::Disabled`] (the default), or, with the
/// `tls` cargo feature (on by default), TLS with rustls from `Tls::rustls` or
/// `Tls::with_root_pem` (which has an example).
///
/// With TLS the connection string's `sslmode` decides: `prefer` (the default) uses TLS when
/// the server offers it, `require` refuses a server that does not, `disable` never uses it.
/// Server certificates are always verified against the configured roots.
#[derive(Clone, Default)]
// why non_exhaustive: `Rustls` exists only with the `tls` feature, and cargo features must
// be additive; a `match` written where the feature is off must still compile when another
// crate in the build turns it on.
#[non_exhaustive]
pub enum Tls {
    /// Plain TCP (`NoTls`): for a local server, or a network you trust.
    #[default]
    Disabled,
    /// TLS with this rustls client configuration.
    #[cfg(feature = "tls")]
    Rustls(Arc<rustls::ClientConfig>),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tls::Disabled => f.write_str("Tls::Disabled"),
            #[cfg(feature = "tls")]
            Tls::Rustls(_) => f.write_str("Tls::Rustls(..)"),
        }
    }
}

#[cfg(feature = "tls")]
impl Tls {
    /// TLS with a rustls configuration you built (roots, client certificates, ...).
    pub fn rustls(config: rustls::ClientConfig) -> Tls {
        Tls::Rustls(Arc::new(config))
    }

    /// TLS trusting exactly the PEM-encoded root certificates in `pem`.
    ///
    /// ```
    /// # fn main() -> Result<(), rowsync::ConnectError> {
    /// // the CA that signed your server's certificate, e.g. your provider's bundle
    /// # let ca_pem = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap().cert.pem();
    /// let tls = rowsync::Tls::with_root_pem(ca_pem.as_bytes())?;
    /// // Hub::builder("postgres://app@db.example.com/app?sslmode=require").tls(tls) ...
    /// # let _ = tls;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_root_pem(pem: &[u8]) -> Result<Tls, ConnectError> {
        let mut roots = rustls::RootCertStore::empty();
        let mut found = 0;
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pem) {
            let cert: rustls::pki_types::CertificateDer<'static> =
                cert.map_err(|e| ConnectError::Tls(format!("reading the PEM roots: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ConnectError::Tls(format!("a root certificate: {e}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(ConnectError::Tls(
                "no certificate found in the PEM roots".to_owned(),
            ));
        }
        // why explicit: rustls needs one crypto provider chosen; ring is the one we build
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Tls::rustls(config))
    }
}

impl Tls {
    /// A pool manager for `config` with this encryption.
    pub(crate) fn manager(
        &self,
        config: Config,
        manager_config: deadpool_postgres::ManagerConfig,
    ) -> deadpool_postgres::Manager {
        match self {
            Tls::Disabled => deadpool_postgres::Manager::from_config(config, NoTls, manager_config),
            #[cfg(feature = "tls")]
            Tls::Rustls(tls) => deadpool_postgres::Manager::from_config(
                config,
                MakeRustlsConnect::new(ClientConfig::clone(tls)),
                manager_config,
            ),
        }
    }

    /// Connects; the caller drives the returned connection (`poll_message`).
    pub(crate) async fn connect(
        &self,
        config: &Config,
    ) -> Result<(Client, Box<dyn DriveConnection>), tokio_postgres::Error> {
        Ok(match self {
            Tls::Disabled => {
                let (client, connection) = config.connect(NoTls).await?;
                (client, Box::new(connection))
            }
            #[cfg(feature = "tls")]
            Tls::Rustls(tls) => {
                let (client, connection) = config
                    .connect(MakeRustlsConnect::new(ClientConfig::clone(tls)))
                    .await?;
                (client, Box::new(connection))
            }
        })
    }

    /// Connects and drives the connection on a task of its own (abort it when done).
    pub(crate) async fn connect_spawned(
        &self,
        config: &Config,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        let (client, mut connection) = self.connect(config).await?;
        let driver = tokio::spawn(async move {
            while let Some(Ok(_)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {}
        });
        Ok((client, driver))
    }
}

/// A connection whose messages someone reads: the only thing that drives its IO.
// why a trait object: the connection's type depends on the TLS stream, and the listener
// keeps one of either kind
pub(crate) trait DriveConnection: Send {
    /// The next notification or notice (`Connection::poll_message`).
    fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<AsyncMessage, tokio_postgres::Error>>>;
}

impl<S, T> DriveConnection for Connection<S, T>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<AsyncMessage, tokio_postgres::Error>>> {
        Connection::poll_message(self, cx)
    }
}
