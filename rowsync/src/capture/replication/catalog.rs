//! The watched tables as the catalog describes them at start: each column's type (what
//! Relation messages are checked against) and the table's replica identity (which old
//! values updates and deletes will carry).

use std::collections::HashMap;

use tokio_postgres::Client;

use super::setup::database;
use crate::capture::plan::CapturePlan;
use crate::error::ReplicationError;
use crate::load::PgType;
use crate::schema::TableName;

/// Every watched table's columns and replica identity.
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    pub tables: HashMap<TableName, CatalogTable>,
}

/// One table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CatalogTable {
    /// Columns by name.
    pub columns: HashMap<String, CatalogColumn>,
    /// `relreplident`: `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub identity: char,
    /// The columns an old key tuple carries (primary key, or the identity index); empty
    /// for `f` (every column) and `n`.
    pub identity_columns: Vec<String>,
}

/// One column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CatalogColumn {
    /// `atttypid`: what a Relation message sends as the column's type.
    pub type_oid: u32,
    /// The type, as values are decoded.
    pub ty: PgType,
    /// A generated column (never sent by pgoutput).
    pub generated: bool,
}

/// Reads every table of `plan` (the hub's start-up check has made sure they exist).
pub(crate) async fn read(client: &Client, plan: &CapturePlan) -> Result<Catalog, ReplicationError> {
    let mut catalog = Catalog::default();
    for table in plan.tables().map(|t| t.table) {
        let name = table.to_string();
        let rows = client
            .query(
                "SELECT a.attname::text, a.atttypid, t.typname::text, t.typtype = 'e', \
                        a.attgenerated <> '' \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                &[&name],
            )
            .await
            .map_err(database("reading the columns of a watched table"))?;
        let columns = rows
            .iter()
            .map(|r| {
                let column = CatalogColumn {
                    type_oid: r.get(1),
                    ty: PgType::from_catalog(r.get(2), r.get(3)),
                    generated: r.get(4),
                };
                (r.get::<_, String>(0), column)
            })
            .collect();
        let identity = client
            .query_one(
                "SELECT c.relreplident::text, coalesce(( \
                     SELECT array_agg(a.attname::text ORDER BY a.attnum) \
                     FROM pg_index i \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = c.oid AND CASE c.relreplident \
                         WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident \
                         ELSE false END), '{}') \
                 FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&name],
            )
            .await
            .map_err(database("reading the replica identity of a watched table"))?;
        let kind: String = identity.get(0);
        catalog.tables.insert(
            table,
            CatalogTable {
                columns,
                identity: kind.chars().next().unwrap_or('n'),
                identity_columns: identity.get(1),
            },
        );
    }
    Ok(catalog)
}

/// Every watched table whose updates or deletes could not be captured: no replica identity
/// (once published, `UPDATE` and `DELETE` on it would fail in the writer), or one that does
/// not carry the key rowsync identifies its rows by.
pub(crate) fn identity_problems(plan: &CapturePlan, catalog: &Catalog) -> Vec<String> {
    let mut problems = Vec::new();
    for plan in plan.tables() {
        let Some(table) = catalog.tables.get(&plan.table) else {
            continue;
        };
        let name = plan.table;
        match table.identity {
            'f' => {}
            'n' => problems.push(format!(
                "{name}: REPLICA IDENTITY NOTHING; updates and deletes of it cannot be \
                 published (and fail in the writer once it is): ALTER TABLE {name} REPLICA \
                 IDENTITY DEFAULT (with a primary key) or FULL"
            )),
            _ if table.identity_columns.is_empty() => problems.push(format!(
                "{name} has no primary key; once published, UPDATE and DELETE on it fail in \
                 the writer: add a primary key, or ALTER TABLE {name} REPLICA IDENTITY FULL"
            )),
            _ => {
                let missing: Vec<&str> = plan
                    .key
                    .iter()
                    .filter(|k| !table.identity_columns.iter().any(|c| c == *k))
                    .copied()
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!(
                        "{name}: its replica identity ({}) lacks key column(s) {}, so deletes \
                         could not say which row went: ALTER TABLE {name} REPLICA IDENTITY FULL",
                        table.identity_columns.join(", "),
                        missing.join(", ")
                    ));
                }
            }
        }
    }
    problems
}

/// Watched tables whose updates and deletes must send old values the identity does not:
/// routing columns outside it. The trigger capture sends old routing values; so must this
/// one, or a row moving away from a parent (a changed foreign key, a delete) would not reach
/// the old parent's holders, nor `has_many through` owners. `FULL` sends them.
pub(crate) fn needs_full(plan: &CapturePlan, catalog: &Catalog) -> Vec<TableName> {
    plan.tables()
        .filter(|plan| {
            catalog.tables.get(&plan.table).is_some_and(|table| {
                table.identity != 'f'
                    && plan
                        .routes
                        .iter()
                        .any(|r| !table.identity_columns.iter().any(|c| c == r))
            })
        })
        .map(|plan| plan.table)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::plan::TablePlan;

    fn plan(name: &'static str, key: &[&'static str]) -> CapturePlan {
        routed(name, key, &[])
    }

    fn routed(name: &'static str, key: &[&'static str], routes: &[&'static str]) -> CapturePlan {
        CapturePlan::from_tables([TablePlan {
            table: TableName { schema: None, name },
            key: key.to_vec(),
            routes: routes.to_vec(),
            types: Vec::new(),
            found_in: None,
        }])
    }

    fn catalog(name: &'static str, identity: char, columns: &[&str]) -> Catalog {
        let mut catalog = Catalog::default();
        catalog.tables.insert(
            TableName { schema: None, name },
            CatalogTable {
                columns: HashMap::new(),
                identity,
                identity_columns: columns.iter().map(|c| c.to_string()).collect(),
            },
        );
        catalog
    }

    #[test]
    fn a_primary_key_or_full_identity_fits() {
        assert!(identity_problems(&plan("t", &["id"]), &catalog("t", 'd', &["id"])).is_empty());
        assert!(identity_problems(&plan("t", &["id"]), &catalog("t", 'f', &[])).is_empty());
        assert!(
            identity_problems(&plan("t", &["a", "b"]), &catalog("t", 'i', &["b", "a"])).is_empty()
        );
    }

    #[test]
    fn no_identity_or_one_without_the_key_is_a_problem() {
        let nothing = identity_problems(&plan("t", &["id"]), &catalog("t", 'n', &[]));
        assert!(
            nothing[0].contains("REPLICA IDENTITY NOTHING"),
            "{nothing:?}"
        );
        let no_pk = identity_problems(&plan("t", &["id"]), &catalog("t", 'd', &[]));
        assert!(no_pk[0].contains("no primary key"), "{no_pk:?}");
        let other = identity_problems(&plan("t", &["a", "b"]), &catalog("t", 'd', &["id"]));
        assert!(other[0].contains("lacks key column(s) a, b"), "{other:?}");
    }

    #[test]
    fn routing_columns_outside_the_identity_need_full() {
        let t = TableName {
            schema: None,
            name: "t",
        };
        // a join table keyed by its two routing columns: the key tuple sends them
        let join = routed("t", &["a", "b"], &["a", "b"]);
        assert!(needs_full(&join, &catalog("t", 'd', &["a", "b"])).is_empty());
        // a foreign key outside the primary key
        let child = routed("t", &["id"], &["id", "parent_id"]);
        assert_eq!(needs_full(&child, &catalog("t", 'd', &["id"])), [t]);
        assert!(needs_full(&child, &catalog("t", 'f', &[])).is_empty());
    }
}
