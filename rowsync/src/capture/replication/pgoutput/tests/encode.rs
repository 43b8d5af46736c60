//! Writes messages the way PostgreSQL's `proto.c` does: the inverse of the decoder, for tests.

use super::super::parse::*;
use super::super::*;

/// A message under construction, one field at a time.
#[derive(Default)]
pub(super) struct Bytes(pub(super) Vec<u8>);

impl Bytes {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn u8(mut self, value: u8) -> Self {
        self.0.push(value);
        self
    }

    pub(super) fn i16(mut self, value: i16) -> Self {
        self.0.extend(value.to_be_bytes());
        self
    }

    pub(super) fn u32(mut self, value: u32) -> Self {
        self.0.extend(value.to_be_bytes());
        self
    }

    pub(super) fn i32(mut self, value: i32) -> Self {
        self.0.extend(value.to_be_bytes());
        self
    }

    pub(super) fn u64(mut self, value: u64) -> Self {
        self.0.extend(value.to_be_bytes());
        self
    }

    pub(super) fn i64(mut self, value: i64) -> Self {
        self.0.extend(value.to_be_bytes());
        self
    }

    /// A NUL-terminated string.
    pub(super) fn str(mut self, value: &str) -> Self {
        self.0.extend(value.as_bytes());
        self.0.push(0);
        self
    }

    /// Raw bytes, no length.
    pub(super) fn raw(mut self, value: &[u8]) -> Self {
        self.0.extend(value);
        self
    }

    /// An `Int32` length, then the bytes.
    pub(super) fn counted(self, value: &[u8]) -> Self {
        let length = i32::try_from(value.len()).expect("test values are small");
        self.i32(length).raw(value)
    }

    fn xid(self, xid: Option<Xid>) -> Self {
        match xid {
            Some(xid) => self.u32(xid),
            None => self,
        }
    }

    fn namespace(self, namespace: &str) -> Self {
        self.str(if namespace == "pg_catalog" {
            ""
        } else {
            namespace
        })
    }

    pub(super) fn tuple(self, tuple: &TupleData<'_>) -> Self {
        let count = i16::try_from(tuple.columns.len()).expect("test tuples are small");
        tuple
            .columns
            .iter()
            .fold(self.i16(count), |b, value| match value {
                ColumnValue::Null => b.u8(b'n'),
                ColumnValue::Unchanged => b.u8(b'u'),
                ColumnValue::Text(text) => b.u8(b't').counted(text.as_bytes()),
                ColumnValue::Binary(bytes) => b.u8(b'b').counted(bytes),
            })
    }

    fn old(self, old: &OldTuple<'_>) -> Self {
        match old {
            OldTuple::Key(tuple) => self.u8(KEY_TUPLE).tuple(tuple),
            OldTuple::Full(tuple) => self.u8(OLD_TUPLE).tuple(tuple),
        }
    }
}

/// Whether `message` must be decoded as inside a stream: a data message that carries an xid.
pub(super) fn streamed(message: &PgOutputMessage<'_>) -> bool {
    let xid = match message {
        PgOutputMessage::Relation(m) => m.xid,
        PgOutputMessage::Type(m) => m.xid,
        PgOutputMessage::Insert(m) => m.xid,
        PgOutputMessage::Update(m) => m.xid,
        PgOutputMessage::Delete(m) => m.xid,
        PgOutputMessage::Truncate(m) => m.xid,
        PgOutputMessage::Message(m) => m.xid,
        _ => None,
    };
    xid.is_some()
}

