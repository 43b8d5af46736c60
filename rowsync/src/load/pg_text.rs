//! PostgreSQL's text format → [`Value`], by column type.
//!
//! why: capture sources hand over column values as text (NOTIFY payloads now, pgoutput
//! tuples later). Both go through this one function, so a value decodes the same whatever
//! the source; the field types then decode from `Value` as they do for query results.

#[cfg(feature = "chrono")]
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use crate::error::DecodeError;
use crate::schema::Value;

/// A column type as the capture layer knows it (from `pg_type` at start-up).
///
/// A type whose cargo feature is off (`uuid`, `json`, `chrono`, `decimal`) is
/// [`PgType::Other`]: it cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgType {
    /// `bool`.
    Bool,
    /// `int2`.
    Int2,
    /// `int4`.
    Int4,
    /// `int8`.
    Int8,
    /// `float4`.
    Float4,
    /// `float8`.
    Float8,
    /// `text`, `varchar`, `bpchar`, `name`.
    Text,
    /// `bytea`.
    Bytea,
    /// `uuid`.
    #[cfg(feature = "uuid")]
    Uuid,
    /// `json` / `jsonb`.
    #[cfg(feature = "json")]
    Json,
    /// `date`.
    #[cfg(feature = "chrono")]
    Date,
    /// `time`.
    #[cfg(feature = "chrono")]
    Time,
    /// `timestamp`.
    #[cfg(feature = "chrono")]
    Timestamp,
    /// `timestamptz`.
    #[cfg(feature = "chrono")]
    Timestamptz,
    /// `numeric`.
    #[cfg(feature = "decimal")]
    Numeric,
    /// A PostgreSQL enum (decoded as its label).
    Enum,
    /// Anything else, by name: cannot be decoded.
    Other(String),
}

impl PgType {
    /// The type for a `pg_type.typname`, with `is_enum` from `typtype = 'e'`.
    pub fn from_catalog(typname: &str, is_enum: bool) -> PgType {
        if is_enum {
            return PgType::Enum;
        }
        match typname {
            "bool" => PgType::Bool,
            "int2" => PgType::Int2,
            "int4" => PgType::Int4,
            "int8" => PgType::Int8,
            "float4" => PgType::Float4,
            "float8" => PgType::Float8,
            "text" | "varchar" | "bpchar" | "name" => PgType::Text,
            "bytea" => PgType::Bytea,
            #[cfg(feature = "uuid")]
            "uuid" => PgType::Uuid,
            #[cfg(feature = "json")]
            "json" | "jsonb" => PgType::Json,
            #[cfg(feature = "chrono")]
            "date" => PgType::Date,
            #[cfg(feature = "chrono")]
            "time" => PgType::Time,
            #[cfg(feature = "chrono")]
            "timestamp" => PgType::Timestamp,
            #[cfg(feature = "chrono")]
            "timestamptz" => PgType::Timestamptz,
            #[cfg(feature = "decimal")]
            "numeric" => PgType::Numeric,
            other => PgType::Other(other.to_owned()),
        }
    }
}

fn malformed(ty: &PgType, text: &str) -> DecodeError {
    let shown: String = text.chars().take(40).collect();
    DecodeError::Malformed {
        message: format!("`{shown}` is not a valid {ty:?} in text format"),
    }
}

