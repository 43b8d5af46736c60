//! The query builder: `db.query::<Person>().filter(..).preload([..]).all().await`.

use std::any::TypeId;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use postgres_types::ToSql;

use super::pg_value::QueryRow;
use super::preload::preload;
use super::related_sql::order_clause;
use super::{Db, Executor};
use crate::error::{LoadError, SchemaError};
use crate::graph::PreloadTree;
use crate::schema::{column_index, quote_ident, Filter, Key, OrderBy, Schema, SortOrder, Value};

/// Where a query runs.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    Pool(&'a deadpool_postgres::Pool),
    Executor(&'a dyn Executor),
}

/// A query for rows of `S` with preloaded associations. Build it with
/// [`Db::query`](crate::Db::query) or [`query`](crate::query), then run it with
/// [`all`](Query::all), [`one`](Query::one) or [`get`](Query::get).
///
/// Root rows are ordered by the given `order_by` terms, then by primary key; associations
/// are loaded with one query per association level (like Ecto's preload).
#[must_use = "a query does nothing until `all`, `one` or `get` is awaited"]
pub struct Query<'a, S> {
    source: Source<'a>,
    filters: Vec<Filter>,
    preloads: Vec<String>,
    order_by: Vec<(String, SortOrder)>,
    limit: Option<i64>,
    _schema: PhantomData<fn() -> S>,
}

impl<'a, S: Schema> Query<'a, S> {
    pub(crate) fn new(source: Source<'a>) -> Self {
        Query {
            source,
            filters: Vec::new(),
            preloads: Vec::new(),
            order_by: Vec::new(),
            limit: None,
            _schema: PhantomData,
        }
    }

