//! Column values independent of where a row came from.
//!
//! why: a row reaches rowsync from a query result today and from a replication tuple later.
//! Both are turned into [`Value`]s first, and every field is decoded from a `Value` by one
//! trait, [`FieldValue`], so there is a single decoding path whatever the source.

use std::hash::{Hash, Hasher};

#[cfg(feature = "chrono")]
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
#[cfg(feature = "decimal")]
use rust_decimal::Decimal;
#[cfg(feature = "uuid")]
use uuid::Uuid;

use crate::error::DecodeError;

/// One column value, as read from PostgreSQL or taken from a field.
///
/// Equality and hashing treat all integer widths as one (an `int4` foreign key equals the
/// `int8` primary key it points at), and likewise `float4`/`float8`.
///
/// The variants for `uuid`, `json`, the date and time types and `numeric` exist with the
/// cargo features `uuid`, `json`, `chrono` and `decimal` (all on by default).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// `bool`.
    Bool(bool),
    /// `int2`.
    I16(i16),
    /// `int4`.
    I32(i32),
    /// `int8`.
    I64(i64),
    /// `float4`.
    F32(f32),
    /// `float8`.
    F64(f64),
    /// `text`, `varchar`, `char`, `name`, and text-backed enums.
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `uuid`.
    #[cfg(feature = "uuid")]
    Uuid(Uuid),
    /// `json` / `jsonb`.
    #[cfg(feature = "json")]
    Json(serde_json::Value),
    /// `date`.
    #[cfg(feature = "chrono")]
    Date(NaiveDate),
    /// `time`.
    #[cfg(feature = "chrono")]
    Time(NaiveTime),
    /// `timestamp` (without time zone).
    #[cfg(feature = "chrono")]
    Timestamp(NaiveDateTime),
    /// `timestamptz`.
    #[cfg(feature = "chrono")]
    TimestampTz(DateTime<Utc>),
    /// `numeric` (up to 28 significant digits; more is a decode error, never a rounding).
    #[cfg(feature = "decimal")]
    Numeric(Decimal),
}

impl Value {
    /// Whether this is SQL `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::I16(_) => "int2",
            Value::I32(_) => "int4",
            Value::I64(_) => "int8",
            Value::F32(_) => "float4",
            Value::F64(_) => "float8",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytea",
            #[cfg(feature = "uuid")]
            Value::Uuid(_) => "uuid",
            #[cfg(feature = "json")]
            Value::Json(_) => "json",
            #[cfg(feature = "chrono")]
            Value::Date(_) => "date",
            #[cfg(feature = "chrono")]
            Value::Time(_) => "time",
            #[cfg(feature = "chrono")]
            Value::Timestamp(_) => "timestamp",
            #[cfg(feature = "chrono")]
            Value::TimestampTz(_) => "timestamptz",
            #[cfg(feature = "decimal")]
            Value::Numeric(_) => "numeric",
        }
    }

    pub(crate) fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        if let (Some(a), Some(b)) = (self.as_i64(), other.as_i64()) {
            return a == b;
        }
        if let (Some(a), Some(b)) = (self.as_f64(), other.as_f64()) {
            return a.to_bits() == b.to_bits() || a == b;
        }
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            #[cfg(feature = "uuid")]
            (Value::Uuid(a), Value::Uuid(b)) => a == b,
            #[cfg(feature = "json")]
            (Value::Json(a), Value::Json(b)) => a == b,
            #[cfg(feature = "chrono")]
            (Value::Date(a), Value::Date(b)) => a == b,
            #[cfg(feature = "chrono")]
            (Value::Time(a), Value::Time(b)) => a == b,
            #[cfg(feature = "chrono")]
            (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
            #[cfg(feature = "chrono")]
            (Value::TimestampTz(a), Value::TimestampTz(b)) => a == b,
            // `Decimal`'s equality ignores the scale (1.0 = 1.00), as PostgreSQL's does
            #[cfg(feature = "decimal")]
            (Value::Numeric(a), Value::Numeric(b)) => a == b,
            _ => false,
        }
    }
}

// why: keys are compared as sets of values; float keys are rare but must not break the map,
// so equal floats hash by bits (NaN equals itself here, unlike IEEE).
impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if let Some(v) = self.as_i64() {
            0u8.hash(state);
            return v.hash(state);
        }
        if let Some(v) = self.as_f64() {
            1u8.hash(state);
            return v.to_bits().hash(state);
        }
        match self {
            Value::Null => 2u8.hash(state),
            Value::Bool(v) => v.hash(state),
            Value::Text(v) => v.hash(state),
            Value::Bytes(v) => v.hash(state),
            #[cfg(feature = "uuid")]
            Value::Uuid(v) => v.hash(state),
            #[cfg(feature = "json")]
            Value::Json(v) => v.to_string().hash(state),
            #[cfg(feature = "chrono")]
            Value::Date(v) => v.hash(state),
            #[cfg(feature = "chrono")]
            Value::Time(v) => v.hash(state),
            #[cfg(feature = "chrono")]
            Value::Timestamp(v) => v.hash(state),
            #[cfg(feature = "chrono")]
            Value::TimestampTz(v) => v.hash(state),
            #[cfg(feature = "decimal")]
            Value::Numeric(v) => v.normalize().hash(state),
            _ => {}
        }
    }
}

