//! What can be wrong with a pgoutput message, and where.

use thiserror::Error;

/// A pgoutput message that could not be decoded.
///
/// Every variant names the field it was reading and the byte offset in the message (the tag
/// byte is offset 0), so a bad message can be found in a hex dump. A decode error means the
/// replication stream can no longer be trusted: the consumer should stop and resync rather than
/// skip the message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The first byte is not a message tag this decoder knows.
    #[error(
        "unknown pgoutput message tag {} at offset 0; the server may speak a newer protocol \
         version than the one requested",
        shown(.tag)
    )]
    UnknownTag {
        /// The tag byte.
        tag: u8,
    },
    /// The message ends inside a fixed-width field.
    #[error(
        "pgoutput message truncated: {field} at offset {offset} needs {needed} bytes, \
         {remaining} left"
    )]
    UnexpectedEnd {
        /// The field being read.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// A NUL-terminated string has no terminating NUL before the end of the message.
    #[error("{field} at offset {offset} is not NUL-terminated before the end of the message")]
    UnterminatedString {
        /// The field being read.
        field: &'static str,
        /// Where the string starts.
        offset: usize,
    },
    /// A name or text value is not valid UTF-8.
    #[error(
        "{field} at offset {offset} is not valid UTF-8 (first bad byte at offset {invalid_at}); \
         the replication connection must use client_encoding UTF8"
    )]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
        /// Where the field's bytes start.
        offset: usize,
        /// Offset of the first byte that is not valid UTF-8.
        invalid_at: usize,
    },
    /// A length or count field holds a negative number.
    #[error("{field} at offset {offset} is negative ({value})")]
    NegativeLength {
        /// The field being read.
        field: &'static str,
        /// Where the length field starts.
        offset: usize,
        /// The value read.
        value: i32,
    },
    /// A length field declares more bytes than the message has left.
    #[error(
        "{field} at offset {offset} declares {length} bytes but only {remaining} remain in the \
         message"
    )]
    LengthExceedsInput {
        /// The field being read.
        field: &'static str,
        /// Where the length field starts.
        offset: usize,
        /// The declared length.
        length: usize,
        /// Bytes left after the length field.
        remaining: usize,
    },
    /// A count field declares more entries than the rest of the message could hold.
    #[error(
        "{field} at offset {offset} declares {count} entries of at least {min_size} bytes each, \
         but only {remaining} bytes remain in the message"
    )]
    CountExceedsInput {
        /// The field being read.
        field: &'static str,
        /// Where the count field starts.
        offset: usize,
        /// The declared count.
        count: usize,
        /// The smallest size one entry can have.
        min_size: usize,
        /// Bytes left after the count field.
        remaining: usize,
    },
    /// A tuple column has a kind other than `n`, `u`, `t` or `b`.
    #[error(
        "unknown tuple column kind {} at offset {offset}: expected 'n', 'u', 't' or 'b'",
        shown(.kind)
    )]
    UnknownColumnKind {
        /// Where the kind byte is.
        offset: usize,
        /// The kind byte.
        kind: u8,
    },
    /// An Insert, Update or Delete has a tuple marker other than the ones allowed there.
    #[error("{message} message: expected {expected} at offset {offset}, found {}", shown(.found))]
    UnexpectedTupleMarker {
        /// The message being read.
        message: &'static str,
        /// Where the marker byte is.
        offset: usize,
        /// The marker byte found.
        found: u8,
        /// The markers allowed at that place.
        expected: &'static str,
    },
    /// A Relation message has a replica identity other than `d`, `n`, `f` or `i`.
    #[error(
        "unknown replica identity {} at offset {offset}: expected 'd', 'n', 'f' or 'i'",
        shown(.found)
    )]
    UnknownReplicaIdentity {
        /// Where the byte is.
        offset: usize,
        /// The byte found.
        found: u8,
    },
    /// Bytes are left after a complete message.
    #[error("{message} message has {count} unexpected trailing bytes at offset {offset}")]
    TrailingBytes {
        /// The message that was decoded.
        message: &'static str,
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
    /// A Stream Start arrived while a stream was already open (protocol v2+, [`Decoder`]).
    ///
    /// [`Decoder`]: super::Decoder
    #[error("Stream Start for xid {xid} arrived before the open stream was stopped")]
    NestedStreamStart {
        /// The xid of the new Stream Start.
        xid: u32,
    },
    /// A Stream Stop arrived while no stream was open (protocol v2+, [`Decoder`]).
    ///
    /// [`Decoder`]: super::Decoder
    #[error("Stream Stop arrived while no stream was open")]
    StreamStopOutsideStream,
    /// A tuple has a different number of columns than its relation (see
    /// [`Relation::values`](super::Relation::values)).
    #[error(
        "tuple for relation {relation_oid} has {found} columns where its Relation message has \
         {expected}; the relation cache may be stale"
    )]
    ColumnCountMismatch {
        /// The relation.
        relation_oid: u32,
        /// Columns in the Relation message.
        expected: usize,
        /// Columns in the tuple.
        found: usize,
    },
}

impl DecodeError {
    /// The byte offset in the message the error points at, when it points at one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            DecodeError::UnknownTag { .. } => Some(0),
            DecodeError::UnexpectedEnd { offset, .. }
            | DecodeError::UnterminatedString { offset, .. }
            | DecodeError::InvalidUtf8 { offset, .. }
            | DecodeError::NegativeLength { offset, .. }
            | DecodeError::LengthExceedsInput { offset, .. }
            | DecodeError::CountExceedsInput { offset, .. }
            | DecodeError::UnknownColumnKind { offset, .. }
            | DecodeError::UnexpectedTupleMarker { offset, .. }
            | DecodeError::UnknownReplicaIdentity { offset, .. }
            | DecodeError::TrailingBytes { offset, .. } => Some(*offset),
            DecodeError::NestedStreamStart { .. }
            | DecodeError::StreamStopOutsideStream
            | DecodeError::ColumnCountMismatch { .. } => None,
        }
    }
}

/// A byte as a quoted character when printable, else in hex.
fn shown(byte: &u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}' ({byte:#04x})", char::from(*byte))
    } else {
        format!("{byte:#04x}")
    }
}
