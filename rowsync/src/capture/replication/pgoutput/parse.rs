//! One small function per message kind, each reading the fields in the order the server writes
//! them (PostgreSQL's `src/backend/replication/logical/proto.c`).

use std::borrow::Cow;

use super::error::DecodeError;
use super::message::{
    Begin, BeginPrepare, Commit, CommitPrepared, Delete, Insert, LogicalMessage, Lsn, OldTuple,
    Origin, PgOutputMessage, PgTimestamp, Prepare, RollbackPrepared, StreamAbort, StreamCommit,
    StreamStart, Truncate, Type, Update, Xid,
};
use super::reader::Reader;
use super::relation::{Column, Relation, ReplicaIdentity};
use super::tuple::{read_tuple, TupleData};

pub(super) const BEGIN_TAG: u8 = b'B';
pub(super) const COMMIT_TAG: u8 = b'C';
pub(super) const ORIGIN_TAG: u8 = b'O';
pub(super) const RELATION_TAG: u8 = b'R';
pub(super) const TYPE_TAG: u8 = b'Y';
pub(super) const INSERT_TAG: u8 = b'I';
pub(super) const UPDATE_TAG: u8 = b'U';
pub(super) const DELETE_TAG: u8 = b'D';
pub(super) const TRUNCATE_TAG: u8 = b'T';
pub(super) const MESSAGE_TAG: u8 = b'M';
pub(super) const STREAM_START_TAG: u8 = b'S';
pub(super) const STREAM_STOP_TAG: u8 = b'E';
pub(super) const STREAM_COMMIT_TAG: u8 = b'c';
pub(super) const STREAM_ABORT_TAG: u8 = b'A';
pub(super) const BEGIN_PREPARE_TAG: u8 = b'b';
pub(super) const PREPARE_TAG: u8 = b'P';
pub(super) const COMMIT_PREPARED_TAG: u8 = b'K';
pub(super) const ROLLBACK_PREPARED_TAG: u8 = b'r';
pub(super) const STREAM_PREPARE_TAG: u8 = b'p';

/// Markers before a TupleData in Insert, Update and Delete.
pub(super) const NEW_TUPLE: u8 = b'N';
pub(super) const KEY_TUPLE: u8 = b'K';
pub(super) const OLD_TUPLE: u8 = b'O';

/// The smallest Relation column: flags, an empty name's NUL, type oid, type modifier.
const MIN_COLUMN_SIZE: usize = 1 + 1 + 4 + 4;

/// Decodes one whole message; `in_stream` says whether it sits between Stream Start and Stream
/// Stop, where data messages carry their transaction's xid.
pub(super) fn message(bytes: &[u8], in_stream: bool) -> Result<PgOutputMessage<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let message = match r.u8("message tag")? {
        BEGIN_TAG => PgOutputMessage::Begin(begin(&mut r)?),
        COMMIT_TAG => PgOutputMessage::Commit(commit(&mut r)?),
        ORIGIN_TAG => PgOutputMessage::Origin(origin(&mut r)?),
        RELATION_TAG => PgOutputMessage::Relation(relation(&mut r, in_stream)?),
        TYPE_TAG => PgOutputMessage::Type(type_(&mut r, in_stream)?),
        INSERT_TAG => PgOutputMessage::Insert(insert(&mut r, in_stream)?),
        UPDATE_TAG => PgOutputMessage::Update(update(&mut r, in_stream)?),
        DELETE_TAG => PgOutputMessage::Delete(delete(&mut r, in_stream)?),
        TRUNCATE_TAG => PgOutputMessage::Truncate(truncate(&mut r, in_stream)?),
        MESSAGE_TAG => PgOutputMessage::Message(logical_message(&mut r, in_stream)?),
        STREAM_START_TAG => PgOutputMessage::StreamStart(stream_start(&mut r)?),
        STREAM_STOP_TAG => PgOutputMessage::StreamStop,
        STREAM_COMMIT_TAG => PgOutputMessage::StreamCommit(stream_commit(&mut r)?),
        STREAM_ABORT_TAG => PgOutputMessage::StreamAbort(stream_abort(&mut r)?),
        BEGIN_PREPARE_TAG => PgOutputMessage::BeginPrepare(begin_prepare(&mut r)?),
        PREPARE_TAG => PgOutputMessage::Prepare(prepare(&mut r, &PREPARE)?),
        COMMIT_PREPARED_TAG => PgOutputMessage::CommitPrepared(commit_prepared(&mut r)?),
        ROLLBACK_PREPARED_TAG => PgOutputMessage::RollbackPrepared(rollback_prepared(&mut r)?),
        STREAM_PREPARE_TAG => PgOutputMessage::StreamPrepare(prepare(&mut r, &STREAM_PREPARE)?),
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    r.finish(message.name())?;
    Ok(message)
}

