//! The SQL capture installs: one trigger function and one row trigger per watched table,
//! sending each row change as a NOTIFY payload in the format [`super::payload`] decodes.
//!
//! why text first: [`install_sql`] and [`uninstall_sql`] are plain scripts, so users who
//! manage migrations themselves can ship exactly what [`install`] would run.

use tokio_postgres::Client;

pub(crate) mod listen;
pub(crate) mod payload;
mod source;

pub(crate) use source::TriggerSource;

pub use crate::error::TriggerError;

use crate::capture::plan::{CapturePlan, TablePlan};
use crate::schema::{quote_ident, TableName};

/// The comment on every installed function and trigger: a look at the catalog shows which
/// objects rowsync installed, and which version of it did.
pub const MARKER: &str = "rowsync capture v1";

/// Key of the advisory lock both scripts take first.
///
/// why: two hubs installing at once would both rewrite the same `pg_proc`/`pg_trigger` rows
/// and one would fail with "tuple concurrently updated"; the lock queues them instead.
/// The bytes spell `rowsync`, so the key is recognisable in `pg_locks`.
const LOCK_KEY: i64 = 0x0072_6f77_7379_6e63;

/// PostgreSQL's identifier limit in bytes (`NAMEDATALEN - 1`); longer names are truncated
/// by the server, which could make two of ours collide.
const NAME_LIMIT: usize = 63;

/// NOTIFY rejects payloads of 8000 bytes or more, raising the error in the writer's
/// transaction; anything larger is replaced by the overflow payload.
const PAYLOAD_LIMIT: usize = 7999;

/// The name of the trigger function of `table`: `rowsync_<schema>_<table>_notify`, shortened
/// to fit 63 bytes (see [`trigger_name`]). It lives in the table's PostgreSQL schema.
pub fn function_name(table: &TableName) -> String {
    fit(format!(
        "rowsync_{}_{}_notify",
        table.schema_or_public(),
        table.name
    ))
}

/// The name of the row trigger on `table`: `rowsync_<table>_trg`.
///
/// A name over 63 bytes becomes its first bytes (cut at a character boundary), `_` and 8 hex
/// digits of a hash of the full name: deterministic, so a later install or uninstall finds
/// it again, and distinct for long names that share a prefix.
pub fn trigger_name(table: &TableName) -> String {
    fit(format!("rowsync_{}_trg", table.name))
}

/// `name` itself if it fits PostgreSQL's identifier limit, else a prefix and a hash.
fn fit(name: String) -> String {
    if name.len() <= NAME_LIMIT {
        return name;
    }
    // why distinct from unshortened names: those end in `_notify` or `_trg`, never in 8 hex
    // digits, so only two long names with equal hashes and prefixes could collide.
    let mut cut = NAME_LIMIT - 9;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}", &name[..cut], fnv1a32(name.as_bytes()))
}

/// 32-bit FNV-1a.
// why by hand: std's `DefaultHasher` may change between Rust releases, and a name that
// changed with the compiler would orphan the triggers an older build installed.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The whole installation script for `plan`, each change notified on `channel`.
///
/// For every table: `CREATE OR REPLACE FUNCTION` (replacing an older version's body),
/// `COMMENT ON FUNCTION`, a check that every watched column exists (so a wrong column fails
/// here, not in a writer's transaction), then `DROP TRIGGER IF EXISTS` / `CREATE TRIGGER`.
/// It starts with `pg_advisory_xact_lock`, which serialises concurrent installs when the
/// script runs in one transaction, as [`install`] runs it.
///
/// `channel` is written as given: listeners must `LISTEN` on the quoted name, since
/// PostgreSQL folds an unquoted one to lower case. Needs PostgreSQL 13 or later
/// (`pg_current_xact_id`).
pub fn install_sql(plan: &CapturePlan, channel: &str) -> Result<String, TriggerError> {
    validate_channel(channel)?;
    // why escape after validating: a function body cannot take bind parameters, so the
    // channel is spliced in as a literal; the escape keeps that safe should validation change.
    let literal = format!("'{}'", channel.replace('\'', "''"));
    let mut sql = lock_sql();
    for table in plan.tables() {
        sql.push_str(&table_sql(table, &literal));
    }
    Ok(sql)
}

