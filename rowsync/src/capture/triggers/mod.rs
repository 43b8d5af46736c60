//! Capture by triggers: per watched table and NOTIFY channel, one trigger function and two
//! triggers (`AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW`, `AFTER TRUNCATE ... FOR EACH
//! STATEMENT`), both `ENABLE ALWAYS`, sending each change as a NOTIFY payload in the format
//! [`payload`] decodes; the listener that hears them; and the catalog check that tells when
//! what is installed no longer captures what a hub needs.
//!
//! Several hubs share one database: objects are named by (table, channel), each function
//! carries the union of the columns the hubs on its channel need (recorded in its comment,
//! merged under an advisory lock), and payload values are named, so each hub takes the
//! columns it needs. Installing removes what version 1 installed for the same tables (a
//! trigger `rowsync_<table>_trg` and a function `rowsync_<schema>_<table>_notify`).
//!
//! why text too: [`install_sql`] and [`uninstall_sql`] are plain scripts, so users who
//! manage migrations themselves can ship what [`install`] would run.

use tokio_postgres::Client;

pub(crate) mod catalog;
pub(crate) mod ddl;
pub(crate) mod health;
pub(crate) mod listen;
pub(crate) mod meta;
pub(crate) mod names;
pub(crate) mod payload;
mod source;
pub(crate) mod sql;

pub(crate) use source::TriggerSource;

pub use crate::error::TriggerError;
pub use sql::MARKER;

use crate::capture::plan::{CapturePlan, TablePlan};
use names::{object_name, Object};
use sql::{column_check_sql, fix_sql, remove_sql, TableFix};

/// Key of the advisory lock every install and uninstall takes first.
///
/// why: two hubs installing at once would both rewrite the same `pg_proc`/`pg_trigger` rows
/// and one would fail with "tuple concurrently updated", or merge columns from a comment the
/// other is about to replace; the lock queues them instead. The bytes spell `rowsync`, so the
/// key is recognisable in `pg_locks`.
const LOCK_KEY: i64 = 0x0072_6f77_7379_6e63;

/// The trigger function capturing `table` on `channel` (it lives in the table's schema).
pub fn function_name(table: &TablePlan, channel: &str) -> String {
    object_name(table, channel, Object::Function)
}

/// The row trigger capturing `table` on `channel`.
pub fn trigger_name(table: &TablePlan, channel: &str) -> String {
    object_name(table, channel, Object::RowTrigger)
}

/// The statement trigger capturing `TRUNCATE` of `table` on `channel`.
pub fn truncate_trigger_name(table: &TablePlan, channel: &str) -> String {
    object_name(table, channel, Object::TruncateTrigger)
}

/// The whole installation script for `plan` on `channel`, for migrations you manage
/// yourself: the advisory lock, then for every table version 1's objects dropped, a check
/// that every column the plan reads exists (so a wrong column fails the migration), and the
/// function and both triggers created.
///
/// Unlike [`install`], the script does not read what is installed: each function carries
/// exactly this plan's columns. Hubs sharing a channel whose capture you install this way
/// must all be served by the script you run last — give each hub its own channel, or build
/// the script from a builder that watches what all of them watch. (A hub that is not served
/// says so: its catalog check reports the missing columns.)
///
/// `channel` is written as given: listeners must `LISTEN` on the quoted name, since
/// PostgreSQL folds an unquoted one to lower case. Needs PostgreSQL 13 or later
/// (`pg_current_xact_id`).
pub fn install_sql(plan: &CapturePlan, channel: &str) -> Result<String, TriggerError> {
    validate_channel(channel)?;
    let mut sql = lock_sql();
    for table in plan.tables() {
        sql.push_str(&column_check_sql(table));
        let columns = table
            .distinct_columns()
            .into_iter()
            .map(str::to_owned)
            .collect();
        sql.push_str(&fix_sql(table, channel, &TableFix::everything(columns)));
    }
    Ok(sql)
}

