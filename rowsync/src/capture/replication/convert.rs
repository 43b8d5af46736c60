//! pgoutput tuples → [`Change`]s and row images, for one watched table.
//!
//! A [`TableMap`] is made from the table's latest Relation message: where each column the
//! plan routes by and each column the schema maps sits in the tuple, checked by name and
//! type against the catalog read at start (a column renamed, dropped or retyped since is a
//! problem to report, never a value read from the wrong place). Tuples are then read by
//! position.
//!
//! What the old values give depends on the table's replica identity: with `DEFAULT` (or
//! `USING INDEX`) an update carries the old key only when the key changed, and a delete
//! carries the key only, so other routing columns have no old value; with `FULL` both carry
//! the whole old row. The hub makes tables whose routing columns lie outside the key `FULL`
//! (see `catalog::needs_full`). Unchanged TOASTed values (`u`) are taken from the old row when it was
//! sent (`FULL`); otherwise the row is not carried and is read once instead.

use super::catalog::CatalogTable;
use super::pgoutput::{ColumnValue, OldTuple, Relation, TupleData};
use crate::capture::plan::TablePlan;
use crate::capture::Carried;
use crate::change::{Change, Op};
use crate::load::{value_from_text, PgType};
use crate::schema::{Key, RowImage, SchemaMeta, TableName, Value};

/// One column to read: its name, position in the tuple and type.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: &'static str,
    index: usize,
    ty: PgType,
}

/// How to read the tuples of one watched table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableMap {
    pub table: TableName,
    /// Columns in the Relation (every tuple has this many).
    width: usize,
    key: Vec<Field>,
    routes: Vec<Field>,
    /// The schema's columns in its order, when rows can be carried.
    image: Option<Vec<Field>>,
    /// Per Relation column: whether an old key tuple (`K`) sends it.
    in_identity: Vec<bool>,
}

/// A Relation message read against what the hub expects of the table.
#[derive(Debug)]
pub(crate) struct Mapped {
    /// The map, unless a column routing needs is gone or retyped (then the table's
    /// changes cannot be described).
    pub map: Option<TableMap>,
    /// What differs from what the schemas map (empty: nothing).
    pub problems: Vec<String>,
}

/// Reads `relation` against the table's plan, the schema mapping it (if any), and the
/// catalog as it was at start.
pub(crate) fn map_relation(
    relation: &Relation<'_>,
    plan: &TablePlan,
    meta: Option<&'static SchemaMeta>,
    expected: &CatalogTable,
) -> Mapped {
    let mut problems = Vec::new();
    let find = |name: &'static str| find(relation, expected, name);
    let mut routing = Vec::new();
    for name in plan.key.iter().chain(&plan.routes) {
        match find(name) {
            Ok(field) => routing.push(field),
            Err(Missing::Problem(problem)) => problems.push(problem),
            Err(Missing::Generated) => problems.push(format!(
                "column `{name}` is generated, and logical replication does not send \
                 generated columns"
            )),
        }
    }
    let image = meta.and_then(|meta| {
        let mut fields = Vec::with_capacity(meta.columns.len());
        let mut complete = true;
        for column in meta.columns {
            match find(column.name) {
                Ok(field) => fields.push(field),
                Err(Missing::Generated) => complete = false,
                Err(Missing::Problem(problem)) => {
                    problems.push(problem);
                    complete = false;
                }
            }
        }
        complete.then_some(fields)
    });
    let routable = routing.len() == plan.key.len() + plan.routes.len();
    let routes = routing.split_off(plan.key.len().min(routing.len()));
    let key = routing;
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    let map = routable.then(|| TableMap {
        table: plan.table,
        width: relation.columns.len(),
        key,
        routes,
        image,
        in_identity: relation.columns.iter().map(|c| c.is_key()).collect(),
    });
    Mapped { map, problems }
}

/// Column `name` of `relation`, checked against the catalog as it was at start.
fn find(
    relation: &Relation<'_>,
    expected: &CatalogTable,
    name: &'static str,
) -> Result<Field, Missing> {
    let Some(index) = relation.columns.iter().position(|c| c.name == name) else {
        return Err(match expected.columns.get(name) {
            // pgoutput never sends generated columns: not a change of the table
            Some(column) if column.generated => Missing::Generated,
            _ => Missing::Problem(format!("column `{name}` is gone (renamed or dropped)")),
        });
    };
    let sent = relation.columns[index].type_oid;
    match expected.columns.get(name) {
        Some(column) if column.type_oid == sent => Ok(Field {
            name,
            index,
            ty: column.ty.clone(),
        }),
        Some(column) => Err(Missing::Problem(format!(
            "column `{name}` changed type (type oid {} at start, now {sent})",
            column.type_oid
        ))),
        None => Err(Missing::Problem(format!(
            "column `{name}` is not one the hub started with"
        ))),
    }
}

/// Why a column is not in a Relation message.
enum Missing {
    /// A generated column: pgoutput never sends those.
    Generated,
    /// Something changed.
    Problem(String),
}

/// A tuple that cannot be read into a change (the table's holders reload instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreadable(pub String);

/// A value read from a tuple: `None` when the tuple does not hold it (an unchanged TOASTed
/// value, or a column an old key tuple does not send).
type Read = Result<Option<Value>, Unreadable>;

impl TableMap {
    fn check(&self, tuple: &TupleData<'_>) -> Result<(), Unreadable> {
        if tuple.columns.len() == self.width {
            Ok(())
        } else {
            Err(Unreadable(format!(
                "a tuple of {} columns for a relation of {}",
                tuple.columns.len(),
                self.width
            )))
        }
    }

