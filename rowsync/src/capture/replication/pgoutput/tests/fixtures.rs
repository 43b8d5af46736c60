//! Every message kind decoded from bytes laid out field by field as the documentation gives
//! them.

use std::borrow::Cow;

use super::super::*;
use super::encode::{encode, Bytes};

pub(super) const LSN: u64 = 0x16_B374_D848;
pub(super) const TS: i64 = 784_111_111_000_000;

pub(super) fn users_relation() -> Vec<u8> {
    Bytes::new()
        .u8(b'R')
        .u32(16_384)
        .str("public")
        .str("users")
        .u8(b'd')
        .i16(3)
        .raw(&[1])
        .str("id")
        .u32(20)
        .i32(-1)
        .raw(&[0])
        .str("name")
        .u32(1043)
        .i32(68)
        .raw(&[0])
        .str("bio")
        .u32(25)
        .i32(-1)
        .0
}

#[test]
fn begin_and_commit() {
    let begin = Bytes::new().u8(b'B').u64(LSN).i64(TS).u32(731).0;
    assert_eq!(
        decode(&begin).unwrap(),
        PgOutputMessage::Begin(Begin {
            final_lsn: Lsn(LSN),
            timestamp: PgTimestamp(TS),
            xid: 731,
        })
    );
    let commit = Bytes::new().u8(b'C').u8(0).u64(LSN).u64(LSN + 48).i64(TS).0;
    assert_eq!(
        decode(&commit).unwrap(),
        PgOutputMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(LSN),
            end_lsn: Lsn(LSN + 48),
            timestamp: PgTimestamp(TS),
        })
    );
}

#[test]
fn origin() {
    let bytes = Bytes::new().u8(b'O').u64(LSN).str("node_a").0;
    assert_eq!(
        decode(&bytes).unwrap(),
        PgOutputMessage::Origin(Origin {
            commit_lsn: Lsn(LSN),
            name: "node_a",
        })
    );
}

#[test]
fn relation_with_key_flags_and_type_modifiers() {
    let bytes = users_relation();
    let PgOutputMessage::Relation(relation) = decode(&bytes).unwrap() else {
        panic!("expected a Relation");
    };
    assert_eq!(
        (
            relation.xid,
            relation.oid,
            &*relation.namespace,
            &*relation.name
        ),
        (None, 16_384, "public", "users")
    );
    assert_eq!(relation.replica_identity, ReplicaIdentity::Default);
    let columns: Vec<_> = relation
        .columns
        .iter()
        .map(|c| (&*c.name, c.is_key(), c.type_oid, c.type_modifier))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", true, 20, -1),
            ("name", false, 1043, 68),
            ("bio", false, 25, -1)
        ]
    );
    assert_eq!(
        relation.key_columns().map(|c| &*c.name).collect::<Vec<_>>(),
        ["id"]
    );
    // zero-copy: names point into the input
    assert!(matches!(relation.name, Cow::Borrowed(_)));
}

#[test]
fn every_replica_identity_and_the_pg_catalog_namespace() {
    for (byte, identity) in [
        (b'd', ReplicaIdentity::Default),
        (b'n', ReplicaIdentity::Nothing),
        (b'f', ReplicaIdentity::Full),
        (b'i', ReplicaIdentity::Index),
    ] {
        let bytes = Bytes::new()
            .u8(b'R')
            .u32(1)
            .str("")
            .str("t")
            .u8(byte)
            .i16(0)
            .0;
        let PgOutputMessage::Relation(relation) = decode(&bytes).unwrap() else {
            panic!("expected a Relation");
        };
        assert_eq!(relation.replica_identity, identity);
        assert_eq!(relation.namespace, "pg_catalog");
        assert!(relation.columns.is_empty());
    }
}

#[test]
fn type_message() {
    let bytes = Bytes::new()
        .u8(b'Y')
        .u32(16_400)
        .str("public")
        .str("mood")
        .0;
    assert_eq!(
        decode(&bytes).unwrap(),
        PgOutputMessage::Type(Type {
            xid: None,
            oid: 16_400,
            namespace: "public",
            name: "mood",
        })
    );
}

