//! The schema model computed once: the graph of schemas (tables as nodes, associations as
//! edges, join tables included), every association as a chain of hops, preload trees, and
//! for every shape of held data the paths that lead to each table.
//!
//! why precompute: sync must find, for a changed row of table X, where rows of X can sit
//! inside a value held with a given shape. Walking every association of every row for each
//! change would cost the size of the data; walking only the shape's paths to X costs what is
//! relevant. Pure: this module imports nothing but the schema model and its errors.

mod hops;
mod paths;
mod preload_tree;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

pub(crate) use hops::hops;
pub use paths::{Path, Reached};
pub(crate) use paths::{ShapePaths, TreePath};
pub use preload_tree::{PreloadNode, PreloadTree};

use crate::error::SchemaError;
use crate::schema::{AssocKind, JoinThrough, Schema, SchemaMeta, TableName};

/// The registered schemas, checked together, and the paths of every shape asked for.
#[derive(Debug, Default)]
pub struct Graph {
    schemas: BTreeMap<&'static str, &'static SchemaMeta>,
    by_table: HashMap<TableName, &'static SchemaMeta>,
    tables: Vec<TableName>,
    /// The paths of each (root schema, shape), computed on first use.
    shapes: Mutex<HashMap<(&'static str, PreloadTree), Arc<ShapePaths>>>,
}

/// Collects schemas for a [`Graph`].
#[derive(Debug, Default)]
pub struct GraphBuilder {
    roots: Vec<&'static SchemaMeta>,
}

impl GraphBuilder {
    /// Registers `S` and, transitively, every schema its associations reach.
    pub fn register<S: Schema>(mut self) -> Self {
        self.roots.push(S::meta());
        self
    }

    /// Registers a schema by its metadata.
    pub fn register_meta(mut self, meta: &'static SchemaMeta) -> Self {
        self.roots.push(meta);
        self
    }

    /// Checks every declaration (reporting all problems at once) and computes the paths.
    pub fn build(self) -> Result<Graph, SchemaError> {
        let mut graph = Graph::default();
        let mut pending = self.roots;
        while let Some(meta) = pending.pop() {
            if graph.schemas.insert(meta.name, meta).is_some() {
                continue;
            }
            for def in meta.assocs {
                pending.push((def.related)());
                if let AssocKind::ManyToMany {
                    join_through: JoinThrough::Schema(join),
                    ..
                } = def.kind
                {
                    pending.push(join());
                }
            }
        }
        let mut errors = Vec::new();
        for meta in graph.schemas.values() {
            validate(meta, &mut errors);
            if let Some(other) = graph.by_table.insert(meta.table, meta) {
                if other.name != meta.name {
                    errors.push(format!(
                        "`{}` and `{}` both map table {}; give each table one schema",
                        other.name, meta.name, meta.table
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(SchemaError::Invalid(errors));
        }
        for meta in graph.schemas.values() {
            let mut reached = vec![meta.table];
            for def in meta.assocs {
                reached.push((def.related)().table);
                if let AssocKind::ManyToMany { join_through, .. } = &def.kind {
                    reached.push(join_through.table());
                }
            }
            for table in reached {
                if !graph.tables.contains(&table) {
                    graph.tables.push(table);
                }
            }
        }
        Ok(graph)
    }
}

impl Graph {
    /// Starts a graph.
    pub fn builder() -> GraphBuilder {
        GraphBuilder::default()
    }

    /// The paths of data of schema `S` held with `tree` loaded that lead to `table`: where
    /// rows of `table` (or the join and intermediate rows that decide them) sit in it.
    /// These are the paths sync walks.
    pub fn paths<S: Schema>(
        &self,
        tree: &PreloadTree,
        table: TableName,
    ) -> Result<Vec<Path>, SchemaError> {
        Ok(self
            .shape(S::meta(), tree)?
            .to(&table)
            .iter()
            .map(|p| Path {
                assocs: p.names.clone(),
                reached: p.reached,
            })
            .collect())
    }

    /// The paths of one shape, computed once per (root, shape) and shared.
    pub(crate) fn shape(
        &self,
        root: &'static SchemaMeta,
        tree: &PreloadTree,
    ) -> Result<Arc<ShapePaths>, SchemaError> {
        let key = (root.name, tree.clone());
        if let Some(paths) = self.shapes.lock().get(&key) {
            return Ok(paths.clone());
        }
        let paths = Arc::new(ShapePaths::of(root, tree)?);
        self.shapes.lock().insert(key, paths.clone());
        Ok(paths)
    }

    /// Every table of the graph, join tables included.
    pub fn tables(&self) -> &[TableName] {
        &self.tables
    }

    /// The schema mapping `table`, if one does (join tables known by name have none).
    pub fn schema_of(&self, table: TableName) -> Option<&'static SchemaMeta> {
        self.by_table.get(&table).copied()
    }

    /// Every registered schema, by name.
    pub fn schemas(&self) -> impl Iterator<Item = &'static SchemaMeta> + '_ {
        self.schemas.values().copied()
    }
}

fn validate(meta: &'static SchemaMeta, errors: &mut Vec<String>) {
    let has = |m: &SchemaMeta, c: &str| m.column_index(c).is_some();
    for def in meta.assocs {
        let related = (def.related)();
        let at = format!("{}.{}", meta.name, def.name);
        let mut need = |m: &SchemaMeta, column: &str, role: &str| {
            if !has(m, column) {
                errors.push(format!(
                    "{at}: {role} `{column}` is not a column of `{}` (columns: {})",
                    m.name,
                    m.columns
                        .iter()
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        match &def.kind {
            AssocKind::BelongsTo {
                foreign_key,
                references,
            } => {
                need(meta, foreign_key, "foreign_key");
                if let Some(r) = references {
                    need(related, r, "references");
                }
            }
            AssocKind::HasMany {
                foreign_key,
                references,
            }
            | AssocKind::HasOne {
                foreign_key,
                references,
            } => {
                need(related, foreign_key, "foreign_key");
                if let Some(r) = references {
                    need(meta, r, "references");
                }
            }
            AssocKind::ManyToMany {
                join_through: JoinThrough::Schema(join),
                join_keys,
            } => {
                for key in join_keys {
                    need(join(), key, "join key");
                }
            }
            AssocKind::ManyToMany { .. } | AssocKind::Through { .. } => {}
        }
        if let Some(filter) = def.filter {
            for column in filter().columns() {
                need(related, column, "filter column");
            }
        }
        for order in def.order_by {
            need(related, order.column, "order_by column");
        }
        if let Err(e) = hops(meta, def) {
            errors.push(format!("{at}: {e}"));
        }
    }
}
