//! Where an inserted row goes: by the association's `order_by`, then by primary key — the
//! order a fresh load would give.

use std::cmp::Ordering;

use crate::schema::{compare_keys, compare_values, OrderBy, Schema, SortOrder, Value};

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
