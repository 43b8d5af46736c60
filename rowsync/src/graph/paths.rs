//! The paths inside a preload shape that lead to each table, computed once per shape and
//! shared by every subscription, sync and capture plan that uses the shape.
//!
//! why the shape's own paths rather than every simple path of the schema graph: data can
//! only be held along the associations its shape loaded, and a shape may visit a schema
//! twice (`favourite_people.posts` under `Person`); the shape is finite, so its paths are
//! exact.

use std::collections::HashMap;

use super::hops::hops;
use super::PreloadTree;
use crate::error::SchemaError;
use crate::schema::{AssocKind, SchemaMeta, TableName};

/// How a path reaches the changed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reached {
    /// The table holds the rows of the path's last association.
    Related,
    /// The table is the join table of the path's last (many-to-many) association.
    JoinTable,
    /// The table is an intermediate step of the path's last (`through`) association.
    Through,
}

/// A path of associations from a root schema to a table, by name.
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

/// A path of association indices from the root, and how its last step reaches the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreePath {
    pub assocs: Vec<usize>,
    pub names: Vec<&'static str>,
    pub reached: Reached,
}

/// For each table a shape reads, the paths of the shape that lead to it.
#[derive(Debug, Default)]
pub(crate) struct ShapePaths {
    by_table: HashMap<TableName, Vec<TreePath>>,
}

impl ShapePaths {
    /// Every path of `tree` (under `root`), filed by the table it reaches.
    pub fn of(root: &'static SchemaMeta, tree: &PreloadTree) -> Result<ShapePaths, SchemaError> {
        let mut paths = ShapePaths::default();
        walk(root, tree, &mut Vec::new(), &mut Vec::new(), &mut paths)?;
        Ok(paths)
    }

    /// The paths that reach `table` (none if the shape holds nothing of it).
    pub fn to(&self, table: &TableName) -> &[TreePath] {
        self.by_table.get(table).map(Vec::as_slice).unwrap_or(&[])
    }

    fn reach(
        &mut self,
        table: TableName,
        assocs: &[usize],
        names: &[&'static str],
        reached: Reached,
    ) {
        self.by_table.entry(table).or_default().push(TreePath {
            assocs: assocs.to_vec(),
            names: names.to_vec(),
            reached,
        });
    }
}

fn walk(
    owner: &'static SchemaMeta,
    tree: &PreloadTree,
    prefix: &mut Vec<usize>,
    names: &mut Vec<&'static str>,
    out: &mut ShapePaths,
) -> Result<(), SchemaError> {
    for node in tree.children() {
        let def = &owner.assocs[node.assoc];
        let related = (def.related)();
        prefix.push(node.assoc);
        names.push(def.name);
        out.reach(related.table, prefix, names, Reached::Related);
        match &def.kind {
            AssocKind::ManyToMany { join_through, .. } => {
                out.reach(join_through.table(), prefix, names, Reached::JoinTable)
            }
            AssocKind::Through { .. } => {
                let chain = hops(owner, def)?;
                let steps = &chain.steps;
                let mut seen: Vec<TableName> = Vec::new();
                for step in &steps[..steps.len() - 1] {
                    if !seen.contains(&step.table) {
                        seen.push(step.table);
                        out.reach(step.table, prefix, names, Reached::Through);
                    }
                }
            }
            _ => {}
        }
        walk(related, &node.tree, prefix, names, out)?;
        prefix.pop();
        names.pop();
    }
    Ok(())
}
