//! A connection pool and the entry points of the loader.

use std::str::FromStr;

use deadpool_postgres::{ManagerConfig, Pool, RecyclingMethod};

use super::query::{Query, Source};
use super::{Executor, Tls};
use crate::error::ConnectError;
use crate::schema::Schema;

/// A pool of database connections that queries run on.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

impl Db {
    /// A pool for `url` (e.g. `postgres://user@localhost/app`). Connections open lazily,
    /// so a wrong host shows up on the first query.
    pub fn connect(url: &str) -> Result<Db, ConnectError> {
        Db::connect_with(url, &Tls::Disabled)
    }

    /// A pool for `url` whose connections use `tls`.
    pub fn connect_with(url: &str, tls: &Tls) -> Result<Db, ConnectError> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
        let manager = tls.manager(
            config,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(ConnectError::Pool)?;
        Ok(Db { pool })
    }

    /// Wraps a pool you built yourself.
    pub fn from_pool(pool: Pool) -> Db {
        Db { pool }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Starts a query for rows of `S`.
    pub fn query<S: Schema>(&self) -> Query<'_, S> {
        Query::new(Source::Pool(&self.pool))
    }
}

/// Starts a query for rows of `S` on a client, transaction or pooled connection you hold
/// (in a transaction, the query sees that transaction's snapshot).
pub fn query<S: Schema>(exec: &dyn Executor) -> Query<'_, S> {
    Query::new(Source::Executor(exec))
}
