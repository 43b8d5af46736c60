//! The SQL that loads an association's related rows for a set of owners, in one query.
//!
//! why one shape for every kind: each association is a chain of hops (owner column → table
//! column), one hop for belongs_to / has_many / has_one, two for many_to_many (via the join
//! table), and the concatenated chains of the associations a `through` follows. One join
//! query over the chain serves every kind, keyed by the owner column of the first hop.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::error::SchemaError;
use crate::schema::{
    quote_ident, AssocDef, AssocKind, Filter, OrderBy, SchemaMeta, SortOrder, TableName, Value,
};

/// One step from the previous table to the next.
#[derive(Debug, Clone)]
pub(crate) struct Hop {
    /// Column of the previous table (the owner for the first hop).
    pub from_column: &'static str,
    /// The table reached.
    pub table: TableName,
    /// Column of the reached table equal to `from_column`.
    pub to_column: &'static str,
    /// Conditions on the reached table.
    pub filter: Option<Filter>,
}

fn key_column(meta: &'static SchemaMeta) -> Result<&'static str, SchemaError> {
    meta.single_key_column().ok_or_else(|| {
        SchemaError::Invalid(vec![format!(
            "`{}` has a composite primary key; associations that point at it need an explicit \
             `references`/`foreign_key` column",
            meta.name
        )])
    })
}

/// The hops of an association and the schema of the rows it ends at.
#[derive(Debug)]
pub(crate) struct HopChain {
    pub steps: Vec<Hop>,
    pub related: &'static SchemaMeta,
}

type HopCache = RwLock<HashMap<(usize, usize), Arc<HopChain>>>;

/// The hops of `def` on `owner`, computed once per association and shared.
///
/// why cached: routing and sync ask for them on every change and every held row they
/// touch, and building them calls the association's filter constructor (allocations).
pub(crate) fn hops(
    owner: &'static SchemaMeta,
    def: &'static AssocDef,
) -> Result<Arc<HopChain>, SchemaError> {
    static CACHE: OnceLock<HopCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let id = (
        owner as *const SchemaMeta as usize,
        def as *const AssocDef as usize,
    );
    if let Some(chain) = cache.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return Ok(chain.clone());
    }
    let (steps, related) = compute_hops(owner, def)?;
    let chain = Arc::new(HopChain { steps, related });
    cache
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, chain.clone());
    Ok(chain)
}

fn compute_hops(
    owner: &'static SchemaMeta,
    def: &'static AssocDef,
) -> Result<(Vec<Hop>, &'static SchemaMeta), SchemaError> {
    let related = (def.related)();
    let filter = def.filter.map(|f| f());
    let hops = match &def.kind {
        AssocKind::BelongsTo {
            foreign_key,
            references,
        } => vec![Hop {
            from_column: foreign_key,
            table: related.table,
            to_column: match references {
                Some(r) => r,
                None => key_column(related)?,
            },
            filter,
        }],
        AssocKind::HasMany {
            foreign_key,
            references,
        }
        | AssocKind::HasOne {
            foreign_key,
            references,
        } => vec![Hop {
            from_column: match references {
                Some(r) => r,
                None => key_column(owner)?,
            },
            table: related.table,
            to_column: foreign_key,
            filter,
        }],
        AssocKind::ManyToMany {
            join_through,
            join_keys: [owner_side, related_side],
        } => vec![
            Hop {
                from_column: key_column(owner)?,
                table: join_through.table(),
                to_column: owner_side,
                filter: None,
            },
            Hop {
                from_column: related_side,
                table: related.table,
                to_column: key_column(related)?,
                filter,
            },
        ],
        AssocKind::Through { path } => {
            let mut all = Vec::new();
            let mut at = owner;
            for name in path.iter() {
                let step = crate::schema::assoc_index(at, name)?;
                let (mut more, next) = compute_hops(at, &at.assocs[step])?;
                all.append(&mut more);
                at = next;
            }
            if let (Some(f), Some(last)) = (filter, all.last_mut()) {
                last.filter = Some(match last.filter.take() {
                    Some(g) => Filter::and([g, f]),
                    None => f,
                });
            }
            return Ok((all, at));
        }
    };
    Ok((hops, related))
}

/// A query loading related rows for owner keys bound as `$1` (an array).
#[derive(Debug)]
pub(crate) struct RelatedQuery {
    /// The SQL; the related schema's columns come first, then the owner key.
    pub sql: String,
    /// Parameters after `$1`.
    pub params: Vec<Value>,
    /// The owner's column whose values are the keys.
    pub owner_column: &'static str,
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
        owner_column: hops[0].from_column,
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
