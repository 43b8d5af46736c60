//! Scopes in memory: rows that fail a holder's scope are dropped from what a load or a sync
//! read, at every depth, with no query of their own.

use crate::schema::{AssocDef, AssocField, AssocValue, AssocVisitor, Filter, Schema};

/// Whether `row` passes `scope`.
pub(crate) fn in_scope<S: Schema>(row: &S, scope: &Filter) -> bool {
    scope.matches(&|c| row.value_of(c))
}

/// `rows` without those failing `scope`, each with its loaded associations pruned too.
pub(crate) fn keep_in_scope<S: Schema>(rows: Vec<S>, scope: &Filter) -> Vec<S> {
    rows.into_iter()
        .filter(|row| in_scope(row, scope))
        .map(|mut row| {
            prune(&mut row, scope);
            row
        })
        .collect()
}

/// Drops, from every loaded association of `row` at any depth, the rows failing `scope`.
pub(crate) fn prune<S: Schema>(row: &mut S, scope: &Filter) {
    for i in 0..S::meta().assocs.len() {
        S::visit_assoc(
            i,
            Prune {
                row: &mut *row,
                scope,
            },
        );
    }
}

struct Prune<'a, P> {
    row: &'a mut P,
    scope: &'a Filter,
}

impl<P: Schema> AssocVisitor<P> for Prune<'_, P> {
    type Output = ();

    fn visit<C: Schema, T: AssocValue<C>>(self, _: &'static AssocDef, field: AssocField<P, T>) {
        if let Some(held) = (field.get_mut)(self.row).loaded_mut() {
            let rows = held.take_rows();
            *held = T::from_rows(keep_in_scope(rows, self.scope));
        }
    }
}
