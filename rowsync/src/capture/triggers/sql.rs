//! The SQL capture installs for one (table, channel): a trigger function sending the payload
//! [`super::payload`] decodes, a row trigger and a truncate trigger, both `ENABLE ALWAYS`.
//!
//! Identifiers are always quoted, the channel and column names are written as string
//! literals (never as SQL), and values never appear in SQL at all: the function reads them
//! from the row at run time.

use super::meta::FunctionMeta;
use super::names::{legacy_function_name, legacy_trigger_name, object_name, Object};
use crate::capture::plan::TablePlan;
use crate::schema::quote_ident;

/// The comment on every installed trigger: a look at the catalog shows which objects
/// rowsync installed, and which version of it did.
pub const MARKER: &str = "rowsync capture v2";

/// NOTIFY rejects payloads of 8000 bytes or more, raising the error in the writer's
/// transaction; anything larger is replaced by the overflow payload.
const PAYLOAD_LIMIT: usize = 7999;

/// The `SET` clause of every function: nothing it calls can be found in a schema a writer
/// controls.
pub(crate) const FUNCTION_CONFIG: &str = "search_path=pg_catalog, pg_temp";

/// `'text'` as an SQL string literal, right whatever `standard_conforming_strings` says.
pub(crate) fn quote_literal(text: &str) -> String {
    let doubled = text.replace('\'', "''");
    if doubled.contains('\\') {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    } else {
        format!("'{doubled}'")
    }
}

/// `"schema"."rowsync_..._f"`, in the table's schema.
pub(crate) fn qualified_function(table: &TablePlan, channel: &str) -> String {
    format!(
        "{}.{}",
        quote_ident(table.pg_schema()),
        quote_ident(&object_name(table, channel, Object::Function))
    )
}

/// How a trigger is put right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TriggerFix {
    /// Dropped (if there) and created again, then set `ENABLE ALWAYS`.
    Recreate,
    /// Only set `ENABLE ALWAYS` again.
    EnableAlways,
}

/// What to (re)install for one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TableFix {
    /// Rewrite the function to carry these columns.
    pub function: Option<Vec<String>>,
    pub row_trigger: Option<TriggerFix>,
    pub truncate_trigger: Option<TriggerFix>,
    /// Drop version 1's trigger.
    pub legacy_trigger: bool,
    /// Drop version 1's function (and, through `CASCADE`, any trigger still using it).
    pub legacy_function: bool,
}

impl TableFix {
    /// Everything, as on a database that has nothing yet.
    pub fn everything(columns: Vec<String>) -> TableFix {
        TableFix {
            function: Some(columns),
            row_trigger: Some(TriggerFix::Recreate),
            truncate_trigger: Some(TriggerFix::Recreate),
            legacy_trigger: true,
            legacy_function: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == TableFix::default()
    }
}

/// The statements that apply `fix` to `table`.
pub(crate) fn fix_sql(table: &TablePlan, channel: &str, fix: &TableFix) -> String {
    let name = table.qualified();
    let function = qualified_function(table, channel);
    let mut sql = String::new();
    if fix.legacy_trigger {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS {} ON {name};\n",
            quote_ident(&legacy_trigger_name(table))
        ));
    }
    if fix.legacy_function {
        // why CASCADE: a table renamed since keeps the old trigger under its new name, where
        // `DROP TRIGGER ... ON <old name>` cannot reach it; only those triggers use it.
        sql.push_str(&format!(
            "DROP FUNCTION IF EXISTS {}.{}() CASCADE;\n",
            quote_ident(table.table.schema_or_public()),
            quote_ident(&legacy_function_name(table))
        ));
    }
    if let Some(columns) = &fix.function {
        let body = function_body(columns, channel);
        let tag = dollar_tag(&body);
        let meta = FunctionMeta::new(channel, columns.clone()).render();
        sql.push_str(&format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql\n\
             SET search_path = pg_catalog, pg_temp\n\
             AS {tag}{body}{tag};\n\
             COMMENT ON FUNCTION {function}() IS {meta};\n\
             REVOKE ALL ON FUNCTION {function}() FROM PUBLIC;\n",
            meta = quote_literal(&meta),
        ));
    }
    let triggers = [
        (
            fix.row_trigger,
            Object::RowTrigger,
            "AFTER INSERT OR UPDATE OR DELETE",
            "ROW",
        ),
        (
            fix.truncate_trigger,
            Object::TruncateTrigger,
            "AFTER TRUNCATE",
            "STATEMENT",
        ),
    ];
    for (trigger_fix, object, events, level) in triggers {
        let Some(trigger_fix) = trigger_fix else {
            continue;
        };
        let trigger = quote_ident(&object_name(table, channel, object));
        if trigger_fix == TriggerFix::Recreate {
            sql.push_str(&format!(
                "DROP TRIGGER IF EXISTS {trigger} ON {name};\n\
                 CREATE TRIGGER {trigger} {events} ON {name} \
                 FOR EACH {level} EXECUTE FUNCTION {function}();\n\
                 COMMENT ON TRIGGER {trigger} ON {name} IS '{MARKER}';\n"
            ));
        }
        // why ALWAYS: an origin-only trigger is silent under `session_replication_role =
        // replica` (pg_restore, logical replication apply workers, some migration tools)
        sql.push_str(&format!(
            "ALTER TABLE {name} ENABLE ALWAYS TRIGGER {trigger};\n"
        ));
    }
    sql
}

