//! The NOTIFY payload the generated triggers send, decoded by a pure function of its bytes.
//!
//! Format 2, one JSON object:
//! `{"v":2,"o":"I|U|D|T","s":schema,"t":table,"x":"xid","i":n, "n":{col:value,..}}`, plus
//! - `"p":{col:old value,..}`: for an update, the old values of the carried columns it changed;
//! - `"m":[col,..]`: carried columns the row no longer has (renamed or dropped since install);
//!   they are left out of `n` and `p`;
//! - `"big":true` instead of `n`, `p` and `m` when the payload would pass NOTIFY's 8000-byte
//!   limit: the table's holders must resync.
//!
//! `o` is the operation (`T`: a `TRUNCATE`, which has no `n`); `x` the writing transaction;
//! `i` its n-th captured event (NOTIFY folds identical payloads of a transaction, so every
//! payload must differ); `n` the carried columns of the row (the old row for a delete),
//! named, so that hubs sharing a channel each take the columns they need. Values are text as
//! `to_jsonb(row) ->> column` renders them: PostgreSQL's text format, but dates and times
//! always in ISO 8601 whatever the writer's DateStyle; `null` for NULL.
//!
//! Version 1 payloads (no `v`; positional arrays) come from triggers an older rowsync
//! installed and this one removes; they are refused with a typed error.
//!
//! why JSON: PostgreSQL builds it safely in the trigger (`jsonb_build_object` escapes every
//! value), and serde_json rejects malformed input with an error, never a panic.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

use super::meta::FORMAT;
use crate::capture::plan::{CapturePlan, TablePlan};
use crate::change::{Change, Op};
use crate::load::value_from_text;
use crate::schema::{Key, TableName, Value};

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
    /// A payload format this build does not read: the function installed for the table was
    /// replaced by another rowsync version's (or is version 1's, left over).
    #[error(
        "change payload of format {version} for {schema}.{table}; this rowsync reads format {FORMAT} \
         (restart the hub to reinstall its triggers, or upgrade it)"
    )]
    UnsupportedVersion {
        /// The format found (1 when the payload has none).
        version: u64,
        /// The PostgreSQL schema.
        schema: String,
        /// The table.
        table: String,
        /// The table, if this hub watches it.
        watched: Option<TableName>,
    },
    /// A value did not parse as its column's type (the column was retyped since start?).
    #[error("change payload for {table}: {cause}")]
    Value {
        /// The table.
        table: TableName,
        /// What went wrong.
        cause: crate::error::DecodeError,
    },
}

/// A payload as sent, before it is checked against the plan.
#[derive(Debug, Deserialize, PartialEq)]
pub struct RawChange {
    /// The format (absent in version 1).
    #[serde(rename = "v", default)]
    pub version: Option<u64>,
    /// `I`, `U`, `D` or `T`.
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
    /// The event's number within its transaction.
    #[serde(rename = "i", default)]
    pub index: Option<u64>,
    /// Carried column values, by name.
    #[serde(rename = "n", default)]
    pub values: Option<BTreeMap<String, Option<String>>>,
    /// Old values of the carried columns an update changed.
    #[serde(rename = "p", default)]
    pub old_values: Option<BTreeMap<String, Option<String>>>,
    /// Carried columns the row no longer has.
    #[serde(rename = "m", default)]
    pub missing: Option<Vec<String>>,
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
        table: TableName,
        /// The transaction.
        xid: u64,
    },
    /// The table was truncated: its subscribers must resync.
    Truncated {
        /// The table.
        table: TableName,
        /// The transaction.
        xid: u64,
    },
    /// The row lacks columns this hub routes by (renamed or dropped since install, or the
    /// installed function no longer carries them): the change cannot be routed, the table's
    /// subscribers must resync, and the capture must be checked.
    MissingColumns {
        /// The table.
        table: TableName,
        /// The transaction.
        xid: u64,
        /// The columns.
        columns: Vec<String>,
    },
}

/// What every format has: the format and the table, read first so that a payload of
/// another format is told apart from a malformed one.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "v", default)]
    version: Option<u64>,
    #[serde(rename = "s")]
    schema: String,
    #[serde(rename = "t")]
    table: String,
}

/// Parses payload bytes of the current format (no plan needed).
pub fn parse(payload: &[u8]) -> Result<RawChange, PayloadError> {
    serde_json::from_slice(payload).map_err(|e| PayloadError::Malformed(e.to_string()))
}

