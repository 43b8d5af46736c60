//! The schema graph: tables as nodes, associations as edges (join tables included), and for
//! every (root schema, changed table) pair the association paths between them, computed once.
//!
//! why precompute: sync must find, for a changed row of table X, where rows of X can sit
//! inside a value of root schema R. Walking every association of every row for each change
//! would cost the size of the data; walking only the paths from R to X costs what is relevant.

use std::collections::{BTreeMap, HashMap};

use crate::error::SchemaError;
use crate::load::related_sql::hops;
use crate::schema::{AssocKind, JoinThrough, Schema, SchemaMeta, TableName};

/// How a path reaches the changed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The table is the root schema's own table (the path is empty).
    Root,
    /// The table holds the rows of the path's last association.
    Related,
    /// The table is the join table of the path's last (many-to-many) association.
    JoinTable,
    /// The table is an intermediate step of the path's last (`through`) association.
    Through,
}

/// A path of associations from a root schema to a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Association names from the root, e.g. `["posts", "tags"]`.
    pub assocs: Vec<&'static str>,
    /// How the last step reaches the table.
    pub reached: Reached,
}

impl Path {
    /// The dotted form, e.g. `posts.tags`.
    pub fn dotted(&self) -> String {
        self.assocs.join(".")
    }
}

/// The registered schemas and the precomputed paths between them.
#[derive(Debug, Default)]
pub struct Graph {
    schemas: BTreeMap<&'static str, &'static SchemaMeta>,
    by_table: HashMap<TableName, &'static SchemaMeta>,
    tables: Vec<TableName>,
    paths: HashMap<(&'static str, TableName), Vec<Path>>,
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
        let metas: Vec<_> = graph.schemas.values().copied().collect();
        for root in metas {
            let mut found: Vec<(TableName, Path)> = vec![(
                root.table,
                Path {
                    assocs: Vec::new(),
                    reached: Reached::Root,
                },
            )];
            walk(root, &mut vec![root.name], &mut Vec::new(), &mut found)?;
            for (table, path) in found {
                if !graph.tables.contains(&table) {
                    graph.tables.push(table);
                }
                graph
                    .paths
                    .entry((root.name, table))
                    .or_default()
                    .push(path);
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

    /// The paths from schema `S` to `table` (empty if the table cannot affect `S`).
    pub fn paths<S: Schema>(&self, table: TableName) -> &[Path] {
        self.paths_from(S::meta(), table)
    }

    /// The paths from the schema `root` to `table`.
    pub fn paths_from(&self, root: &SchemaMeta, table: TableName) -> &[Path] {
        self.paths
            .get(&(root.name, table))
            .map(Vec::as_slice)
            .unwrap_or(&[])
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

/// Depth-first enumeration of simple paths (no schema twice on one path). A path may end
/// at a schema already on it (self-reference), but does not continue from there.
fn walk(
    at: &'static SchemaMeta,
    on_path: &mut Vec<&'static str>,
    prefix: &mut Vec<&'static str>,
    found: &mut Vec<(TableName, Path)>,
) -> Result<(), SchemaError> {
    for def in at.assocs {
        let related = (def.related)();
        prefix.push(def.name);
        let path = |reached| Path {
            assocs: prefix.clone(),
            reached,
        };
        found.push((related.table, path(Reached::Related)));
        match &def.kind {
            AssocKind::ManyToMany { join_through, .. } => {
                found.push((join_through.table(), path(Reached::JoinTable)));
            }
            AssocKind::Through { .. } => {
                let chain = hops(at, def)?;
                let steps = &chain.steps;
                for step in &steps[..steps.len() - 1] {
                    found.push((step.table, path(Reached::Through)));
                }
            }
            _ => {}
        }
        if !on_path.contains(&related.name) {
            on_path.push(related.name);
            walk(related, on_path, prefix, found)?;
            on_path.pop();
        }
        prefix.pop();
    }
    Ok(())
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