fn lsn(r: &mut Reader<'_>, field: &'static str) -> Result<Lsn, DecodeError> {
    r.u64(field).map(Lsn)
}

fn timestamp(r: &mut Reader<'_>, field: &'static str) -> Result<PgTimestamp, DecodeError> {
    r.i64(field).map(PgTimestamp)
}

/// The xid that protocol v2 puts first in data messages inside a stream.
fn stream_xid(r: &mut Reader<'_>, in_stream: bool) -> Result<Option<Xid>, DecodeError> {
    if in_stream {
        r.u32("streamed transaction xid").map(Some)
    } else {
        Ok(None)
    }
}

fn begin(r: &mut Reader<'_>) -> Result<Begin, DecodeError> {
    Ok(Begin {
        final_lsn: lsn(r, "Begin final LSN")?,
        timestamp: timestamp(r, "Begin commit timestamp")?,
        xid: r.u32("Begin xid")?,
    })
}

fn commit(r: &mut Reader<'_>) -> Result<Commit, DecodeError> {
    Ok(Commit {
        flags: r.u8("Commit flags")?,
        commit_lsn: lsn(r, "Commit LSN")?,
        end_lsn: lsn(r, "Commit end LSN")?,
        timestamp: timestamp(r, "Commit timestamp")?,
    })
}

fn origin<'a>(r: &mut Reader<'a>) -> Result<Origin<'a>, DecodeError> {
    Ok(Origin {
        commit_lsn: lsn(r, "Origin commit LSN")?,
        name: r.cstr("Origin name")?,
    })
}

/// The server sends the empty string for `pg_catalog`, to save space.
fn namespace<'a>(r: &mut Reader<'a>, field: &'static str) -> Result<&'a str, DecodeError> {
    r.cstr(field)
        .map(|name| if name.is_empty() { "pg_catalog" } else { name })
}

fn relation<'a>(r: &mut Reader<'a>, in_stream: bool) -> Result<Relation<'a>, DecodeError> {
    let xid = stream_xid(r, in_stream)?;
    let oid = r.u32("Relation oid")?;
    let namespace = namespace(r, "Relation namespace")?;
    let name = r.cstr("Relation name")?;
    let offset = r.offset();
    let replica_identity = match r.u8("Relation replica identity")? {
        b'd' => ReplicaIdentity::Default,
        b'n' => ReplicaIdentity::Nothing,
        b'f' => ReplicaIdentity::Full,
        b'i' => ReplicaIdentity::Index,
        found => return Err(DecodeError::UnknownReplicaIdentity { offset, found }),
    };
    let count = r.count16("Relation column count", MIN_COLUMN_SIZE)?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        columns.push(Column {
            flags: r.u8("Relation column flags")?,
            name: Cow::Borrowed(r.cstr("Relation column name")?),
            type_oid: r.u32("Relation column type oid")?,
            type_modifier: r.i32("Relation column type modifier")?,
        });
    }
    Ok(Relation {
        xid,
        oid,
        namespace: Cow::Borrowed(namespace),
        name: Cow::Borrowed(name),
        replica_identity,
        columns,
    })
}

fn type_<'a>(r: &mut Reader<'a>, in_stream: bool) -> Result<Type<'a>, DecodeError> {
    Ok(Type {
        xid: stream_xid(r, in_stream)?,
        oid: r.u32("Type oid")?,
        namespace: namespace(r, "Type namespace")?,
        name: r.cstr("Type name")?,
    })
}

