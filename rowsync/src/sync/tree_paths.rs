//! The paths inside a preload shape that lead to a table, computed once per shape.
//!
//! why not the graph's simple paths alone: a shape may visit a schema twice
//! (`favourite_people.posts` under `Person`); the shape is finite, so its own paths are
//! exact, and they are the only ones data can be held along.

use crate::error::SchemaError;
use crate::graph::Reached;
use crate::load::related_sql::hops;
use crate::load::PreloadTree;
use crate::schema::{AssocKind, SchemaMeta, TableName};

/// A path of association indices from the root, and how its last step reaches the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreePath {
    pub assocs: Vec<usize>,
    pub reached: Reached,
}

/// Every path in `tree` (under `root`) that reaches `table`.
pub(crate) fn paths_to(
    root: &'static SchemaMeta,
    tree: &PreloadTree,
    table: TableName,
) -> Result<Vec<TreePath>, SchemaError> {
    let mut out = Vec::new();
    walk(root, tree, table, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn walk(
    owner: &'static SchemaMeta,
    tree: &PreloadTree,
    table: TableName,
    prefix: &mut Vec<usize>,
    out: &mut Vec<TreePath>,
) -> Result<(), SchemaError> {
    for node in tree.children() {
        let def = &owner.assocs[node.assoc];
        let related = (def.related)();
        prefix.push(node.assoc);
        let mut reach = |reached| {
            out.push(TreePath {
                assocs: prefix.clone(),
                reached,
            })
        };
        if related.table == table {
            reach(Reached::Related);
        }
        match &def.kind {
            AssocKind::ManyToMany { join_through, .. } if join_through.table() == table => {
                reach(Reached::JoinTable)
            }
            AssocKind::Through { .. } => {
                let chain = hops(owner, def)?;
                let steps = &chain.steps;
                if steps[..steps.len() - 1].iter().any(|s| s.table == table) {
                    reach(Reached::Through);
                }
            }
            _ => {}
        }
        walk(related, &node.tree, table, prefix, out)?;
        prefix.pop();
    }
    Ok(())
}