/// The value as a person reads it: `NULL`, `42`, `'text'`, `x'00ff'`, JSON as JSON.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Text(v) => write!(f, "'{}'", v.replace('\'', "''")),
            Value::Bytes(v) => {
                f.write_str("x'")?;
                v.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
                f.write_str("'")
            }
            #[cfg(feature = "uuid")]
            Value::Uuid(v) => write!(f, "{v}"),
            #[cfg(feature = "json")]
            Value::Json(v) => write!(f, "{v}"),
            #[cfg(feature = "chrono")]
            Value::Date(v) => write!(f, "{v}"),
            #[cfg(feature = "chrono")]
            Value::Time(v) => write!(f, "{v}"),
            #[cfg(feature = "chrono")]
            Value::Timestamp(v) => write!(f, "{v}"),
            #[cfg(feature = "chrono")]
            Value::TimestampTz(v) => write!(f, "{v}"),
            #[cfg(feature = "decimal")]
            Value::Numeric(v) => write!(f, "{v}"),
        }
    }
}

/// A Rust type that a column can be decoded into and encoded from.
///
/// Implemented for the integer and float types, `bool`, `String`, `Vec<u8>`, and with their
/// cargo features (all on by default) for `Uuid` (`uuid`), `serde_json::Value` (`json`),
/// chrono's `NaiveDate`, `NaiveTime`, `NaiveDateTime`, `DateTime<Utc>` (`chrono`) and
/// `Decimal` for `numeric` (`decimal`); and for `Option<T>` of any of them. Text-backed
/// enums get it from `#[derive(TextEnum)]`.
pub trait FieldValue: Sized {
    /// PostgreSQL type names (`pg_type.typname`) a column may have for this field; `"enum"`
    /// stands for any PostgreSQL enum. Checked against the live database when a hub starts.
    const SQL_TYPES: &'static [&'static str];
    /// Decodes a column value; `NULL` into a non-`Option` type is an error.
    fn from_value(value: Value) -> Result<Self, DecodeError>;
    /// Encodes the field as a column value.
    fn to_value(&self) -> Value;
    /// Whether the field equals `value` as [`Value`]'s `==` would say, without building a
    /// [`Value`]: sync compares every held row's key with the changed row's, and a `String`
    /// key cloned for each comparison is most of that cost.
    fn eq_value(&self, value: &Value) -> bool {
        self.to_value() == *value
    }
}

fn mismatch<T>(expected: &'static str, found: &Value) -> Result<T, DecodeError> {
    if found.is_null() {
        Err(DecodeError::UnexpectedNull)
    } else {
        Err(DecodeError::TypeMismatch {
            expected,
            found: found.kind(),
        })
    }
}

macro_rules! int_field {
    ($ty:ty, $variant:ident, $name:literal, $types:expr) => {
        impl FieldValue for $ty {
            const SQL_TYPES: &'static [&'static str] = $types;
            fn from_value(value: Value) -> Result<Self, DecodeError> {
                match value.as_i64() {
                    Some(v) => <$ty>::try_from(v).map_err(|_| DecodeError::OutOfRange {
                        expected: $name,
                        value: v.to_string(),
                    }),
                    None => mismatch($name, &value),
                }
            }
            fn to_value(&self) -> Value {
                Value::$variant(*self)
            }
            fn eq_value(&self, value: &Value) -> bool {
                value.as_i64() == Some(i64::from(*self))
            }
        }
    };
}

int_field!(i16, I16, "int2 (i16)", &["int2"]);
int_field!(i32, I32, "int4 (i32)", &["int2", "int4"]);
int_field!(i64, I64, "int8 (i64)", &["int2", "int4", "int8", "oid"]);

impl FieldValue for f64 {
    const SQL_TYPES: &'static [&'static str] = &["float4", "float8"];
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value.as_f64() {
            Some(v) => Ok(v),
            None => mismatch("float8 (f64)", &value),
        }
    }
    fn to_value(&self) -> Value {
        Value::F64(*self)
    }
}

impl FieldValue for f32 {
    const SQL_TYPES: &'static [&'static str] = &["float4"];
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::F32(v) => Ok(v),
            other => mismatch("float4 (f32)", &other),
        }
    }
    fn to_value(&self) -> Value {
        Value::F32(*self)
    }
}

macro_rules! plain_field {
    ($ty:ty, $variant:ident, $name:literal, $types:expr) => {
        impl FieldValue for $ty {
            const SQL_TYPES: &'static [&'static str] = $types;
            fn from_value(value: Value) -> Result<Self, DecodeError> {
                match value {
                    Value::$variant(v) => Ok(v),
                    other => mismatch($name, &other),
                }
            }
            fn to_value(&self) -> Value {
                Value::$variant(self.clone())
            }
            fn eq_value(&self, value: &Value) -> bool {
                matches!(value, Value::$variant(v) if v == self)
            }
        }
    };
}

