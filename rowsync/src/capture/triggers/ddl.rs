//! The DDL hint: an event trigger, shared by every hub of a database, that notifies
//! [`CHANNEL`] at the end of each command that can change what capture relies on (tables,
//! columns, triggers, functions, schemas), so that hubs run their catalog check at once
//! instead of at the next interval.
//!
//! Only a superuser may create event triggers; without one, the periodic check is the net.
//! The check is the truth, the hint only says when to look: its payload is the command tag.

use tokio_postgres::Client;

use super::sql::quote_literal;

/// The channel every hub LISTENs on for DDL hints (reserved: no hub may use it for changes).
pub const CHANNEL: &str = "rowsync_ddl";

/// The event trigger.
pub const EVENT_TRIGGER: &str = "rowsync_ddl_end";

/// Its function, in `public`.
const FUNCTION: &str = "public.rowsync_ddl_notify";

/// Command tags after which a hub looks again.
// why no CREATE TABLE AS / SELECT INTO: they make new tables only, never ours; CREATE TABLE
// stays for a watched table dropped and created again.
const TAGS: &[&str] = &[
    "ALTER TABLE",
    "CREATE TABLE",
    "DROP TABLE",
    "CREATE TRIGGER",
    "ALTER TRIGGER",
    "DROP TRIGGER",
    "CREATE FUNCTION",
    "ALTER FUNCTION",
    "DROP FUNCTION",
    "COMMENT",
    "ALTER SCHEMA",
    "DROP SCHEMA",
    "ALTER TYPE",
    "DROP TYPE",
    "DROP OWNED",
];

/// The script creating the event trigger and its function, idempotent: the function is
/// replaced, the event trigger created only when absent, then set `ENABLE ALWAYS`.
pub(crate) fn install_sql() -> String {
    let tags: Vec<String> = TAGS.iter().map(|t| quote_literal(t)).collect();
    format!(
        "CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS event_trigger LANGUAGE plpgsql\n\
         SET search_path = pg_catalog, pg_temp\n\
         AS $rowsync$ BEGIN PERFORM pg_notify({channel}, tg_tag); END $rowsync$;\n\
         COMMENT ON FUNCTION {FUNCTION}() IS 'rowsync capture DDL hint';\n\
         REVOKE ALL ON FUNCTION {FUNCTION}() FROM PUBLIC;\n\
         DO $rowsync$ BEGIN\n\
             IF NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = '{EVENT_TRIGGER}') THEN\n\
                 CREATE EVENT TRIGGER {EVENT_TRIGGER} ON ddl_command_end\n\
                 WHEN TAG IN ({tags}) EXECUTE FUNCTION {FUNCTION}();\n\
             END IF;\n\
         END $rowsync$;\n\
         ALTER EVENT TRIGGER {EVENT_TRIGGER} ENABLE ALWAYS;\n",
        channel = quote_literal(CHANNEL),
        tags = tags.join(", "),
    )
}

/// The statements that remove the event trigger, as a comment: it serves every hub of the
/// database, so removing one hub's capture leaves it.
pub(crate) fn removal_comment() -> String {
    format!(
        "-- shared by every hub of this database; to remove it too:\n\
         -- DROP EVENT TRIGGER IF EXISTS {EVENT_TRIGGER};\n\
         -- DROP FUNCTION IF EXISTS {FUNCTION}();\n"
    )
}

/// Installs the event trigger when the role is a superuser and the `public` schema exists;
/// `Ok(false)` when it cannot be.
pub(crate) async fn install(client: &mut Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT rolsuper AND to_regnamespace('public') IS NOT NULL \
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(false);
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({});\n",
        super::LOCK_KEY
    ))
    .await?;
    tx.batch_execute(&install_sql()).await?;
    tx.commit().await?;
    Ok(true)
}
