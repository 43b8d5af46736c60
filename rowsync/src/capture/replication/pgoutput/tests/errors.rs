//! Every way a message can be wrong is a typed error naming the field and offset.

use super::super::*;
use super::encode::{encode, Bytes};

fn err(bytes: &[u8]) -> DecodeError {
    decode(bytes).expect_err("the message must not decode")
}

fn text_insert(length: i32, value: &[u8]) -> Vec<u8> {
    Bytes::new()
        .u8(b'I')
        .u32(1)
        .u8(b'N')
        .i16(1)
        .u8(b't')
        .i32(length)
        .raw(value)
        .0
}

#[test]
fn empty_input_and_unknown_tags() {
    assert_eq!(
        err(b""),
        DecodeError::UnexpectedEnd {
            field: "message tag",
            offset: 0,
            needed: 1,
            remaining: 0
        }
    );
    assert_eq!(err(b"Z"), DecodeError::UnknownTag { tag: b'Z' });
    assert_eq!(err(&[0]), DecodeError::UnknownTag { tag: 0 });
    assert_eq!(
        err(b"Z").to_string(),
        "unknown pgoutput message tag 'Z' (0x5a) at offset 0; the server may speak a newer \
         protocol version than the one requested"
    );
}

#[test]
fn short_input_names_the_field_and_offset() {
    let begin = Bytes::new().u8(b'B').u64(1).i64(2).u32(3).0;
    assert_eq!(
        err(&begin[..5]),
        DecodeError::UnexpectedEnd {
            field: "Begin final LSN",
            offset: 1,
            needed: 8,
            remaining: 4
        }
    );
    assert_eq!(
        err(&begin[..9]),
        DecodeError::UnexpectedEnd {
            field: "Begin commit timestamp",
            offset: 9,
            needed: 8,
            remaining: 0
        }
    );
    let xid = err(&begin[..20]);
    assert_eq!(
        xid.to_string(),
        "pgoutput message truncated: Begin xid at offset 17 needs 4 bytes, 3 left"
    );
    assert_eq!(xid.offset(), Some(17));
}

/// One valid message of each kind, for the cut-everywhere tests.
fn samples() -> Vec<Vec<u8>> {
    vec![
        Bytes::new().u8(b'B').u64(1).i64(2).u32(3).0,
        Bytes::new().u8(b'C').u8(0).u64(1).u64(2).i64(3).0,
        Bytes::new().u8(b'O').u64(1).str("node").0,
        Bytes::new()
            .u8(b'R')
            .u32(1)
            .str("s")
            .str("t")
            .u8(b'f')
            .i16(1)
            .u8(1)
            .str("id")
            .u32(20)
            .i32(-1)
            .0,
        Bytes::new().u8(b'Y').u32(1).str("s").str("ty").0,
        Bytes::new()
            .u8(b'I')
            .u32(1)
            .u8(b'N')
            .i16(3)
            .u8(b't')
            .counted(b"ab")
            .u8(b'b')
            .counted(b"cd")
            .u8(b'n')
            .0,
        Bytes::new()
            .u8(b'U')
            .u32(1)
            .u8(b'O')
            .i16(1)
            .u8(b'u')
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .counted(b"x")
            .0,
        Bytes::new()
            .u8(b'D')
            .u32(1)
            .u8(b'K')
            .i16(1)
            .u8(b't')
            .counted(b"1")
            .0,
        Bytes::new().u8(b'T').i32(2).u8(1).u32(5).u32(6).0,
        Bytes::new().u8(b'M').u8(1).u64(9).str("p").counted(b"xy").0,
        Bytes::new().u8(b'S').u32(7).u8(1).0,
        Bytes::new().u8(b'c').u32(7).u8(0).u64(1).u64(2).i64(3).0,
        Bytes::new().u8(b'A').u32(7).u32(8).0,
        Bytes::new().u8(b'b').u64(1).u64(2).i64(3).u32(4).str("g").0,
        Bytes::new()
            .u8(b'P')
            .u8(0)
            .u64(1)
            .u64(2)
            .i64(3)
            .u32(4)
            .str("g")
            .0,
        Bytes::new()
            .u8(b'K')
            .u8(0)
            .u64(1)
            .u64(2)
            .i64(3)
            .u32(4)
            .str("g")
            .0,
        Bytes::new()
            .u8(b'r')
            .u8(0)
            .u64(1)
            .u64(2)
            .i64(3)
            .i64(4)
            .u32(5)
            .str("g")
            .0,
        Bytes::new()
            .u8(b'p')
            .u8(0)
            .u64(1)
            .u64(2)
            .i64(3)
            .u32(4)
            .str("g")
            .0,
    ]
}

