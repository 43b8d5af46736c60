//! What capture must watch: every table reachable through the watched associations (join
//! tables included), its key columns, and the columns routing needs (EctoWatch's
//! `extra_columns`): the keys each association joins on.

use std::collections::BTreeMap;

use crate::error::SchemaError;
use crate::graph::hops;
use crate::graph::Graph;
use crate::graph::PreloadTree;
use crate::load::PgType;
use crate::schema::{SchemaMeta, TableName};

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
}

impl TablePlan {
    fn new(table: TableName, key: Vec<&'static str>) -> TablePlan {
        TablePlan {
            table,
            key,
            routes: Vec::new(),
            types: Vec::new(),
        }
    }

    fn route(&mut self, column: &'static str) {
        if !self.routes.contains(&column) {
            self.routes.push(column);
        }
    }

    /// Every column the plan reads: key, then routes.
    pub fn columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.key.iter().chain(self.routes.iter()).copied()
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

    fn add_schema(&mut self, meta: &'static SchemaMeta) -> &mut TablePlan {
        self.tables.entry(meta.table).or_insert_with(|| {
            TablePlan::new(
                meta.table,
                meta.primary_key
                    .iter()
                    .map(|&i| meta.columns[i].name)
                    .collect(),
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
                    TablePlan::new(hop.table, key)
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
            TablePlan::new(table, key)
        })
    }

    /// The plan of `table`, if watched.
    pub fn table(&self, table: &TableName) -> Option<&TablePlan> {
        self.tables.get(table)
    }

    /// The plan of a table by its schema and name as text (as a payload names it).
    pub fn find(&self, schema: &str, name: &str) -> Option<&TablePlan> {
        self.tables
            .values()
            .find(|t| t.table.name == name && t.table.schema_or_public() == schema)
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
