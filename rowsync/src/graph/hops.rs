//! Association hop chains: every association kind as a chain of (column → table.column)
//! steps, computed once per association and shared.
//!
//! why one shape for every kind: each association is a chain of hops (owner column → table
//! column), one hop for belongs_to / has_many / has_one, two for many_to_many (via the join
//! table), and the concatenated chains of the associations a `through` follows. Loading,
//! capture planning, routing and sync all walk the same chain.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use crate::error::SchemaError;
use crate::schema::{AssocDef, AssocKind, Filter, SchemaMeta, TableName};

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
    if let Some(chain) = cache.read().get(&id) {
        return Ok(chain.clone());
    }
    let (steps, related) = compute_hops(owner, def)?;
    let chain = Arc::new(HopChain { steps, related });
    cache.write().insert(id, chain.clone());
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