/// The script that drops every trigger and function [`install_sql`] creates for `plan` on
/// `channel` (for every hub using that channel), and what version 1 installed for the same
/// tables. It succeeds when they (or the tables) are already gone, so it can run more than
/// once. The DDL event trigger all hubs share (`rowsync_ddl_end`) stays; its removal is shown
/// as a comment.
pub fn uninstall_sql(plan: &CapturePlan, channel: &str) -> Result<String, TriggerError> {
    validate_channel(channel)?;
    let mut sql = lock_sql();
    for table in plan.tables() {
        sql.push_str(&remove_sql(table, channel));
    }
    sql.push_str(&ddl::removal_comment());
    Ok(sql)
}

/// Installs or repairs capture of `plan` on `channel`, in one transaction under the advisory
/// lock: reads what is installed, and rewrites only what no longer serves this plan (a
/// function missing, rewritten, or lacking a column; a trigger missing, altered, disabled or
/// not `ALWAYS`), each function carrying the columns it carried plus this plan's. Tables
/// that do not exist are skipped. Returns the number of tables something was written for.
pub async fn install(
    client: &mut Client,
    plan: &CapturePlan,
    channel: &str,
) -> Result<usize, TriggerError> {
    install_with(client, plan, channel, None).await
}

/// How long a repair waits for a table lock before giving up until the next check.
// why: `CREATE TRIGGER` and `ALTER TABLE .. ENABLE ALWAYS TRIGGER` queue behind a long
// transaction on the table, and every writer of the table would queue behind them.
const REPAIR_LOCK_TIMEOUT: &str = "2s";

/// [`install`], for a running hub repairing what its check found: it gives up rather than
/// wait long for a table lock (and so stall the table's writers queued behind it).
pub(crate) async fn repair(
    client: &mut Client,
    plan: &CapturePlan,
    channel: &str,
) -> Result<usize, TriggerError> {
    install_with(client, plan, channel, Some(REPAIR_LOCK_TIMEOUT)).await
}

async fn install_with(
    client: &mut Client,
    plan: &CapturePlan,
    channel: &str,
    lock_timeout: Option<&str>,
) -> Result<usize, TriggerError> {
    validate_channel(channel)?;
    let tx = client.transaction().await?;
    if let Some(timeout) = lock_timeout {
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{timeout}'"))
            .await?;
    }
    tx.batch_execute(&lock_sql()).await?;
    let live = catalog::observe(&tx, plan, channel).await?;
    let mut sql = String::new();
    let mut written = 0;
    for (table, live) in plan.tables().zip(&live) {
        let (_, mut fix) = health::installed_findings(table, channel, live);
        if fix.function.is_none() {
            fix.function = health::outdated(table, channel, live);
        }
        if !fix.is_empty() {
            sql.push_str(&fix_sql(table, channel, &fix));
            written += 1;
        }
    }
    if !sql.is_empty() {
        tx.batch_execute(&sql).await?;
    }
    tx.commit().await?;
    tracing::info!(
        tables = plan.tables().count(),
        written,
        channel,
        "capture triggers installed"
    );
    Ok(written)
}

/// Runs [`uninstall_sql`] in one transaction.
pub async fn uninstall(
    client: &mut Client,
    plan: &CapturePlan,
    channel: &str,
) -> Result<(), TriggerError> {
    let sql = uninstall_sql(plan, channel)?;
    let tx = client.transaction().await?;
    tx.batch_execute(&sql).await?;
    tx.commit().await?;
    tracing::info!(
        tables = plan.tables().count(),
        channel,
        "capture triggers removed"
    );
    Ok(())
}

fn validate_channel(channel: &str) -> Result<(), TriggerError> {
    let valid = (1..=names::NAME_LIMIT).contains(&channel.len())
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && channel != ddl::CHANNEL;
    if valid {
        Ok(())
    } else {
        Err(TriggerError::InvalidChannel(channel.to_owned()))
    }
}

fn lock_sql() -> String {
    format!("SELECT pg_advisory_xact_lock({LOCK_KEY});\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_validated() {
        assert!(validate_channel("rowsync_changes").is_ok());
        assert!(validate_channel(&"c".repeat(63)).is_ok());
        for bad in [
            "",
            "bad-name;",
            "it's",
            "ünï",
            &"c".repeat(64),
            ddl::CHANNEL,
        ] {
            assert!(
                matches!(validate_channel(bad), Err(TriggerError::InvalidChannel(_))),
                "{bad}"
            );
        }
    }
}