/// A tuple marker byte, checked against the ones allowed at that place.
fn marker(
    r: &mut Reader<'_>,
    message: &'static str,
    allowed: &[u8],
    expected: &'static str,
) -> Result<u8, DecodeError> {
    let offset = r.offset();
    let found = r.u8("tuple marker")?;
    if allowed.contains(&found) {
        Ok(found)
    } else {
        Err(DecodeError::UnexpectedTupleMarker {
            message,
            offset,
            found,
            expected,
        })
    }
}

fn insert<'a>(r: &mut Reader<'a>, in_stream: bool) -> Result<Insert<'a>, DecodeError> {
    let xid = stream_xid(r, in_stream)?;
    let relation_oid = r.u32("Insert relation oid")?;
    marker(r, "Insert", &[NEW_TUPLE], "'N'")?;
    Ok(Insert {
        xid,
        relation_oid,
        new: read_tuple(r)?,
    })
}

fn old_tuple(marker: u8, tuple: TupleData<'_>) -> OldTuple<'_> {
    if marker == KEY_TUPLE {
        OldTuple::Key(tuple)
    } else {
        OldTuple::Full(tuple)
    }
}

fn update<'a>(r: &mut Reader<'a>, in_stream: bool) -> Result<Update<'a>, DecodeError> {
    let xid = stream_xid(r, in_stream)?;
    let relation_oid = r.u32("Update relation oid")?;
    let first = marker(
        r,
        "Update",
        &[KEY_TUPLE, OLD_TUPLE, NEW_TUPLE],
        "'K', 'O' or 'N'",
    )?;
    let old = if first == NEW_TUPLE {
        None
    } else {
        let tuple = read_tuple(r)?;
        marker(r, "Update", &[NEW_TUPLE], "'N'")?;
        Some(old_tuple(first, tuple))
    };
    Ok(Update {
        xid,
        relation_oid,
        old,
        new: read_tuple(r)?,
    })
}

fn delete<'a>(r: &mut Reader<'a>, in_stream: bool) -> Result<Delete<'a>, DecodeError> {
    let xid = stream_xid(r, in_stream)?;
    let relation_oid = r.u32("Delete relation oid")?;
    let kind = marker(r, "Delete", &[KEY_TUPLE, OLD_TUPLE], "'K' or 'O'")?;
    Ok(Delete {
        xid,
        relation_oid,
        old: old_tuple(kind, read_tuple(r)?),
    })
}

fn truncate(r: &mut Reader<'_>, in_stream: bool) -> Result<Truncate, DecodeError> {
    let xid = stream_xid(r, in_stream)?;
    let count = r.count32("Truncate relation count", 4)?;
    let options = r.u8("Truncate options")?;
    let mut relation_oids = Vec::with_capacity(count);
    for _ in 0..count {
        relation_oids.push(r.u32("Truncate relation oid")?);
    }
    Ok(Truncate {
        xid,
        options,
        relation_oids,
    })
}

fn logical_message<'a>(
    r: &mut Reader<'a>,
    in_stream: bool,
) -> Result<LogicalMessage<'a>, DecodeError> {
    Ok(LogicalMessage {
        xid: stream_xid(r, in_stream)?,
        flags: r.u8("Message flags")?,
        lsn: lsn(r, "Message LSN")?,
        prefix: r.cstr("Message prefix")?,
        content: r.counted_bytes("Message content")?,
    })
}

fn stream_start(r: &mut Reader<'_>) -> Result<StreamStart, DecodeError> {
    Ok(StreamStart {
        xid: r.u32("Stream Start xid")?,
        first_segment: r.u8("Stream Start first-segment flag")? == 1,
    })
}

fn stream_commit(r: &mut Reader<'_>) -> Result<StreamCommit, DecodeError> {
    Ok(StreamCommit {
        xid: r.u32("Stream Commit xid")?,
        flags: r.u8("Stream Commit flags")?,
        commit_lsn: lsn(r, "Stream Commit LSN")?,
        end_lsn: lsn(r, "Stream Commit end LSN")?,
        timestamp: timestamp(r, "Stream Commit timestamp")?,
    })
}

