//! Converting between PostgreSQL's binary values and [`Value`], the one place that knows
//! PostgreSQL types.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::Row;

use crate::error::DecodeError;
use crate::schema::{RowSource, Value};

type BoxError = Box<dyn Error + Sync + Send>;

/// Whether rowsync can decode a column of this type (with the cargo features it was built with).
fn decodable(ty: &Type) -> bool {
    match *ty {
        Type::BOOL
        | Type::INT2
        | Type::INT4
        | Type::INT8
        | Type::OID
        | Type::FLOAT4
        | Type::FLOAT8
        | Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::BYTEA => true,
        #[cfg(feature = "uuid")]
        Type::UUID => true,
        #[cfg(feature = "json")]
        Type::JSON | Type::JSONB => true,
        #[cfg(feature = "chrono")]
        Type::DATE | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => true,
        #[cfg(feature = "decimal")]
        Type::NUMERIC => true,
        _ => matches!(ty.kind(), Kind::Enum(_)),
    }
}

fn is_textual(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || matches!(ty.kind(), Kind::Enum(_))
}

/// A [`Value`] read from a binary column of any supported type.
struct PgValue(Value);

impl<'a> FromSql<'a> for PgValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let v = match *ty {
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::INT2 => Value::I16(i16::from_sql(ty, raw)?),
            Type::INT4 => Value::I32(i32::from_sql(ty, raw)?),
            Type::INT8 => Value::I64(i64::from_sql(ty, raw)?),
            Type::OID => Value::I64(u32::from_sql(ty, raw)?.into()),
            Type::FLOAT4 => Value::F32(f32::from_sql(ty, raw)?),
            Type::FLOAT8 => Value::F64(f64::from_sql(ty, raw)?),
            Type::BYTEA => Value::Bytes(Vec::<u8>::from_sql(ty, raw)?),
            #[cfg(feature = "uuid")]
            Type::UUID => Value::Uuid(uuid::Uuid::from_sql(ty, raw)?),
            #[cfg(feature = "json")]
            Type::JSON | Type::JSONB => Value::Json(serde_json::Value::from_sql(ty, raw)?),
            #[cfg(feature = "chrono")]
            Type::DATE => Value::Date(chrono::NaiveDate::from_sql(ty, raw)?),
            #[cfg(feature = "chrono")]
            Type::TIME => Value::Time(chrono::NaiveTime::from_sql(ty, raw)?),
            #[cfg(feature = "chrono")]
            Type::TIMESTAMP => Value::Timestamp(chrono::NaiveDateTime::from_sql(ty, raw)?),
            #[cfg(feature = "chrono")]
            Type::TIMESTAMPTZ => Value::TimestampTz(chrono::DateTime::from_sql(ty, raw)?),
            // why rust_decimal's decoder: it refuses NaN and values past 28 digits with an
            // error rather than rounding them
            #[cfg(feature = "decimal")]
            Type::NUMERIC => Value::Numeric(rust_decimal::Decimal::from_sql(ty, raw)?),
            // why: enums arrive in binary as their label's UTF-8 bytes, same as text.
            _ if is_textual(ty) => Value::Text(std::str::from_utf8(raw)?.to_owned()),
            _ => return Err(format!("unsupported type {}", ty.name()).into()),
        };
        Ok(PgValue(v))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Reads column `index` of a query row as a [`Value`].
pub(crate) fn read_value(row: &Row, index: usize) -> Result<Value, DecodeError> {
    let column = row
        .columns()
        .get(index)
        .ok_or(DecodeError::MissingColumn { index })?;
    if !decodable(column.type_()) {
        return Err(DecodeError::UnsupportedType {
            type_name: column.type_().name().to_owned(),
        });
    }
    row.try_get::<_, PgValue>(index)
        .map(|v| v.0)
        .map_err(|e| DecodeError::Malformed {
            message: e.to_string(),
        })
}

/// A query row as a [`RowSource`]: the schema's columns come first, in order.
pub(crate) struct QueryRow<'r>(pub &'r Row);

impl RowSource for QueryRow<'_> {
    fn value(&mut self, index: usize) -> Result<Value, DecodeError> {
        read_value(self.0, index)
    }
}

fn encode_int(n: i64, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    match *ty {
        Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
        Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
        Type::INT8 => n.to_sql(ty, out),
        Type::OID => u32::try_from(n)?.to_sql(ty, out),
        // why: i64 → f64 may round; only exact conversions are sent.
        Type::FLOAT8 if (n as f64) as i64 == n => (n as f64).to_sql(ty, out),
        _ => Err(format!("cannot send an integer as {}", ty.name()).into()),
    }
}

/// Values are sent as parameters, converted to the type the server expects (an `i64` key
/// bound to an `int4` column is narrowed, with an error if it does not fit).
impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::I16(v) => encode_int((*v).into(), ty, out),
            Value::I32(v) => encode_int((*v).into(), ty, out),
            Value::I64(v) => encode_int(*v, ty, out),
            Value::F32(v) if *ty == Type::FLOAT8 => f64::from(*v).to_sql(ty, out),
            Value::F32(v) => v.to_sql(ty, out),
            // why: f64 → f32 loses precision silently; refuse rather than match wrong rows.
            Value::F64(v) if *ty == Type::FLOAT8 => v.to_sql(ty, out),
            Value::F64(_) => Err(format!("cannot send a float8 as {}", ty.name()).into()),
            Value::Text(s) if is_textual(ty) => {
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            Value::Text(_) => Err(format!("cannot send text as {}", ty.name()).into()),
            Value::Bytes(v) => v.to_sql(ty, out),
            #[cfg(feature = "uuid")]
            Value::Uuid(v) => v.to_sql(ty, out),
            #[cfg(feature = "json")]
            Value::Json(v) => v.to_sql(ty, out),
            #[cfg(feature = "chrono")]
            Value::Date(v) => v.to_sql(ty, out),
            #[cfg(feature = "chrono")]
            Value::Time(v) => v.to_sql(ty, out),
            #[cfg(feature = "chrono")]
            Value::Timestamp(v) => v.to_sql(ty, out),
            #[cfg(feature = "chrono")]
            Value::TimestampTz(v) => v.to_sql(ty, out),
            #[cfg(feature = "decimal")]
            Value::Numeric(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