    /// Keeps rows matching `filter` (several calls combine with AND).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Preloads associations by dotted path, e.g. `["posts.tags", "profile"]`.
    pub fn preload<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        self.preloads
            .extend(paths.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Orders by a column, ascending.
    pub fn order_by(mut self, column: impl Into<String>) -> Self {
        self.order_by.push((column.into(), SortOrder::Asc));
        self
    }

    /// Orders by a column, descending.
    pub fn order_by_desc(mut self, column: impl Into<String>) -> Self {
        self.order_by.push((column.into(), SortOrder::Desc));
        self
    }

    /// Returns at most `n` rows.
    pub fn limit(mut self, n: i64) -> Self {
        self.limit = Some(n);
        self
    }

    /// All matching rows, with their preloads.
    pub async fn all(self) -> Result<Vec<S>, LoadError> {
        let tree = PreloadTree::parse(S::meta(), &self.preloads)?;
        let (sql, params) = self.root_sql()?;
        match self.source {
            Source::Executor(exec) => load_with(exec, &sql, &params, &tree).await,
            Source::Pool(pool) => {
                let conn = pool.get().await.map_err(LoadError::Pool)?;
                load_with(&conn, &sql, &params, &tree).await
            }
        }
    }

    /// The only matching row, if any; more than one is [`LoadError::MultipleRows`].
    pub async fn one(self) -> Result<Option<S>, LoadError> {
        let mut rows = self.limit(2).all().await?;
        match rows.len() {
            0 | 1 => Ok(rows.pop()),
            count => Err(LoadError::MultipleRows {
                table: S::meta().table.to_string(),
                count,
            }),
        }
    }

    /// The row with primary key `key`, if it exists (and matches the filters).
    pub async fn get(self, key: impl Into<Key>) -> Result<Option<S>, LoadError> {
        let key = key.into();
        let meta = S::meta();
        if key.0.len() != meta.primary_key.len() {
            return Err(SchemaError::KeyArity {
                schema: meta.name,
                expected: meta.primary_key.len(),
                found: key.0.len(),
            }
            .into());
        }
        let mut query = self;
        for (&i, value) in meta.primary_key.iter().zip(key.0) {
            query = query.filter(Filter::eq(meta.columns[i].name, value));
        }
        query.one().await
    }

    fn root_sql(&self) -> Result<(String, Vec<Value>), SchemaError> {
        let meta = S::meta();
        let mut params = Vec::new();
        let mut conditions = Vec::new();
        for filter in &self.filters {
            for column in filter.columns() {
                column_index(meta, column)?;
            }
            conditions.push(format!("({})", filter.to_sql("t0", &mut params)));
        }
        let mut order_by = Vec::new();
        for (column, order) in &self.order_by {
            let i = column_index(meta, column)?;
            order_by.push(OrderBy {
                column: meta.columns[i].name,
                order: *order,
            });
        }
        let mut sql = select_from::<S>().to_string();
        if !conditions.is_empty() {
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        sql.push_str(&format!(
            " ORDER BY {}",
            order_clause("t0", &order_by, meta)
        ));
        if let Some(n) = self.limit {
            params.push(Value::I64(n));
            sql.push_str(&format!(" LIMIT ${}", params.len()));
        }
        Ok((sql, params))
    }
}

/// `SELECT t0."col", .. FROM "table" AS t0` for `S`, built once per schema.
///
/// why: sync loads changed rows one by one, and formatting the column list was a tenth of
/// the CPU of such a load.
fn select_from<S: Schema>() -> Arc<str> {
    static BUILT: OnceLock<Mutex<HashMap<TypeId, Arc<str>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock();
    built
        .entry(TypeId::of::<S>())
        .or_insert_with(|| {
            let meta = S::meta();
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

/// The rows of `S` whose single-column primary key is one of `keys`, in one query.
pub(crate) async fn by_keys<S: Schema>(db: &Db, keys: Vec<Value>) -> Result<Vec<S>, LoadError> {
    let meta = S::meta();
    let [pk] = meta.primary_key else {
        return Err(SchemaError::KeyArity {
            schema: meta.name,
            expected: meta.primary_key.len(),
            found: 1,
        }
        .into());
    };
    let sql = format!(
        "{} WHERE t0.{} = ANY($1)",
        select_from::<S>(),
        quote_ident(meta.columns[*pk].name)
    );
    let conn = db.pool().get().await.map_err(LoadError::Pool)?;
    let rows = conn
        .query_rows(&sql, &[&keys])
        .await
        .map_err(|source| LoadError::Database {
            table: meta.table.to_string(),
            source,
        })?;
    rows.iter()
        .map(|row| S::from_row(&mut QueryRow(row)))
        .collect::<Result<Vec<S>, _>>()
        .map_err(|cause| LoadError::Decode {
            table: meta.table.to_string(),
            cause,
        })
}

async fn load_with<S: Schema>(
    exec: &dyn Executor,
    sql: &str,
    params: &[Value],
    tree: &PreloadTree,
) -> Result<Vec<S>, LoadError> {
    let table = || S::meta().table.to_string();
    let params: Vec<&(dyn ToSql + Sync)> =
        params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let rows = exec
        .query_rows(sql, &params)
        .await
        .map_err(|source| LoadError::Database {
            table: table(),
            source,
        })?;
    let mut out = rows
        .iter()
        .map(|row| S::from_row(&mut QueryRow(row)))
        .collect::<Result<Vec<S>, _>>()
        .map_err(|cause| LoadError::Decode {
            table: table(),
            cause,
        })?;
    preload(&mut out, tree, exec).await?;
    Ok(out)
}

/// Loads associations into rows you already hold, e.g. `preload_into(&mut people,
/// ["posts.tags"], &client)`.
pub async fn preload_into<S: Schema, P: AsRef<str>>(
    rows: &mut [S],
    paths: impl IntoIterator<Item = P>,
    exec: &dyn Executor,
) -> Result<(), LoadError> {
    let tree = PreloadTree::parse(S::meta(), paths)?;
    preload(rows, &tree, exec).await
}
