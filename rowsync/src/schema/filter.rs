//! Conditions on rows, evaluated both as SQL (with bound parameters) and in memory.
//!
//! why both: the loader filters in SQL, while sync must decide for a changed row already in
//! memory whether it (still) belongs to a filtered association. Both use SQL's three-valued
//! logic so they always agree: a comparison with `NULL` is unknown, and unknown is not a match.

use std::borrow::Cow;

use super::{quote_ident, Value};

/// A condition on the columns of one table (Ecto's association `where:`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Filter {
    /// `column = value`.
    Eq(Cow<'static, str>, Value),
    /// `column <> value`.
    NotEq(Cow<'static, str>, Value),
    /// `column IS NULL`.
    IsNull(Cow<'static, str>),
    /// `column = ANY(values)`.
    In(Cow<'static, str>, Vec<Value>),
    /// `NOT (filter)`.
    Not(Box<Filter>),
    /// All of the filters (an empty list is true).
    And(Vec<Filter>),
}

impl Filter {
    /// `column = value`; a `Value::Null` value means `IS NULL`.
    pub fn eq(column: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Filter {
        match value.into() {
            Value::Null => Filter::IsNull(column.into()),
            v => Filter::Eq(column.into(), v),
        }
    }

    /// `column <> value`; a `Value::Null` value means `IS NOT NULL`.
    pub fn ne(column: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Filter {
        match value.into() {
            Value::Null => Filter::not(Filter::IsNull(column.into())),
            v => Filter::NotEq(column.into(), v),
        }
    }

    /// `column IS NULL`.
    pub fn is_null(column: impl Into<Cow<'static, str>>) -> Filter {
        Filter::IsNull(column.into())
    }

    /// `column IS NOT NULL`.
    pub fn is_not_null(column: impl Into<Cow<'static, str>>) -> Filter {
        Filter::not(Filter::IsNull(column.into()))
    }

    /// `column IN (values...)`.
    pub fn in_list<V: Into<Value>>(
        column: impl Into<Cow<'static, str>>,
        values: impl IntoIterator<Item = V>,
    ) -> Filter {
        Filter::In(column.into(), values.into_iter().map(Into::into).collect())
    }

    /// `NOT (filter)`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(filter: Filter) -> Filter {
        Filter::Not(Box::new(filter))
    }

    /// All of `filters`.
    pub fn and(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::And(filters.into_iter().collect())
    }

    /// Every column the filter reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::Eq(c, _) | Filter::NotEq(c, _) | Filter::IsNull(c) | Filter::In(c, _) => {
                out.push(c)
            }
            Filter::Not(f) => f.collect_columns(out),
            Filter::And(fs) => fs.iter().for_each(|f| f.collect_columns(out)),
        }
    }

    /// Evaluates the filter on a row, with SQL's three-valued logic: `Some(true)` matches,
    /// `Some(false)` does not, `None` is unknown (which a `WHERE` treats as no match).
    /// `column` returns a column's value (`None` for an unknown column, treated as `NULL`).
    pub fn eval(&self, column: &dyn Fn(&str) -> Option<Value>) -> Option<bool> {
        let get = |c: &str| column(c).unwrap_or(Value::Null);
        match self {
            Filter::Eq(c, v) => compare(&get(c), v),
            Filter::NotEq(c, v) => compare(&get(c), v).map(|eq| !eq),
            Filter::IsNull(c) => Some(get(c).is_null()),
            Filter::In(c, vs) => {
                let x = get(c);
                if x.is_null() {
                    return None;
                }
                let mut unknown = false;
                for v in vs {
                    match compare(&x, v) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown {
                    None
                } else {
                    Some(false)
                }
            }
            Filter::Not(f) => f.eval(column).map(|b| !b),
            Filter::And(fs) => {
                let mut result = Some(true);
                for f in fs {
                    match f.eval(column) {
                        Some(false) => return Some(false),
                        None => result = None,
                        Some(true) => {}
                    }
                }
                result
            }
        }
    }

    /// Whether a row matches (unknown is no match, as in a `WHERE`).
    pub fn matches(&self, column: &dyn Fn(&str) -> Option<Value>) -> bool {
        self.eval(column) == Some(true)
    }

    /// Renders the filter as SQL on table alias `alias`, pushing values to `params`
    /// (placeholders are numbered after what `params` already holds).
    pub fn to_sql(&self, alias: &str, params: &mut Vec<Value>) -> String {
        let col = |c: &str| format!("{alias}.{}", quote_ident(c));
        match self {
            Filter::Eq(c, v) => {
                params.push(v.clone());
                format!("{} = ${}", col(c), params.len())
            }
            Filter::NotEq(c, v) => {
                params.push(v.clone());
                format!("{} <> ${}", col(c), params.len())
            }
            Filter::IsNull(c) => format!("{} IS NULL", col(c)),
            Filter::In(c, vs) => {
                if vs.is_empty() {
                    return "FALSE".to_owned();
                }
                let mut holes = Vec::with_capacity(vs.len());
                for v in vs {
                    params.push(v.clone());
                    holes.push(format!("${}", params.len()));
                }
                format!("{} IN ({})", col(c), holes.join(", "))
            }
            Filter::Not(f) => format!("NOT ({})", f.to_sql(alias, params)),
            Filter::And(fs) if fs.is_empty() => "TRUE".to_owned(),
            Filter::And(fs) => fs
                .iter()
                .map(|f| format!("({})", f.to_sql(alias, params)))
                .collect::<Vec<_>>()
                .join(" AND "),
        }
    }
}

fn compare(a: &Value, b: &Value) -> Option<bool> {
    if a.is_null() || b.is_null() {
        None
    } else {
        Some(a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(pairs: &'a [(&'a str, Value)]) -> impl Fn(&str) -> Option<Value> + 'a {
        move |c| pairs.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone())
    }

    #[test]
    fn null_comparisons_are_unknown_like_sql() {
        let r = [("name", Value::Null)];
        assert_eq!(Filter::eq("name", "x").eval(&row(&r)), None);
        assert_eq!(Filter::not(Filter::eq("name", "x")).eval(&row(&r)), None);
        assert!(!Filter::ne("name", "x").matches(&row(&r)));
        assert!(Filter::is_null("name").matches(&row(&r)));
    }

    #[test]
    fn in_list_and_conjunction() {
        let r = [("state", Value::from("b")), ("n", Value::I32(3))];
        let f = Filter::and([Filter::in_list("state", ["a", "b"]), Filter::ne("n", 4i64)]);
        assert!(f.matches(&row(&r)));
        let mut params = Vec::new();
        assert_eq!(
            f.to_sql("t0", &mut params),
            "(t0.\"state\" IN ($1, $2)) AND (t0.\"n\" <> $3)"
        );
        assert_eq!(params.len(), 3);
    }
}
