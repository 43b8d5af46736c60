//! Checking the declared schemas and the capture plan against the live database, reporting
//! every missing table, missing column and mistyped column at once.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::capture::plan::CapturePlan;
use crate::error::HubError;
use crate::load::PgType;
use crate::schema::{SchemaMeta, TableName};

struct LiveColumn {
    typname: String,
    is_enum: bool,
}

async fn live_columns(
    client: &Client,
    table: TableName,
) -> Result<Option<HashMap<String, LiveColumn>>, HubError> {
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.to_string()])
        .await
        .map_err(|error| HubError::Database {
            action: "looking up a watched table",
            error,
        })?;
    if !exists.get::<_, bool>(0) {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT a.attname::text, t.typname::text, t.typtype = 'e' \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table.to_string()],
        )
        .await
        .map_err(|error| HubError::Database {
            action: "reading the columns of a watched table",
            error,
        })?;
    Ok(Some(
        rows.iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    LiveColumn {
                        typname: r.get(1),
                        is_enum: r.get(2),
                    },
                )
            })
            .collect(),
    ))
}

/// Checks every watched table and every column of the schemas mapping them, then fills the
/// plan's column types.
pub(crate) async fn check_and_type(
    client: &Client,
    plan: &mut CapturePlan,
    schemas: &[&'static SchemaMeta],
) -> Result<(), HubError> {
    let mut problems = Vec::new();
    let mut live = HashMap::new();
    for table in plan.tables().map(|t| t.table) {
        match live_columns(client, table).await? {
            Some(columns) => {
                live.insert(table, columns);
            }
            None => problems.push(format!("table {table} does not exist")),
        }
    }
    for meta in schemas {
        let Some(columns) = live.get(&meta.table) else {
            continue;
        };
        for column in meta.columns {
            match columns.get(column.name) {
                None => problems.push(format!(
                    "{}.{}: no such column (field `{}::{}`)",
                    meta.table, column.name, meta.name, column.field
                )),
                Some(c) => {
                    let typname = if c.is_enum {
                        "enum"
                    } else {
                        c.typname.as_str()
                    };
                    if !column.sql_types.contains(&typname) {
                        problems.push(format!(
                            "{}.{}: column is `{}`, but field `{}::{}` ({}) decodes from {}",
                            meta.table,
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
    }
    for table in plan.tables_mut() {
        let Some(columns) = live.get(&table.table) else {
            continue;
        };
        let mut types = Vec::new();
        for name in table.columns() {
            match columns.get(name) {
                Some(c) => types.push(PgType::from_catalog(&c.typname, c.is_enum)),
                None => {
                    let problem = format!(
                        "{}.{name}: no such column (needed to route changes)",
                        table.table
                    );
                    if !problems.contains(&problem)
                        && !problems
                            .iter()
                            .any(|p| p.starts_with(&format!("{}.{name}:", table.table)))
                    {
                        problems.push(problem);
                    }
                }
            }
        }
        table.types = types;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(HubError::DatabaseMismatch(problems))
    }
}
