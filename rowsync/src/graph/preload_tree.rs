//! Preload paths (`["posts.tags", "profile"]`) parsed and checked into a tree.

use crate::error::SchemaError;
use crate::schema::{assoc_index, SchemaMeta};

/// The associations to load under one schema, each with what to load under it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PreloadTree {
    children: Vec<PreloadNode>,
}

/// One association in a [`PreloadTree`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PreloadNode {
    /// Position in the owner's [`SchemaMeta::assocs`].
    pub assoc: usize,
    /// The association's name.
    pub name: &'static str,
    /// What to load under the related rows.
    pub tree: PreloadTree,
}

impl PreloadTree {
    /// Parses dotted paths against `meta`, merging common prefixes. An unknown association
    /// anywhere is an error naming the schema and the associations it does have.
    pub fn parse<I, P>(meta: &'static SchemaMeta, paths: I) -> Result<PreloadTree, SchemaError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let mut tree = PreloadTree::default();
        for path in paths {
            let mut node = &mut tree;
            let mut owner = meta;
            for name in path.as_ref().split('.').map(str::trim) {
                let index = assoc_index(owner, name)?;
                let def = &owner.assocs[index];
                let at = match node.children.iter().position(|c| c.assoc == index) {
                    Some(at) => at,
                    None => {
                        node.children.push(PreloadNode {
                            assoc: index,
                            name: def.name,
                            tree: PreloadTree::default(),
                        });
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].tree;
                owner = (def.related)();
            }
        }
        Ok(tree.union(&PreloadTree::default()))
    }

    /// The associations directly under this level.
    pub fn children(&self) -> &[PreloadNode] {
        &self.children
    }

    /// Everything either tree loads: each association loaded by one of them, with the union
    /// of what they load under it (children in association order, so equal shapes compare
    /// equal however they were written).
    pub fn union(&self, other: &PreloadTree) -> PreloadTree {
        let mut children: Vec<PreloadNode> = Vec::new();
        for node in self.children.iter().chain(&other.children) {
            match children.iter_mut().find(|c| c.assoc == node.assoc) {
                Some(ours) => ours.tree = ours.tree.union(&node.tree),
                None => children.push(PreloadNode {
                    tree: node.tree.union(&PreloadTree::default()),
                    ..node.clone()
                }),
            }
        }
        children.sort_by_key(|c| c.assoc);
        PreloadTree { children }
    }

    /// This tree with association `assoc`'s subtree replaced by `tree`.
    pub(crate) fn with_subtree(mut self, assoc: usize, tree: PreloadTree) -> PreloadTree {
        if let Some(node) = self.children.iter_mut().find(|n| n.assoc == assoc) {
            node.tree = tree;
        }
        self
    }

    /// Whether this tree loads everything `other` loads.
    pub fn covers(&self, other: &PreloadTree) -> bool {
        other.children.iter().all(|theirs| {
            self.children
                .iter()
                .any(|ours| ours.assoc == theirs.assoc && ours.tree.covers(&theirs.tree))
        })
    }

    /// Whether nothing is preloaded.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Dotted paths of every leaf, e.g. `["posts.tags", "profile"]`.
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for child in &self.children {
            let below = child.tree.paths();
            if below.is_empty() {
                out.push(child.name.to_owned());
            } else {
                out.extend(below.into_iter().map(|p| format!("{}.{p}", child.name)));
            }
        }
        out
    }
}

impl PreloadTree {
    /// The shape of held data: every association loaded on some row, recursively (the
    /// shape of the first rows that have it loaded).
    pub fn of_rows<S: crate::schema::Schema>(rows: &[&S]) -> PreloadTree {
        let mut tree = PreloadTree::default();
        for index in 0..S::meta().assocs.len() {
            let found = S::visit_assoc(index, ShapeOf { rows }).flatten();
            if let Some(below) = found {
                tree.children.push(PreloadNode {
                    assoc: index,
                    name: S::meta().assocs[index].name,
                    tree: below,
                });
            }
        }
        tree
    }
}

struct ShapeOf<'a, P> {
    rows: &'a [&'a P],
}

impl<P: crate::schema::Schema> crate::schema::AssocVisitor<P> for ShapeOf<'_, P> {
    type Output = Option<PreloadTree>;

    fn visit<C: crate::schema::Schema, T: crate::schema::AssocValue<C>>(
        self,
        _: &'static crate::schema::AssocDef,
        field: crate::schema::AssocField<P, T>,
    ) -> Option<PreloadTree> {
        let mut loaded = false;
        let mut children: Vec<&C> = Vec::new();
        for row in self.rows {
            if let Some(held) = (field.get)(row).loaded() {
                loaded = true;
                children.extend(held.rows());
                if !children.is_empty() {
                    break;
                }
            }
        }
        loaded.then(|| PreloadTree::of_rows(&children))
    }
}
