//! What the replication source needs on the server, done over an ordinary connection: the
//! prerequisites checked, the publication made to publish exactly the watched tables, and
//! the permanent slot created, checked, moved ahead or dropped.
//!
//! Every name is quoted as an identifier or bound as a value, never spliced.

use std::collections::BTreeSet;
use std::time::Duration;

use postgres_types::PgLsn;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::catalog::{self, Catalog};
use super::config::ReplicationConfig;
use crate::capture::plan::CapturePlan;
use crate::error::ReplicationError;
use crate::schema::quote_ident;

/// Key of the advisory lock taken while the publication is created or changed, so that two
/// hubs starting at once queue instead of failing ("tuple concurrently updated"). The bytes
/// spell `rowspub`.
const PUBLICATION_LOCK: i64 = 0x0072_6f77_7370_7562;

/// How long a slot held by a process that is going away (a reconnecting or restarting hub's
/// old WAL sender) is waited for before it counts as in use.
const ACTIVE_WAIT: Duration = Duration::from_secs(15);

fn database(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ReplicationError {
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

/// `CREATE PUBLICATION` for the watched tables: what [`publish`] runs on a database that
/// has none, for migrations you manage yourself.
pub(crate) fn publication_sql(name: &str, plan: &CapturePlan) -> String {
    let tables: Vec<String> = plan.tables().map(|t| t.table.to_string()).collect();
    format!(
        "CREATE PUBLICATION {} FOR TABLE {};\n",
        quote_ident(name),
        tables.join(", ")
    )
}

/// The watched tables as `(schema, name)`.
fn wanted(plan: &CapturePlan) -> BTreeSet<(String, String)> {
    plan.tables()
        .map(|t| {
            (
                t.table.schema_or_public().to_owned(),
                t.table.name.to_owned(),
            )
        })
        .collect()
}

/// Makes the publication publish exactly the watched tables, every operation (creates it
/// if missing; touches nothing when it already does).
pub(crate) async fn publish(
    client: &mut Client,
    config: &ReplicationConfig,
    plan: &CapturePlan,
) -> Result<(), ReplicationError> {
    let name = &config.publication;
    let failed = |source| ReplicationError::Publication {
        publication: name.clone(),
        source,
    };
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PUBLICATION_LOCK])
        .await
        .map_err(failed)?;
    let found = tx
        .query_opt(
            "SELECT puballtables, pubinsert AND pubupdate AND pubdelete AND pubtruncate \
             FROM pg_publication WHERE pubname = $1",
            &[name],
        )
        .await
        .map_err(failed)?;
    let quoted = quote_ident(name);
    let tables: Vec<String> = plan.tables().map(|t| t.table.to_string()).collect();
    match found {
        None => {
            tracing::info!(publication = %name, "creating the publication");
            tx.batch_execute(&publication_sql(name, plan))
                .await
                .map_err(failed)?;
        }
        Some(row) => {
            let (all_tables, every_op): (bool, bool) = (row.get(0), row.get(1));
            if !all_tables && published(&tx, name).await.map_err(failed)? != wanted(plan) {
                tracing::info!(publication = %name, "setting the publication's tables");
                tx.batch_execute(&format!(
                    "ALTER PUBLICATION {quoted} SET TABLE {}",
                    tables.join(", ")
                ))
                .await
                .map_err(failed)?;
            }
            if !every_op {
                tx.batch_execute(&format!(
                    "ALTER PUBLICATION {quoted} SET (publish = 'insert, update, delete, truncate')"
                ))
                .await
                .map_err(failed)?;
            }
        }
    }
    tx.commit().await.map_err(failed)
}

/// The tables a publication publishes.
async fn published(
    client: &impl GenericClient,
    name: &str,
) -> Result<BTreeSet<(String, String)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables \
             WHERE pubname = $1",
            &[&name],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Checks that a publication someone else manages publishes every watched table.
pub(crate) async fn check_publication(
    client: &Client,
    config: &ReplicationConfig,
    plan: &CapturePlan,
) -> Result<(), ReplicationError> {
    let has = published(client, &config.publication)
        .await
        .map_err(database("reading the publication's tables"))?;
    let missing: Vec<String> = wanted(plan)
        .difference(&has)
        .map(|(schema, name)| format!("{}.{}", quote_ident(schema), quote_ident(name)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ReplicationError::PublicationMissing {
            publication: config.publication.clone(),
            tables: missing,
        })
    }
}

/// Drops the publication if it exists.
pub(crate) async fn drop_publication(client: &Client, name: &str) -> Result<(), ReplicationError> {
    client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
        .await
        .map_err(database("dropping the publication"))
}

/// Fails unless a replication slot is free for a new one.
pub(crate) async fn check_free_slot(client: &Client) -> Result<(), ReplicationError> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_replication_slots), \
                    current_setting('max_replication_slots')::int8",
            &[],
        )
        .await
        .map_err(database("counting replication slots"))?;
    let (used, max): (i64, i64) = (row.get(0), row.get(1));
    if used >= max {
        Err(ReplicationError::NoFreeSlot { max })
    } else {
        Ok(())
    }
}

