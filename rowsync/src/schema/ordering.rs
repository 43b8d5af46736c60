//! The order PostgreSQL gives values and keys (ascending, NULLs last): what sorted lists of
//! held rows follow.

use std::cmp::Ordering;

use super::{Key, Value};

/// Compares two values of one column like PostgreSQL's default `ASC` (NULLs last).
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    use Value::*;
    match (a, b) {
        (Null, Null) => Ordering::Equal,
        (Null, _) => Ordering::Greater,
        (_, Null) => Ordering::Less,
        (Bool(x), Bool(y)) => x.cmp(y),
        (I16(_) | I32(_) | I64(_), I16(_) | I32(_) | I64(_)) => as_i64(a).cmp(&as_i64(b)),
        (F32(_) | F64(_), F32(_) | F64(_)) => as_f64(a).total_cmp(&as_f64(b)),
        (Text(x), Text(y)) => x.cmp(y),
        (Bytes(x), Bytes(y)) => x.cmp(y),
        #[cfg(feature = "uuid")]
        (Uuid(x), Uuid(y)) => x.cmp(y),
        #[cfg(feature = "chrono")]
        (Date(x), Date(y)) => x.cmp(y),
        #[cfg(feature = "chrono")]
        (Time(x), Time(y)) => x.cmp(y),
        #[cfg(feature = "chrono")]
        (Timestamp(x), Timestamp(y)) => x.cmp(y),
        #[cfg(feature = "chrono")]
        (TimestampTz(x), TimestampTz(y)) => x.cmp(y),
        #[cfg(feature = "decimal")]
        (Numeric(x), Numeric(y)) => x.cmp(y),
        #[cfg(feature = "json")]
        (Json(x), Json(y)) => x.to_string().cmp(&y.to_string()),
        _ => a.kind().cmp(b.kind()),
    }
}

fn as_i64(v: &Value) -> i64 {
    match *v {
        Value::I16(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::I64(x) => x,
        _ => 0,
    }
}

fn as_f64(v: &Value) -> f64 {
    match *v {
        Value::F32(x) => x.into(),
        Value::F64(x) => x,
        _ => 0.0,
    }
}

/// Compares two keys value by value.
pub(crate) fn compare_keys(a: &Key, b: &Key) -> Ordering {
    a.0.iter()
        .zip(b.0.iter())
        .map(|(x, y)| compare_values(x, y))
        .find(|o| *o != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}
