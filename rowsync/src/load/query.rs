//! The query builder: `db.query::<Person>().filter(..).preload([..]).all().await`.

use std::marker::PhantomData;

use tokio_postgres::types::ToSql;

use super::image::select_list;
use super::pg_value::QueryRow;
use super::preload::preload;
use super::related_sql::order_clause;
use super::Executor;
use crate::error::{LoadError, SchemaError};
use crate::graph::PreloadTree;
use crate::schema::{column_index, Filter, Key, OrderBy, Schema, SchemaMeta, SortOrder, Value};

/// Where a query runs.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    Pool(&'a deadpool_postgres::Pool),
    Executor(&'a dyn Executor),
}

/// What a query selects: filters, preloads, order and limit. One spec serves every way of
/// running a query (once with [`Query::all`], or followed live).
#[derive(Debug, Clone, Default)]
pub(crate) struct QuerySpec {
    pub filters: Vec<Filter>,
    pub preloads: Vec<String>,
    pub order_by: Vec<(String, SortOrder)>,
    pub limit: Option<i64>,
    /// Who is asking: the role and settings the query runs under.
    pub access: Option<super::Access>,
}

impl QuerySpec {
    /// The filters as one (`None` when there are none).
    pub fn filter(&self) -> Option<Filter> {
        match self.filters.len() {
            0 => None,
            1 => Some(self.filters[0].clone()),
            _ => Some(Filter::and(self.filters.clone())),
        }
    }

    /// The order terms, checked against `meta`.
    pub fn order(&self, meta: &'static SchemaMeta) -> Result<Vec<OrderBy>, SchemaError> {
        self.order_by
            .iter()
            .map(|(column, order)| {
                let i = column_index(meta, column)?;
                Ok(OrderBy {
                    column: meta.columns[i].name,
                    order: *order,
                })
            })
            .collect()
    }
}

/// What a query yields, for its type parameters alone (it holds no `S`).
type RowsOf<'a, S> = (&'a (), fn() -> S);

/// Runs a query once, on a pool or on a connection you hold (the default mode of
/// [`Query`]).
pub struct Fetch<'a>(Source<'a>);

/// A query for rows of `S` with preloaded associations. Build it with
/// [`Db::query`](crate::Db::query) or [`query`](crate::query), then run it with
/// [`all`](Query::all), [`one`](Query::one) or [`get`](Query::get); the same builder, in
/// the mode a hub's `live()` gives it, is a [`LiveQuery`](crate::LiveQuery).
///
/// Root rows are ordered by the given `order_by` terms, then by primary key; associations
/// are loaded with one query per association level (like Ecto's preload).
#[must_use = "a query does nothing until it is run"]
pub struct Query<'a, S, M = Fetch<'a>> {
    pub(crate) mode: M,
    pub(crate) spec: QuerySpec,
    _schema: PhantomData<RowsOf<'a, S>>,
}

impl<'a, S: Schema, M> Query<'a, S, M> {
    pub(crate) fn with_mode(mode: M) -> Self {
        Query {
            mode,
            spec: QuerySpec::default(),
            _schema: PhantomData,
        }
    }

    /// Keeps rows matching `filter` (several calls combine with AND). A followed query's
    /// rows start and stop belonging as they start and stop matching it.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.spec.filters.push(filter);
        self
    }

    /// Preloads associations by dotted path, e.g. `["posts.tags", "profile"]`.
    pub fn preload<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        self.spec
            .preloads
            .extend(paths.into_iter().map(|p| p.as_ref().to_owned()));
        self
    }

    /// Orders by a column, ascending (then by primary key); a followed list keeps inserted
    /// rows in this order.
    pub fn order_by(mut self, column: impl Into<String>) -> Self {
        self.spec.order_by.push((column.into(), SortOrder::Asc));
        self
    }

    /// Runs the query under an access context: the role and settings row-level security
    /// policies read, at every level of its preloads (a followed query's reads too).
    pub fn access(mut self, access: super::Access) -> Self {
        self.spec.access = Some(access);
        self
    }

    /// Orders by a column, descending.
    pub fn order_by_desc(mut self, column: impl Into<String>) -> Self {
        self.spec.order_by.push((column.into(), SortOrder::Desc));
        self
    }
}

impl<'a, S: Schema> Query<'a, S> {
    pub(crate) fn new(source: Source<'a>) -> Self {
        Query::with_mode(Fetch(source))
    }

    /// Returns at most `n` rows.
    pub fn limit(mut self, n: i64) -> Self {
        self.spec.limit = Some(n);
        self
    }

    /// All matching rows, with their preloads.
    pub async fn all(self) -> Result<Vec<S>, LoadError> {
        let tree = PreloadTree::parse(S::meta(), &self.spec.preloads)?;
        let mut spec = self.spec;
        let scope = match &spec.access {
            Some(access) => {
                access.validate()?;
                access.check_scope(S::meta(), &tree)?;
                access.scope_arc()
            }
            None => None,
        };
        if let Some(scope) = &scope {
            spec.filters.push(Filter::clone(scope));
        }
        let (sql, params) = root_sql::<S>(&spec)?;
        let access = spec.access.as_ref().and_then(super::Access::reads_as);
        let rows = match self.mode.0 {
            Source::Executor(exec) => {
                if let Some(access) = &access {
                    access.apply_held(exec).await?;
                }
                load_with(exec, &sql, &params, &tree).await?
            }
            Source::Pool(pool) => {
                let conn = super::ReadConn::open_on(pool, access.as_ref()).await?;
                let rows = load_with(conn.exec(), &sql, &params, &tree).await?;
                conn.finish().await?;
                rows
            }
        };
        Ok(match &scope {
            Some(scope) => super::scope::keep_in_scope(rows, scope),
            None => rows,
        })
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
        let filter = key_filter(S::meta(), key.into())?;
        self.filter(filter).one().await
    }
}

/// The filter selecting the row with `key`.
pub(crate) fn key_filter(meta: &'static SchemaMeta, key: Key) -> Result<Filter, SchemaError> {
    if key.0.len() != meta.primary_key.len() {
        return Err(SchemaError::KeyArity {
            schema: meta.name,
            expected: meta.primary_key.len(),
            found: key.0.len(),
        });
    }
    let mut terms: Vec<Filter> = meta
        .primary_key
        .iter()
        .zip(key.0)
        .map(|(&i, value)| Filter::eq(meta.columns[i].name, value))
        .collect();
    Ok(if terms.len() == 1 {
        terms.remove(0)
    } else {
        Filter::and(terms)
    })
}

/// The root query of `spec`: SQL and parameters.
fn root_sql<S: Schema>(spec: &QuerySpec) -> Result<(String, Vec<Value>), SchemaError> {
    let meta = S::meta();
    let mut params = Vec::new();
    let mut conditions = Vec::new();
    for filter in &spec.filters {
        for column in filter.columns() {
            column_index(meta, column)?;
        }
        conditions.push(format!("({})", filter.to_sql("t0", &mut params)));
    }
    let order_by = spec.order(meta)?;
    let mut sql = select_list(meta).to_string();
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    sql.push_str(&format!(
        " ORDER BY {}",
        order_clause("t0", &order_by, meta)
    ));
    if let Some(n) = spec.limit {
        params.push(Value::I64(n));
        sql.push_str(&format!(" LIMIT ${}", params.len()));
    }
    Ok((sql, params))
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
        .map_err(|error| LoadError::Database {
            table: table(),
            error,
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