/// The bytes the server would send for `message`.
pub(crate) fn encode(message: &PgOutputMessage<'_>) -> Vec<u8> {
    let b = Bytes::new();
    let b = match message {
        PgOutputMessage::Begin(m) => b
            .u8(BEGIN_TAG)
            .u64(m.final_lsn.0)
            .i64(m.timestamp.0)
            .u32(m.xid),
        PgOutputMessage::Commit(m) => b
            .u8(COMMIT_TAG)
            .u8(m.flags)
            .u64(m.commit_lsn.0)
            .u64(m.end_lsn.0)
            .i64(m.timestamp.0),
        PgOutputMessage::Origin(m) => b.u8(ORIGIN_TAG).u64(m.commit_lsn.0).str(m.name),
        PgOutputMessage::Relation(m) => relation(b, m),
        PgOutputMessage::Type(m) => b
            .u8(TYPE_TAG)
            .xid(m.xid)
            .u32(m.oid)
            .namespace(m.namespace)
            .str(m.name),
        PgOutputMessage::Insert(m) => b
            .u8(INSERT_TAG)
            .xid(m.xid)
            .u32(m.relation_oid)
            .u8(NEW_TUPLE)
            .tuple(&m.new),
        PgOutputMessage::Update(m) => {
            let b = b.u8(UPDATE_TAG).xid(m.xid).u32(m.relation_oid);
            let b = match &m.old {
                Some(old) => b.old(old),
                None => b,
            };
            b.u8(NEW_TUPLE).tuple(&m.new)
        }
        PgOutputMessage::Delete(m) => b.u8(DELETE_TAG).xid(m.xid).u32(m.relation_oid).old(&m.old),
        PgOutputMessage::Truncate(m) => {
            let count = i32::try_from(m.relation_oids.len()).expect("small");
            let b = b.u8(TRUNCATE_TAG).xid(m.xid).i32(count).u8(m.options);
            m.relation_oids.iter().fold(b, |b, oid| b.u32(*oid))
        }
        PgOutputMessage::Message(m) => b
            .u8(MESSAGE_TAG)
            .xid(m.xid)
            .u8(m.flags)
            .u64(m.lsn.0)
            .str(m.prefix)
            .counted(m.content),
        PgOutputMessage::StreamStart(m) => b
            .u8(STREAM_START_TAG)
            .u32(m.xid)
            .u8(u8::from(m.first_segment)),
        PgOutputMessage::StreamStop => b.u8(STREAM_STOP_TAG),
        PgOutputMessage::StreamCommit(m) => b
            .u8(STREAM_COMMIT_TAG)
            .u32(m.xid)
            .u8(m.flags)
            .u64(m.commit_lsn.0)
            .u64(m.end_lsn.0)
            .i64(m.timestamp.0),
        PgOutputMessage::StreamAbort(m) => {
            let b = b.u8(STREAM_ABORT_TAG).u32(m.xid).u32(m.subtransaction_xid);
            match m.abort {
                Some((lsn, at)) => b.u64(lsn.0).i64(at.0),
                None => b,
            }
        }
        PgOutputMessage::BeginPrepare(m) => b
            .u8(BEGIN_PREPARE_TAG)
            .u64(m.prepare_lsn.0)
            .u64(m.end_lsn.0)
            .i64(m.timestamp.0)
            .u32(m.xid)
            .str(m.gid),
        PgOutputMessage::Prepare(m) => prepare(b.u8(PREPARE_TAG), m),
        PgOutputMessage::StreamPrepare(m) => prepare(b.u8(STREAM_PREPARE_TAG), m),
        PgOutputMessage::CommitPrepared(m) => b
            .u8(COMMIT_PREPARED_TAG)
            .u8(m.flags)
            .u64(m.commit_lsn.0)
            .u64(m.end_lsn.0)
            .i64(m.timestamp.0)
            .u32(m.xid)
            .str(m.gid),
        PgOutputMessage::RollbackPrepared(m) => b
            .u8(ROLLBACK_PREPARED_TAG)
            .u8(m.flags)
            .u64(m.prepare_end_lsn.0)
            .u64(m.rollback_end_lsn.0)
            .i64(m.prepare_timestamp.0)
            .i64(m.rollback_timestamp.0)
            .u32(m.xid)
            .str(m.gid),
    };
    b.0
}

fn relation(b: Bytes, m: &Relation<'_>) -> Bytes {
    let identity = match m.replica_identity {
        ReplicaIdentity::Default => b'd',
        ReplicaIdentity::Nothing => b'n',
        ReplicaIdentity::Full => b'f',
        ReplicaIdentity::Index => b'i',
    };
    let count = i16::try_from(m.columns.len()).expect("test relations are small");
    let b = b
        .u8(RELATION_TAG)
        .xid(m.xid)
        .u32(m.oid)
        .namespace(&m.namespace)
        .str(&m.name)
        .u8(identity)
        .i16(count);
    m.columns.iter().fold(b, |b, c| {
        b.u8(c.flags)
            .str(&c.name)
            .u32(c.type_oid)
            .i32(c.type_modifier)
    })
}

fn prepare(b: Bytes, m: &Prepare<'_>) -> Bytes {
    b.u8(m.flags)
        .u64(m.prepare_lsn.0)
        .u64(m.end_lsn.0)
        .i64(m.timestamp.0)
        .u32(m.xid)
        .str(m.gid)
}
