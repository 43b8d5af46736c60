//! A transaction snapshot (`pg_current_snapshot()`) and the visibility rule for committed
//! transactions, on the client.

use std::fmt;

use tokio_postgres::IsolationLevel;

use super::query::QuerySpec;
use super::{query, Access, Db};
use crate::error::{DecodeError, LoadError};
use crate::schema::{Filter, Key, Schema, Value};

/// Which transactions a load saw: those that committed before its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Every transaction below this had ended when the snapshot was taken.
    pub xmin: u64,
    /// No transaction from this one on had ended.
    pub xmax: u64,
    /// Transactions in progress at the snapshot (between `xmin` and `xmax`).
    pub xip: Vec<u64>,
}

/// A snapshot text that is not `xmin:xmax:xip,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotParseError(pub String);

impl fmt::Display for SnapshotParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed snapshot `{}`", self.0)
    }
}

impl std::error::Error for SnapshotParseError {}

impl Snapshot {
    /// Parses PostgreSQL's text form, e.g. `10:20:10,14,15`.
    pub fn parse(text: &str) -> Result<Snapshot, SnapshotParseError> {
        let bad = || SnapshotParseError(text.chars().take(80).collect());
        let mut parts = text.trim().splitn(3, ':');
        let xmin = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xmax = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xip = match parts.next() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<Result<Vec<u64>, _>>()?,
        };
        if xmin > xmax || xip.iter().any(|&x| x < xmin || x >= xmax) {
            return Err(bad());
        }
        Ok(Snapshot { xmin, xmax, xip })
    }

    /// Whether a transaction known to have committed is visible in this snapshot, i.e. its
    /// changes are already in data loaded under it.
    pub fn sees(&self, xid: u64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.xip.contains(&xid))
    }
}

/// Which rows a load under a snapshot reads.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// The rows the query selects; `single` refuses more than one.
    Query { spec: QuerySpec, single: bool },
    /// The rows with these keys (those that exist), with `preloads`.
    Keys {
        keys: Vec<Key>,
        preloads: Vec<String>,
    },
}

/// Reads `selection` in one REPEATABLE READ transaction and returns the rows with the
/// snapshot they were read under: every transaction visible in it is in the rows, every
/// other one is not.
pub(crate) async fn rows_under_snapshot<S: Schema>(
    db: &Db,
    selection: &Selection,
    access: Option<&Access>,
) -> Result<(Snapshot, Vec<S>), LoadError> {
    let table = S::meta().table.to_string();
    let database = |error| LoadError::Database {
        table: table.clone(),
        error,
    };
    let mut conn = db.pool().get().await.map_err(LoadError::Pool)?;
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(database)?;
    // why first: the snapshot of a REPEATABLE READ transaction is taken at its first
    // statement, so this is the snapshot the queries below read under.
    let text: String = tx
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await
        .map_err(database)?
        .get(0);
    let snapshot = Snapshot::parse(&text).map_err(|e| LoadError::Decode {
        table: table.clone(),
        cause: DecodeError::Malformed {
            message: e.to_string(),
        },
    })?;
    // after the snapshot: `set_config` is a SELECT, and would take it
    if let Some(access) = access {
        access.apply(&*tx).await?;
    }
    let rows = match selection {
        Selection::Query { spec, single } => {
            let mut q = query::<S>(&*tx);
            q.spec = spec.clone();
            // taken on above, for the whole transaction: the scope is left
            q.spec.access = access.and_then(Access::scope_only);
            if *single {
                q.one().await?.into_iter().collect()
            } else {
                q.all().await?
            }
        }
        Selection::Keys { keys, preloads } => {
            let meta = S::meta();
            match meta.single_key_column() {
                Some(column) => {
                    let values: Vec<Value> = keys.iter().map(|k| k.0[0].clone()).collect();
                    let mut q = query::<S>(&*tx)
                        .filter(Filter::in_list(column, values))
                        .preload(preloads);
                    q.spec.access = access.and_then(Access::scope_only);
                    q.all().await?
                }
                None => {
                    let mut rows = Vec::new();
                    for key in keys {
                        let mut q = query::<S>(&*tx).preload(preloads);
                        q.spec.access = access.and_then(Access::scope_only);
                        rows.extend(q.get(key.clone()).await?);
                    }
                    rows
                }
            }
        }
    };
    tx.commit().await.map_err(database)?;
    Ok((snapshot, rows))
}

/// Waits, up to `patience`, until every transaction of `xids` is visible to a snapshot
/// taken now; false when they did not become so in time, or the database could not say.
///
/// why: a replication stream can hand over a transaction a moment before the server shows
/// it to other sessions; a read made then would see, and cache for every holder, the rows
/// as they were before it.
pub(crate) async fn wait_visible(db: &Db, xids: &[u64], patience: std::time::Duration) -> bool {
    let mut xids: Vec<String> = xids.iter().map(u64::to_string).collect();
    xids.sort();
    xids.dedup();
    let Ok(conn) = db.pool().get().await else {
        return false;
    };
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        let visible = conn
            .query_one(VISIBLE_SQL, &[&xids])
            .await
            .ok()
            .and_then(|row| row.get::<_, Option<bool>>(0));
        match visible {
            Some(true) => return true,
            None => return false,
            Some(false) if tokio::time::Instant::now() >= deadline => return false,
            Some(false) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
        }
    }
}

/// Whether every transaction of `$1` (xid8 as text) is visible to a snapshot taken now.
const VISIBLE_SQL: &str = "\
SELECT bool_and(pg_visible_in_snapshot(x::xid8, pg_current_snapshot()))
FROM unnest($1::text[]) AS x";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_before_is_visible_in_progress_and_later_are_not() {
        let s = Snapshot::parse("10:20:12,15").unwrap();
        assert!(s.sees(9));
        assert!(s.sees(10) && s.sees(19));
        assert!(!s.sees(12) && !s.sees(15));
        assert!(!s.sees(20) && !s.sees(99));
        assert_eq!(Snapshot::parse("5:5:").unwrap().xip, Vec::<u64>::new());
    }

    #[test]
    fn malformed_text_is_an_error() {
        for text in ["", "1", "1:x", "5:3:", "1:5:9", "1:5:a", "1:5:2,"] {
            assert!(Snapshot::parse(text).is_err(), "{text}");
        }
    }
}
