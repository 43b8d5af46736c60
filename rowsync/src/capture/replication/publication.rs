//! The publication: made to publish exactly the watched tables (or checked, when someone
//! else manages it), and dropped. Names are quoted as identifiers, values bound.

use std::collections::BTreeSet;

use tokio_postgres::{Client, GenericClient};

use super::config::ReplicationConfig;
use super::setup::database;
use crate::capture::plan::CapturePlan;
use crate::error::ReplicationError;
use crate::schema::quote_ident;

/// Key of the advisory lock taken while the publication is created or changed, so that two
/// hubs starting at once queue instead of failing ("tuple concurrently updated"). The bytes
/// spell `rowspub`.
const PUBLICATION_LOCK: i64 = 0x0072_6f77_7370_7562;

/// `CREATE PUBLICATION` for the watched tables: what [`publish`] runs on a database that
/// has none, for migrations you manage yourself.
pub(crate) fn publication_sql(name: &str, plan: &CapturePlan) -> String {
    let tables = table_names(plan);
    format!(
        "CREATE PUBLICATION {} FOR TABLE {};\n",
        quote_ident(name),
        tables.join(", ")
    )
}

/// The watched tables as SQL names: by the schema each was found in at start; offline, as
/// declared (the search path finds it).
fn table_names(plan: &CapturePlan) -> Vec<String> {
    plan.tables()
        .map(|t| match t.found_in {
            Some(_) => t.qualified(),
            None => t.table.to_string(),
        })
        .collect()
}

/// The watched tables as `(schema, name)`.
fn wanted(plan: &CapturePlan) -> BTreeSet<(String, String)> {
    plan.tables()
        .map(|t| (t.pg_schema().to_owned(), t.table.name.to_owned()))
        .collect()
}

/// Makes the publication publish exactly the watched tables, every operation (creates it
/// if missing; touches nothing when it already does).
pub(crate) async fn publish(
    client: &mut Client,
    config: &ReplicationConfig,
    plan: &CapturePlan,
) -> Result<(), ReplicationError> {
    let name = &config.publication;
    let failed = |source| ReplicationError::Publication {
        publication: name.clone(),
        source,
    };
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PUBLICATION_LOCK])
        .await
        .map_err(failed)?;
    let found = tx
        .query_opt(
            "SELECT puballtables, pubinsert AND pubupdate AND pubdelete AND pubtruncate \
             FROM pg_publication WHERE pubname = $1",
            &[name],
        )
        .await
        .map_err(failed)?;
    let quoted = quote_ident(name);
    // a table resolved at start by its schema; offline, as declared (the search path finds it)
    let tables = table_names(plan);
    match found {
        None => {
            tracing::info!(publication = %name, "creating the publication");
            tx.batch_execute(&publication_sql(name, plan))
                .await
                .map_err(failed)?;
        }
        Some(row) => {
            let (all_tables, every_op): (bool, bool) = (row.get(0), row.get(1));
            if !all_tables && published(&tx, name).await.map_err(failed)? != wanted(plan) {
                tracing::info!(publication = %name, "setting the publication's tables");
                tx.batch_execute(&format!(
                    "ALTER PUBLICATION {quoted} SET TABLE {}",
                    tables.join(", ")
                ))
                .await
                .map_err(failed)?;
            }
            if !every_op {
                tx.batch_execute(&format!(
                    "ALTER PUBLICATION {quoted} SET (publish = 'insert, update, delete, truncate')"
                ))
                .await
                .map_err(failed)?;
            }
        }
    }
    tx.commit().await.map_err(failed)
}

/// The tables a publication publishes.
async fn published(
    client: &impl GenericClient,
    name: &str,
) -> Result<BTreeSet<(String, String)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables \
             WHERE pubname = $1",
            &[&name],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Checks that a publication someone else manages publishes every watched table.
pub(crate) async fn check_publication(
    client: &Client,
    config: &ReplicationConfig,
    plan: &CapturePlan,
) -> Result<(), ReplicationError> {
    let has = published(client, &config.publication)
        .await
        .map_err(database("reading the publication's tables"))?;
    let missing: Vec<String> = wanted(plan)
        .difference(&has)
        .map(|(schema, name)| format!("{}.{}", quote_ident(schema), quote_ident(name)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ReplicationError::PublicationMissing {
            publication: config.publication.clone(),
            tables: missing,
        })
    }
}

/// Drops the publication if it exists.
pub(crate) async fn drop_publication(client: &Client, name: &str) -> Result<(), ReplicationError> {
    client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(name)))
        .await
        .map_err(database("dropping the publication"))
}