plain_field!(bool, Bool, "bool", &["bool"]);
plain_field!(
    String,
    Text,
    "text (String)",
    &["text", "varchar", "bpchar", "name", "enum"]
);
plain_field!(Vec<u8>, Bytes, "bytea (Vec<u8>)", &["bytea"]);
#[cfg(feature = "uuid")]
plain_field!(Uuid, Uuid, "uuid", &["uuid"]);
#[cfg(feature = "json")]
plain_field!(
    serde_json::Value,
    Json,
    "jsonb (serde_json::Value)",
    &["json", "jsonb"]
);
#[cfg(feature = "chrono")]
plain_field!(NaiveDate, Date, "date", &["date"]);
#[cfg(feature = "chrono")]
plain_field!(NaiveTime, Time, "time", &["time"]);
#[cfg(feature = "chrono")]
plain_field!(NaiveDateTime, Timestamp, "timestamp", &["timestamp"]);
#[cfg(feature = "chrono")]
plain_field!(DateTime<Utc>, TimestampTz, "timestamptz", &["timestamptz"]);
#[cfg(feature = "decimal")]
plain_field!(Decimal, Numeric, "numeric (Decimal)", &["numeric"]);

impl<T: FieldValue> FieldValue for Option<T> {
    const SQL_TYPES: &'static [&'static str] = T::SQL_TYPES;
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
    fn eq_value(&self, value: &Value) -> bool {
        match self {
            Some(v) => v.eq_value(value),
            None => value.is_null(),
        }
    }
}

macro_rules! value_from {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl From<$ty> for Value {
            fn from(v: $ty) -> Value {
                Value::$variant(v.into())
            }
        }
    )*};
}

value_from!(
    bool => Bool, i16 => I16, i32 => I32, i64 => I64, f32 => F32, f64 => F64,
    String => Text, &str => Text, Vec<u8> => Bytes,
);
#[cfg(feature = "uuid")]
value_from!(Uuid => Uuid);
#[cfg(feature = "json")]
value_from!(serde_json::Value => Json);
#[cfg(feature = "chrono")]
value_from!(
    NaiveDate => Date, NaiveTime => Time, NaiveDateTime => Timestamp,
    DateTime<Utc> => TimestampTz,
);
#[cfg(feature = "decimal")]
value_from!(Decimal => Numeric);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn integer_widths_compare_and_hash_as_one() {
        assert_eq!(Value::I32(7), Value::I64(7));
        let set: HashSet<Value> = [Value::I64(7)].into_iter().collect();
        assert!(set.contains(&Value::I16(7)));
        assert_ne!(Value::I64(7), Value::Text("7".into()));
    }

    #[test]
    fn null_into_plain_type_is_an_error_and_into_option_is_none() {
        assert!(matches!(
            i64::from_value(Value::Null),
            Err(DecodeError::UnexpectedNull)
        ));
        assert_eq!(Option::<i64>::from_value(Value::Null).unwrap(), None);
    }

    #[test]
    fn values_and_keys_display_readably() {
        use crate::schema::Key;
        assert_eq!(Key::from(7i64).to_string(), "7");
        assert_eq!(Key::from((1i64, "it's")).to_string(), "(1, 'it''s')");
        assert_eq!(Value::Bytes(vec![0, 255]).to_string(), "x'00ff'");
        assert_eq!(Value::Null.to_string(), "NULL");
    }

    /// `eq_value` is a faster `==`: it must agree with it for every pair.
    #[test]
    fn eq_value_agrees_with_value_equality() {
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::I16(7),
            Value::I32(7),
            Value::I64(7),
            Value::I64(8),
            Value::F64(7.0),
            Value::Text("7".into()),
            Value::Text("a".into()),
            #[cfg(feature = "uuid")]
            Value::Uuid(Uuid::nil()),
            Value::Bytes(vec![7]),
        ];
        fn check<T: FieldValue>(field: T, values: &[Value]) {
            for v in values {
                assert_eq!(field.eq_value(v), field.to_value() == *v, "{v:?}");
            }
        }
        check(7i16, &values);
        check(7i32, &values);
        check(7i64, &values);
        check(Some(7i64), &values);
        check(None::<i64>, &values);
        check(7.0f64, &values);
        check(true, &values);
        check(String::from("a"), &values);
        check(Some(String::from("7")), &values);
        #[cfg(feature = "uuid")]
        check(Uuid::nil(), &values);
        check(vec![7u8], &values);
        #[cfg(feature = "decimal")]
        {
            check(Decimal::new(70, 1), &values);
            check(Decimal::new(7, 0), &[Value::Numeric(Decimal::new(700, 2))]);
        }
    }

    #[test]
    fn narrowing_out_of_range_is_an_error() {
        assert!(matches!(
            i16::from_value(Value::I64(100_000)),
            Err(DecodeError::OutOfRange { .. })
        ));
        assert_eq!(i32::from_value(Value::I64(5)).unwrap(), 5);
    }
}
