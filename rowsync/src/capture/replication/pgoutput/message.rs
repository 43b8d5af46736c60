//! The decoded messages: one struct per message kind, borrowing names and values from the input.

pub use super::ids::{Lsn, Oid, PgTimestamp, Xid};
use super::relation::Relation;
use super::tuple::TupleData;

/// One pgoutput message. Borrowed from the bytes it was decoded from; see
/// [`Relation::into_owned`] for what a cache keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgOutputMessage<'a> {
    /// `B`: a transaction starts.
    Begin(Begin),
    /// `C`: the transaction commits.
    Commit(Commit),
    /// `O`: the transaction came from another node (replication origin).
    Origin(Origin<'a>),
    /// `R`: a table's columns, sent before its first change in a session (and again later: keep
    /// the latest).
    Relation(Relation<'a>),
    /// `Y`: a non-built-in column type, sent before the Relation that uses it.
    Type(Type<'a>),
    /// `I`: a row was inserted.
    Insert(Insert<'a>),
    /// `U`: a row was updated.
    Update(Update<'a>),
    /// `D`: a row was deleted.
    Delete(Delete<'a>),
    /// `T`: tables were truncated.
    Truncate(Truncate),
    /// `M`: a logical decoding message (`pg_logical_emit_message`).
    Message(LogicalMessage<'a>),
    /// `S` (v2+): a block of a large in-progress transaction starts.
    StreamStart(StreamStart),
    /// `E` (v2+): the block ends.
    StreamStop,
    /// `c` (v2+): a streamed transaction commits.
    StreamCommit(StreamCommit),
    /// `A` (v2+): a streamed transaction or subtransaction aborts.
    StreamAbort(StreamAbort),
    /// `b` (v3+, `two_phase`): a prepared transaction starts.
    BeginPrepare(BeginPrepare<'a>),
    /// `P` (v3+): the transaction is prepared.
    Prepare(Prepare<'a>),
    /// `K` (v3+): a prepared transaction commits.
    CommitPrepared(CommitPrepared<'a>),
    /// `r` (v3+): a prepared transaction rolls back.
    RollbackPrepared(RollbackPrepared<'a>),
    /// `p` (v3+): a streamed transaction is prepared.
    StreamPrepare(Prepare<'a>),
}

impl PgOutputMessage<'_> {
    /// The message's name in PostgreSQL's documentation, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            PgOutputMessage::Begin(_) => "Begin",
            PgOutputMessage::Commit(_) => "Commit",
            PgOutputMessage::Origin(_) => "Origin",
            PgOutputMessage::Relation(_) => "Relation",
            PgOutputMessage::Type(_) => "Type",
            PgOutputMessage::Insert(_) => "Insert",
            PgOutputMessage::Update(_) => "Update",
            PgOutputMessage::Delete(_) => "Delete",
            PgOutputMessage::Truncate(_) => "Truncate",
            PgOutputMessage::Message(_) => "Message",
            PgOutputMessage::StreamStart(_) => "Stream Start",
            PgOutputMessage::StreamStop => "Stream Stop",
            PgOutputMessage::StreamCommit(_) => "Stream Commit",
            PgOutputMessage::StreamAbort(_) => "Stream Abort",
            PgOutputMessage::BeginPrepare(_) => "Begin Prepare",
            PgOutputMessage::Prepare(_) => "Prepare",
            PgOutputMessage::CommitPrepared(_) => "Commit Prepared",
            PgOutputMessage::RollbackPrepared(_) => "Rollback Prepared",
            PgOutputMessage::StreamPrepare(_) => "Stream Prepare",
        }
    }
}

/// `B`: a transaction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// The LSN of the commit record: equals the matching [`Commit::commit_lsn`].
    pub final_lsn: Lsn,
    /// Commit time.
    pub timestamp: PgTimestamp,
    /// The transaction.
    pub xid: Xid,
}

/// `C`: the transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Unused by the server so far (0).
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the transaction's WAL: the position to confirm once it is applied.
    pub end_lsn: Lsn,
    /// Commit time.
    pub timestamp: PgTimestamp,
}

/// `O`: the transaction was replicated from another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The commit LSN on the origin node.
    pub commit_lsn: Lsn,
    /// The origin's name.
    pub name: &'a str,
}

/// `Y`: a column type that is not built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type<'a> {
    /// The (sub)transaction the message belongs to: protocol v2+, inside a stream only.
    pub xid: Option<Xid>,
    /// The type's oid.
    pub oid: Oid,
    /// The schema (`pg_catalog` when sent empty).
    pub namespace: &'a str,
    /// The type's name.
    pub name: &'a str,
}

/// `I`: a row was inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert<'a> {
    /// The (sub)transaction the message belongs to: protocol v2+, inside a stream only.
    pub xid: Option<Xid>,
    /// The table (see [`Relation::oid`]).
    pub relation_oid: Oid,
    /// The new row.
    pub new: TupleData<'a>,
}

/// The old values an Update or Delete carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple<'a> {
    /// `K`: the replica identity key columns; the other columns are `n`, meaning "not sent".
    Key(TupleData<'a>),
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full(TupleData<'a>),
}

impl<'a> OldTuple<'a> {
    /// The values, whichever kind.
    pub fn tuple(&self) -> &TupleData<'a> {
        match self {
            OldTuple::Key(tuple) | OldTuple::Full(tuple) => tuple,
        }
    }
}

/// `U`: a row was updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update<'a> {
    /// The (sub)transaction the message belongs to: protocol v2+, inside a stream only.
    pub xid: Option<Xid>,
    /// The table (see [`Relation::oid`]).
    pub relation_oid: Oid,
    /// The old key when it changed (identity `DEFAULT`/`INDEX`), or the old row (`FULL`);
    /// `None` when the key did not change.
    pub old: Option<OldTuple<'a>>,
    /// The new row; `u` columns kept their old value.
    pub new: TupleData<'a>,
}

/// `D`: a row was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete<'a> {
    /// The (sub)transaction the message belongs to: protocol v2+, inside a stream only.
    pub xid: Option<Xid>,
    /// The table (see [`Relation::oid`]).
    pub relation_oid: Oid,
    /// The old key, or the old row for `REPLICA IDENTITY FULL`.
    pub old: OldTuple<'a>,
}

/// `T`: tables were truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// The (sub)transaction the message belongs to: protocol v2+, inside a stream only.
    pub xid: Option<Xid>,
    /// Bit 0: `CASCADE`; bit 1: `RESTART IDENTITY`.
    pub options: u8,
    /// The truncated tables (see [`Relation::oid`]).
    pub relation_oids: Vec<Oid>,
}

