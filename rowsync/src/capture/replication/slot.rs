//! The permanent slot: created or checked, moved to the current WAL position, dropped;
//! each once no process holds it. The slot name is bound as a value, never spliced.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::PgLsn;
use tokio_postgres::Client;

use super::setup::database;
use crate::error::ReplicationError;

/// How long a slot held by a process that is going away (a reconnecting or restarting hub's
/// old WAL sender) is waited for before it counts as in use.
const ACTIVE_WAIT: Duration = Duration::from_secs(15);

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