/// The statements that remove what [`fix_sql`] installs for (table, channel), and what
/// version 1 installed for the table. They succeed when it is already gone.
pub(crate) fn remove_sql(table: &TablePlan, channel: &str) -> String {
    let name = table.qualified();
    let mut sql = String::new();
    for object in [Object::RowTrigger, Object::TruncateTrigger] {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS {} ON {name};\n",
            quote_ident(&object_name(table, channel, object))
        ));
    }
    sql.push_str(&format!(
        "DROP FUNCTION IF EXISTS {}() CASCADE;\n",
        qualified_function(table, channel)
    ));
    let legacy = TableFix {
        legacy_trigger: true,
        legacy_function: true,
        ..TableFix::default()
    };
    sql.push_str(&fix_sql(table, channel, &legacy));
    sql
}

/// A check that every column of `table`'s plan exists, so a wrong column fails a migration
/// script rather than being reported once a hub runs.
pub(crate) fn column_check_sql(table: &TablePlan) -> String {
    let columns: Vec<String> = table
        .distinct_columns()
        .into_iter()
        .map(quote_ident)
        .collect();
    let select = if columns.is_empty() {
        "1".to_owned()
    } else {
        columns.join(", ")
    };
    format!("SELECT {select} FROM {} WHERE false;\n", table.qualified())
}

/// The plpgsql body sending the payload of [`super::payload`] for `columns` on `channel`.
pub(crate) fn function_body(columns: &[String], channel: &str) -> String {
    let literals: Vec<String> = columns.iter().map(|c| quote_literal(c)).collect();
    let names = if literals.is_empty() {
        "ARRAY[]::text[]".to_owned()
    } else {
        format!("ARRAY[{}]", literals.join(", "))
    };
    let new_values: Vec<String> = literals.iter().map(|c| format!("{c}, r->>{c}")).collect();
    let old_values: String = literals
        .iter()
        .map(|c| {
            format!(
                "            IF o->>{c} IS DISTINCT FROM r->>{c} THEN \
                 p := p || jsonb_build_object({c}, o->>{c}); END IF;\n"
            )
        })
        .collect();
    let channel = quote_literal(channel);
    format!(
        "
DECLARE
    i int8;
    r jsonb;
    o jsonb;
    n jsonb;
    p jsonb;
    m text[];
    payload jsonb;
    body text;
BEGIN
    -- why: NOTIFY folds identical payloads of a transaction into one. This counter, local to
    -- the transaction and undone with a rolled-back savepoint (as are the notifications sent
    -- under it), makes every payload distinct and numbers them in statement order.
    i := coalesce(nullif(current_setting('rowsync.seq', true), ''), '0')::int8 + 1;
    PERFORM set_config('rowsync.seq', i::text, true);
    payload := jsonb_build_object('v', 2, 'o', left(TG_OP, 1), 's', TG_TABLE_SCHEMA,
        't', TG_TABLE_NAME, 'x', pg_current_xact_id()::text, 'i', i);
    IF TG_OP <> 'TRUNCATE' THEN
        -- why by name through jsonb: a column renamed or dropped since install is left out
        -- (and listed in \"m\") instead of failing the writer's statement
        IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
        n := jsonb_build_object({new_values});
        IF NOT r ?& {names} THEN
            m := ARRAY(SELECT c FROM unnest({names}) AS c WHERE NOT r ? c);
            n := n - m;
            payload := payload || jsonb_build_object('m', m);
        END IF;
        payload := payload || jsonb_build_object('n', n);
        IF TG_OP = 'UPDATE' THEN
            o := to_jsonb(OLD);
            p := '{{}}';
{old_values}            IF p <> '{{}}' THEN payload := payload || jsonb_build_object('p', p); END IF;
        END IF;
    END IF;
    body := payload::text;
    IF octet_length(body) > {PAYLOAD_LIMIT} THEN
        body := ((payload - ARRAY['n', 'p', 'm']) || jsonb_build_object('big', true))::text;
    END IF;
    PERFORM pg_notify({channel}, body);
    RETURN NULL;
END
",
        new_values = new_values.join(", "),
    )
}

/// A dollar-quote tag that does not occur in `body`.
// why: a column name may contain `$rowsync$`, which would end a fixed tag early.
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

    #[test]
    fn literals_are_quoted_for_either_string_setting() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b'c"), r"E'a\\b''c'");
    }

    #[test]
    fn dollar_tag_avoids_the_body() {
        assert_eq!(dollar_tag("SELECT 1"), "$rowsync$");
        assert_eq!(dollar_tag("\"a$rowsync$b\""), "$rowsync_1$");
    }

    #[test]
    fn the_body_names_columns_only_as_literals() {
        let body = function_body(&["id".into(), "we'ird\\".into()], "chan");
        assert!(body.contains("r->>'id'"), "{body}");
        assert!(body.contains(r"r->>E'we''ird\\'"), "{body}");
        assert!(body.contains("pg_notify('chan', body)"), "{body}");
        assert!(
            !body.contains("NEW."),
            "values are never read by column reference"
        );
        let empty = function_body(&[], "chan");
        assert!(empty.contains("ARRAY[]::text[]"), "{empty}");
    }
}
