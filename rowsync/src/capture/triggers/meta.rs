//! What an installed trigger function says about itself, in its `COMMENT`: versioned JSON
//! that hubs read before they rewrite a function, so that the columns one hub needs are never
//! dropped by another sharing the channel.
//!
//! `{"rowsync":"capture","format":2,"revision":1,"channel":"rowsync","columns":["id","person_id"]}`
//! - `format`: the payload format the function sends (see [`super::payload`]);
//! - `revision`: the revision of the body that rowsync generates for that format; a hub checks
//!   a body of its own revision exactly, trusts a newer one, and upgrades an older one;
//! - `channel`: the NOTIFY channel;
//! - `columns`: what the payload carries, the union of what every hub on the channel needs.

use serde::{Deserialize, Serialize};

/// The payload format the generated functions send.
pub const FORMAT: u32 = 2;

/// The revision of the function body this build generates for [`FORMAT`].
pub(crate) const REVISION: u32 = 1;

/// The value of the `rowsync` field, telling our comments from anyone else's.
const KIND: &str = "capture";

/// The metadata of one installed function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FunctionMeta {
    rowsync: String,
    /// The payload format.
    pub format: u32,
    /// The body revision.
    pub revision: u32,
    /// The NOTIFY channel.
    pub channel: String,
    /// The columns every payload carries, in the order the body lists them.
    pub columns: Vec<String>,
}

impl FunctionMeta {
    /// The metadata of a function this build generates.
    pub fn new(channel: &str, columns: Vec<String>) -> FunctionMeta {
        FunctionMeta {
            rowsync: KIND.to_owned(),
            format: FORMAT,
            revision: REVISION,
            channel: channel.to_owned(),
            columns,
        }
    }

    /// The metadata in a function's comment; `None` when the comment is not ours (absent,
    /// not JSON, or another shape).
    pub fn parse(comment: &str) -> Option<FunctionMeta> {
        serde_json::from_str::<FunctionMeta>(comment)
            .ok()
            .filter(|meta| meta.rowsync == KIND)
    }

    /// The comment text.
    pub fn render(&self) -> String {
        serde_json::to_string(self).expect("plain strings and numbers serialize")
    }

    /// Whether the payload carries every one of `columns`.
    pub fn carries(&self, columns: &[&str]) -> bool {
        columns.iter().all(|c| self.columns.iter().any(|m| m == c))
    }
}

/// The columns a function on `channel` must carry: those of the installed function (when it
/// is ours and on this channel), then those of `needed` it lacks.
///
/// why never fewer: another hub on the same channel may need the installed ones; columns of
/// hubs long gone cost a few bytes per payload, a missing one costs a hub its data.
pub(crate) fn merged_columns(
    installed: Option<&FunctionMeta>,
    channel: &str,
    needed: &[&str],
) -> Vec<String> {
    let mut columns: Vec<String> = installed
        .filter(|meta| meta.format == FORMAT && meta.channel == channel)
        .map(|meta| meta.columns.clone())
        .unwrap_or_default();
    for column in needed {
        if !columns.iter().any(|c| c == column) {
            columns.push((*column).to_owned());
        }
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_rejects_foreign_comments() {
        let meta = FunctionMeta::new("rowsync", vec!["id".into(), "a \"b\"".into()]);
        let text = meta.render();
        assert_eq!(
            text,
            r#"{"rowsync":"capture","format":2,"revision":1,"channel":"rowsync","columns":["id","a \"b\""]}"#
        );
        assert_eq!(FunctionMeta::parse(&text), Some(meta));
        for foreign in [
            "",
            "rowsync capture v1",
            r#"{"rowsync":"other","format":2,"revision":1,"channel":"c","columns":[]}"#,
            r#"{"format":2}"#,
        ] {
            assert_eq!(FunctionMeta::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn merging_keeps_what_others_need_and_adds_ours() {
        let installed = FunctionMeta::new("c", vec!["id".into(), "owner".into()]);
        assert_eq!(
            merged_columns(Some(&installed), "c", &["id", "tag"]),
            ["id", "owner", "tag"]
        );
        assert!(installed.carries(&["owner", "id"]));
        assert!(!installed.carries(&["tag"]));
        // another channel's, or another format's, columns are not ours to keep
        assert_eq!(merged_columns(Some(&installed), "d", &["id"]), ["id"]);
        let mut old = installed.clone();
        old.format = 1;
        assert_eq!(merged_columns(Some(&old), "c", &["id"]), ["id"]);
        assert_eq!(merged_columns(None, "c", &["id", "id"]), ["id"]);
    }
}
