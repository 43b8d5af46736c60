//! Properties: generated messages survive encode → decode; any cut or mutation of them, and any
//! bytes at all, decode to a value or an error, never a panic.

use std::borrow::Cow;

use proptest::prelude::*;
use proptest::sample::Index;

use super::super::*;
use super::encode::{encode, streamed};

// why leak: messages borrow their text from the input; generated strings must outlive the case,
// and a few bytes per case is cheaper than a parallel owned model of every message
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn leak_bytes(bytes: Vec<u8>) -> &'static [u8] {
    Box::leak(bytes.into_boxed_slice())
}

/// A protocol `String`: any text without NUL.
fn name() -> impl Strategy<Value = &'static str> {
    "[^\\x00]{0,12}".prop_map(leak)
}

/// Never empty: the server writes `pg_catalog` as the empty string, which decodes back to it.
fn namespace() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("pg_catalog"), "[^\\x00]{1,12}".prop_map(leak)]
}

fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn timestamp() -> impl Strategy<Value = PgTimestamp> {
    any::<i64>().prop_map(PgTimestamp)
}

fn value() -> impl Strategy<Value = ColumnValue<'static>> {
    prop_oneof![
        Just(ColumnValue::Null),
        Just(ColumnValue::Unchanged),
        ".{0,24}".prop_map(|t| ColumnValue::Text(leak(t))),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| ColumnValue::Binary(leak_bytes(b))),
    ]
}

fn tuple() -> impl Strategy<Value = TupleData<'static>> {
    prop::collection::vec(value(), 0..8).prop_map(|columns| TupleData { columns })
}

fn old_tuple() -> impl Strategy<Value = OldTuple<'static>> {
    prop_oneof![
        tuple().prop_map(OldTuple::Key),
        tuple().prop_map(OldTuple::Full)
    ]
}

fn relation(xid: Option<Xid>) -> impl Strategy<Value = PgOutputMessage<'static>> {
    let column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| Column {
            flags,
            name: Cow::Borrowed(name),
            type_oid,
            type_modifier,
        },
    );
    let identity = prop::sample::select(
        &[
            ReplicaIdentity::Default,
            ReplicaIdentity::Nothing,
            ReplicaIdentity::Full,
            ReplicaIdentity::Index,
        ][..],
    );
    let columns = prop::collection::vec(column, 0..6);
    (any::<u32>(), namespace(), name(), identity, columns).prop_map(
        move |(oid, namespace, name, replica_identity, columns)| {
            PgOutputMessage::Relation(Relation {
                xid,
                oid,
                namespace: Cow::Borrowed(namespace),
                name: Cow::Borrowed(name),
                replica_identity,
                columns,
            })
        },
    )
}

/// A data message: carries `xid` inside a stream.
fn data(xid: Option<Xid>) -> impl Strategy<Value = PgOutputMessage<'static>> {
    let oid = any::<u32>();
    prop_oneof![
        relation(xid),
        (oid, namespace(), name()).prop_map(move |(oid, namespace, name)| {
            PgOutputMessage::Type(Type {
                xid,
                oid,
                namespace,
                name,
            })
        }),
        (oid, tuple()).prop_map(move |(relation_oid, new)| {
            PgOutputMessage::Insert(Insert {
                xid,
                relation_oid,
                new,
            })
        }),
        (oid, prop::option::of(old_tuple()), tuple()).prop_map(move |(relation_oid, old, new)| {
            PgOutputMessage::Update(Update {
                xid,
                relation_oid,
                old,
                new,
            })
        }),
        (oid, old_tuple()).prop_map(move |(relation_oid, old)| {
            PgOutputMessage::Delete(Delete {
                xid,
                relation_oid,
                old,
            })
        }),
        (any::<u8>(), prop::collection::vec(any::<u32>(), 0..6)).prop_map(
            move |(options, relation_oids)| {
                PgOutputMessage::Truncate(Truncate {
                    xid,
                    options,
                    relation_oids,
                })
            }
        ),
        (
            any::<u8>(),
            lsn(),
            name(),
            prop::collection::vec(any::<u8>(), 0..24)
        )
            .prop_map(move |(flags, lsn, prefix, content)| {
                PgOutputMessage::Message(LogicalMessage {
                    xid,
                    flags,
                    lsn,
                    prefix,
                    content: leak_bytes(content),
                })
            }),
    ]
}

fn transaction_control() -> impl Strategy<Value = PgOutputMessage<'static>> {
    prop_oneof![
        (lsn(), timestamp(), any::<u32>()).prop_map(|(final_lsn, timestamp, xid)| {
            PgOutputMessage::Begin(Begin {
                final_lsn,
                timestamp,
                xid,
            })
        }),
        (any::<u8>(), lsn(), lsn(), timestamp()).prop_map(
            |(flags, commit_lsn, end_lsn, timestamp)| {
                PgOutputMessage::Commit(Commit {
                    flags,
                    commit_lsn,
                    end_lsn,
                    timestamp,
                })
            }
        ),
        (lsn(), name()).prop_map(|(commit_lsn, name)| {
            PgOutputMessage::Origin(Origin { commit_lsn, name })
        }),
    ]
}

fn stream_control() -> impl Strategy<Value = PgOutputMessage<'static>> {
    prop_oneof![
        (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| {
            PgOutputMessage::StreamStart(StreamStart { xid, first_segment })
        }),
        Just(PgOutputMessage::StreamStop),
        (any::<u32>(), any::<u8>(), lsn(), lsn(), timestamp()).prop_map(
            |(xid, flags, commit_lsn, end_lsn, timestamp)| {
                PgOutputMessage::StreamCommit(StreamCommit {
                    xid,
                    flags,
                    commit_lsn,
                    end_lsn,
                    timestamp,
                })
            }
        ),
        (
            any::<u32>(),
            any::<u32>(),
            prop::option::of((lsn(), timestamp()))
        )
            .prop_map(|(xid, subtransaction_xid, abort)| {
                PgOutputMessage::StreamAbort(StreamAbort {
                    xid,
                    subtransaction_xid,
                    abort,
                })
            }),
    ]
}

