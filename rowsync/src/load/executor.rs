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

/// The id of the transaction `exec` runs in (`pg_current_xact_id()`, assigning one if it has
/// none yet): what [`Hub::wait_for`](crate::Hub::wait_for) and
/// [`Live::wait_for`](crate::Live::wait_for) take after the transaction committed.
pub async fn current_xid(exec: &dyn Executor) -> Result<u64, crate::error::LoadError> {
    let rows = exec
        .query_rows("SELECT pg_current_xact_id()::text", &[])
        .await
        .map_err(|error| crate::error::LoadError::Database {
            table: "pg_current_xact_id()".to_owned(),
            error,
        })?;
    let text: Option<String> = rows.first().and_then(|r| r.try_get(0).ok());
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| crate::error::LoadError::Decode {
            table: "pg_current_xact_id()".to_owned(),
            cause: crate::error::DecodeError::Malformed {
                message: "not a transaction id".to_owned(),
            },
        })
}
