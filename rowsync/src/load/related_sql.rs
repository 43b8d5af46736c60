//! The SQL that loads an association's related rows for a set of owners, in one query:
//! one join over the association's hop chain (see [`crate::graph::hops`]), keyed by the
//! owner column of the first hop.

use crate::error::SchemaError;
use crate::graph::hops;
use crate::schema::{quote_ident, AssocDef, OrderBy, SchemaMeta, SortOrder, Value};

/// A query loading related rows for owner keys bound as `$1` (an array).
#[derive(Debug)]
pub(crate) struct RelatedQuery {
    /// The SQL; the related schema's columns come first, then the owner key.
    pub sql: String,
    /// Parameters after `$1`.
    pub params: Vec<Value>,
    /// The schema of the rows returned.
    pub related: &'static SchemaMeta,
}

/// Builds the query for `def` of `owner`.
pub(crate) fn related_query(
    owner: &'static SchemaMeta,
    def: &'static AssocDef,
) -> Result<RelatedQuery, SchemaError> {
    let chain = hops(owner, def)?;
    let (hops, related) = (&chain.steps, chain.related);
    let last = hops.len() - 1;
    let alias = |i: usize| format!("t{i}");
    let mut select: Vec<String> = related
        .columns
        .iter()
        .map(|c| format!("{}.{}", alias(last), quote_ident(c.name)))
        .collect();
    select.push(format!("t0.{}", quote_ident(hops[0].to_column)));

    let mut from = format!("{} AS t0", hops[0].table);
    for (i, hop) in hops.iter().enumerate().skip(1) {
        from.push_str(&format!(
            " JOIN {} AS {} ON {}.{} = {}.{}",
            hop.table,
            alias(i),
            alias(i),
            quote_ident(hop.to_column),
            alias(i - 1),
            quote_ident(hop.from_column),
        ));
    }

    // $1 is the owner keys; filter parameters follow.
    let mut params = vec![Value::Null];
    let mut conditions = vec![format!("t0.{} = ANY($1)", quote_ident(hops[0].to_column))];
    for (i, hop) in hops.iter().enumerate() {
        if let Some(filter) = &hop.filter {
            conditions.push(filter.to_sql(&alias(i), &mut params));
        }
    }
    params.remove(0);

    let order = order_clause(&alias(last), def.order_by, related);
    Ok(RelatedQuery {
        sql: format!(
            "SELECT {} FROM {from} WHERE {} ORDER BY {order}",
            select.join(", "),
            conditions.join(" AND ")
        ),
        params,
        related,
    })
}

/// `ORDER BY` terms: the given ones, then the primary key so the order is always total.
pub(crate) fn order_clause(alias: &str, order_by: &[OrderBy], meta: &SchemaMeta) -> String {
    let mut terms: Vec<String> = order_by
        .iter()
        .map(|o| {
            let dir = match o.order {
                SortOrder::Asc => "ASC",
                SortOrder::Desc => "DESC",
            };
            format!("{alias}.{} {dir}", quote_ident(o.column))
        })
        .collect();
    for &i in meta.primary_key {
        terms.push(format!("{alias}.{} ASC", quote_ident(meta.columns[i].name)));
    }
    terms.join(", ")
}
