//! The `pgoutput` logical replication wire format: bytes → [`PgOutputMessage`].
//!
//! # The format
//!
//! A replication slot created with the `pgoutput` plugin streams one message per `CopyData`
//! frame (after the `XLogData` header, which is not part of what is decoded here), or one per
//! row of `pg_logical_slot_get_binary_changes`. PostgreSQL documents the layout in "Logical
//! Replication Message Formats"
//! (<https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>): a tag
//! byte, then big-endian fixed-width integers, NUL-terminated strings and `Int32`-counted
//! byte strings. A transaction arrives as `Begin`, its changes, `Commit`; the server sends
//! it only once it has committed, in commit order (unless it is streamed: see below).
//!
//! Changes name their table by oid. The table's columns come in a `Relation` message sent
//! before the table's first change in the session, and again whenever the server forgets it
//! sent it (after an `ALTER TABLE`, a `TRUNCATE`, in each streamed transaction); keep the
//! latest in a [`RelationCache`] and read each tuple against it ([`Relation::values`]).
//!
//! # What is decoded
//!
//! * Protocol v1: Begin, Commit, Origin, Relation, Type, Insert, Update, Delete, Truncate,
//!   Message (with the `messages` option). TupleData columns `n` (null), `u` (unchanged
//!   TOASTed value), `t` (text format), and `b` (binary format, with the `binary` option of
//!   PostgreSQL 14+).
//! * Protocol v2, with `streaming`: Stream Start, Stream Stop, Stream Commit and Stream Abort, and the xid that data messages
//!   carry between Stream Start and Stream Stop (see below). Stream Abort's abort LSN and time
//!   (v4, `streaming = parallel`) are decoded when present.
//! * Protocol v3 (`two_phase`): Begin Prepare, Prepare, Commit Prepared, Rollback Prepared,
//!   Stream Prepare.
//!
//! Names and `t` values are checked to be UTF-8 (the replication connection must use
//! `client_encoding` UTF8); Message content and `b` values are bytes. Values are borrowed from
//! the input, not copied.
//!
//! # Streams need context
//!
//! Inside a Stream Start … Stream Stop block, Relation, Type, Insert, Update, Delete, Truncate
//! and Message start with an extra `Int32` xid (of the subtransaction that made the change, when
//! there is one: a Stream Abort for it discards just those), and nothing in the message itself
//! says so. So either say where the message sits — [`decode`] outside a block
//! (always, for v1), [`decode_streamed`] inside one — or let a [`Decoder`] follow Stream Start
//! and Stream Stop for you.
//!
//! # Unchanged (`u`) columns
//!
//! When an update leaves a large, out-of-line (TOASTed) value untouched, the server does not
//! send it: the new tuple has [`ColumnValue::Unchanged`] for that column. The value is the one
//! the row had before, so a consumer must take it from the row it holds (or re-read the row)
//! and must never store "unchanged" as the value.
//!
//! Likewise a `K` old key tuple has `n` for every column outside the key: there it means "not
//! sent", not SQL NULL. Only an `O` old tuple (`REPLICA IDENTITY FULL`) holds the old row.
//!
//! # Errors
//!
//! Input is hostile: a short message, a negative or oversized length, an unknown tag or column
//! kind, bad UTF-8 or trailing bytes is a [`DecodeError`] naming the field and its offset, never
//! a panic, and nothing is allocated for a count before the input is checked to be long enough
//! to hold it.

mod error;
mod ids;
mod message;
mod parse;
mod reader;
mod relation;
mod relation_cache;
mod tuple;

#[cfg(test)]
pub(crate) mod tests;

pub use error::DecodeError;
pub use message::{
    Begin, BeginPrepare, Commit, CommitPrepared, Delete, Insert, LogicalMessage, Lsn, Oid,
    OldTuple, Origin, PgOutputMessage, PgTimestamp, Prepare, RollbackPrepared, StreamAbort,
    StreamCommit, StreamStart, Truncate, Type, Update, Xid,
};
pub use relation::{Column, Relation, ReplicaIdentity};
pub use relation_cache::RelationCache;
pub use tuple::{ColumnValue, TupleData};

/// Decodes one message that is not inside a Stream Start … Stream Stop block: every message of
/// protocol v1, and of v2+ outside such a block.
///
/// # Errors
///
/// A [`DecodeError`] saying what is wrong at which offset.
pub fn decode(bytes: &[u8]) -> Result<PgOutputMessage<'_>, DecodeError> {
    parse::message(bytes, false)
}

/// Decodes one message that sits inside a Stream Start … Stream Stop block (protocol v2+), where
/// data messages begin with their transaction's xid.
///
/// # Errors
///
/// A [`DecodeError`] saying what is wrong at which offset.
pub fn decode_streamed(bytes: &[u8]) -> Result<PgOutputMessage<'_>, DecodeError> {
    parse::message(bytes, true)
}

/// Decodes the messages of one replication session in order, following Stream Start and Stream
/// Stop to know whether data messages carry an xid.
///
/// Use one per session (a new connection starts outside any stream). A message that fails to
/// decode leaves the state as it was.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    in_stream: bool,
}

impl Decoder {
    /// A decoder outside any stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// `true` between a Stream Start and its Stream Stop.
    pub fn in_stream(&self) -> bool {
        self.in_stream
    }

    /// Decodes the next message of the session.
    ///
    /// # Errors
    ///
    /// What [`decode`] returns, and [`DecodeError::NestedStreamStart`] or
    /// [`DecodeError::StreamStopOutsideStream`] when the stream blocks do not nest.
    pub fn decode<'a>(&mut self, bytes: &'a [u8]) -> Result<PgOutputMessage<'a>, DecodeError> {
        let message = parse::message(bytes, self.in_stream)?;
        match (&message, self.in_stream) {
            (PgOutputMessage::StreamStart(start), true) => {
                return Err(DecodeError::NestedStreamStart { xid: start.xid })
            }
            (PgOutputMessage::StreamStart(_), false) => self.in_stream = true,
            (PgOutputMessage::StreamStop, false) => {
                return Err(DecodeError::StreamStopOutsideStream)
            }
            (PgOutputMessage::StreamStop, true) => self.in_stream = false,
            _ => {}
        }
        Ok(message)
    }
}