/// Parses a payload and checks it against the plan; `seq` is the hub's receive counter.
pub fn decode(payload: &[u8], plan: &CapturePlan, seq: u64) -> Result<Decoded, PayloadError> {
    // why borrowed first: a payload without escapes (nearly all) is read without copying a
    // string; one with escapes, or not of the current format, is read again below
    if let Ok(raw) = serde_json::from_slice::<Fields<'_>>(payload) {
        if raw.version == Some(u64::from(FORMAT)) {
            return decode_fields(&raw, plan, seq);
        }
    }
    // why the whole payload next: only a payload that is not of the current format is read
    // a third time, as a header, to tell which format it is
    let raw = match parse(payload) {
        Ok(raw) if raw.version == Some(u64::from(FORMAT)) => raw,
        parsed => {
            let header: Header = serde_json::from_slice(payload)
                .map_err(|e| PayloadError::Malformed(e.to_string()))?;
            let version = header.version.unwrap_or(1);
            if version == u64::from(FORMAT) {
                // the current format, malformed
                return Err(parsed
                    .err()
                    .unwrap_or_else(|| PayloadError::Malformed("unreadable payload".to_owned())));
            }
            let watched = plan.find(&header.schema, &header.table);
            return Err(PayloadError::UnsupportedVersion {
                version,
                schema: header.schema,
                table: header.table,
                watched: watched.map(|t| t.table),
            });
        }
    };
    fn view(map: &BTreeMap<String, Option<String>>) -> Values<'_> {
        map.iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect()
    }
    let fields = Fields {
        version: raw.version,
        op: &raw.op,
        schema: &raw.schema,
        table: &raw.table,
        xid: &raw.xid,
        index: raw.index,
        values: raw.values.as_ref().map(view),
        old_values: raw.old_values.as_ref().map(view),
        missing: raw
            .missing
            .as_ref()
            .map(|m| m.iter().map(String::as_str).collect()),
        big: raw.big,
    };
    decode_fields(&fields, plan, seq)
}

/// A payload of the current format, its strings borrowed from the payload (or from a
/// [`RawChange`] when they had escapes).
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "v", default)]
    version: Option<u64>,
    #[serde(rename = "o")]
    op: &'a str,
    #[serde(rename = "s")]
    schema: &'a str,
    #[serde(rename = "t")]
    table: &'a str,
    #[serde(rename = "x")]
    xid: &'a str,
    #[serde(rename = "i", default)]
    index: Option<u64>,
    #[serde(rename = "n", default, borrow)]
    values: Option<Values<'a>>,
    #[serde(rename = "p", default, borrow)]
    old_values: Option<Values<'a>>,
    #[serde(rename = "m", default, borrow)]
    missing: Option<Vec<&'a str>>,
    #[serde(default)]
    big: bool,
}

/// Column values by name, as text.
type Values<'a> = BTreeMap<&'a str, Option<&'a str>>;

