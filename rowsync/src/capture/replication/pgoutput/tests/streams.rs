//! Stream (protocol v2) and two-phase (v3) messages, and the decoder that follows stream blocks.

use super::super::*;
use super::encode::Bytes;
use super::fixtures::{users_relation, LSN, TS};

#[test]
fn stream_control_messages() {
    let start = Bytes::new().u8(b'S').u32(900).u8(1).0;
    assert_eq!(
        decode(&start).unwrap(),
        PgOutputMessage::StreamStart(StreamStart {
            xid: 900,
            first_segment: true
        })
    );
    let later = Bytes::new().u8(b'S').u32(900).u8(0).0;
    assert!(matches!(
        decode(&later).unwrap(),
        PgOutputMessage::StreamStart(StreamStart {
            first_segment: false,
            ..
        })
    ));
    assert_eq!(decode(b"E").unwrap(), PgOutputMessage::StreamStop);
    let commit = Bytes::new()
        .u8(b'c')
        .u32(900)
        .u8(0)
        .u64(LSN)
        .u64(LSN + 8)
        .i64(TS)
        .0;
    assert_eq!(
        decode(&commit).unwrap(),
        PgOutputMessage::StreamCommit(StreamCommit {
            xid: 900,
            flags: 0,
            commit_lsn: Lsn(LSN),
            end_lsn: Lsn(LSN + 8),
            timestamp: PgTimestamp(TS),
        })
    );
    let abort = Bytes::new().u8(b'A').u32(900).u32(901).0;
    assert_eq!(
        decode(&abort).unwrap(),
        PgOutputMessage::StreamAbort(StreamAbort {
            xid: 900,
            subtransaction_xid: 901,
            abort: None,
        })
    );
    let parallel = Bytes::new().u8(b'A').u32(900).u32(900).u64(LSN).i64(TS).0;
    let PgOutputMessage::StreamAbort(abort) = decode(&parallel).unwrap() else {
        panic!("expected a Stream Abort");
    };
    assert_eq!(abort.abort, Some((Lsn(LSN), PgTimestamp(TS))));
}

#[test]
fn data_messages_inside_a_stream_carry_the_xid() {
    let insert = Bytes::new().u8(b'I').u32(900).u32(16_384).u8(b'N').i16(0).0;
    let PgOutputMessage::Insert(decoded) = decode_streamed(&insert).unwrap() else {
        panic!("expected an Insert");
    };
    assert_eq!((decoded.xid, decoded.relation_oid), (Some(900), 16_384));
    // the same bytes outside a stream are an Insert of relation 900 with a bad marker
    assert!(decode(&insert).is_err());

    let mut relation = vec![b'R'];
    relation.extend(900u32.to_be_bytes());
    relation.extend(&users_relation()[1..]);
    let PgOutputMessage::Relation(decoded) = decode_streamed(&relation).unwrap() else {
        panic!("expected a Relation");
    };
    assert_eq!((decoded.xid, decoded.oid), (Some(900), 16_384));

    let message = Bytes::new()
        .u8(b'M')
        .u32(900)
        .u8(1)
        .u64(LSN)
        .str("p")
        .counted(b"x")
        .0;
    let PgOutputMessage::Message(decoded) = decode_streamed(&message).unwrap() else {
        panic!("expected a Message");
    };
    assert_eq!((decoded.xid, decoded.prefix), (Some(900), "p"));
    // control messages read the same either way
    assert_eq!(decode_streamed(b"E").unwrap(), PgOutputMessage::StreamStop);
}

#[test]
fn the_decoder_follows_stream_blocks() {
    let mut decoder = Decoder::new();
    let start = Bytes::new().u8(b'S').u32(900).u8(1).0;
    let insert = Bytes::new().u8(b'I').u32(900).u32(5).u8(b'N').i16(0).0;
    let commit = Bytes::new().u8(b'c').u32(900).u8(0).u64(1).u64(2).i64(3).0;
    assert!(!decoder.in_stream());
    decoder.decode(&start).unwrap();
    assert!(decoder.in_stream());
    let PgOutputMessage::Insert(decoded) = decoder.decode(&insert).unwrap() else {
        panic!("expected an Insert");
    };
    assert_eq!(decoded.xid, Some(900));
    assert_eq!(
        decoder.decode(&start),
        Err(DecodeError::NestedStreamStart { xid: 900 })
    );
    assert!(
        decoder.in_stream(),
        "a failed message leaves the state alone"
    );
    decoder.decode(b"E").unwrap();
    assert!(!decoder.in_stream());
    assert_eq!(
        decoder.decode(b"E"),
        Err(DecodeError::StreamStopOutsideStream)
    );
    assert!(matches!(
        decoder.decode(&commit).unwrap(),
        PgOutputMessage::StreamCommit(_)
    ));
}

#[test]
fn two_phase_messages() {
    let begin = Bytes::new()
        .u8(b'b')
        .u64(LSN)
        .u64(LSN + 8)
        .i64(TS)
        .u32(77)
        .str("gid-1")
        .0;
    assert_eq!(
        decode(&begin).unwrap(),
        PgOutputMessage::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(LSN),
            end_lsn: Lsn(LSN + 8),
            timestamp: PgTimestamp(TS),
            xid: 77,
            gid: "gid-1",
        })
    );
    let prepare = Prepare {
        flags: 0,
        prepare_lsn: Lsn(LSN),
        end_lsn: Lsn(LSN + 8),
        timestamp: PgTimestamp(TS),
        xid: 77,
        gid: "gid-1",
    };
    let body = Bytes::new()
        .u8(0)
        .u64(LSN)
        .u64(LSN + 8)
        .i64(TS)
        .u32(77)
        .str("gid-1")
        .0;
    let prepared = Bytes::new().u8(b'P').raw(&body).0;
    assert_eq!(
        decode(&prepared).unwrap(),
        PgOutputMessage::Prepare(prepare)
    );
    let streamed = Bytes::new().u8(b'p').raw(&body).0;
    assert_eq!(
        decode(&streamed).unwrap(),
        PgOutputMessage::StreamPrepare(prepare)
    );
    let commit = Bytes::new().u8(b'K').raw(&body).0;
    assert_eq!(
        decode(&commit).unwrap(),
        PgOutputMessage::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(LSN),
            end_lsn: Lsn(LSN + 8),
            timestamp: PgTimestamp(TS),
            xid: 77,
            gid: "gid-1",
        })
    );
    let rollback = Bytes::new()
        .u8(b'r')
        .u8(0)
        .u64(LSN)
        .u64(LSN + 8)
        .i64(TS)
        .i64(TS + 1)
        .u32(77)
        .str("gid-1")
        .0;
    assert_eq!(
        decode(&rollback).unwrap(),
        PgOutputMessage::RollbackPrepared(RollbackPrepared {
            flags: 0,
            prepare_end_lsn: Lsn(LSN),
            rollback_end_lsn: Lsn(LSN + 8),
            prepare_timestamp: PgTimestamp(TS),
            rollback_timestamp: PgTimestamp(TS + 1),
            xid: 77,
            gid: "gid-1",
        })
    );
}
