//! The stream fed byte fixtures as the server sends them: commit order, exactly once across
//! a broken session, schema drift, truncation and bytes that do not decode.

use std::sync::atomic::Ordering;

use super::*;
use crate::capture::replication::fixtures::{catalog, plan, relation, COLUMNS, INT8, POST};
use crate::capture::replication::pgoutput::tests::encode::encode;
use crate::capture::replication::pgoutput::{
    Begin, ColumnValue, Commit, Delete, Insert, Lsn, OldTuple, PgTimestamp, Truncate, TupleData,
};
use crate::schema::{Key, Value};

fn stream() -> Stream {
    let mut tables = Catalog::default();
    tables.tables.insert(POST.table, catalog());
    Stream::new(
        Arc::new(CapturePlan::from_tables([plan()])),
        [(POST.table, &POST)].into_iter().collect(),
        tables,
        (7 << 32) + 1_000,
        Arc::new(CaptureStats::default()),
    )
}

fn begin(final_lsn: u64, xid: u32) -> Vec<u8> {
    encode(&PgOutputMessage::Begin(Begin {
        final_lsn: Lsn(final_lsn),
        timestamp: PgTimestamp(0),
        xid,
    }))
}

fn commit(commit_lsn: u64, end_lsn: u64) -> Vec<u8> {
    encode(&PgOutputMessage::Commit(Commit {
        flags: 0,
        commit_lsn: Lsn(commit_lsn),
        end_lsn: Lsn(end_lsn),
        timestamp: PgTimestamp(0),
    }))
}

