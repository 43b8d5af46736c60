//! Loading associations into rows already loaded: one query per association level.

use futures_util::future::BoxFuture;
use tokio_postgres::types::ToSql;

use super::pg_value::{read_value, QueryRow};
use super::related_sql::related_query;
use super::Executor;
use crate::error::{LoadError, SchemaError};
use crate::graph::PreloadTree;
use crate::hash::{HashMap, HashMapExt, HashSet, HashSetExt};
use crate::schema::{Assoc, AssocDef, AssocField, AssocValue, AssocVisitor, Key, Schema, Value};

/// Loads every association of `tree` into `rows`, level by level.
pub(crate) fn preload<'a, S: Schema>(
    rows: &'a mut [S],
    tree: &'a PreloadTree,
    exec: &'a dyn Executor,
) -> BoxFuture<'a, Result<(), LoadError>> {
    Box::pin(async move {
        if rows.is_empty() {
            return Ok(());
        }
        for node in tree.children() {
            let visitor = PreloadAssoc {
                parents: &mut *rows,
                tree: &node.tree,
                exec,
            };
            match S::visit_assoc(node.assoc, visitor) {
                Some(load) => load.await?,
                None => {
                    return Err(SchemaError::Invalid(vec![format!(
                        "`{}` does not expose association #{} (`{}`)",
                        S::meta().name,
                        node.assoc,
                        node.name
                    )])
                    .into())
                }
            }
        }
        Ok(())
    })
}

struct PreloadAssoc<'a, P> {
    parents: &'a mut [P],
    tree: &'a PreloadTree,
    exec: &'a dyn Executor,
}

impl<'a, P: Schema> AssocVisitor<P> for PreloadAssoc<'a, P> {
    type Output = BoxFuture<'a, Result<(), LoadError>>;

    fn visit<C: Schema, T: AssocValue<C>>(
        self,
        def: &'static AssocDef,
        field: AssocField<P, T>,
    ) -> Self::Output {
        Box::pin(async move {
            let PreloadAssoc {
                parents,
                tree,
                exec,
            } = self;
            let related = fetch_related::<P, C>(parents, def, tree, exec).await?;
            for parent in parents.iter_mut() {
                let key = parent.column_value(related.owner_index);
                let Related {
                    children, by_owner, ..
                } = &related;
                let rows = by_owner
                    .get(&key)
                    .map(|ix| ix.iter().map(|&i| children[i].clone()).collect())
                    .unwrap_or_default();
                *(field.get_mut)(parent) = Assoc::Loaded(T::from_rows(rows));
            }
            Ok(())
        })
    }
}

/// Related rows of an association for a set of owners.
pub(crate) struct Related<C> {
    /// Each related row once, with its own preloads.
    pub children: Vec<C>,
    /// For each owner key, positions in `children`, in order, without duplicates.
    pub by_owner: HashMap<Value, Vec<usize>>,
    /// The owner column whose values are the keys of `by_owner`.
    pub owner_index: usize,
}

fn unknown_owner_column<P: Schema>(column: &str) -> SchemaError {
    SchemaError::UnknownColumn {
        schema: P::meta().name,
        name: column.to_owned(),
        known: P::meta()
            .columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Related rows of `def` for `owners`, each loaded once (with `tree` preloaded under it).
pub(crate) async fn fetch_related<P: Schema, C: Schema>(
    owners: &[P],
    def: &'static AssocDef,
    tree: &PreloadTree,
    exec: &dyn Executor,
) -> Result<Related<C>, LoadError> {
    let owner_index = owner_index::<P>(def)?;
    let keys = owners.iter().map(|o| o.column_value(owner_index)).collect();
    fetch_related_of::<P, C>(keys, def, tree, exec).await
}

/// The position of the owner column `def`'s first hop joins on.
pub(crate) fn owner_index<P: Schema>(def: &'static AssocDef) -> Result<usize, SchemaError> {
    let column = crate::graph::hops(P::meta(), def)?.steps[0].from_column;
    P::meta()
        .column_index(column)
        .ok_or_else(|| unknown_owner_column::<P>(column))
}

/// Related rows of `def` for the owners whose owner column holds one of `keys`.
pub(crate) async fn fetch_related_of<P: Schema, C: Schema>(
    keys: Vec<Value>,
    def: &'static AssocDef,
    tree: &PreloadTree,
    exec: &dyn Executor,
) -> Result<Related<C>, LoadError> {
    let query = related_query(P::meta(), def)?;
    let owner_index = owner_index::<P>(def)?;
    let mut seen = HashSet::new();
    let keys: Vec<Value> = keys
        .into_iter()
        .filter(|k| !k.is_null() && seen.insert(k.clone()))
        .collect();
    if keys.is_empty() {
        return Ok(Related {
            children: Vec::new(),
            by_owner: HashMap::new(),
            owner_index,
        });
    }

    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&keys];
    params.extend(query.params.iter().map(|v| v as &(dyn ToSql + Sync)));
    let table = query.related.table.to_string();
    let rows = exec
        .query_rows(&query.sql, &params)
        .await
        .map_err(|error| LoadError::Database {
            table: table.clone(),
            error,
        })?;

    let owner_at = query.related.columns.len();
    let mut children: Vec<C> = Vec::new();
    let mut position: HashMap<Key, usize> = HashMap::new();
    let mut by_owner: HashMap<Value, Vec<usize>> = HashMap::new();
    for row in &rows {
        let decode = |cause| LoadError::Decode {
            table: table.clone(),
            cause,
        };
        let child = C::from_row(&mut QueryRow(row)).map_err(decode)?;
        let owner = read_value(row, owner_at).map_err(decode)?;
        let at = *position.entry(child.primary_key()).or_insert_with(|| {
            children.push(child);
            children.len() - 1
        });
        let list = by_owner.entry(owner).or_default();
        // why: a `through` chain can reach one row by several paths; it is held once.
        if !list.contains(&at) {
            list.push(at);
        }
    }
    preload(&mut children, tree, exec).await?;
    Ok(Related {
        children,
        by_owner,
        owner_index,
    })
}