/// Creates the permanent slot, or checks the one there: logical, `pgoutput`, of this
/// database. One whose WAL the server removed (`max_slot_wal_keep_size`) is made again.
pub(crate) async fn ensure_slot(client: &Client, slot: &str) -> Result<(), ReplicationError> {
    let mismatch = |detail: String| ReplicationError::SlotMismatch {
        slot: slot.to_owned(),
        detail,
    };
    let found = client
        .query_opt(
            "SELECT slot_type, coalesce(plugin::text, ''), coalesce(database::text, ''), \
                    current_database()::text, coalesce(wal_status, ''), temporary \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(database("looking up the replication slot"))?;
    if let Some(row) = found {
        let (kind, plugin, db, here, wal, temporary): (
            String,
            String,
            String,
            String,
            String,
            bool,
        ) = (
            row.get(0),
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
        );
        if kind != "logical" {
            return Err(mismatch(format!("is a {kind} slot")));
        }
        if plugin != "pgoutput" {
            return Err(mismatch(format!("uses plugin `{plugin}`, not `pgoutput`")));
        }
        if db != here {
            return Err(mismatch(format!("belongs to database `{db}`")));
        }
        if temporary {
            return Err(mismatch(
                "is a temporary slot of another session".to_owned(),
            ));
        }
        if wal != "lost" {
            return Ok(());
        }
        tracing::warn!(
            slot,
            "the replication slot lost its WAL (max_slot_wal_keep_size); creating it again"
        );
        drop_slot(client, slot).await?;
    }
    create_slot(client, slot).await
}

async fn create_slot(client: &Client, slot: &str) -> Result<(), ReplicationError> {
    check_free_slot(client).await?;
    tracing::info!(slot, "creating the replication slot");
    match client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
    {
        Ok(_) => Ok(()),
        // taken in the meantime: say so if the count shows it
        Err(e) if e.code() == Some(&SqlState::CONFIGURATION_LIMIT_EXCEEDED) => {
            check_free_slot(client).await?;
            Err(ReplicationError::Database {
                action: "creating the replication slot",
                source: e,
            })
        }
        // another hub made it in the meantime: it will be in use, which is reported later
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => Ok(()),
        Err(e) => Err(ReplicationError::Database {
            action: "creating the replication slot",
            source: e,
        }),
    }
}

/// Waits (bounded) until no process holds the slot.
async fn wait_inactive(client: &Client, slot: &str) -> Result<(), ReplicationError> {
    let deadline = tokio::time::Instant::now() + ACTIVE_WAIT;
    loop {
        let pid: Option<i32> = client
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(database("looking up the replication slot"))?
            .and_then(|row| row.get(0));
        match pid {
            None => return Ok(()),
            Some(pid) if tokio::time::Instant::now() >= deadline => {
                return Err(ReplicationError::SlotInUse {
                    slot: slot.to_owned(),
                    pid,
                })
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Runs `statement` on the slot once no process holds it; retries while one grabs it
/// in between.
async fn on_idle_slot(
    client: &Client,
    slot: &str,
    statement: &str,
    action: &'static str,
) -> Result<Option<tokio_postgres::Row>, ReplicationError> {
    let deadline = tokio::time::Instant::now() + ACTIVE_WAIT;
    loop {
        wait_inactive(client, slot).await?;
        match client.query_opt(statement, &[&slot]).await {
            Ok(row) => return Ok(row),
            Err(e)
                if e.code() == Some(&SqlState::OBJECT_IN_USE)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(source) => return Err(ReplicationError::Database { action, source }),
        }
    }
}

/// Moves the slot to the current WAL position (a starting hub holds no data, so the changes
/// it retains concern nobody) and returns where it now is.
pub(crate) async fn skip_ahead(client: &Client, slot: &str) -> Result<u64, ReplicationError> {
    let row = on_idle_slot(
        client,
        slot,
        "SELECT CASE WHEN confirmed_flush_lsn < pg_current_wal_flush_lsn() \
                THEN pg_replication_slot_advance(slot_name, pg_current_wal_flush_lsn()) END, \
                confirmed_flush_lsn \
         FROM pg_replication_slots WHERE slot_name = $1",
        "moving the replication slot to the current WAL position",
    )
    .await?;
    let confirmed = client
        .query_opt(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(database("reading the replication slot's position"))?
        .and_then(|r| r.get::<_, Option<PgLsn>>(0))
        .or_else(|| row.and_then(|r| r.get::<_, Option<PgLsn>>(1)));
    Ok(confirmed.map_or(0, u64::from))
}

/// Drops the slot if it exists, once no process holds it.
pub(crate) async fn drop_slot(client: &Client, slot: &str) -> Result<(), ReplicationError> {
    on_idle_slot(
        client,
        slot,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE slot_name = $1",
        "dropping the replication slot",
    )
    .await
    .map(|_| ())
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
