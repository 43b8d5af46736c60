//! The NOTIFY payload the generated triggers send, decoded by a pure function of its bytes.
//!
//! Format (one JSON object, values as text as `to_json(value) #>> '{}'` renders them: PostgreSQL's
//! text format, but dates and times always in ISO 8601, whatever the writer's DateStyle; `null`
//! for NULL):
//! `{"o":"I|U|D","s":schema,"t":table,"x":"xid","k":[key...],"n":[routes...]}` plus, for an
//! update, `"p":[old routes...]` when a routing column changed and `"q":[old key...]` when
//! the key changed. A row whose payload would pass NOTIFY's 8000-byte limit is sent as
//! `{"o":..,"s":..,"t":..,"x":..,"big":true}`: its subscribers must resync.
//!
//! why JSON: PostgreSQL builds it safely in the trigger (`json_build_object` escapes every
//! value), and serde_json rejects malformed input with an error, never a panic.

use serde::Deserialize;
use thiserror::Error;

use crate::capture::plan::{CapturePlan, TablePlan};
use crate::change::{Change, Op};
use crate::load::value_from_text;
use crate::schema::{Key, Value};

/// A payload that could not be decoded; logged and counted, never fatal.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not the JSON shape the triggers send.
    #[error("malformed change payload: {0}")]
    Malformed(String),
    /// A table this hub does not watch (another hub's trigger, or an old one).
    #[error("change payload for unwatched table {schema}.{table}")]
    UnknownTable {
        /// The PostgreSQL schema.
        schema: String,
        /// The table.
        table: String,
    },
    /// The payload has a different number of values than the watched columns.
    #[error("change payload for {table} has {found} values where {expected} were expected; the trigger may be stale")]
    Arity {
        /// The table.
        table: String,
        /// Values expected.
        expected: usize,
        /// Values found.
        found: usize,
    },
    /// A value did not parse as its column's type.
    #[error("change payload for {table}: {cause}")]
    Value {
        /// The table.
        table: String,
        /// What went wrong.
        cause: crate::error::DecodeError,
    },
}

/// A payload as sent, before it is checked against the plan.
#[derive(Debug, Deserialize, PartialEq)]
pub struct RawChange {
    /// `I`, `U` or `D`.
    #[serde(rename = "o")]
    pub op: String,
    /// PostgreSQL schema.
    #[serde(rename = "s")]
    pub schema: String,
    /// Table.
    #[serde(rename = "t")]
    pub table: String,
    /// Transaction id, as text.
    #[serde(rename = "x")]
    pub xid: String,
    /// Key values.
    #[serde(rename = "k", default)]
    pub key: Vec<Option<String>>,
    /// Routing column values.
    #[serde(rename = "n", default)]
    pub routes: Vec<Option<String>>,
    /// Old routing column values, if changed.
    #[serde(rename = "p", default)]
    pub old_routes: Option<Vec<Option<String>>>,
    /// Old key values, if changed.
    #[serde(rename = "q", default)]
    pub old_key: Option<Vec<Option<String>>>,
    /// The row was too large to describe: resync its subscribers.
    #[serde(default)]
    pub big: bool,
}

/// What one payload means.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A row change.
    Change(Change),
    /// A change too large for NOTIFY: the table's subscribers must resync.
    Overflow {
        /// The table.
        table: crate::schema::TableName,
        /// The transaction.
        xid: u64,
    },
}

/// Parses payload bytes (no plan needed).
pub fn parse(payload: &[u8]) -> Result<RawChange, PayloadError> {
    serde_json::from_slice(payload).map_err(|e| PayloadError::Malformed(e.to_string()))
}

/// Parses a payload and checks it against the plan; `seq` is the hub's receive counter.
pub fn decode(payload: &[u8], plan: &CapturePlan, seq: u64) -> Result<Decoded, PayloadError> {
    let raw = parse(payload)?;
    let table = plan
        .find(&raw.schema, &raw.table)
        .ok_or_else(|| PayloadError::UnknownTable {
            schema: raw.schema.clone(),
            table: raw.table.clone(),
        })?;
    let xid = raw
        .xid
        .parse::<u64>()
        .map_err(|_| PayloadError::Malformed(format!("transaction id `{}`", raw.xid)))?;
    if raw.big {
        return Ok(Decoded::Overflow {
            table: table.table,
            xid,
        });
    }
    let op = match raw.op.as_str() {
        "I" => Op::Inserted,
        "U" => Op::Updated,
        "D" => Op::Deleted,
        other => return Err(PayloadError::Malformed(format!("operation `{other}`"))),
    };
    let key = Key(values(table, &raw.key, 0, table.key.len())?);
    let old_key = raw
        .old_key
        .as_ref()
        .map(|k| values(table, k, 0, table.key.len()).map(Key))
        .transpose()?;
    let columns = named(table, &raw.routes)?;
    let old_columns = match &raw.old_routes {
        Some(old) => named(table, old)?,
        None => Vec::new(),
    };
    Ok(Decoded::Change(Change {
        op,
        table: table.table,
        key,
        old_key,
        columns,
        old_columns,
        xid,
        seq,
    }))
}