/// Parses a value in PostgreSQL's text output format (`None` is SQL `NULL`).
pub fn value_from_text(ty: &PgType, text: Option<&str>) -> Result<Value, DecodeError> {
    let Some(text) = text else {
        return Ok(Value::Null);
    };
    let bad = || malformed(ty, text);
    Ok(match ty {
        PgType::Bool => match text {
            "t" | "true" => Value::Bool(true),
            "f" | "false" => Value::Bool(false),
            _ => return Err(bad()),
        },
        PgType::Int2 => Value::I16(text.parse().map_err(|_| bad())?),
        PgType::Int4 => Value::I32(text.parse().map_err(|_| bad())?),
        PgType::Int8 => Value::I64(text.parse().map_err(|_| bad())?),
        PgType::Float4 => Value::F32(parse_float(text).ok_or_else(bad)? as f32),
        PgType::Float8 => Value::F64(parse_float(text).ok_or_else(bad)?),
        PgType::Text | PgType::Enum => Value::Text(text.to_owned()),
        PgType::Bytea => Value::Bytes(parse_bytea(text).ok_or_else(bad)?),
        #[cfg(feature = "uuid")]
        PgType::Uuid => Value::Uuid(text.parse().map_err(|_| bad())?),
        #[cfg(feature = "json")]
        PgType::Json => Value::Json(serde_json::from_str(text).map_err(|_| bad())?),
        #[cfg(feature = "chrono")]
        PgType::Date => {
            Value::Date(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?)
        }
        #[cfg(feature = "chrono")]
        PgType::Time => {
            Value::Time(NaiveTime::parse_from_str(text, "%H:%M:%S%.f").map_err(|_| bad())?)
        }
        #[cfg(feature = "chrono")]
        PgType::Timestamp => Value::Timestamp(
            NaiveDateTime::parse_from_str(&iso_space(text), "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|_| bad())?,
        ),
        #[cfg(feature = "chrono")]
        PgType::Timestamptz => {
            Value::TimestampTz(parse_timestamptz(&iso_space(text)).ok_or_else(bad)?)
        }
        // exact: more digits than `Decimal` holds is an error, never a rounded key
        #[cfg(feature = "decimal")]
        PgType::Numeric => {
            Value::Numeric(rust_decimal::Decimal::from_str_exact(text).map_err(|_| bad())?)
        }
        PgType::Other(name) => {
            return Err(DecodeError::UnsupportedType {
                type_name: name.clone(),
            })
        }
    })
}

/// `2024-01-02T03:04:05` (JSON's rendering, used by trigger payloads) as PostgreSQL's text
/// output writes it, `2024-01-02 03:04:05`.
#[cfg(feature = "chrono")]
fn iso_space(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() > 10 && text.as_bytes()[10] == b'T' {
        let mut owned = text.to_owned();
        owned.replace_range(10..11, " ");
        std::borrow::Cow::Owned(owned)
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// `bytea_output = hex`: `\x0aff...`.
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// PostgreSQL prints offsets as `+00`, `+05:30` or `-03`; chrono wants `+hh:mm`.
#[cfg(feature = "chrono")]
fn parse_timestamptz(text: &str) -> Option<DateTime<Utc>> {
    let split = text.rfind(['+', '-'])?;
    let (stamp, offset) = text.split_at(split);
    if !stamp.contains(' ') {
        return None;
    }
    let offset = match offset.len() {
        3 => format!("{offset}:00"),
        6 => offset.to_owned(),
        9 => offset.to_owned(),
        _ => return None,
    };
    let fmt = if offset.len() == 9 {
        "%Y-%m-%d %H:%M:%S%.f%::z"
    } else {
        "%Y-%m-%d %H:%M:%S%.f%:z"
    };
    DateTime::parse_from_str(&format!("{stamp}{offset}"), fmt)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_text_output() {
        let v = |ty, s| value_from_text(&ty, Some(s)).unwrap();
        assert_eq!(v(PgType::Int8, "-42"), Value::I64(-42));
        assert_eq!(v(PgType::Bool, "t"), Value::Bool(true));
        assert_eq!(
            v(PgType::Bytea, "\\x00ff10"),
            Value::Bytes(vec![0, 255, 16])
        );
        assert_eq!(value_from_text(&PgType::Int4, None).unwrap(), Value::Null);
    }

    #[cfg(feature = "chrono")]
    #[test]
    fn parses_postgres_date_time_output() {
        let v = |ty, s| value_from_text(&ty, Some(s)).unwrap();
        assert_eq!(
            v(PgType::Timestamptz, "2024-01-02 03:04:05.25+05:30"),
            Value::TimestampTz("2024-01-01T21:34:05.25Z".parse().unwrap())
        );
        assert_eq!(
            v(PgType::Timestamptz, "2024-01-02T03:04:05.25+05:30"),
            Value::TimestampTz("2024-01-01T21:34:05.25Z".parse().unwrap())
        );
        assert_eq!(
            v(PgType::Timestamp, "2024-01-02T03:04:05"),
            Value::Timestamp("2024-01-02T03:04:05".parse().unwrap())
        );
        assert_eq!(
            v(PgType::Timestamptz, "2024-01-02 03:04:05+00"),
            Value::TimestampTz("2024-01-02T03:04:05Z".parse().unwrap())
        );
    }

    #[cfg(feature = "decimal")]
    #[test]
    fn numeric_text_is_exact_or_an_error() {
        let v = |s| value_from_text(&PgType::Numeric, Some(s));
        assert_eq!(
            v("12.3400").unwrap(),
            Value::Numeric("12.34".parse().unwrap())
        );
        assert_eq!(
            v("-0.000001").unwrap(),
            Value::Numeric("-0.000001".parse().unwrap())
        );
        // NaN and more digits than rust_decimal holds are errors, not rounded values
        assert!(v("NaN").is_err());
        assert!(v("123456789012345678901234567890.123").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for ty in [
            PgType::Int4,
            PgType::Bytea,
            #[cfg(feature = "uuid")]
            PgType::Uuid,
            #[cfg(feature = "chrono")]
            PgType::Timestamptz,
            #[cfg(feature = "chrono")]
            PgType::Date,
            #[cfg(feature = "decimal")]
            PgType::Numeric,
        ] {
            for text in ["", "x", "\\x0", "\\xzz", "2024-13-45", "+", "é-"] {
                assert!(value_from_text(&ty, Some(text)).is_err(), "{ty:?} {text:?}");
            }
        }
        assert!(matches!(
            value_from_text(&PgType::Other("point".into()), Some("(1,2)")),
            Err(DecodeError::UnsupportedType { .. })
        ));
    }

    /// Without its cargo feature a type is not known, and its values are an error.
    #[test]
    fn types_behind_an_off_feature_are_unsupported() {
        let off = [
            #[cfg(not(feature = "uuid"))]
            "uuid",
            #[cfg(not(feature = "json"))]
            "jsonb",
            #[cfg(not(feature = "chrono"))]
            "timestamptz",
            #[cfg(not(feature = "decimal"))]
            "numeric",
        ];
        for name in off {
            let ty = PgType::from_catalog(name, false);
            assert_eq!(ty, PgType::Other(name.to_owned()));
            assert!(matches!(
                value_from_text(&ty, Some("1")),
                Err(DecodeError::UnsupportedType { .. })
            ));
        }
    }
}