fn stream_abort(r: &mut Reader<'_>) -> Result<StreamAbort, DecodeError> {
    let xid = r.u32("Stream Abort xid")?;
    let subtransaction_xid = r.u32("Stream Abort subtransaction xid")?;
    // why by length: the abort LSN and time (v4) depend on the `streaming = parallel` option,
    // not on the protocol version alone, and this message has nothing after them
    let abort = if r.remaining() == 0 {
        None
    } else {
        Some((
            lsn(r, "Stream Abort LSN")?,
            timestamp(r, "Stream Abort timestamp")?,
        ))
    };
    Ok(StreamAbort {
        xid,
        subtransaction_xid,
        abort,
    })
}

fn begin_prepare<'a>(r: &mut Reader<'a>) -> Result<BeginPrepare<'a>, DecodeError> {
    Ok(BeginPrepare {
        prepare_lsn: lsn(r, "Begin Prepare LSN")?,
        end_lsn: lsn(r, "Begin Prepare end LSN")?,
        timestamp: timestamp(r, "Begin Prepare timestamp")?,
        xid: r.u32("Begin Prepare xid")?,
        gid: r.cstr("Begin Prepare gid")?,
    })
}

/// Field names of the two messages that share the Prepare layout.
struct PrepareFields {
    flags: &'static str,
    lsn: &'static str,
    end_lsn: &'static str,
    timestamp: &'static str,
    xid: &'static str,
    gid: &'static str,
}

const PREPARE: PrepareFields = PrepareFields {
    flags: "Prepare flags",
    lsn: "Prepare LSN",
    end_lsn: "Prepare end LSN",
    timestamp: "Prepare timestamp",
    xid: "Prepare xid",
    gid: "Prepare gid",
};

const STREAM_PREPARE: PrepareFields = PrepareFields {
    flags: "Stream Prepare flags",
    lsn: "Stream Prepare LSN",
    end_lsn: "Stream Prepare end LSN",
    timestamp: "Stream Prepare timestamp",
    xid: "Stream Prepare xid",
    gid: "Stream Prepare gid",
};

fn prepare<'a>(r: &mut Reader<'a>, fields: &PrepareFields) -> Result<Prepare<'a>, DecodeError> {
    Ok(Prepare {
        flags: r.u8(fields.flags)?,
        prepare_lsn: lsn(r, fields.lsn)?,
        end_lsn: lsn(r, fields.end_lsn)?,
        timestamp: timestamp(r, fields.timestamp)?,
        xid: r.u32(fields.xid)?,
        gid: r.cstr(fields.gid)?,
    })
}

fn commit_prepared<'a>(r: &mut Reader<'a>) -> Result<CommitPrepared<'a>, DecodeError> {
    Ok(CommitPrepared {
        flags: r.u8("Commit Prepared flags")?,
        commit_lsn: lsn(r, "Commit Prepared LSN")?,
        end_lsn: lsn(r, "Commit Prepared end LSN")?,
        timestamp: timestamp(r, "Commit Prepared timestamp")?,
        xid: r.u32("Commit Prepared xid")?,
        gid: r.cstr("Commit Prepared gid")?,
    })
}

fn rollback_prepared<'a>(r: &mut Reader<'a>) -> Result<RollbackPrepared<'a>, DecodeError> {
    Ok(RollbackPrepared {
        flags: r.u8("Rollback Prepared flags")?,
        prepare_end_lsn: lsn(r, "Rollback Prepared prepare end LSN")?,
        rollback_end_lsn: lsn(r, "Rollback Prepared end LSN")?,
        prepare_timestamp: timestamp(r, "Rollback Prepared prepare timestamp")?,
        rollback_timestamp: timestamp(r, "Rollback Prepared timestamp")?,
        xid: r.u32("Rollback Prepared xid")?,
        gid: r.cstr("Rollback Prepared gid")?,
    })
}