/// The script that drops every trigger and function [`install_sql`] creates for `plan`.
///
/// It succeeds when they (or the tables) are already gone, so it can run more than once.
pub fn uninstall_sql(plan: &CapturePlan) -> String {
    let mut sql = lock_sql();
    for table in plan.tables() {
        // why CASCADE: a table renamed since install keeps our trigger under its new name,
        // where `DROP TRIGGER ... ON <old name>` cannot reach it; only our triggers use the
        // function, so dropping its dependents drops nothing else.
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS {} ON {};\nDROP FUNCTION IF EXISTS {}() CASCADE;\n",
            quote_ident(&trigger_name(&table.table)),
            table.table,
            qualified_function(&table.table),
        ));
    }
    sql
}

/// Runs [`install_sql`] in one transaction: all tables are captured, or none.
pub async fn install(
    client: &mut Client,
    plan: &CapturePlan,
    channel: &str,
) -> Result<(), TriggerError> {
    let sql = install_sql(plan, channel)?;
    run(client, &sql).await?;
    tracing::info!(
        tables = plan.tables().count(),
        channel,
        "capture triggers installed"
    );
    Ok(())
}

/// Runs [`uninstall_sql`] in one transaction.
pub async fn uninstall(client: &mut Client, plan: &CapturePlan) -> Result<(), TriggerError> {
    run(client, &uninstall_sql(plan)).await?;
    tracing::info!(tables = plan.tables().count(), "capture triggers removed");
    Ok(())
}

async fn run(client: &mut Client, sql: &str) -> Result<(), TriggerError> {
    let tx = client.transaction().await?;
    tx.batch_execute(sql).await?;
    tx.commit().await?;
    Ok(())
}

fn validate_channel(channel: &str) -> Result<(), TriggerError> {
    let valid = (1..=NAME_LIMIT).contains(&channel.len())
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(TriggerError::InvalidChannel(channel.to_owned()))
    }
}

fn lock_sql() -> String {
    format!("SELECT pg_advisory_xact_lock({LOCK_KEY});\n")
}

/// `"schema"."rowsync_..._notify"`: always qualified, so install and uninstall address the
/// same function whatever the search path.
fn qualified_function(table: &TableName) -> String {
    format!(
        "{}.{}",
        quote_ident(table.schema_or_public()),
        quote_ident(&function_name(table))
    )
}

/// Function, comment, column check and trigger of one table.
fn table_sql(table: &TablePlan, channel_literal: &str) -> String {
    let function = qualified_function(&table.table);
    let trigger = quote_ident(&trigger_name(&table.table));
    let mut columns: Vec<String> = Vec::new();
    for column in table.columns().map(quote_ident) {
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    let body = function_body(table, channel_literal);
    let tag = dollar_tag(&body);
    format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql\n\
         AS {tag}{body}{tag};\n\
         COMMENT ON FUNCTION {function}() IS '{MARKER}';\n\
         SELECT {select} FROM {name} WHERE false;\n\
         DROP TRIGGER IF EXISTS {trigger} ON {name};\n\
         CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {name} \
         FOR EACH ROW EXECUTE FUNCTION {function}();\n\
         COMMENT ON TRIGGER {trigger} ON {name} IS '{MARKER}';\n",
        select = if columns.is_empty() {
            "1".to_owned()
        } else {
            columns.join(", ")
        },
        name = table.table,
    )
}