/// Checks a payload of the current format against the plan.
fn decode_fields(raw: &Fields<'_>, plan: &CapturePlan, seq: u64) -> Result<Decoded, PayloadError> {
    let watched = plan.find(raw.schema, raw.table);
    let table = watched.ok_or_else(|| PayloadError::UnknownTable {
        schema: raw.schema.to_owned(),
        table: raw.table.to_owned(),
    })?;
    let xid = raw
        .xid
        .parse::<u64>()
        .map_err(|_| PayloadError::Malformed(format!("transaction id `{}`", raw.xid)))?;
    if raw.index.is_none() {
        return Err(PayloadError::Malformed("no event number `i`".to_owned()));
    }
    if raw.big {
        return Ok(Decoded::Overflow {
            table: table.table,
            xid,
        });
    }
    let op = match raw.op {
        "I" => Op::Inserted,
        "U" => Op::Updated,
        "D" => Op::Deleted,
        "T" => {
            return Ok(Decoded::Truncated {
                table: table.table,
                xid,
            })
        }
        other => return Err(PayloadError::Malformed(format!("operation `{other}`"))),
    };
    let values = raw
        .values
        .as_ref()
        .ok_or_else(|| PayloadError::Malformed("no values `n`".to_owned()))?;
    let missing: Vec<String> = table
        .distinct_columns()
        .into_iter()
        .filter(|c| !values.contains_key(*c) || raw.missing.iter().flatten().any(|m| m == c))
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        return Ok(Decoded::MissingColumns {
            table: table.table,
            xid,
            columns: missing,
        });
    }
    let empty = BTreeMap::new();
    let old_values = raw.old_values.as_ref().unwrap_or(&empty);
    let key = Key(typed(table, &table.key, values, &empty)?);
    // why the whole old key or routes when any part changed: subscribers file rows under
    // every column of them, and the unchanged parts are the same as the new ones
    let old_key = table
        .key
        .iter()
        .any(|c| old_values.contains_key(*c))
        .then(|| typed(table, &table.key, values, old_values).map(Key))
        .transpose()?;
    let columns = named(table, values, &empty)?;
    let old_columns = if table.routes.iter().any(|c| old_values.contains_key(*c)) {
        named(table, values, old_values)?
    } else {
        Vec::new()
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

/// The values of `columns`, each from `first` if there, else from `values`, typed.
fn typed(
    table: &TablePlan,
    columns: &[&'static str],
    values: &Values<'_>,
    first: &Values<'_>,
) -> Result<Vec<Value>, PayloadError> {
    columns
        .iter()
        .map(|column| {
            let text = first
                .get(*column)
                .or_else(|| values.get(*column))
                .copied()
                .flatten();
            let ty = table.type_of(column).ok_or_else(|| {
                PayloadError::Malformed(format!(
                    "no type known for {}.{column}; the plan's types were not filled",
                    table.table
                ))
            })?;
            value_from_text(ty, text).map_err(|cause| PayloadError::Value {
                table: table.table,
                cause: cause.in_column(table.table.name, column),
            })
        })
        .collect()
}

fn named(
    table: &TablePlan,
    values: &Values<'_>,
    first: &Values<'_>,
) -> Result<Vec<(&'static str, Value)>, PayloadError> {
    let typed = typed(table, &table.routes, values, first)?;
    Ok(table.routes.iter().copied().zip(typed).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::PgType;
    use proptest::prelude::*;

    fn plan() -> CapturePlan {
        let mut posts = TablePlan::new(
            TableName {
                schema: None,
                name: "posts",
            },
            vec!["id"],
            vec!["person_id"],
        );
        posts.types = vec![PgType::Int8, PgType::Int8];
        CapturePlan::from_tables([posts])
    }

    fn change(bytes: &[u8], seq: u64) -> Change {
        match decode(bytes, &plan(), seq) {
            Ok(Decoded::Change(c)) => c,
            other => panic!("{}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn payloads_with_escapes_decode_as_those_without() {
        let plain = br#"{"v":2,"o":"U","s":"public","t":"posts","x":"42","i":1,
            "n":{"id":"7","person_id":"2","title":"plain"}}"#;
        // a string with escapes cannot be borrowed from the payload: it is read again, owned
        let escaped = br#"{"v":2,"o":"U","s":"public","t":"posts","x":"42","i":1,
            "n":{"id":"7","person_id":"\u0032","title":"a \"quoted\"\n title"}}"#;
        assert_eq!(change(plain, 3), change(escaped, 3));
    }

    #[test]
    fn decodes_each_operation() {
        let update = br#"{"v":2,"o":"U","s":"public","t":"posts","x":"42","i":1,
            "n":{"id":"7","person_id":"2","title":"ignored"},"p":{"person_id":"1"}}"#;
        let c = change(update, 9);
        assert_eq!((c.op, c.xid, c.seq), (Op::Updated, 42, 9));
        assert_eq!(c.key, Key::from(7i64));
        assert_eq!(c.old_key, None);
        assert_eq!(c.column("person_id"), Some(&Value::I64(2)));
        assert_eq!(c.old_column("person_id"), Some(&Value::I64(1)));
        let delete =
            br#"{"v":2,"o":"D","s":"public","t":"posts","x":"43","i":2,"n":{"id":"7","person_id":null}}"#;
        let c = change(delete, 10);
        assert_eq!(c.column("person_id"), Some(&Value::Null));
        assert!(c.old_columns.is_empty());
        let rekey = br#"{"v":2,"o":"U","s":"public","t":"posts","x":"44","i":3,
            "n":{"id":"8","person_id":"2"},"p":{"id":"7"}}"#;
        let c = change(rekey, 11);
        assert_eq!(c.old_key, Some(Key::from(7i64)));
        assert!(c.old_columns.is_empty(), "routes unchanged");
        let big = br#"{"v":2,"o":"I","s":"public","t":"posts","x":"45","i":1,"big":true}"#;
        assert!(matches!(
            decode(big, &plan(), 12).unwrap(),
            Decoded::Overflow { xid: 45, .. }
        ));
        let truncate = br#"{"v":2,"o":"T","s":"public","t":"posts","x":"46","i":1}"#;
        assert!(matches!(
            decode(truncate, &plan(), 13).unwrap(),
            Decoded::Truncated { xid: 46, .. }
        ));
    }

    #[test]
    fn missing_columns_are_reported_not_guessed() {
        for payload in [
            &br#"{"v":2,"o":"I","s":"public","t":"posts","x":"1","i":1,"n":{"id":"7"},"m":["person_id"]}"#[..],
            br#"{"v":2,"o":"I","s":"public","t":"posts","x":"1","i":1,"n":{"id":"7"}}"#,
        ] {
            match decode(payload, &plan(), 1) {
                Ok(Decoded::MissingColumns { columns, .. }) => assert_eq!(columns, ["person_id"]),
                other => panic!("{other:?}"),
            }
        }
        // a missing column this hub does not need is none of its business
        let other = br#"{"v":2,"o":"I","s":"public","t":"posts","x":"1","i":1,"n":{"id":"7","person_id":"1"},"m":["title"]}"#;
        assert!(matches!(decode(other, &plan(), 1), Ok(Decoded::Change(_))));
    }

    #[test]
    fn bad_payloads_are_typed_errors() {
        let p = plan();
        type Case<'a> = (&'a [u8], fn(&PayloadError) -> bool);
        let cases: [Case; 8] = [
            (b"", |e| matches!(e, PayloadError::Malformed(_))),
            (b"{\"o\":\"I\"}", |e| matches!(e, PayloadError::Malformed(_))),
            (
                br#"{"v":2,"o":"I","s":"public","t":"nope","x":"1","i":1,"n":{}}"#,
                |e| matches!(e, PayloadError::UnknownTable { .. }),
            ),
            (
                br#"{"v":2,"o":"I","s":"public","t":"posts","x":"x","i":1,"n":{"id":"1","person_id":"1"}}"#,
                |e| matches!(e, PayloadError::Malformed(_)),
            ),
            (
                br#"{"v":2,"o":"I","s":"public","t":"posts","x":"1","n":{"id":"1","person_id":"1"}}"#,
                |e| matches!(e, PayloadError::Malformed(_)),
            ),
            (
                br#"{"v":2,"o":"I","s":"public","t":"posts","x":"1","i":1,"n":{"id":"one","person_id":"1"}}"#,
                |e| matches!(e, PayloadError::Value { .. }),
            ),
            (
                br#"{"o":"I","s":"public","t":"posts","x":"1","k":["1"],"n":["1"]}"#,
                |e| {
                    matches!(e, PayloadError::UnsupportedVersion { version: 1, watched: Some(_), .. })
                },
            ),
            (
                br#"{"v":3,"o":"I","s":"public","t":"nope","x":"1"}"#,
                |e| {
                    matches!(e, PayloadError::UnsupportedVersion { version: 3, watched: None, .. })
                },
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
            v in prop::option::of(0u64..4), op in "[IUDTX]", xid in "[0-9a-z-]{0,25}",
            i in prop::option::of(any::<u64>()),
            names in prop::collection::vec("(id|person_id|[a-z]{1,3})", 0..4),
            values in prop::collection::vec(prop::option::of(".{0,12}"), 0..4),
            old in prop::collection::vec(prop::option::of("[0-9]{0,3}"), 0..3),
            missing in prop::option::of(prop::collection::vec("(id|person_id|x)", 0..3)),
            big in any::<bool>(),
        ) {
            let n: serde_json::Map<String, serde_json::Value> =
                names.iter().cloned().zip(values.iter().cloned().map(serde_json::Value::from)).collect();
            let p: serde_json::Map<String, serde_json::Value> =
                names.iter().cloned().zip(old.iter().cloned().map(serde_json::Value::from)).collect();
            let payload = serde_json::json!({
                "v": v, "o": op, "s": "public", "t": "posts", "x": xid, "i": i,
                "n": n, "p": p, "m": missing, "big": big,
            });
            let _ = decode(payload.to_string().as_bytes(), &plan(), 1);
        }

        #[test]
        fn well_formed_changes_decode_to_what_was_sent(
            id in any::<i64>(), person in prop::option::of(any::<i64>()),
            old_person in prop::option::of(prop::option::of(any::<i64>())),
            op in "[IUD]", xid in any::<u32>(), i in 1u64..1000,
            extra in prop::collection::btree_map("[a-z]{1,8}", prop::option::of(".{0,8}"), 0..4),
        ) {
            let mut n: serde_json::Map<String, serde_json::Value> = extra
                .into_iter()
                .filter(|(k, _)| k != "id")
                .map(|(k, v)| (k, serde_json::Value::from(v)))
                .collect();
            n.insert("id".into(), id.to_string().into());
            n.insert("person_id".into(), person.map(|p| p.to_string()).into());
            let mut payload = serde_json::json!({
                "v": 2, "o": op, "s": "public", "t": "posts", "x": xid.to_string(), "i": i, "n": n,
            });
            if let Some(old) = old_person {
                payload["p"] = serde_json::json!({"person_id": old.map(|p| p.to_string())});
            }
            let c = change(payload.to_string().as_bytes(), 5);
            let value = |v: Option<i64>| v.map_or(Value::Null, Value::I64);
            let old = old_person.map(value);
            prop_assert_eq!(&c.key, &Key::from(id));
            prop_assert_eq!(c.xid, u64::from(xid));
            prop_assert_eq!(c.column("person_id"), Some(&value(person)));
            prop_assert_eq!(c.old_column("person_id"), old.as_ref());
        }
    }
}
