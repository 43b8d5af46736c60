//! Checking the declared schemas and the capture plan against the live database: at start,
//! where each table is (its schema, found through the search path when not declared) and
//! every missing table, missing column and mistyped column at once; while running, the same
//! comparison for the columns the schemas map (a renamed mapped column makes reads fail).

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::capture::plan::CapturePlan;
use crate::capture::triggers::catalog::{self, LiveColumn};
use crate::error::{HubError, PolicyInput};
use crate::schema::{SchemaMeta, TableName};

/// Where each table was found: its oid, and the schema that holds it.
const RESOLVE_SQL: &str = "\
SELECT c.oid, n.nspname::text
FROM unnest($1::text[]) WITH ORDINALITY AS w(name, i)
LEFT JOIN pg_class c ON c.oid = to_regclass(w.name)
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY w.i";

/// Finds every watched table (recording in the plan the schema it is in), checks every
/// column of the schemas mapping them, then fills the plan's column types. Returns each
/// table's oid, which the running check compares against to notice a table created again.
pub(crate) async fn check_and_type(
    client: &Client,
    plan: &mut CapturePlan,
    schemas: &[&'static SchemaMeta],
) -> Result<HashMap<TableName, u32>, HubError> {
    let database = |action| move |error| HubError::Database { action, error };
    let names: Vec<String> = plan.tables().map(|t| t.table.to_string()).collect();
    let rows = client
        .query(RESOLVE_SQL, &[&names])
        .await
        .map_err(database("looking up the watched tables"))?;
    let mut problems = Vec::new();
    let mut oids = HashMap::new();
    for (table, row) in plan.tables_mut().zip(&rows) {
        match (
            row.get::<_, Option<u32>>(0),
            row.get::<_, Option<String>>(1),
        ) {
            (Some(oid), Some(schema)) => {
                table.found_in = Some(schema);
                oids.insert(table.table, oid);
            }
            _ => problems.push(format!("table {} does not exist", table.table)),
        }
    }
    let all: Vec<u32> = oids.values().copied().collect();
    let columns = catalog::columns(client, &all)
        .await
        .map_err(database("reading the columns of the watched tables"))?;
    let live = |table: &TableName| oids.get(table).and_then(|oid| columns.get(oid));
    for meta in schemas {
        if let Some(columns) = live(&meta.table) {
            problems.extend(
                mapped_findings(meta, columns)
                    .into_iter()
                    .map(|p| format!("{}.{}", meta.table, p)),
            );
        }
    }
    for table in plan.tables_mut() {
        let Some(live) = oids.get(&table.table).and_then(|oid| columns.get(oid)) else {
            continue;
        };
        let mut types = Vec::new();
        for name in table.columns() {
            match live.get(name) {
                Some(c) => types.push(c.pg_type()),
                None => {
                    let prefix = format!("{}.{name}:", table.table);
                    if !problems.iter().any(|p| p.starts_with(&prefix)) {
                        problems.push(format!("{prefix} no such column (needed to route changes)"));
                    }
                }
            }
        }
        table.types = types;
    }
    if problems.is_empty() {
        Ok(oids)
    } else {
        Err(HubError::DatabaseMismatch(problems))
    }
}

/// What no longer fits between `meta`'s mapped columns and the table's `columns`: each as
/// `column: what`, e.g. `name: no such column (field `Person::name`)`.
pub(crate) fn mapped_findings(
    meta: &SchemaMeta,
    columns: &HashMap<String, LiveColumn>,
) -> Vec<String> {
    let mut found = Vec::new();
    for column in meta.columns {
        match columns.get(column.name) {
            None => found.push(format!(
                "{}: no such column (field `{}::{}`)",
                column.name, meta.name, column.field
            )),
            Some(c) => {
                let typname = if c.is_enum {
                    "enum"
                } else {
                    c.typname.as_str()
                };
                if !column.sql_types.contains(&typname) {
                    found.push(format!(
                        "{}: column is `{}`, but field `{}::{}` ({}) decodes from {}",
                        column.name,
                        c.typname,
                        meta.name,
                        column.field,
                        column.rust_type,
                        column.sql_types.join(", ")
                    ));
                }
            }
        }
    }
    found
}

/// The tables the row-level security policies on the watched tables (`$1`) read, besides
/// their own table and the declared policy tables (`$2`): PostgreSQL records every relation
/// a policy's expressions name in `pg_depend`.
const POLICY_INPUTS_SQL: &str = "\
SELECT DISTINCT p.polname::text, p.polrelid::regclass::text, d.refobjid::regclass::text
FROM pg_policy p
JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid
                AND d.refclassid = 'pg_class'::regclass
JOIN pg_class r ON r.oid = d.refobjid AND r.relkind IN ('r', 'p', 'v', 'm', 'f')
WHERE p.polrelid = ANY($1::oid[])
  AND d.refobjid <> p.polrelid
  AND d.refobjid <> ALL($2::oid[])
ORDER BY 2, 1, 3";

/// Fails when a policy on a watched table (`watched`) reads a table that is not a declared
/// policy table (`declared`): a change of it would change what access contexts see
/// without any message. Tables with row-level security and no policy reading elsewhere
/// pass, as do tables without policies.
///
/// why a watched table counts too: its changes reach only the holders of its own rows, and
/// their syncs do not look again at the rows of other tables its change hides or shows.
pub(crate) async fn policy_inputs(
    client: &Client,
    watched: &[u32],
    declared: &[u32],
) -> Result<(), HubError> {
    let rows = client
        .query(POLICY_INPUTS_SQL, &[&watched, &declared])
        .await
        .map_err(|error| HubError::Database {
            action: "looking up what the policies of the watched tables read",
            error,
        })?;
    let inputs: Vec<PolicyInput> = rows
        .iter()
        .map(|row| PolicyInput {
            policy: row.get(0),
            table: row.get(1),
            reads: row.get(2),
        })
        .collect();
    if inputs.is_empty() {
        Ok(())
    } else {
        Err(HubError::UndeclaredPolicyInputs { inputs })
    }
}
