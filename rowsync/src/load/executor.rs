//! What a query runs on: a client, a transaction, or a pooled connection.

use futures_util::future::BoxFuture;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Something that runs a query and returns its rows.
///
/// Implemented for `tokio_postgres::Client`, `tokio_postgres::Transaction` and
/// `deadpool_postgres::Object` (which caches prepared statements).
pub trait Executor: Send + Sync {
    /// Runs `sql` with `params`.
    fn query_rows<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Vec<Row>, tokio_postgres::Error>>;
}

impl Executor for tokio_postgres::Client {
    fn query_rows<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Vec<Row>, tokio_postgres::Error>> {
        Box::pin(self.query(sql, params))
    }
}

impl Executor for tokio_postgres::Transaction<'_> {
    fn query_rows<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Vec<Row>, tokio_postgres::Error>> {
        Box::pin(self.query(sql, params))
    }
}

impl Executor for deadpool_postgres::Object {
    fn query_rows<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a (dyn ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Vec<Row>, tokio_postgres::Error>> {
        Box::pin(async move {
            let statement = self.prepare_cached(sql).await?;
            self.query(&statement, params).await
        })
    }
}