/// The plpgsql body: the payload documented in [`super::payload`], built by PostgreSQL's
/// JSON functions from the row (values are never spliced into SQL).
fn function_body(table: &TablePlan, channel_literal: &str) -> String {
    // why through JSON rather than `::text`: `::text` follows the writer's DateStyle
    // (`SQL, DMY` prints `04/03/2024 ...`), JSON always prints dates and times in ISO 8601
    let list = |record: &str, columns: &[&str]| {
        let values: Vec<String> = columns
            .iter()
            .map(|c| format!("to_json({record}.{}) #>> '{{}}'", quote_ident(c)))
            .collect();
        format!("json_build_array({})", values.join(", "))
    };
    // why compare as text: it is what the payload carries, and it works for types without
    // an equality operator (json, point), where `IS DISTINCT FROM` on the values would fail.
    let changed = |columns: &[&str]| {
        let terms: Vec<String> = columns
            .iter()
            .map(|c| {
                format!(
                    "OLD.{0}::text IS DISTINCT FROM NEW.{0}::text",
                    quote_ident(c)
                )
            })
            .collect();
        if terms.is_empty() {
            "false".to_owned()
        } else {
            terms.join("\n            OR ")
        }
    };
    let header = "'o', left(TG_OP, 1), 's', TG_TABLE_SCHEMA, 't', TG_TABLE_NAME, \
                  'x', pg_current_xact_id()::text";
    format!(
        "
DECLARE
    rec record;
    payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN rec := OLD; ELSE rec := NEW; END IF;
    -- json_strip_nulls drops \"p\" and \"q\" when NULL (unchanged); nulls inside arrays stay
    payload := json_strip_nulls(json_build_object(
        {header},
        'k', {key},
        'n', {routes},
        'p', CASE WHEN TG_OP = 'UPDATE' AND ({routes_changed}) THEN {old_routes} END,
        'q', CASE WHEN TG_OP = 'UPDATE' AND ({key_changed}) THEN {old_key} END
    ))::text;
    IF octet_length(payload) > {PAYLOAD_LIMIT} THEN
        payload := json_build_object({header}, 'big', true)::text;
    END IF;
    PERFORM pg_notify({channel_literal}, payload);
    RETURN NULL;
END
",
        key = list("rec", &table.key),
        routes = list("rec", &table.routes),
        routes_changed = changed(&table.routes),
        old_routes = list("OLD", &table.routes),
        key_changed = changed(&table.key),
        old_key = list("OLD", &table.key),
    )
}

/// A dollar-quote tag that does not occur in `body`.
// why: a quoted identifier may contain `$rowsync$`, which would end a fixed tag early.
fn dollar_tag(body: &str) -> String {
    (0..)
        .map(|i| {
            if i == 0 {
                "$rowsync$".to_owned()
            } else {
                format!("$rowsync_{i}$")
            }
        })
        .find(|tag| !body.contains(tag.as_str()))
        .expect("some tag is absent from a finite body")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: Option<&'static str>, name: &'static str) -> TableName {
        TableName { schema, name }
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[test]
    fn short_names_are_spelled_out() {
        assert_eq!(
            function_name(&table(None, "posts")),
            "rowsync_public_posts_notify"
        );
        assert_eq!(
            function_name(&table(Some("app"), "widgets")),
            "rowsync_app_widgets_notify"
        );
        assert_eq!(
            trigger_name(&table(Some("app"), "widgets")),
            "rowsync_widgets_trg"
        );
    }

    #[test]
    fn long_names_fit_and_stay_apart() {
        let common = "x".repeat(55);
        let a = table(None, leak(format!("{common}_alpha")));
        let b = table(None, leak(format!("{common}_omega")));
        for name in [
            function_name(&a),
            function_name(&b),
            trigger_name(&a),
            trigger_name(&b),
        ] {
            assert!(name.len() <= NAME_LIMIT, "{name} is {} bytes", name.len());
            assert!(name.starts_with("rowsync_"), "{name}");
        }
        assert_ne!(function_name(&a), function_name(&b));
        assert_ne!(trigger_name(&a), trigger_name(&b));
        assert_eq!(
            function_name(&a),
            function_name(&a.clone()),
            "deterministic"
        );
    }

    #[test]
    fn multibyte_names_are_cut_at_a_character_boundary() {
        for unit in ["é", "日本", "🦀", "aé"] {
            for n in 1..40 {
                let t = table(Some(leak(unit.repeat(n))), leak(unit.repeat(n + 1)));
                for name in [function_name(&t), trigger_name(&t)] {
                    // slicing at a non-boundary would have panicked; the length is the limit
                    assert!(name.len() <= NAME_LIMIT, "{name} is {} bytes", name.len());
                }
            }
        }
    }

    #[test]
    fn fnv1a32_matches_the_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn channels_are_validated() {
        assert!(validate_channel("rowsync_changes").is_ok());
        assert!(validate_channel(&"c".repeat(63)).is_ok());
        for bad in ["", "bad-name;", "it's", "ünï", &"c".repeat(64)] {
            assert!(
                matches!(validate_channel(bad), Err(TriggerError::InvalidChannel(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn dollar_tag_avoids_the_body() {
        assert_eq!(dollar_tag("SELECT 1"), "$rowsync$");
        assert_eq!(dollar_tag("\"a$rowsync$b\""), "$rowsync_1$");
    }
}
