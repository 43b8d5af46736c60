//! The names of what capture installs: one function, one row trigger and one truncate
//! trigger per (table, channel), and the names an older version used (removed at install).

use crate::capture::plan::TablePlan;

/// PostgreSQL's identifier limit in bytes (`NAMEDATALEN - 1`); longer names are truncated
/// by the server, which could make two of ours collide.
pub(crate) const NAME_LIMIT: usize = 63;

/// What an object is, the last letter of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Object {
    /// The trigger function.
    Function,
    /// The row trigger (`AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW`).
    RowTrigger,
    /// The statement trigger (`AFTER TRUNCATE`).
    TruncateTrigger,
}

impl Object {
    fn letter(self) -> char {
        match self {
            Object::Function => 'f',
            Object::RowTrigger => 'r',
            Object::TruncateTrigger => 't',
        }
    }
}

/// The name of one of the objects capturing `table`'s changes on `channel`:
/// `rowsync_<table>_<channel>_<hash>_<f|r|t>`, where `<hash>` is 8 hex digits of a hash of the
/// table's schema, the table and the channel, and `rowsync_<table>_<channel>` is cut (at a
/// character boundary) so the whole fits 63 bytes.
///
/// why the hash always: names are built from two free parts, so `a_b` + `c` and `a` + `b_c`
/// would otherwise meet; the hash keeps (schema, table, channel) apart, the readable part
/// says what it is at a glance. The ending `_<hash>_<letter>` never ends an older version's
/// name (`_notify`, `_trg`, or 8 hex digits), so the two never collide either.
pub(crate) fn object_name(table: &TablePlan, channel: &str, object: Object) -> String {
    let identity = format!("{}\0{}\0{}", table.pg_schema(), table.table.name, channel);
    let suffix = format!("_{:08x}_{}", fnv1a32(identity.as_bytes()), object.letter());
    let readable = format!("rowsync_{}_{}", table.table.name, channel);
    format!("{}{suffix}", cut(&readable, NAME_LIMIT - suffix.len()))
}

/// The first bytes of `text`, at most `limit`, cut at a character boundary.
fn cut(text: &str, limit: usize) -> &str {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The function a version 1 install created for `table` (in its declared schema, or
/// `public`): `rowsync_<schema>_<table>_notify`, shortened as [`legacy_fit`] does.
pub(crate) fn legacy_function_name(table: &TablePlan) -> String {
    legacy_fit(format!(
        "rowsync_{}_{}_notify",
        table.table.schema_or_public(),
        table.table.name
    ))
}

/// The row trigger a version 1 install created on `table`: `rowsync_<table>_trg`.
pub(crate) fn legacy_trigger_name(table: &TablePlan) -> String {
    legacy_fit(format!("rowsync_{}_trg", table.table.name))
}

/// Version 1's shortening: `name` itself if it fits, else its first bytes, `_` and 8 hex
/// digits of a hash of the full name.
fn legacy_fit(name: String) -> String {
    if name.len() <= NAME_LIMIT {
        return name;
    }
    format!(
        "{}_{:08x}",
        cut(&name, NAME_LIMIT - 9),
        fnv1a32(name.as_bytes())
    )
}

/// 32-bit FNV-1a.
// why by hand: std's `DefaultHasher` may change between Rust releases, and a name that
// changed with the compiler would orphan the triggers an older build installed.
pub(crate) fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TableName;

    fn plan(schema: Option<&'static str>, name: &'static str) -> TablePlan {
        TablePlan::new(TableName { schema, name }, vec!["id"], Vec::new())
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[test]
    fn short_names_are_spelled_out() {
        let posts = plan(None, "posts");
        let f = object_name(&posts, "rowsync", Object::Function);
        assert!(f.starts_with("rowsync_posts_rowsync_"), "{f}");
        assert!(f.ends_with("_f"), "{f}");
        assert_eq!(f.len(), "rowsync_posts_rowsync_".len() + 10);
        assert_eq!(
            object_name(&posts, "rowsync", Object::RowTrigger)[..f.len() - 1],
            f[..f.len() - 1]
        );
        assert_eq!(
            legacy_function_name(&plan(Some("app"), "widgets")),
            "rowsync_app_widgets_notify"
        );
        assert_eq!(
            legacy_trigger_name(&plan(Some("app"), "widgets")),
            "rowsync_widgets_trg"
        );
    }

    #[test]
    fn table_channel_and_schema_all_tell_names_apart() {
        let names = [
            object_name(&plan(None, "a_b"), "c", Object::Function),
            object_name(&plan(None, "a"), "b_c", Object::Function),
            object_name(&plan(Some("other"), "a_b"), "c", Object::Function),
            object_name(&plan(None, "a_b"), "d", Object::Function),
        ];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // the schema found through the search path counts, not the declared one
        let mut found = plan(None, "gadgets");
        found.found_in = Some("tenant".to_owned());
        assert_eq!(
            object_name(&found, "c", Object::Function),
            object_name(&plan(Some("tenant"), "gadgets"), "c", Object::Function)
        );
    }

    #[test]
    fn long_and_multibyte_names_fit() {
        for unit in ["x", "é", "日本", "🦀", "aé"] {
            for n in 1..40 {
                let t = plan(Some(leak(unit.repeat(n))), leak(unit.repeat(n + 1)));
                let channel = "c".repeat(63);
                for object in [
                    Object::Function,
                    Object::RowTrigger,
                    Object::TruncateTrigger,
                ] {
                    let name = object_name(&t, &channel, object);
                    assert!(name.len() <= NAME_LIMIT, "{name} is {} bytes", name.len());
                    assert!(name.starts_with("rowsync_"), "{name}");
                }
                for name in [legacy_function_name(&t), legacy_trigger_name(&t)] {
                    assert!(name.len() <= NAME_LIMIT, "{name} is {} bytes", name.len());
                }
            }
        }
    }

    #[test]
    fn fnv1a32_matches_the_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }
}