#[test]
fn every_message_cut_at_every_byte_is_an_error_inside_the_input() {
    for sample in samples() {
        let message = decode(&sample).expect("the sample is valid");
        assert_eq!(encode(&message), sample, "{message:?}");
        for cut in 0..sample.len() {
            let short = &sample[..cut];
            let error = decode(short).expect_err("a cut message must not decode");
            assert!(
                matches!(
                    error,
                    DecodeError::UnexpectedEnd { .. }
                        | DecodeError::UnterminatedString { .. }
                        | DecodeError::LengthExceedsInput { .. }
                        | DecodeError::CountExceedsInput { .. }
                ),
                "{} cut at {cut}: {error}",
                message.name()
            );
            let offset = error.offset().expect("short input has an offset");
            assert!(offset <= cut, "{error} points past the input ({cut} bytes)");
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    for sample in samples() {
        let name = decode(&sample).unwrap().name();
        let mut long = sample.clone();
        long.push(0);
        if name == "Stream Abort" {
            // an extra byte there starts the optional abort LSN and time: see below
            continue;
        }
        assert_eq!(
            decode(&long),
            Err(DecodeError::TrailingBytes {
                message: name,
                offset: sample.len(),
                count: 1
            })
        );
    }
}

#[test]
fn stream_abort_takes_exactly_nothing_or_an_abort_lsn_and_time() {
    let one = Bytes::new().u8(b'A').u32(7).u32(8).u8(0).0;
    assert!(matches!(
        err(&one),
        DecodeError::UnexpectedEnd {
            field: "Stream Abort LSN",
            offset: 9,
            ..
        }
    ));
    let abort = Bytes::new().u8(b'A').u32(7).u32(8);
    assert!(matches!(
        err(&abort.raw(&[0; 12]).0),
        DecodeError::UnexpectedEnd {
            field: "Stream Abort timestamp",
            offset: 17,
            ..
        }
    ));
    let long = Bytes::new().u8(b'A').u32(7).u32(8).raw(&[0; 17]).0;
    assert!(matches!(
        err(&long),
        DecodeError::TrailingBytes { offset: 25, .. }
    ));
}

#[test]
fn unterminated_strings() {
    let origin = Bytes::new().u8(b'O').u64(1).raw(b"node").0;
    assert_eq!(
        err(&origin),
        DecodeError::UnterminatedString {
            field: "Origin name",
            offset: 9
        }
    );
}

#[test]
fn invalid_utf8_in_names_and_text_values() {
    let relation = Bytes::new()
        .u8(b'R')
        .u32(1)
        .str("s")
        .raw(b"t\xffx\0")
        .u8(b'd')
        .i16(0)
        .0;
    assert_eq!(
        err(&relation),
        DecodeError::InvalidUtf8 {
            field: "Relation name",
            offset: 7,
            invalid_at: 8
        }
    );
    let insert = text_insert(3, b"a\xc3(");
    assert_eq!(
        err(&insert),
        DecodeError::InvalidUtf8 {
            field: "TupleData text value",
            offset: 13,
            invalid_at: 14
        }
    );
    // binary values and message content are bytes: no UTF-8 check
    let binary = Bytes::new()
        .u8(b'I')
        .u32(1)
        .u8(b'N')
        .i16(1)
        .u8(b'b')
        .counted(b"\xff")
        .0;
    assert!(decode(&binary).is_ok());
}

#[test]
fn negative_lengths_and_counts() {
    assert_eq!(
        err(&text_insert(-1, b"")),
        DecodeError::NegativeLength {
            field: "TupleData text value",
            offset: 9,
            value: -1
        }
    );
    let columns = Bytes::new().u8(b'I').u32(1).u8(b'N').i16(-2).0;
    assert_eq!(
        err(&columns),
        DecodeError::NegativeLength {
            field: "TupleData column count",
            offset: 6,
            value: -2
        }
    );
    let relation = Bytes::new()
        .u8(b'R')
        .u32(1)
        .str("s")
        .str("t")
        .u8(b'd')
        .i16(i16::MIN)
        .0;
    assert!(matches!(
        err(&relation),
        DecodeError::NegativeLength {
            field: "Relation column count",
            value: -32768,
            ..
        }
    ));
    let truncate = Bytes::new().u8(b'T').i32(i32::MIN).u8(0).0;
    assert!(matches!(
        err(&truncate),
        DecodeError::NegativeLength {
            field: "Truncate relation count",
            offset: 1,
            ..
        }
    ));
    let message = Bytes::new().u8(b'M').u8(0).u64(1).str("p").i32(-5).0;
    assert!(matches!(
        err(&message),
        DecodeError::NegativeLength {
            field: "Message content",
            value: -5,
            ..
        }
    ));
}

#[test]
fn oversized_lengths_and_counts_fail_before_allocating() {
    assert_eq!(
        err(&text_insert(i32::MAX, b"abc")),
        DecodeError::LengthExceedsInput {
            field: "TupleData text value",
            offset: 9,
            length: i32::MAX as usize,
            remaining: 3
        }
    );
    let columns = Bytes::new()
        .u8(b'I')
        .u32(1)
        .u8(b'N')
        .i16(i16::MAX)
        .u8(b'n')
        .0;
    assert_eq!(
        err(&columns),
        DecodeError::CountExceedsInput {
            field: "TupleData column count",
            offset: 6,
            count: 32767,
            min_size: 1,
            remaining: 1
        }
    );
    // 2^31 - 1 relation oids would be 8 GiB: refused from the length of what is left
    let truncate = Bytes::new().u8(b'T').i32(i32::MAX).u8(0).u32(1).0;
    assert!(matches!(
        err(&truncate),
        DecodeError::CountExceedsInput {
            field: "Truncate relation count",
            min_size: 4,
            ..
        }
    ));
    let relation = Bytes::new()
        .u8(b'R')
        .u32(1)
        .str("s")
        .str("t")
        .u8(b'd')
        .i16(2)
        .u8(1)
        .str("id")
        .u32(20)
        .i32(-1)
        .0;
    assert!(matches!(
        err(&relation),
        DecodeError::CountExceedsInput {
            field: "Relation column count",
            count: 2,
            ..
        }
    ));
}

#[test]
fn bad_tuple_kinds_markers_and_replica_identities() {
    let kind = Bytes::new().u8(b'I').u32(1).u8(b'N').i16(1).u8(b'x').0;
    let error = err(&kind);
    assert_eq!(
        error,
        DecodeError::UnknownColumnKind {
            offset: 8,
            kind: b'x'
        }
    );
    assert_eq!(
        error.to_string(),
        "unknown tuple column kind 'x' (0x78) at offset 8: expected 'n', 'u', 't' or 'b'"
    );
    let insert = Bytes::new().u8(b'I').u32(1).u8(b'K').i16(0).0;
    assert_eq!(
        err(&insert),
        DecodeError::UnexpectedTupleMarker {
            message: "Insert",
            offset: 5,
            found: b'K',
            expected: "'N'"
        }
    );
    let update = Bytes::new().u8(b'U').u32(1).u8(b'X').i16(0).0;
    assert!(matches!(
        err(&update),
        DecodeError::UnexpectedTupleMarker {
            message: "Update",
            offset: 5,
            ..
        }
    ));
    let update_two_old = Bytes::new()
        .u8(b'U')
        .u32(1)
        .u8(b'K')
        .i16(0)
        .u8(b'O')
        .i16(0)
        .0;
    assert!(matches!(
        err(&update_two_old),
        DecodeError::UnexpectedTupleMarker {
            message: "Update",
            offset: 8,
            found: b'O',
            ..
        }
    ));
    let delete = Bytes::new().u8(b'D').u32(1).u8(b'N').i16(0).0;
    assert!(matches!(
        err(&delete),
        DecodeError::UnexpectedTupleMarker {
            message: "Delete",
            found: b'N',
            ..
        }
    ));
    let relation = Bytes::new()
        .u8(b'R')
        .u32(1)
        .str("s")
        .str("t")
        .u8(b'x')
        .i16(0)
        .0;
    assert_eq!(
        err(&relation),
        DecodeError::UnknownReplicaIdentity {
            offset: 9,
            found: b'x'
        }
    );
    let nul = Bytes::new().u8(b'I').u32(1).u8(b'N').i16(1).u8(0).0;
    assert!(err(&nul).to_string().contains("kind 0x00 at offset 8"));
}