    fn value(field: &Field, tuple: &TupleData<'_>) -> Read {
        match tuple.get(field.index) {
            Some(ColumnValue::Null) => Ok(Some(Value::Null)),
            Some(ColumnValue::Text(text)) => value_from_text(&field.ty, Some(text))
                .map(Some)
                .map_err(|e| Unreadable(format!("column `{}`: {e}", field.name))),
            Some(ColumnValue::Unchanged) => Ok(None),
            Some(ColumnValue::Binary(_)) => Err(Unreadable(format!(
                "column `{}` arrived in binary format, which was not asked for",
                field.name
            ))),
            None => Err(Unreadable(format!("column `{}` is missing", field.name))),
        }
    }

    /// A value of the old tuple: an old key tuple sends only the identity's columns (its
    /// `n` elsewhere means "not sent", not NULL).
    fn old_value(&self, field: &Field, old: Option<&OldTuple<'_>>) -> Read {
        match old {
            Some(OldTuple::Full(tuple)) => Self::value(field, tuple),
            Some(OldTuple::Key(tuple)) if self.in_identity.get(field.index) == Some(&true) => {
                Self::value(field, tuple)
            }
            _ => Ok(None),
        }
    }

    /// The new value, or the old one when the new tuple says "unchanged".
    fn current(&self, field: &Field, new: &TupleData<'_>, old: Option<&OldTuple<'_>>) -> Read {
        match Self::value(field, new)? {
            Some(value) => Ok(Some(value)),
            None => self.old_value(field, old),
        }
    }

    fn required(field: &Field, read: Option<Value>, what: &str) -> Result<Value, Unreadable> {
        read.ok_or_else(|| {
            Unreadable(format!(
                "{what} column `{}` was not sent (an unchanged TOASTed value, or outside the \
                 replica identity); REPLICA IDENTITY FULL sends it",
                field.name
            ))
        })
    }

    fn key_of(&self, read: impl Fn(&Field) -> Read, what: &str) -> Result<Key, Unreadable> {
        self.key
            .iter()
            .map(|f| Self::required(f, read(f)?, what))
            .collect::<Result<Vec<_>, _>>()
            .map(Key)
    }

    /// The row image from `new` (holes filled from a full old row), or `Nothing` when a
    /// mapped column was not sent.
    fn carried(
        &self,
        new: &TupleData<'_>,
        old: Option<&OldTuple<'_>>,
    ) -> Result<Carried, Unreadable> {
        let Some(fields) = &self.image else {
            return Ok(Carried::Nothing);
        };
        let mut values = Vec::with_capacity(fields.len());
        for field in fields {
            match self.current(field, new, old)? {
                Some(value) => values.push(value),
                None => return Ok(Carried::Nothing),
            }
        }
        Ok(Carried::Row(RowImage::new(values)))
    }

    fn change(&self, op: Op, key: Key, xid: u64, seq: u64) -> Change {
        Change {
            op,
            table: self.table,
            key,
            old_key: None,
            columns: Vec::new(),
            old_columns: Vec::new(),
            xid,
            seq,
        }
    }

    /// An Insert.
    pub fn insert(
        &self,
        new: &TupleData<'_>,
        xid: u64,
        seq: u64,
    ) -> Result<(Change, Carried), Unreadable> {
        self.check(new)?;
        let mut change = self.change(
            Op::Inserted,
            self.key_of(|f| Self::value(f, new), "key")?,
            xid,
            seq,
        );
        for field in &self.routes {
            let value = Self::required(field, Self::value(field, new)?, "routing")?;
            change.columns.push((field.name, value));
        }
        Ok((change, self.carried(new, None)?))
    }

    /// An Update: `old` is the old key (sent when the key changed) or the old row (`FULL`).
    pub fn update(
        &self,
        old: Option<&OldTuple<'_>>,
        new: &TupleData<'_>,
        xid: u64,
        seq: u64,
    ) -> Result<(Change, Carried), Unreadable> {
        self.check(new)?;
        if let Some(old) = old {
            self.check(old.tuple())?;
        }
        let key = self.key_of(|f| self.current(f, new, old), "key")?;
        let old_key = match old {
            Some(_) => {
                let known: Option<Vec<Value>> = self
                    .key
                    .iter()
                    .map(|f| self.old_value(f, old))
                    .collect::<Result<_, _>>()?;
                known.map(Key).filter(|old_key| *old_key != key)
            }
            None => None,
        };
        let mut change = self.change(Op::Updated, key, xid, seq);
        change.old_key = old_key;
        for field in &self.routes {
            let previous = self.old_value(field, old)?;
            let value = match self.current(field, new, old)? {
                Some(value) => value,
                // unchanged TOASTed: the value it had
                None => Self::required(field, previous.clone(), "routing")?,
            };
            if let Some(previous) = previous {
                if previous != value {
                    change.old_columns.push((field.name, previous));
                }
            }
            change.columns.push((field.name, value));
        }
        Ok((change, self.carried(new, old)?))
    }

    /// A Delete: routing columns the old tuple does not send are left out.
    pub fn delete(
        &self,
        old: &OldTuple<'_>,
        xid: u64,
        seq: u64,
    ) -> Result<(Change, Carried), Unreadable> {
        self.check(old.tuple())?;
        let key = self.key_of(|f| self.old_value(f, Some(old)), "key")?;
        let mut change = self.change(Op::Deleted, key, xid, seq);
        for field in &self.routes {
            if let Some(value) = self.old_value(field, Some(old))? {
                change.columns.push((field.name, value));
            }
        }
        Ok((change, Carried::Gone))
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