#[test]
fn insert_with_every_column_kind() {
    let bytes = Bytes::new()
        .u8(b'I')
        .u32(16_384)
        .u8(b'N')
        .i16(5)
        .u8(b't')
        .counted(b"42")
        .u8(b'n')
        .u8(b'u')
        .u8(b'b')
        .counted(&[0, 0, 0, 7])
        .u8(b't')
        .counted("héllo".as_bytes())
        .0;
    let PgOutputMessage::Insert(insert) = decode(&bytes).unwrap() else {
        panic!("expected an Insert");
    };
    assert_eq!((insert.xid, insert.relation_oid), (None, 16_384));
    assert_eq!(
        insert.new.columns,
        [
            ColumnValue::Text("42"),
            ColumnValue::Null,
            ColumnValue::Unchanged,
            ColumnValue::Binary(&[0, 0, 0, 7]),
            ColumnValue::Text("héllo"),
        ]
    );
    assert_eq!(insert.new.get(0).and_then(|v| v.as_text()), Some("42"));
    assert!(insert.new.has_unchanged());
    // empty text is a value, not a null
    let empty = Bytes::new()
        .u8(b'I')
        .u32(1)
        .u8(b'N')
        .i16(1)
        .u8(b't')
        .counted(b"")
        .0;
    let PgOutputMessage::Insert(insert) = decode(&empty).unwrap() else {
        panic!("expected an Insert");
    };
    assert_eq!(insert.new.columns, [ColumnValue::Text("")]);
}