impl Truncate {
    /// `TRUNCATE ... CASCADE`.
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    /// `TRUNCATE ... RESTART IDENTITY`.
    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// `M`: a logical decoding message, from `pg_logical_emit_message(transactional, prefix,
/// content)`; sent only with the `messages` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogicalMessage<'a> {
    /// The (sub)transaction the message belongs to: protocol v2+, inside a stream only.
    pub xid: Option<Xid>,
    /// Bit 0: transactional (sent between Begin and Commit, and only if it commits).
    pub flags: u8,
    /// The message's LSN.
    pub lsn: Lsn,
    /// The prefix.
    pub prefix: &'a str,
    /// The content, as given (any bytes).
    pub content: &'a [u8],
}

impl LogicalMessage<'_> {
    /// `true` for a transactional message.
    pub fn transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `S` (v2+): a block of a streamed in-progress transaction starts; the data messages up to
/// Stream Stop belong to `xid` and carry the id of the (sub)transaction that made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStart {
    /// The streamed transaction.
    pub xid: Xid,
    /// `true` for the transaction's first block.
    pub first_segment: bool,
}

/// `c` (v2+): a streamed transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCommit {
    /// The transaction.
    pub xid: Xid,
    /// Unused by the server so far (0).
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the transaction's WAL.
    pub end_lsn: Lsn,
    /// Commit time.
    pub timestamp: PgTimestamp,
}

/// `A` (v2+): a streamed transaction, or one of its subtransactions, aborts: discard what was
/// streamed for `subtransaction_xid` (for the whole transaction when it equals `xid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAbort {
    /// The top-level transaction.
    pub xid: Xid,
    /// The aborted (sub)transaction.
    pub subtransaction_xid: Xid,
    /// Where and when it aborted: sent only with protocol v4 and `streaming = parallel`.
    pub abort: Option<(Lsn, PgTimestamp)>,
}

/// `b` (v3+, `two_phase`): a transaction that will be prepared starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginPrepare<'a> {
    /// The LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// The end of the prepared transaction's WAL.
    pub end_lsn: Lsn,
    /// Prepare time.
    pub timestamp: PgTimestamp,
    /// The transaction.
    pub xid: Xid,
    /// The global transaction id given to `PREPARE TRANSACTION`.
    pub gid: &'a str,
}

/// `P` and `p` (v3+): the transaction is prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepare<'a> {
    /// Unused by the server so far (0).
    pub flags: u8,
    /// The LSN of the prepare record.
    pub prepare_lsn: Lsn,
    /// The end of the prepared transaction's WAL.
    pub end_lsn: Lsn,
    /// Prepare time.
    pub timestamp: PgTimestamp,
    /// The transaction.
    pub xid: Xid,
    /// The global transaction id.
    pub gid: &'a str,
}

/// `K` (v3+): a prepared transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPrepared<'a> {
    /// Unused by the server so far (0).
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end of the commit's WAL.
    pub end_lsn: Lsn,
    /// Commit time.
    pub timestamp: PgTimestamp,
    /// The transaction.
    pub xid: Xid,
    /// The global transaction id.
    pub gid: &'a str,
}

/// `r` (v3+): a prepared transaction rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackPrepared<'a> {
    /// Unused by the server so far (0).
    pub flags: u8,
    /// The end of the prepared transaction's WAL.
    pub prepare_end_lsn: Lsn,
    /// The end of the rollback's WAL.
    pub rollback_end_lsn: Lsn,
    /// Prepare time.
    pub prepare_timestamp: PgTimestamp,
    /// Rollback time.
    pub rollback_timestamp: PgTimestamp,
    /// The transaction.
    pub xid: Xid,
    /// The global transaction id.
    pub gid: &'a str,
}