/// flags, LSN, end LSN, timestamp, xid, gid: the fields the two-phase messages share.
fn prepared_fields() -> impl Strategy<Value = (u8, Lsn, Lsn, PgTimestamp, Xid, &'static str)> {
    (any::<u8>(), lsn(), lsn(), timestamp(), any::<u32>(), name())
}

fn two_phase() -> impl Strategy<Value = PgOutputMessage<'static>> {
    prop_oneof![
        prepared_fields().prop_map(|(_, prepare_lsn, end_lsn, timestamp, xid, gid)| {
            PgOutputMessage::BeginPrepare(BeginPrepare {
                prepare_lsn,
                end_lsn,
                timestamp,
                xid,
                gid,
            })
        }),
        (prepared_fields(), any::<bool>()).prop_map(
            |((flags, prepare_lsn, end_lsn, timestamp, xid, gid), streamed)| {
                let prepare = Prepare {
                    flags,
                    prepare_lsn,
                    end_lsn,
                    timestamp,
                    xid,
                    gid,
                };
                if streamed {
                    PgOutputMessage::StreamPrepare(prepare)
                } else {
                    PgOutputMessage::Prepare(prepare)
                }
            }
        ),
        prepared_fields().prop_map(|(flags, commit_lsn, end_lsn, timestamp, xid, gid)| {
            PgOutputMessage::CommitPrepared(CommitPrepared {
                flags,
                commit_lsn,
                end_lsn,
                timestamp,
                xid,
                gid,
            })
        }),
        (
            any::<u8>(),
            lsn(),
            lsn(),
            timestamp(),
            timestamp(),
            any::<u32>(),
            name()
        )
            .prop_map(
                |(
                    flags,
                    prepare_end_lsn,
                    rollback_end_lsn,
                    prepare_timestamp,
                    rollback_timestamp,
                    xid,
                    gid,
                )| {
                    PgOutputMessage::RollbackPrepared(RollbackPrepared {
                        flags,
                        prepare_end_lsn,
                        rollback_end_lsn,
                        prepare_timestamp,
                        rollback_timestamp,
                        xid,
                        gid,
                    })
                }
            ),
    ]
}

/// Any valid message, inside a stream or not.
fn message() -> impl Strategy<Value = PgOutputMessage<'static>> {
    prop_oneof![
        4 => prop::option::of(any::<u32>()).prop_flat_map(data),
        1 => transaction_control(),
        1 => stream_control(),
        1 => two_phase(),
    ]
}

fn decode_as_sent<'a>(
    bytes: &'a [u8],
    like: &PgOutputMessage<'_>,
) -> Result<PgOutputMessage<'a>, DecodeError> {
    if streamed(like) {
        decode_streamed(bytes)
    } else {
        decode(bytes)
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::Set(at, byte) => {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        Mutation::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), *byte),
        Mutation::Remove(at) => {
            bytes.remove(at.index(bytes.len()));
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
    }
}

/// Decodes both ways and checks what any outcome must satisfy.
fn check_any(bytes: &[u8]) {
    for result in [decode(bytes), decode_streamed(bytes)] {
        match result {
            // decoding is faithful: what was decoded re-encodes to bytes that decode the same
            Ok(message) => {
                let again = encode(&message);
                assert_eq!(decode_as_sent(&again, &message).as_ref(), Ok(&message));
            }
            Err(error) => {
                let offset = error
                    .offset()
                    .expect("a decode error points into the input");
                assert!(offset <= bytes.len(), "{error} for {} bytes", bytes.len());
                assert!(!error.to_string().is_empty());
            }
        }
    }
}

const TAGS: &[u8] = b"BCORYIUDTMSEcAbPKrpNZ";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn valid_messages_roundtrip(message in message()) {
        let bytes = encode(&message);
        prop_assert_eq!(decode_as_sent(&bytes, &message), Ok(message.clone()));
    }

    #[test]
    fn every_cut_of_a_valid_message_is_an_error(message in message()) {
        let bytes = encode(&message);
        for cut in 0..bytes.len() {
            // the one optional tail: Stream Abort without its abort LSN and time is complete
            let abort_without_tail = matches!(message, PgOutputMessage::StreamAbort(_)) && cut == 9;
            let result = decode_as_sent(&bytes[..cut], &message);
            prop_assert_eq!(result.is_ok(), abort_without_tail, "cut at {}", cut);
            if let Err(error) = result {
                prop_assert!(error.offset().is_some_and(|at| at <= cut), "{}", error);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn mutated_messages_never_panic(
        message in message(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = encode(&message);
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        check_any(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        check_any(&bytes);
    }

    #[test]
    fn arbitrary_bodies_after_a_known_tag_never_panic(
        tag in prop::sample::select(TAGS),
        body in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut bytes = vec![tag];
        bytes.extend(body);
        check_any(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn a_decoder_fed_any_sequence_never_panics(
        messages in prop::collection::vec(
            prop_oneof![
                message().prop_map(|m| encode(&m)),
                prop::collection::vec(any::<u8>(), 0..32),
            ],
            0..16,
        ),
    ) {
        let mut decoder = Decoder::new();
        for bytes in &messages {
            let before = decoder.in_stream();
            if decoder.decode(bytes).is_err() {
                prop_assert_eq!(decoder.in_stream(), before);
            }
        }
    }
}