#[test]
fn update_without_with_key_and_with_old_tuple() {
    let new = Bytes::new().i16(2).u8(b't').counted(b"1").u8(b'u').0;
    let plain = Bytes::new().u8(b'U').u32(9).u8(b'N').raw(&new).0;
    let PgOutputMessage::Update(update) = decode(&plain).unwrap() else {
        panic!("expected an Update");
    };
    assert_eq!(update.old, None);
    assert_eq!(
        update.new.columns,
        [ColumnValue::Text("1"), ColumnValue::Unchanged]
    );

    let old = Bytes::new().i16(2).u8(b't').counted(b"0").u8(b'n').0;
    for (marker, wrap) in [
        (
            b'K',
            OldTuple::Key as fn(TupleData<'static>) -> OldTuple<'static>,
        ),
        (b'O', OldTuple::Full),
    ] {
        let bytes = Bytes::new()
            .u8(b'U')
            .u32(9)
            .u8(marker)
            .raw(&old)
            .u8(b'N')
            .raw(&new)
            .0;
        let PgOutputMessage::Update(update) = decode(&bytes).unwrap() else {
            panic!("expected an Update");
        };
        let expected = wrap(TupleData {
            columns: vec![ColumnValue::Text("0"), ColumnValue::Null],
        });
        assert_eq!(update.old.as_ref(), Some(&expected));
        assert_eq!(update.old.unwrap().tuple().columns.len(), 2);
    }
}

#[test]
fn delete_with_key_or_old_tuple() {
    let key = Bytes::new().u8(b'D').u32(9).u8(b'K');
    let key = key.i16(2).u8(b't').counted(b"7").u8(b'n').0;
    let PgOutputMessage::Delete(delete) = decode(&key).unwrap() else {
        panic!("expected a Delete");
    };
    assert!(matches!(delete.old, OldTuple::Key(_)));
    assert_eq!(
        delete.old.tuple().columns,
        [ColumnValue::Text("7"), ColumnValue::Null]
    );
    let full = Bytes::new().u8(b'D').u32(9).u8(b'O').i16(1).u8(b'u').0;
    let PgOutputMessage::Delete(delete) = decode(&full).unwrap() else {
        panic!("expected a Delete");
    };
    assert_eq!(
        delete.old,
        OldTuple::Full(TupleData {
            columns: vec![ColumnValue::Unchanged]
        })
    );
}

#[test]
fn truncate_options_and_relations() {
    let bytes = Bytes::new().u8(b'T').i32(2).u8(3).u32(10).u32(11).0;
    let PgOutputMessage::Truncate(truncate) = decode(&bytes).unwrap() else {
        panic!("expected a Truncate");
    };
    assert_eq!(truncate.relation_oids, [10, 11]);
    assert!(truncate.cascade() && truncate.restart_identity());
    let plain = Bytes::new().u8(b'T').i32(0).u8(0).0;
    let PgOutputMessage::Truncate(truncate) = decode(&plain).unwrap() else {
        panic!("expected a Truncate");
    };
    assert!(truncate.relation_oids.is_empty());
    assert!(!truncate.cascade() && !truncate.restart_identity());
}

#[test]
fn logical_message_with_binary_content() {
    let bytes = Bytes::new()
        .u8(b'M')
        .u8(1)
        .u64(LSN)
        .str("p")
        .counted(&[0, 255, b'x'])
        .0;
    let PgOutputMessage::Message(message) = decode(&bytes).unwrap() else {
        panic!("expected a Message");
    };
    assert!(message.transactional());
    assert_eq!(
        (message.lsn, message.prefix, message.content),
        (Lsn(LSN), "p", &[0, 255, b'x'][..])
    );
    let plain = Bytes::new().u8(b'M').u8(0).u64(1).str("").counted(b"").0;
    let PgOutputMessage::Message(message) = decode(&plain).unwrap() else {
        panic!("expected a Message");
    };
    assert!(!message.transactional());
}

#[test]
fn the_test_encoder_writes_the_fixture_bytes() {
    // the encoder the properties use agrees with the hand-laid fixtures
    let bytes = users_relation();
    assert_eq!(encode(&decode(&bytes).unwrap()), bytes);
}

#[test]
fn lsn_and_timestamp() {
    assert_eq!(Lsn(LSN).to_string(), "16/B374D848");
    assert_eq!(Lsn(0).to_string(), "0/0");
}

#[cfg(feature = "chrono")]
#[test]
fn timestamps_convert_to_chrono() {
    assert_eq!(
        PgTimestamp(0).to_chrono().unwrap().to_rfc3339(),
        "2000-01-01T00:00:00+00:00"
    );
    assert_eq!(
        PgTimestamp(-1_000_000).to_chrono().unwrap().to_rfc3339(),
        "1999-12-31T23:59:59+00:00"
    );
    assert_eq!(PgTimestamp(i64::MAX).to_chrono(), None);
}

#[test]
fn the_relation_cache_keeps_the_latest_relation_and_pairs_values() {
    let mut cache = RelationCache::new();
    let bytes = users_relation();
    let message = decode(&bytes).unwrap();
    assert!(cache.observe(&message));
    assert!(!cache.observe(&PgOutputMessage::StreamStop));
    drop(bytes); // the cache owns what it keeps
    let users = cache.get(16_384).expect("kept");
    assert_eq!(users.name, "users");

    let insert = Bytes::new()
        .u8(b'I')
        .u32(16_384)
        .u8(b'N')
        .i16(3)
        .u8(b't')
        .counted(b"1")
        .u8(b't')
        .counted(b"ada")
        .u8(b'n')
        .0;
    let PgOutputMessage::Insert(insert) = decode(&insert).unwrap() else {
        panic!("expected an Insert");
    };
    let relation = cache.get(insert.relation_oid).unwrap();
    let named: Vec<_> = relation
        .values(&insert.new)
        .unwrap()
        .map(|(c, v)| (&*c.name, v.as_text()))
        .collect();
    assert_eq!(
        named,
        [("id", Some("1")), ("name", Some("ada")), ("bio", None)]
    );
    let short = TupleData { columns: vec![] };
    assert_eq!(
        relation.values(&short).err(),
        Some(DecodeError::ColumnCountMismatch {
            relation_oid: 16_384,
            expected: 3,
            found: 0
        })
    );

    // a later Relation for the same oid (a column added) replaces the held one
    let altered = Bytes::new()
        .u8(b'R')
        .u32(16_384)
        .str("public")
        .str("users")
        .u8(b'f')
        .i16(1)
        .raw(&[1])
        .str("id")
        .u32(20)
        .i32(-1)
        .0;
    let PgOutputMessage::Relation(altered) = decode(&altered).unwrap() else {
        panic!("expected a Relation");
    };
    let previous = cache.insert(altered).expect("replaced");
    assert_eq!(previous.columns.len(), 3);
    assert_eq!(cache.get(16_384).unwrap().columns.len(), 1);
    assert_eq!(cache.len(), 1);
    assert!(cache.remove(16_384).is_some());
    assert!(cache.is_empty());
}
