//! What the replication source needs on the server before it streams, done over an
//! ordinary connection: the prerequisites checked, the tables' replica identity, the
//! publication ([`publication`](super::publication)) and the slot ([`slot`](super::slot)).

use tokio_postgres::{Client, GenericClient};

use super::catalog::{self, Catalog};
use super::config::ReplicationConfig;
use super::publication::{check_publication, drop_publication, publish};
use super::slot::{check_free_slot, drop_slot, ensure_slot, skip_ahead};
use crate::capture::plan::CapturePlan;
use crate::error::ReplicationError;

pub(crate) use super::publication::publication_sql;

/// `ReplicationError::Database` for a failed `action`.
pub(super) fn database(
    action: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> ReplicationError {
    move |source| ReplicationError::Database { action, source }
}

/// `wal_level = logical`, a role with `REPLICATION`, and a free WAL sender.
pub(crate) async fn check_server(client: &Client) -> Result<(), ReplicationError> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), current_user::text, \
                    coalesce((SELECT rolreplication OR rolsuper FROM pg_roles \
                              WHERE rolname = current_user), false), \
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'), \
                    current_setting('max_wal_senders')::int8",
            &[],
        )
        .await
        .map_err(database("checking the server's replication settings"))?;
    let wal_level: String = row.get(0);
    if wal_level != "logical" {
        return Err(ReplicationError::WalLevel { found: wal_level });
    }
    if !row.get::<_, bool>(2) {
        return Err(ReplicationError::NotReplicationRole { role: row.get(1) });
    }
    let (senders, max): (i64, i64) = (row.get(3), row.get(4));
    if senders >= max {
        return Err(ReplicationError::NoFreeWalSender { max });
    }
    Ok(())
}

/// A recent full transaction id of the server, without taking one.
pub(crate) async fn xid_reference(client: &impl GenericClient) -> Result<u64, ReplicationError> {
    let row = client
        .query_one(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8",
            &[],
        )
        .await
        .map_err(database("reading the server's next transaction id"))?;
    // why unsigned_abs: a full xid fits 63 bits for the next billions of years
    Ok(row.get::<_, i64>(0).unsigned_abs())
}

/// What start-up found and made.
pub(crate) struct Prepared {
    /// The watched tables as they are now.
    pub catalog: Catalog,
    /// Where the permanent slot stands after skipping ahead (0 for a temporary slot).
    pub confirmed: u64,
    /// A recent full transaction id.
    pub xid_reference: u64,
}

/// Everything before streaming: the names, the server's settings, the tables' replica
/// identity, the publication, then the slot (after the publication: decoding looks the
/// publication up as of each change) moved to the current position.
pub(crate) async fn prepare(
    client: &mut Client,
    plan: &CapturePlan,
    config: &ReplicationConfig,
) -> Result<Prepared, ReplicationError> {
    config.validate()?;
    check_server(client).await?;
    let mut catalog = catalog::read(client, plan).await?;
    let mut problems = catalog::identity_problems(plan, &catalog);
    let needs_full = catalog::needs_full(plan, &catalog);
    if !config.manage_replica_identity {
        problems.extend(needs_full.iter().map(|table| {
            format!(
                "{table}: updates and deletes must carry the old values of its routing columns: \
                 ALTER TABLE {table} REPLICA IDENTITY FULL (or let the hub manage replica identities)"
            )
        }));
    }
    if !problems.is_empty() {
        return Err(ReplicationError::ReplicaIdentity(problems));
    }
    for table in needs_full {
        tracing::info!(%table, "setting REPLICA IDENTITY FULL: its routing columns lie outside its key");
        client
            .batch_execute(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL"))
            .await
            .map_err(|source| ReplicationError::Database {
                action: "setting REPLICA IDENTITY FULL on a watched table (the role must own it)",
                source,
            })?;
        if let Some(found) = catalog.tables.get_mut(&table) {
            found.identity = 'f';
        }
    }
    if config.manage_publication {
        publish(client, config, plan).await?;
    } else {
        check_publication(client, config, plan).await?;
    }
    let confirmed = if config.temporary {
        check_free_slot(client).await?;
        0
    } else {
        ensure_slot(client, &config.slot).await?;
        skip_ahead(client, &config.slot).await?
    };
    Ok(Prepared {
        catalog,
        confirmed,
        xid_reference: xid_reference(client).await?,
    })
}

/// Removes what [`prepare`] made: the slot (once no process holds it) and the publication.
pub(crate) async fn uninstall(
    client: &Client,
    config: &ReplicationConfig,
) -> Result<(), ReplicationError> {
    config.validate()?;
    drop_slot(client, &config.slot).await?;
    drop_publication(client, &config.publication).await
}
