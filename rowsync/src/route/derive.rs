//! Topics derived from what a subscriber holds, or from a table and its preloads.

use super::topic::{Selector, Topic};
use crate::error::SchemaError;
use crate::graph::hops;
use crate::graph::PreloadTree;
use crate::schema::{
    AssocDef, AssocField, AssocKind, AssocValue, AssocVisitor, Schema, SchemaMeta,
};

/// Topics for held rows of `S` with `tree` loaded under them:
/// - each held row, by primary key, at every depth;
/// - for each loaded association, inserts into it: the first join column of the
///   association equal to the owner's value (`posts.person_id = 1`, `posts_tags.post_id = 7`);
/// - for a `through` association, its intermediate tables whole (their rows are not held,
///   so there is no key to route by).
pub fn topics_for_rows<S: Schema>(
    rows: &[&S],
    tree: &PreloadTree,
) -> Result<Vec<Topic>, SchemaError> {
    let mut out = Vec::new();
    collect_rows(rows, tree, &mut out)?;
    Ok(out)
}

fn collect_rows<S: Schema>(
    rows: &[&S],
    tree: &PreloadTree,
    out: &mut Vec<Topic>,
) -> Result<(), SchemaError> {
    let meta = S::meta();
    out.extend(rows.iter().map(|row| Topic {
        table: meta.table,
        selector: Selector::Row(row.primary_key()),
    }));
    for node in tree.children() {
        let visitor = RowTopics {
            parents: rows,
            tree: &node.tree,
            out: &mut *out,
        };
        S::visit_assoc(node.assoc, visitor).unwrap_or(Ok(()))?;
    }
    Ok(())
}

struct RowTopics<'a, P> {
    parents: &'a [&'a P],
    tree: &'a PreloadTree,
    out: &'a mut Vec<Topic>,
}

impl<P: Schema> AssocVisitor<P> for RowTopics<'_, P> {
    type Output = Result<(), SchemaError>;

    fn visit<C: Schema, T: AssocValue<C>>(
        self,
        def: &'static AssocDef,
        field: AssocField<P, T>,
    ) -> Self::Output {
        let chain = hops(P::meta(), def)?;
        let steps = &chain.steps;
        let first = &steps[0];
        let mut children: Vec<&C> = Vec::new();
        for parent in self.parents {
            let Some(held) = (field.get)(parent).loaded() else {
                continue;
            };
            if let Some(value) = parent.value_of(first.from_column).filter(|v| !v.is_null()) {
                self.out.push(Topic {
                    table: first.table,
                    selector: Selector::Column(first.to_column.into(), value),
                });
            }
            children.extend(held.rows());
        }
        if matches!(def.kind, AssocKind::Through { .. }) {
            self.out.extend(steps[1..].iter().map(|s| Topic {
                table: s.table,
                selector: Selector::All,
            }));
        }
        collect_rows(&children, self.tree, self.out)
    }
}

/// Topics for every change of `meta`'s table and of the tables its preloads read.
pub fn topics_for_table(
    meta: &'static SchemaMeta,
    tree: &PreloadTree,
) -> Result<Vec<Topic>, SchemaError> {
    let mut out = vec![Topic {
        table: meta.table,
        selector: Selector::All,
    }];
    collect_tables(meta, tree, &mut out)?;
    Ok(out)
}

fn collect_tables(
    meta: &'static SchemaMeta,
    tree: &PreloadTree,
    out: &mut Vec<Topic>,
) -> Result<(), SchemaError> {
    for node in tree.children() {
        let def = &meta.assocs[node.assoc];
        let chain = hops(meta, def)?;
        let (steps, related) = (&chain.steps, chain.related);
        for step in steps {
            let topic = Topic {
                table: step.table,
                selector: Selector::All,
            };
            if !out.contains(&topic) {
                out.push(topic);
            }
        }
        collect_tables(related, &node.tree, out)?;
    }
    Ok(())
}
