//! What capture must watch: every table reachable through the watched associations (join
//! tables included), its key columns, and the columns routing needs (EctoWatch's
//! `extra_columns`): the keys each association joins on.

use std::collections::BTreeMap;

use crate::error::SchemaError;
use crate::graph::hops;
use crate::graph::Graph;
use crate::graph::PreloadTree;
use crate::load::PgType;
use crate::schema::{quote_ident, SchemaMeta, TableName};

/// One watched table.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePlan {
    /// The table.
    pub table: TableName,
    /// Columns identifying a row: the schema's primary key, or a join table's two keys.
    pub key: Vec<&'static str>,
    /// Columns whose values route changes (foreign keys and the columns they point at).
    pub routes: Vec<&'static str>,
    /// Types of `key` then `routes`, in that order; filled from the live database at start.
    pub types: Vec<PgType>,
    /// The PostgreSQL schema the table was found in at start (through the search path when
    /// `table` names none); `None` before that, when `table`'s schema, or `public`, is assumed.
    pub found_in: Option<String>,
}

impl TablePlan {
    /// The plan of `table`, identified by `key`, with changes routed by `routes`.
    pub fn new(table: TableName, key: Vec<&'static str>, routes: Vec<&'static str>) -> TablePlan {
        TablePlan {
            table,
            key,
            routes,
            types: Vec::new(),
            found_in: None,
        }
    }

    fn route(&mut self, column: &'static str) {
        if !self.routes.contains(&column) {
            self.routes.push(column);
        }
    }

    /// Every column the plan reads: key, then routes (a column may appear in both).
    pub fn columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.key.iter().chain(self.routes.iter()).copied()
    }

    /// Every column the plan reads, each once, in [`columns`](Self::columns) order.
    pub fn distinct_columns(&self) -> Vec<&'static str> {
        let mut columns: Vec<&'static str> = Vec::new();
        for column in self.columns() {
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
        columns
    }

    /// The type of a column the plan reads, once filled in.
    pub fn type_of(&self, column: &str) -> Option<&PgType> {
        let index = self.columns().position(|c| c == column)?;
        self.types.get(index)
    }

    /// The PostgreSQL schema the table lives in: where it was found at start, else the
    /// declared one, else `public`.
    pub fn pg_schema(&self) -> &str {
        self.found_in
            .as_deref()
            .unwrap_or_else(|| self.table.schema_or_public())
    }

    /// `"schema"."table"`, qualified by [`pg_schema`](Self::pg_schema): SQL that names the
    /// table this way reaches it whatever the search path.
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(self.pg_schema()),
            quote_ident(self.table.name)
        )
    }
}

/// The tables to capture, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapturePlan {
    tables: BTreeMap<TableName, TablePlan>,
}

impl CapturePlan {
    /// The plan for watched roots, each with the associations loaded under it.
    pub fn new(
        graph: &Graph,
        watches: &[(&'static SchemaMeta, PreloadTree)],
    ) -> Result<CapturePlan, SchemaError> {
        let mut plan = CapturePlan::default();
        for (root, tree) in watches {
            plan.add_schema(root);
            plan.add_tree(graph, root, tree)?;
        }
        Ok(plan)
    }

    /// A plan of tables described by hand (e.g. to install capture for tables no schema
    /// maps). Later entries for the same table replace earlier ones.
    pub fn from_tables(tables: impl IntoIterator<Item = TablePlan>) -> CapturePlan {
        CapturePlan {
            tables: tables.into_iter().map(|t| (t.table, t)).collect(),
        }
    }

    /// Adds `table`, when not planned already, as a table no schema maps and nothing routes
    /// by: identified by no column, each change of it concerns the whole table.
    pub(crate) fn add_unmapped(&mut self, table: TableName) {
        self.tables
            .entry(table)
            .or_insert_with(|| TablePlan::new(table, Vec::new(), Vec::new()));
    }

    fn add_schema(&mut self, meta: &'static SchemaMeta) -> &mut TablePlan {
        self.tables.entry(meta.table).or_insert_with(|| {
            TablePlan::new(
                meta.table,
                meta.primary_key
                    .iter()
                    .map(|&i| meta.columns[i].name)
                    .collect(),
                Vec::new(),
            )
        })
    }

    fn add_tree(
        &mut self,
        graph: &Graph,
        owner: &'static SchemaMeta,
        tree: &PreloadTree,
    ) -> Result<(), SchemaError> {
        for node in tree.children() {
            let def = &owner.assocs[node.assoc];
            let chain = hops(owner, def)?;
            let (steps, related) = (&chain.steps, chain.related);
            // why one rule for every kind: each hop joins `from_column` of the previous table
            // to `to_column` of the next, so a change of either side must route by it.
            let mut previous = owner.table;
            for (i, hop) in steps.iter().enumerate() {
                self.table_mut(graph, previous).route(hop.from_column);
                let next_from = steps.get(i + 1).map(|h| h.from_column);
                let entry = self.tables.entry(hop.table).or_insert_with(|| {
                    let key = match graph.schema_of(hop.table) {
                        Some(meta) => meta
                            .primary_key
                            .iter()
                            .map(|&k| meta.columns[k].name)
                            .collect(),
                        // a join table known only by name: identified by its two keys
                        None => std::iter::once(hop.to_column).chain(next_from).collect(),
                    };
                    TablePlan::new(hop.table, key, Vec::new())
                });
                entry.route(hop.to_column);
                previous = hop.table;
            }
            self.add_schema(related);
            self.add_tree(graph, related, &node.tree)?;
        }
        Ok(())
    }

    fn table_mut(&mut self, graph: &Graph, table: TableName) -> &mut TablePlan {
        self.tables.entry(table).or_insert_with(|| {
            let key = graph
                .schema_of(table)
                .map(|meta| {
                    meta.primary_key
                        .iter()
                        .map(|&k| meta.columns[k].name)
                        .collect()
                })
                .unwrap_or_default();
            TablePlan::new(table, key, Vec::new())
        })
    }

    /// The plan of `table`, if watched.
    pub fn table(&self, table: &TableName) -> Option<&TablePlan> {
        self.tables.get(table)
    }

    /// The plan of a table by its PostgreSQL schema and name as text (as a payload names
    /// it): the schema it was found in at start, else the declared one, else `public`.
    pub fn find(&self, schema: &str, name: &str) -> Option<&TablePlan> {
        self.tables
            .values()
            .find(|t| t.table.name == name && t.pg_schema() == schema)
    }

    /// Every watched table.
    pub fn tables(&self) -> impl Iterator<Item = &TablePlan> {
        self.tables.values()
    }

    /// Every watched table, mutably: to fill in column types (changing `table` would leave
    /// it filed under its old name).
    pub fn tables_mut(&mut self) -> impl Iterator<Item = &mut TablePlan> {
        self.tables.values_mut()
    }
}
