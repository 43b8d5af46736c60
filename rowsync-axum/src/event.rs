//! The events a browser receives, as JSON, and their ids.
//!
//! - `snapshot` (first) and `reset` (after a resync, or for a connection the replay buffer
//!   no longer covers): `{"rows":[{"key":K,"row":R},..]}`, every row in the query's order.
//! - `patch`, one per committed transaction: `{"upsert":[{"key":K,"row":R},..],
//!   "remove":[K,..]}`, plus `"order":[K,..]` when the order of the rows changed. A row is
//!   the schema's serde JSON with its loaded associations; a key is its value (an array for
//!   a composite key).
//!
//! Every event's id is `<feed>-<transaction>`: a browser that reconnects with it as
//! `Last-Event-ID` (or `?lastEventId=`) resumes after that transaction.

use std::sync::Arc;

use crate::feed::State;

/// An event id: the feed it came from and the transaction it brings the browser to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventId {
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}-{}", self.epoch, self.seq)
    }
}

impl EventId {
    /// Reads an id a browser sent back; `None` for anything else (then it gets a snapshot).
    pub(crate) fn parse(text: &str) -> Option<EventId> {
        let (epoch, seq) = text.trim().split_once('-')?;
        Some(EventId {
            epoch: u64::from_str_radix(epoch, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

fn push_pair(out: &mut String, key: &str, row: &str) {
    out.push_str("{\"key\":");
    out.push_str(key);
    out.push_str(",\"row\":");
    out.push_str(row);
    out.push('}');
}

fn push_list<'a>(out: &mut String, items: impl IntoIterator<Item = &'a Arc<str>>) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
}

/// The data of a `snapshot` or `reset`: every row, in order.
pub(crate) fn rows_json(state: &State) -> String {
    let size: usize = state.rows.values().map(|r| r.len() + 24).sum();
    let mut out = String::with_capacity(size + 16);
    out.push_str("{\"rows\":[");
    let mut first = true;
    for key in &state.order {
        if let Some(row) = state.rows.get(key) {
            if !first {
                out.push(',');
            }
            first = false;
            push_pair(&mut out, key, row);
        }
    }
    out.push_str("]}");
    out
}

/// The data of a `patch`.
pub(crate) fn patch_json(
    upsert: &[(Arc<str>, Arc<str>)],
    remove: &[Arc<str>],
    order: Option<&[Arc<str>]>,
) -> String {
    let mut out = String::from("{\"upsert\":[");
    for (i, (key, row)) in upsert.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_pair(&mut out, key, row);
    }
    out.push_str("],\"remove\":");
    push_list(&mut out, remove);
    if let Some(order) = order {
        out.push_str(",\"order\":");
        push_list(&mut out, order);
    }
    out.push('}');
    // why not serde_json here: the rows are JSON already (serialized once per transaction,
    // whatever the number of browsers)
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_junk_is_none() {
        let id = EventId {
            epoch: 0xabc,
            seq: 42,
        };
        assert_eq!(id.to_string(), "abc-42");
        assert_eq!(EventId::parse("abc-42"), Some(id));
        assert_eq!(EventId::parse("42"), None);
        assert_eq!(EventId::parse("zz-1"), None);
        assert_eq!(EventId::parse(""), None);
    }

    #[test]
    fn a_patch_is_json() {
        let key: Arc<str> = Arc::from("1");
        let row: Arc<str> = Arc::from(r#"{"id":1}"#);
        let patch = patch_json(&[(key.clone(), row)], &[Arc::from("2")], Some(&[key]));
        let value: serde_json::Value = serde_json::from_str(&patch).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"upsert":[{"key":1,"row":{"id":1}}],"remove":[2],"order":[1]})
        );
    }
}
