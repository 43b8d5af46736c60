//! What a hub's replication capture is called and how it behaves: [`ReplicationConfig`].

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ReplicationError;

/// The logical replication capture source of a hub: its slot, its publication, and how it
/// acknowledges and watches its lag. Pass it to
/// [`HubBuilder::replication`](crate::HubBuilder::replication).
///
/// ```no_run
/// # use rowsync::{Hub, ReplicationConfig, Schema};
/// # #[derive(Schema, Clone, Debug, PartialEq)]
/// # #[rowsync(table = "persons")]
/// # pub struct Person { pub id: i64 }
/// # async fn demo() -> Result<(), rowsync::HubError> {
/// let hub = Hub::builder("postgres://app@localhost/app")
///     .watch::<Person>(rowsync::NO_PRELOADS)
///     .replication(ReplicationConfig::new("app_slot"))
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
///
/// Each hub needs a slot of its own (a slot streams to one consumer at a time); hubs and
/// applications side by side on one database use different names. The publication is named
/// after the slot unless [`publication`](Self::publication) says otherwise.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    pub(crate) slot: String,
    pub(crate) publication: String,
    pub(crate) temporary: bool,
    pub(crate) manage_publication: bool,
    pub(crate) manage_replica_identity: bool,
    pub(crate) status_interval: Duration,
    pub(crate) lag_check_interval: Duration,
    pub(crate) max_lag_bytes: Option<u64>,
    pub(crate) tls_ca_file: Option<PathBuf>,
}

impl ReplicationConfig {
    /// A permanent slot named `slot` (created on first start, kept across restarts and
    /// reconnects, so no change is lost while the connection is down) and a publication of
    /// the same name.
    pub fn new(slot: impl Into<String>) -> Self {
        let slot = slot.into();
        ReplicationConfig {
            publication: slot.clone(),
            slot,
            temporary: false,
            manage_publication: true,
            manage_replica_identity: true,
            status_interval: Duration::from_secs(1),
            lag_check_interval: Duration::from_secs(10),
            max_lag_bytes: None,
            tls_ca_file: None,
        }
    }

    /// A temporary slot named `slot`: it lives as long as the replication connection and
    /// is never left behind (tests, short-lived tools). A lost connection loses its slot,
    /// so every subscriber resyncs after a reconnect, as with the trigger capture.
    pub fn temporary(slot: impl Into<String>) -> Self {
        ReplicationConfig {
            temporary: true,
            ..ReplicationConfig::new(slot)
        }
    }

    /// The publication's name (default: the slot's).
    pub fn publication(mut self, name: impl Into<String>) -> Self {
        self.publication = name.into();
        self
    }

    /// Whether the hub creates the publication, or updates it to publish exactly the
    /// watched tables (default true; that needs a role owning the tables). Turn it off
    /// when your migrations create it; the hub then checks it publishes every watched table.
    pub fn manage_publication(mut self, manage: bool) -> Self {
        self.manage_publication = manage;
        self
    }

    /// Whether the hub sets `REPLICA IDENTITY FULL` on watched tables whose routing columns
    /// (foreign keys) lie outside their key (default true; that needs a role owning them).
    /// Updates and deletes of those tables must carry the old values, as the trigger
    /// capture's do, or a row moving away from a parent would not reach the parent's holders.
    /// Turn it off to manage identities yourself: `start` then names every table that needs
    /// `FULL`. Tables whose key is all they route by keep their identity.
    pub fn manage_replica_identity(mut self, manage: bool) -> Self {
        self.manage_replica_identity = manage;
        self
    }

    /// How often the acknowledged position is reported to the server at most (default 1 s).
    /// The slot keeps WAL from the last report on, and what was routed after it is sent
    /// again (and skipped) after a reconnect.
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval;
        self
    }

    /// How often the slot's lag is measured for [`HubStats`](crate::HubStats) and checked
    /// against [`max_lag_bytes`](Self::max_lag_bytes) (default 10 s).
    pub fn lag_check_interval(mut self, interval: Duration) -> Self {
        self.lag_check_interval = interval;
        self
    }

    /// The most WAL the slot may hold back while the hub runs (default: no bound). Past it
    /// the hub drops the slot, creates it again at the current position and resyncs every
    /// subscriber, rather than let the server's disk fill. While no hub runs, only the
    /// server's `max_slot_wal_keep_size` bounds what the slot keeps: set it on any server
    /// with a permanent slot.
    pub fn max_lag_bytes(mut self, bytes: u64) -> Self {
        self.max_lag_bytes = Some(bytes);
        self
    }

    /// The CA certificates (PEM file) the replication connection verifies the server
    /// against when the hub uses [`Tls`](crate::Tls) (default: the public web roots). The
    /// replication connection does its own TLS and cannot reuse a rustls configuration; it
    /// checks the certificate's host name, except for a host given as an IP address (the
    /// chain only).
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// The slot's name.
    pub fn slot_name(&self) -> &str {
        &self.slot
    }

    /// The publication's name.
    pub fn publication_name(&self) -> &str {
        &self.publication
    }

    /// Whether the slot is temporary.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Checks both names: slot names allow lower-case letters, digits and `_` only, and the
    /// replication protocol passes publication names in a quoted, comma-separated list.
    pub(crate) fn validate(&self) -> Result<(), ReplicationError> {
        for (what, name) in [("slot", &self.slot), ("publication", &self.publication)] {
            let valid = (1..=63).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(ReplicationError::InvalidName {
                    what,
                    name: name.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(ReplicationConfig::new("app_slot_1").validate().is_ok());
        for bad in ["", "App", "a-b", "a b", "a,b", "a'b", &"x".repeat(64)] {
            assert!(
                ReplicationConfig::new(bad).validate().is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(ReplicationConfig::new("ok")
            .publication("Bad")
            .validate()
            .is_err());
    }

    #[test]
    fn the_publication_is_named_after_the_slot() {
        let config = ReplicationConfig::temporary("t1");
        assert_eq!(config.publication_name(), "t1");
        assert!(config.is_temporary());
        assert!(!ReplicationConfig::new("p").is_temporary());
    }
}
