//! What the catalog says about the watched tables and the capture installed on them: two
//! queries, whatever the number of tables (the tables with our functions and triggers; their
//! columns).

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use super::names::{legacy_function_name, legacy_trigger_name, object_name, Object};
use crate::capture::plan::{CapturePlan, TablePlan};
use crate::load::PgType;

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveColumn {
    /// `pg_type.typname`.
    pub typname: String,
    /// `typtype = 'e'`.
    pub is_enum: bool,
}

impl LiveColumn {
    pub fn pg_type(&self) -> PgType {
        PgType::from_catalog(&self.typname, self.is_enum)
    }
}

/// A trigger as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveTrigger {
    /// Its oid and the transaction that last wrote its `pg_trigger` row: every `ALTER TABLE
    /// .. ENABLE/DISABLE TRIGGER` writes the row, a drop and create makes a new one.
    pub version: TriggerVersion,
    /// `tgenabled`: `O` origin, `D` disabled, `R` replica, `A` always.
    pub enabled: String,
    /// Whether it calls our function.
    pub calls_ours: bool,
    /// `tgtype`'s bits.
    pub kind: i32,
    /// No `WHEN`, no arguments, no `UPDATE OF` column list.
    pub plain: bool,
}

/// Our function as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveFunction {
    pub comment: Option<String>,
    pub source: String,
    pub config: Vec<String>,
}

/// One watched table and what capture installed on it, as the catalog describes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LiveTable {
    /// `None`: no table by that name.
    pub oid: Option<u32>,
    pub function: Option<LiveFunction>,
    pub row_trigger: Option<LiveTrigger>,
    pub truncate_trigger: Option<LiveTrigger>,
    /// Version 1's objects are still there.
    pub legacy_trigger: bool,
    pub legacy_function: bool,
    /// Columns by name (empty when the table is missing).
    pub columns: HashMap<String, LiveColumn>,
}

/// A trigger's oid and `xmin`: equal between two checks only when nothing touched the
/// trigger in between.
pub(crate) type TriggerVersion = (u32, i64);

const INSTALLED_SQL: &str = "\
SELECT c.oid,
       f.oid IS NOT NULL, obj_description(f.oid, 'pg_proc'), f.prosrc, f.proconfig,
       r.tgenabled::text, r.tgfoid = f.oid, r.tgtype::int4,
       r.tgqual IS NULL AND r.tgnargs = 0 AND cardinality(r.tgattr::int2[]) = 0,
       r.oid, r.xmin::text::int8,
       t.tgenabled::text, t.tgfoid = f.oid, t.tgtype::int4,
       t.tgqual IS NULL AND t.tgnargs = 0 AND cardinality(t.tgattr::int2[]) = 0,
       t.oid, t.xmin::text::int8,
       EXISTS (SELECT FROM pg_trigger l WHERE l.tgrelid = c.oid AND l.tgname = w.legacy_trigger),
       EXISTS (SELECT FROM pg_proc lf JOIN pg_namespace ln ON ln.oid = lf.pronamespace
               WHERE ln.nspname = w.legacy_schema AND lf.proname = w.legacy_function
                 AND lf.pronargs = 0)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[])
     WITH ORDINALITY AS w(rel, fn_schema, fn_name, row_trigger, truncate_trigger,
                          legacy_trigger, legacy_schema, legacy_function, i)
LEFT JOIN pg_class c ON c.oid = to_regclass(w.rel)
LEFT JOIN pg_namespace fns ON fns.nspname = w.fn_schema
LEFT JOIN pg_proc f ON f.pronamespace = fns.oid AND f.proname = w.fn_name AND f.pronargs = 0
LEFT JOIN pg_trigger r ON r.tgrelid = c.oid AND r.tgname = w.row_trigger
LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = w.truncate_trigger
ORDER BY w.i";

const COLUMNS_SQL: &str = "\
SELECT a.attrelid, a.attname::text, t.typname::text, t.typtype = 'e'
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped";

/// Reads every watched table of `plan` and what capture on `channel` installed on it, in
/// the plan's order: two catalog queries, whatever the number of tables.
pub(crate) async fn observe(
    client: &impl GenericClient,
    plan: &CapturePlan,
    channel: &str,
) -> Result<Vec<LiveTable>, tokio_postgres::Error> {
    let tables: Vec<&TablePlan> = plan.tables().collect();
    let column =
        |f: &dyn Fn(&TablePlan) -> String| -> Vec<String> { tables.iter().map(|t| f(t)).collect() };
    let params = [
        column(&|t| t.qualified()),
        column(&|t| t.pg_schema().to_owned()),
        column(&|t| object_name(t, channel, Object::Function)),
        column(&|t| object_name(t, channel, Object::RowTrigger)),
        column(&|t| object_name(t, channel, Object::TruncateTrigger)),
        column(&legacy_trigger_name),
        column(&|t| t.table.schema_or_public().to_owned()),
        column(&legacy_function_name),
    ];
    let rows = client
        .query(
            INSTALLED_SQL,
            &[
                &params[0], &params[1], &params[2], &params[3], &params[4], &params[5], &params[6],
                &params[7],
            ],
        )
        .await?;
    let trigger = |row: &tokio_postgres::Row, at: usize| -> Option<LiveTrigger> {
        let enabled: Option<String> = row.get(at);
        enabled.map(|enabled| LiveTrigger {
            version: (row.get(at + 4), row.get(at + 5)),
            enabled,
            calls_ours: row.get::<_, Option<bool>>(at + 1).unwrap_or(false),
            kind: row.get(at + 2),
            plain: row.get::<_, Option<bool>>(at + 3).unwrap_or(false),
        })
    };
    let mut live: Vec<LiveTable> = rows
        .iter()
        .map(|row| LiveTable {
            oid: row.get(0),
            function: row.get::<_, bool>(1).then(|| LiveFunction {
                comment: row.get(2),
                source: row.get(3),
                config: row.get::<_, Option<Vec<String>>>(4).unwrap_or_default(),
            }),
            row_trigger: trigger(row, 5),
            truncate_trigger: trigger(row, 11),
            legacy_trigger: row.get::<_, Option<bool>>(17).unwrap_or(false),
            legacy_function: row.get(18),
            columns: HashMap::new(),
        })
        .collect();
    let oids: Vec<u32> = live.iter().filter_map(|t| t.oid).collect();
    let mut columns = columns(client, &oids).await?;
    for table in &mut live {
        if let Some(found) = table.oid.and_then(|oid| columns.remove(&oid)) {
            table.columns = found;
        }
    }
    Ok(live)
}

/// The columns of the tables `oids`, by table and name.
pub(crate) async fn columns(
    client: &impl GenericClient,
    oids: &[u32],
) -> Result<HashMap<u32, HashMap<String, LiveColumn>>, tokio_postgres::Error> {
    let mut tables: HashMap<u32, HashMap<String, LiveColumn>> = HashMap::new();
    for row in client.query(COLUMNS_SQL, &[&oids]).await? {
        tables.entry(row.get(0)).or_default().insert(
            row.get(1),
            LiveColumn {
                typname: row.get(2),
                is_enum: row.get(3),
            },
        );
    }
    Ok(tables)
}
