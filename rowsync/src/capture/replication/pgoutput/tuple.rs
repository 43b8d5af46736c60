//! TupleData: the column values of one row image in an Insert, Update or Delete.

use super::error::DecodeError;
use super::reader::Reader;

const NULL_KIND: u8 = b'n';
const UNCHANGED_KIND: u8 = b'u';
const TEXT_KIND: u8 = b't';
const BINARY_KIND: u8 = b'b';

/// The values of one row image, in the column order of the table's [`Relation`] message.
///
/// [`Relation`]: super::Relation
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleData<'a> {
    /// One value per column.
    pub columns: Vec<ColumnValue<'a>>,
}

/// One column value of a [`TupleData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnValue<'a> {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value whose bytes the server did not send. The value is the one
    /// the row had before this change: take it from what is held, or re-read the row.
    Unchanged,
    /// `t`: the value in PostgreSQL's text format (its type's output function).
    Text(&'a str),
    /// `b`: the value in PostgreSQL's binary format (its type's send function); only with the
    /// `binary` option (PostgreSQL 14+).
    Binary(&'a [u8]),
}

impl<'a> ColumnValue<'a> {
    /// The text, for a `t` value.
    pub fn as_text(&self) -> Option<&'a str> {
        match self {
            ColumnValue::Text(text) => Some(text),
            _ => None,
        }
    }

    /// `true` for `u`: the value was not sent and must be taken from what is held.
    pub fn is_unchanged(&self) -> bool {
        matches!(self, ColumnValue::Unchanged)
    }
}

impl<'a> TupleData<'a> {
    /// The value of column `index`, in Relation column order.
    pub fn get(&self, index: usize) -> Option<&ColumnValue<'a>> {
        self.columns.get(index)
    }

    /// `true` when some column is `u` (unchanged TOASTed value, not sent).
    pub fn has_unchanged(&self) -> bool {
        self.columns.iter().any(ColumnValue::is_unchanged)
    }
}

/// `Int16` column count, then per column a kind byte and, for `t` and `b`, an `Int32` length
/// and that many bytes.
pub(super) fn read_tuple<'a>(r: &mut Reader<'a>) -> Result<TupleData<'a>, DecodeError> {
    // why 1: the smallest column is a lone kind byte (`n` or `u`)
    let count = r.count16("TupleData column count", 1)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let offset = r.offset();
        let value = match r.u8("TupleData column kind")? {
            NULL_KIND => ColumnValue::Null,
            UNCHANGED_KIND => ColumnValue::Unchanged,
            TEXT_KIND => ColumnValue::Text(r.counted_str("TupleData text value")?),
            BINARY_KIND => ColumnValue::Binary(r.counted_bytes("TupleData binary value")?),
            kind => return Err(DecodeError::UnknownColumnKind { offset, kind }),
        };
        columns.push(value);
    }
    Ok(TupleData { columns })
}
