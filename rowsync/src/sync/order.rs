//! Where an inserted row goes: by the association's `order_by`, then by primary key — the
//! order a fresh load would give.

use std::cmp::Ordering;

use crate::schema::{OrderBy, Schema, SortOrder, Value};

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
        (Uuid(x), Uuid(y)) => x.cmp(y),
        (Date(x), Date(y)) => x.cmp(y),
        (Time(x), Time(y)) => x.cmp(y),
        (Timestamp(x), Timestamp(y)) => x.cmp(y),
        (TimestampTz(x), TimestampTz(y)) => x.cmp(y),
        (Numeric(x), Numeric(y)) => x.cmp(y),
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
pub(crate) fn compare_keys(a: &crate::schema::Key, b: &crate::schema::Key) -> Ordering {
    a.0.iter()
        .zip(b.0.iter())
        .map(|(x, y)| compare_values(x, y))
        .find(|o| *o != Ordering::Equal)
        .unwrap_or(Ordering::Equal)
}

/// Compares two rows by `order_by`, then by primary key.
pub(crate) fn compare_rows<C: Schema>(a: &C, b: &C, order_by: &[OrderBy]) -> Ordering {
    for term in order_by {
        let (x, y) = (a.value_of(term.column), b.value_of(term.column));
        let ord = compare_values(
            x.as_ref().unwrap_or(&Value::Null),
            y.as_ref().unwrap_or(&Value::Null),
        );
        let ord = match term.order {
            SortOrder::Asc => ord,
            // why: PostgreSQL's DESC puts NULLs first, the exact reverse of ASC
            SortOrder::Desc => ord.reverse(),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    compare_keys(&a.primary_key(), &b.primary_key())
}

/// Inserts `row` into `rows` where a fresh load would put it.
pub(crate) fn insert_ordered<C: Schema>(rows: &mut Vec<C>, row: C, order_by: &[OrderBy]) {
    let at = rows.partition_point(|r| compare_rows(r, &row, order_by) != Ordering::Greater);
    rows.insert(at, row);
}

/// Moves the row at `at` to where a fresh load would put it, if it is out of place (an
/// update changed its key or an order column); a row in place costs two comparisons.
pub(crate) fn reposition<C: Schema>(rows: &mut Vec<C>, at: usize, order_by: &[OrderBy]) {
    let after_previous = at == 0 || compare_rows(&rows[at - 1], &rows[at], order_by).is_le();
    let before_next =
        at + 1 >= rows.len() || compare_rows(&rows[at], &rows[at + 1], order_by).is_le();
    if after_previous && before_next {
        return;
    }
    let row = rows.remove(at);
    insert_ordered(rows, row, order_by);
}
