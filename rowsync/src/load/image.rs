//! Reading row images: the columns of a schema's table for given keys, in one query, without
//! knowing the Rust type that will hold them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tokio_postgres::types::ToSql;

use super::pg_value::read_value;
use super::Executor;
use crate::error::{LoadError, SchemaError};
use crate::schema::{quote_ident, Key, RowImage, SchemaMeta, Value};

/// `SELECT t0."col", .. FROM "table" AS t0` for a schema, built once per schema.
///
/// why: sync loads changed rows one by one, and formatting the column list was a tenth of
/// the CPU of such a load.
pub(crate) fn select_list(meta: &'static SchemaMeta) -> Arc<str> {
    static BUILT: OnceLock<Mutex<HashMap<usize, Arc<str>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    built
        .lock()
        .entry(meta as *const SchemaMeta as usize)
        .or_insert_with(|| {
            let columns: Vec<String> = meta
                .columns
                .iter()
                .map(|c| format!("t0.{}", quote_ident(c.name)))
                .collect();
            Arc::from(format!(
                "SELECT {} FROM {} AS t0",
                columns.join(", "),
                meta.table
            ))
        })
        .clone()
}

/// The images of the rows of `meta`'s table with these keys (those that exist), in one
/// query: `= ANY($1)` for a one-column key, a row-value list for a composite one.
pub(crate) async fn images(
    exec: &dyn Executor,
    meta: &'static SchemaMeta,
    keys: &[Key],
) -> Result<Vec<RowImage>, LoadError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let width = meta.primary_key.len();
    if let Some(key) = keys.iter().find(|k| k.0.len() != width) {
        return Err(SchemaError::KeyArity {
            schema: meta.name,
            expected: width,
            found: key.0.len(),
        }
        .into());
    }
    let key_columns: Vec<String> = meta
        .primary_key
        .iter()
        .map(|&i| format!("t0.{}", quote_ident(meta.columns[i].name)))
        .collect();
    let database = |error| LoadError::Database {
        table: meta.table.to_string(),
        error,
    };
    let rows = if width == 1 {
        let values: Vec<Value> = keys.iter().map(|k| k.0[0].clone()).collect();
        let sql = format!("{} WHERE {} = ANY($1)", select_list(meta), key_columns[0]);
        exec.query_rows(&sql, &[&values]).await.map_err(database)?
    } else {
        // why a row-value list: a composite key has no array type to bind as one parameter
        let mut tuples = Vec::with_capacity(keys.len());
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(keys.len() * width);
        for key in keys {
            let at = params.len();
            tuples.push(format!(
                "({})",
                (1..=width)
                    .map(|i| format!("${}", at + i))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            params.extend(key.0.iter().map(|v| v as &(dyn ToSql + Sync)));
        }
        let sql = format!(
            "{} WHERE ({}) IN ({})",
            select_list(meta),
            key_columns.join(", "),
            tuples.join(", ")
        );
        exec.query_rows(&sql, &params).await.map_err(database)?
    };
    rows.iter()
        .map(|row| {
            (0..meta.columns.len())
                .map(|i| {
                    read_value(row, i)
                        .map_err(|e| e.in_column(meta.table.name, meta.columns[i].name))
                })
                .collect::<Result<Vec<Value>, _>>()
                .map(RowImage::new)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| LoadError::Decode {
            table: meta.table.to_string(),
            cause,
        })
}