fn values(
    table: &TablePlan,
    texts: &[Option<String>],
    offset: usize,
    expected: usize,
) -> Result<Vec<Value>, PayloadError> {
    if texts.len() != expected {
        return Err(PayloadError::Arity {
            table: table.table.to_string(),
            expected,
            found: texts.len(),
        });
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let ty = table
                .types
                .get(offset + i)
                .ok_or_else(|| PayloadError::Arity {
                    table: table.table.to_string(),
                    expected: table.types.len(),
                    found: offset + i + 1,
                })?;
            value_from_text(ty, text.as_deref()).map_err(|cause| PayloadError::Value {
                table: table.table.to_string(),
                cause,
            })
        })
        .collect()
}

fn named(
    table: &TablePlan,
    texts: &[Option<String>],
) -> Result<Vec<(&'static str, Value)>, PayloadError> {
    let vals = values(table, texts, table.key.len(), table.routes.len())?;
    Ok(table.routes.iter().copied().zip(vals).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::plan::TablePlan;
    use crate::load::PgType;
    use crate::schema::TableName;
    use proptest::prelude::*;

    fn plan() -> CapturePlan {
        CapturePlan::from_tables([TablePlan {
            table: TableName {
                schema: None,
                name: "posts",
            },
            key: vec!["id"],
            routes: vec!["person_id"],
            types: vec![PgType::Int8, PgType::Int8],
        }])
    }

    #[test]
    fn decodes_each_operation() {
        let p = plan();
        let update =
            br#"{"o":"U","s":"public","t":"posts","x":"42","k":["7"],"n":["2"],"p":["1"]}"#;
        let Decoded::Change(c) = decode(update, &p, 9).unwrap() else {
            panic!("expected a change")
        };
        assert_eq!((c.op, c.xid, c.seq), (Op::Updated, 42, 9));
        assert_eq!(c.key, Key::from(7i64));
        assert_eq!(c.column("person_id"), Some(&Value::I64(2)));
        assert_eq!(c.old_column("person_id"), Some(&Value::I64(1)));
        let delete = br#"{"o":"D","s":"public","t":"posts","x":"43","k":["7"],"n":[null]}"#;
        let Decoded::Change(c) = decode(delete, &p, 10).unwrap() else {
            panic!("expected a change")
        };
        assert_eq!(c.column("person_id"), Some(&Value::Null));
        assert!(c.old_columns.is_empty());
        let big = br#"{"o":"I","s":"public","t":"posts","x":"44","big":true}"#;
        assert!(matches!(
            decode(big, &p, 11).unwrap(),
            Decoded::Overflow { xid: 44, .. }
        ));
    }

    #[test]
    fn bad_payloads_are_typed_errors() {
        let p = plan();
        type Case<'a> = (&'a [u8], fn(&PayloadError) -> bool);
        let cases: [Case; 6] = [
            (b"", |e| matches!(e, PayloadError::Malformed(_))),
            (b"{\"o\":\"I\"}", |e| {
                matches!(e, PayloadError::Malformed(_))
            }),
            (br#"{"o":"I","s":"public","t":"nope","x":"1"}"#, |e| {
                matches!(e, PayloadError::UnknownTable { .. })
            }),
            (
                br#"{"o":"I","s":"public","t":"posts","x":"x","k":["1"],"n":["1"]}"#,
                |e| matches!(e, PayloadError::Malformed(_)),
            ),
            (
                br#"{"o":"I","s":"public","t":"posts","x":"1","k":["1","2"],"n":["1"]}"#,
                |e| matches!(e, PayloadError::Arity { .. }),
            ),
            (
                br#"{"o":"I","s":"public","t":"posts","x":"1","k":["one"],"n":["1"]}"#,
                |e| matches!(e, PayloadError::Value { .. }),
            ),
        ];
        for (bytes, expected) in cases {
            let err = decode(bytes, &p, 1).unwrap_err();
            assert!(
                expected(&err),
                "{:?}: {err:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, &plan(), 1);
        }

        #[test]
        fn arbitrary_field_values_never_panic(
            op in "[IUDX]", xid in "[0-9a-z-]{0,25}",
            key in prop::collection::vec(prop::option::of(".{0,12}"), 0..3),
            routes in prop::collection::vec(prop::option::of(".{0,12}"), 0..3),
        ) {
            let payload = serde_json::json!({"o": op, "s": "public", "t": "posts", "x": xid, "k": key, "n": routes, "p": routes});
            let _ = decode(payload.to_string().as_bytes(), &plan(), 1);
        }
    }
}
