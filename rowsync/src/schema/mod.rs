//! What users declare: the [`Schema`] trait (implemented by `#[derive(Schema)]`), the
//! association model, keys, filters and column values.

mod assoc;
mod filter;
mod image;
mod key;
mod meta;
mod ordering;
#[cfg(feature = "serde")]
mod serde_impls;
pub(crate) mod value;

pub use assoc::{Assoc, AssocField, AssocValue, AssocVisitor};
pub use filter::Filter;
pub(crate) use image::{RowImage, SharedImage};
pub use key::Key;
pub use meta::{
    quote_ident, AssocDef, AssocKind, ColumnDef, JoinThrough, OrderBy, SchemaMeta, SortOrder,
    TableName,
};
pub(crate) use ordering::{compare_keys, compare_values};
pub use value::{FieldValue, Value};

use crate::error::{DecodeError, SchemaError};

/// Where a row's column values come from: a query result, a row image (the shared row cache, a
/// replication tuple).
///
/// `index` is the position of the column in [`SchemaMeta::columns`].
pub trait RowSource {
    /// The value of the column at `index` of the schema's column list.
    fn value(&mut self, index: usize) -> Result<Value, DecodeError>;
}

/// A struct mapped to a table. Implement it with `#[derive(Schema)]`; by hand is possible but
/// the derive keeps the metadata, decoder and association accessors consistent.
pub trait Schema: Clone + Send + Sync + 'static {
    /// The table, columns, primary key and associations, built at compile time.
    fn meta() -> &'static SchemaMeta;

    /// Decodes one row (every column of [`SchemaMeta::columns`]); associations start
    /// [`Assoc::NotLoaded`].
    fn from_row(row: &mut dyn RowSource) -> Result<Self, DecodeError>;

    /// The value of the column at `index` of [`SchemaMeta::columns`] (`Value::Null` past the end).
    fn column_value(&self, index: usize) -> Value;

    /// Whether the column at `index` equals `value` (as `==` on [`Value`]), without building
    /// a [`Value`]. `#[derive(Schema)]` compares the field in place.
    fn column_eq(&self, index: usize, value: &Value) -> bool {
        self.column_value(index) == *value
    }

    /// Hands the visitor typed access to association number `index` of
    /// [`SchemaMeta::assocs`]; `None` past the end.
    fn visit_assoc<V: AssocVisitor<Self>>(index: usize, visitor: V) -> Option<V::Output>;

    /// The primary key of this row.
    fn primary_key(&self) -> Key {
        Key(Self::meta()
            .primary_key
            .iter()
            .map(|&i| self.column_value(i))
            .collect())
    }

    /// Whether this row's primary key is `key` (without building a [`Key`]).
    fn has_key(&self, key: &Key) -> bool {
        let pk = Self::meta().primary_key;
        pk.len() == key.0.len() && pk.iter().zip(&key.0).all(|(&i, v)| self.column_eq(i, v))
    }

    /// The value of a column by its database name.
    fn value_of(&self, column: &str) -> Option<Value> {
        Self::meta()
            .column_index(column)
            .map(|i| self.column_value(i))
    }
}

/// Finds an association of `S` by name, with an error listing the known ones.
pub(crate) fn assoc_index(meta: &'static SchemaMeta, name: &str) -> Result<usize, SchemaError> {
    meta.assoc_index(name)
        .ok_or_else(|| SchemaError::UnknownAssociation {
            schema: meta.name,
            name: name.to_owned(),
            known: meta
                .assocs
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Finds a column of a schema by its database name, with an error listing the known ones.
pub(crate) fn column_index(meta: &'static SchemaMeta, name: &str) -> Result<usize, SchemaError> {
    meta.column_index(name)
        .ok_or_else(|| SchemaError::UnknownColumn {
            schema: meta.name,
            name: name.to_owned(),
            known: meta
                .columns
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Decodes column `index` of `row` into a field, naming the column in the error.
/// Called by the code `#[derive(Schema)]` generates.
pub fn decode_field<T: FieldValue>(
    row: &mut dyn RowSource,
    index: usize,
    table: &'static str,
    column: &'static str,
) -> Result<T, DecodeError> {
    row.value(index)
        .and_then(T::from_value)
        .map_err(|e| e.in_column(table, column))
}
