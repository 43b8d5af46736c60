//! Walking held data along one path of the shape, down to the rows whose association the
//! change touches. Rows carry the index of the root row they sit under, so the caller
//! learns which root rows changed without a second walk.

use futures_util::future::BoxFuture;

use super::apply::last_step;
use super::SyncCtx;
use crate::error::SyncError;
use crate::graph::PreloadTree;
use crate::graph::Reached;
use crate::schema::{AssocDef, AssocField, AssocValue, AssocVisitor, Schema};

/// Applies the change at the end of `path` under `rows`; returns the root indices changed.
pub(crate) fn apply_path<'a, S: Schema>(
    ctx: &'a SyncCtx,
    rows: Vec<(usize, &'a mut S)>,
    tree: &'a PreloadTree,
    path: &'a [usize],
    reached: Reached,
) -> BoxFuture<'a, Result<Vec<usize>, SyncError>> {
    Box::pin(async move {
        let Some((&first, rest)) = path.split_first() else {
            return Ok(Vec::new());
        };
        let Some(node) = tree.children().iter().find(|n| n.assoc == first) else {
            return Ok(Vec::new());
        };
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let step = Step {
            ctx,
            rows,
            subtree: &node.tree,
            rest,
            reached,
        };
        match S::visit_assoc(first, step) {
            Some(future) => future.await,
            None => Ok(Vec::new()),
        }
    })
}

struct Step<'a, P> {
    ctx: &'a SyncCtx,
    rows: Vec<(usize, &'a mut P)>,
    subtree: &'a PreloadTree,
    rest: &'a [usize],
    reached: Reached,
}

impl<'a, P: Schema> AssocVisitor<P> for Step<'a, P> {
    type Output = BoxFuture<'a, Result<Vec<usize>, SyncError>>;

    fn visit<C: Schema, T: AssocValue<C>>(
        self,
        def: &'static AssocDef,
        field: AssocField<P, T>,
    ) -> Self::Output {
        let Step {
            ctx,
            rows,
            subtree,
            rest,
            reached,
        } = self;
        if rest.is_empty() {
            return last_step(ctx, rows, def, field, subtree, reached);
        }
        Box::pin(async move {
            let mut children: Vec<(usize, &'a mut C)> = Vec::new();
            for (root, row) in rows {
                if let Some(held) = (field.get_mut)(row).loaded_mut() {
                    children.extend(held.rows_mut().into_iter().map(|c| (root, c)));
                }
            }
            apply_path(ctx, children, subtree, rest, reached).await
        })
    }
}