fn describe(columns: &[(&'static str, u32)]) -> Vec<u8> {
    encode(&PgOutputMessage::Relation(relation(false, columns)))
}

fn insert(id: &'static str) -> Vec<u8> {
    encode(&PgOutputMessage::Insert(Insert {
        xid: None,
        relation_oid: 1,
        new: TupleData {
            columns: vec![
                ColumnValue::Text("7"),
                ColumnValue::Text(id),
                ColumnValue::Text("x"),
            ],
        },
    }))
}

fn delete(id: &'static str) -> Vec<u8> {
    encode(&PgOutputMessage::Delete(Delete {
        xid: None,
        relation_oid: 1,
        old: OldTuple::Key(TupleData {
            columns: vec![ColumnValue::Null, ColumnValue::Text(id), ColumnValue::Null],
        }),
    }))
}

fn feed(stream: &mut Stream, messages: &[Vec<u8>]) -> Vec<String> {
    let mut out = Vec::new();
    for message in messages {
        stream.message(message, &mut out);
    }
    out.iter().map(summary).collect()
}

fn summary(event: &CaptureEvent) -> String {
    match event {
        CaptureEvent::Change { change, row } => format!(
            "{:?} {:?} seq {} xid {} {}",
            change.op,
            change.key.0,
            change.seq,
            change.xid,
            match row {
                Carried::Nothing => "nothing",
                Carried::Row(_) => "row",
                Carried::Gone => "gone",
            }
        ),
        CaptureEvent::Resync { reason, .. } => format!("resync {reason:?}"),
        CaptureEvent::Committed { lsn, .. } => format!("committed {}", lsn.unwrap_or(0)),
        CaptureEvent::Reached { token } => format!("reached {token}"),
    }
}

const XID: u64 = (7 << 32) + 990;

#[test]
fn a_transaction_is_its_changes_then_its_end() {
    let mut s = stream();
    let got = feed(
        &mut s,
        &[
            begin(100, 990),
            describe(&COLUMNS),
            insert("1"),
            delete("1"),
            insert("1"),
            commit(100, 110),
        ],
    );
    assert_eq!(
        got,
        [
            format!("Inserted [I64(1)] seq 1 xid {XID} row"),
            format!("Deleted [I64(1)] seq 2 xid {XID} gone"),
            format!("Inserted [I64(1)] seq 3 xid {XID} row"),
            "committed 110".to_owned(),
        ]
    );
    assert_eq!(s.delivered(), 110);
    assert!(s.idle());
}

#[test]
fn a_transaction_sent_again_after_a_broken_session_is_emitted_once() {
    let mut s = stream();
    let first = feed(
        &mut s,
        &[
            begin(100, 990),
            describe(&COLUMNS),
            insert("1"),
            insert("2"),
        ],
    );
    assert_eq!(first.len(), 2);
    assert!(!s.idle());
    // the connection breaks; the next session starts at the last delivered end (0 here),
    // so the server sends the whole transaction again, with its Relation
    s.session_started(0);
    let second = feed(
        &mut s,
        &[
            begin(100, 990),
            describe(&COLUMNS),
            insert("1"),
            insert("2"),
            insert("3"),
            commit(100, 110),
            begin(120, 991),
            insert("4"),
            commit(120, 130),
        ],
    );
    assert_eq!(
        second,
        [
            format!("Inserted [I64(3)] seq 3 xid {XID} row"),
            "committed 110".to_owned(),
            format!("Inserted [I64(4)] seq 4 xid {} row", XID + 1),
            "committed 130".to_owned(),
        ]
    );
    assert_eq!(s.stats.duplicates.load(Ordering::Relaxed), 2);
}

#[test]
fn a_transaction_before_the_delivered_position_is_skipped_whole() {
    let mut s = stream();
    feed(
        &mut s,
        &[
            begin(100, 990),
            describe(&COLUMNS),
            insert("1"),
            commit(100, 110),
        ],
    );
    s.session_started(0);
    let again = feed(&mut s, &[begin(100, 990), insert("1"), commit(100, 110)]);
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(s.stats.duplicates.load(Ordering::Relaxed), 1);
}

#[test]
fn a_replaced_slot_forgets_positions() {
    let mut s = stream();
    feed(
        &mut s,
        &[
            begin(100, 990),
            describe(&COLUMNS),
            insert("1"),
            insert("2"),
        ],
    );
    s.slot_replaced();
    s.session_started(0);
    // a new slot's first transaction sits at a lower position: it is news
    let got = feed(&mut s, &[begin(50, 990), insert("5"), commit(50, 60)]);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(s.delivered(), 60);
}

#[test]
fn a_relation_sent_again_is_no_news_but_a_renamed_column_is() {
    let mut s = stream();
    let got = feed(
        &mut s,
        &[
            describe(&COLUMNS),
            describe(&COLUMNS),
            describe(&[("person_id", INT8), ("id", INT8), ("text", 25)]),
        ],
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("SchemaChanged"), "{got:?}");
    assert!(got[0].contains("`body` is gone"), "{got:?}");
    // still routed, the row no longer carried
    let got = feed(&mut s, &[begin(100, 990), insert("1"), commit(100, 110)]);
    assert_eq!(got[0], format!("Inserted [I64(1)] seq 1 xid {XID} nothing"));
}

#[test]
fn a_table_that_cannot_be_routed_resyncs_once_per_transaction() {
    let mut s = stream();
    let broken = describe(&[("owner_id", INT8), ("id", INT8), ("body", 25)]);
    let got = feed(
        &mut s,
        &[
            broken,
            begin(100, 990),
            insert("1"),
            insert("2"),
            commit(100, 110),
            begin(120, 991),
            insert("3"),
            commit(120, 130),
        ],
    );
    let resyncs = got.iter().filter(|e| e.starts_with("resync")).count();
    assert_eq!(
        resyncs, 3,
        "one for the Relation, one per transaction: {got:?}"
    );
    assert!(got.iter().all(|e| !e.starts_with("Inserted")), "{got:?}");
}

#[test]
fn truncate_resyncs_the_table() {
    let mut s = stream();
    let truncate = encode(&PgOutputMessage::Truncate(Truncate {
        xid: None,
        options: 0,
        relation_oids: vec![1, 99],
    }));
    let got = feed(
        &mut s,
        &[
            describe(&COLUMNS),
            begin(100, 990),
            truncate,
            commit(100, 110),
        ],
    );
    assert_eq!(got.len(), 2);
    assert!(got[0].starts_with("resync Truncated"), "{got:?}");
}

#[test]
fn bytes_that_do_not_decode_resync_never_panic() {
    let mut s = stream();
    feed(&mut s, &[describe(&COLUMNS), begin(100, 990)]);
    // an Insert of table 1 cut short: that table resyncs
    let mut cut = insert("1");
    cut.truncate(cut.len() - 3);
    let got = feed(&mut s, &[cut]);
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Unreadable"), "{got:?}");
    // garbage: every watched table resyncs
    for garbage in [vec![], vec![b'I'], vec![0xff; 40], b"U\0\0\0\x01N".to_vec()] {
        let got = feed(&mut s, &[garbage]);
        assert!(!got.is_empty());
    }
    assert!(s.stats.malformed.load(Ordering::Relaxed) >= 5);
}

#[test]
fn a_key_changing_update_moves_the_row() {
    let mut s = stream();
    let update = encode(&PgOutputMessage::Update(
        crate::capture::replication::pgoutput::Update {
            xid: None,
            relation_oid: 1,
            old: Some(OldTuple::Key(TupleData {
                columns: vec![ColumnValue::Null, ColumnValue::Text("1"), ColumnValue::Null],
            })),
            new: TupleData {
                columns: vec![
                    ColumnValue::Text("7"),
                    ColumnValue::Text("2"),
                    ColumnValue::Text("x"),
                ],
            },
        },
    ));
    let mut out = Vec::new();
    for m in [describe(&COLUMNS), begin(100, 990), update] {
        s.message(&m, &mut out);
    }
    let CaptureEvent::Change { change, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(change.key, Key(vec![Value::I64(2)]));
    assert_eq!(change.old_key, Some(Key(vec![Value::I64(1)])));
}
