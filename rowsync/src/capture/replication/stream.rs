//! One hub's replication stream across sessions, as pure state: pgoutput messages in,
//! [`CaptureEvent`]s out, in commit order, each change exactly once.
//!
//! # Exactly once across reconnects
//!
//! A transaction is emitted as its changes, then `Committed { xid, lsn }` with its end
//! position. A logical decoding message of a hub's sync point is emitted as `Reached`.
//! After a dropped connection the next session starts from the end of the last transaction
//! emitted ([`delivered`](Stream::delivered)): the server skips what committed before it.
//! What it does send again is the transaction the connection broke in: the stream counts
//! how many of its changes went out ([`Partial`]) and skips that many when the transaction
//! (same commit position) arrives again. Anything committed before `delivered` that still
//! comes is skipped whole. Decoding is deterministic, so a transaction sent again holds the
//! same changes in the same order.
//!
//! # Tables
//!
//! Every Relation message is read against the plan, the schema and the start-up catalog
//! ([`map_relation`]); a difference is reported once (an error log and a `SchemaChanged`
//! resync), and a Relation sent again unchanged (every new session sends them) is no news.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::catalog::Catalog;
use super::convert::{map_relation, TableMap, Unreadable};
use super::pgoutput::{DecodeError, Decoder, Oid, PgOutputMessage, Relation};
use super::xid::XidWidener;
use crate::capture::plan::CapturePlan;
use crate::capture::{CaptureEvent, CaptureStats, Carried};
use crate::change::{Change, ResyncReason};
use crate::schema::{SchemaMeta, TableName};

/// A watched table's latest Relation and how to read its tuples (`None`: a column routing
/// needs is gone or retyped, so its changes cannot be described).
struct Known {
    relation: Relation<'static>,
    table: TableName,
    map: Option<TableMap>,
    /// What differs from what the hub started with (empty: nothing).
    detail: String,
}

/// How far into a transaction a broken session got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Partial {
    final_lsn: u64,
    /// Change messages handled (emitted or skipped).
    handled: u64,
}

/// What of a transaction was delivered before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    All,
    First(u64),
}

/// The transaction being received.
struct Txn {
    final_lsn: u64,
    xid: u64,
    handled: u64,
    skip: Skip,
    /// Broken tables already resynced for in this transaction.
    resynced: HashSet<TableName>,
}

/// The stream's state.
pub(crate) struct Stream {
    plan: Arc<CapturePlan>,
    schemas: crate::hash::HashMap<TableName, &'static SchemaMeta>,
    catalog: Catalog,
    relations: HashMap<Oid, Known>,
    /// Relations of tables the hub does not watch (a publication shared with others).
    ignored: HashSet<Oid>,
    decoder: Decoder,
    xids: XidWidener,
    seq: u64,
    delivered: u64,
    partial: Option<Partial>,
    txn: Option<Txn>,
    stats: Arc<CaptureStats>,
}

impl Stream {
    /// A stream for the watched tables; `xid_reference` is a recent full xid of the server.
    pub fn new(
        plan: Arc<CapturePlan>,
        schemas: crate::hash::HashMap<TableName, &'static SchemaMeta>,
        catalog: Catalog,
        xid_reference: u64,
        stats: Arc<CaptureStats>,
    ) -> Stream {
        Stream {
            plan,
            schemas,
            catalog,
            relations: HashMap::new(),
            ignored: HashSet::new(),
            decoder: Decoder::new(),
            xids: XidWidener::new(xid_reference),
            seq: 0,
            delivered: 0,
            partial: None,
            txn: None,
            stats,
        }
    }

    /// The end position of the last transaction emitted whole: where the next session
    /// starts.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// `true` between transactions.
    pub fn idle(&self) -> bool {
        self.txn.is_none()
    }

    /// A new session starts: it begins outside any transaction.
    pub fn session_started(&mut self, xid_reference: u64) {
        self.decoder = Decoder::new();
        self.txn = None;
        self.xids.refresh(xid_reference);
    }

    /// The slot was replaced (a temporary one lost with its connection, or one dropped and
    /// created again): positions of the old one mean nothing, nothing will be sent again.
    pub fn slot_replaced(&mut self) {
        self.delivered = 0;
        self.partial = None;
        self.txn = None;
    }

    /// `Begin`: `final_lsn` is the commit's position.
    pub fn begin(&mut self, final_lsn: u64, xid: u32) {
        let skip = if final_lsn < self.delivered {
            Skip::All
        } else {
            match self.partial {
                Some(p) if p.final_lsn == final_lsn => Skip::First(p.handled),
                _ => {
                    self.partial = None;
                    Skip::Nothing
                }
            }
        };
        self.txn = Some(Txn {
            final_lsn,
            xid: self.xids.widen(xid),
            handled: 0,
            skip,
            resynced: HashSet::new(),
        });
    }

    /// `Commit`: `end_lsn` is the end of the transaction's WAL.
    pub fn commit(&mut self, end_lsn: u64, out: &mut Vec<CaptureEvent>) {
        let Some(txn) = self.txn.take() else {
            tracing::warn!(
                end_lsn,
                "replication: a commit outside a transaction ignored"
            );
            return;
        };
        if txn.skip != Skip::All {
            out.push(CaptureEvent::Committed {
                xid: txn.xid,
                lsn: Some(end_lsn),
            });
        }
        self.delivered = self.delivered.max(end_lsn);
        self.partial = None;
    }

    /// One pgoutput message (Begin and Commit too, though the connection reports those
    /// apart).
    pub fn message(&mut self, bytes: &[u8], out: &mut Vec<CaptureEvent>) {
        let message = match self.decoder.decode(bytes) {
            Ok(message) => message,
            Err(error) => return self.undecodable(bytes, &error, out),
        };
        match message {
            PgOutputMessage::Begin(b) => self.begin(b.final_lsn.0, b.xid),
            PgOutputMessage::Commit(c) => self.commit(c.end_lsn.0, out),
            PgOutputMessage::Relation(relation) => self.relation(relation, out),
            PgOutputMessage::Insert(_)
            | PgOutputMessage::Update(_)
            | PgOutputMessage::Delete(_)
            | PgOutputMessage::Truncate(_) => self.data(&message, out),
            PgOutputMessage::Message(m) => self.logical_message(m.prefix, m.content, out),
            PgOutputMessage::Origin(_) | PgOutputMessage::Type(_) => {}
            other => tracing::warn!(
                message = other.name(),
                "replication: a message of a protocol option not asked for ignored"
            ),
        }
    }

    /// A logical decoding message: a hub's sync point (`pg_logical_emit_message(true,
    /// 'rowsync-sync-point', token)`) is reached here; others are not ours.
    pub fn logical_message(&mut self, prefix: &str, content: &[u8], out: &mut Vec<CaptureEvent>) {
        if prefix != crate::capture::SYNC_POINT {
            return;
        }
        // a transaction sent again after a reconnect was reached already
        if self.txn.as_ref().is_some_and(|t| t.skip == Skip::All) {
            return;
        }
        match std::str::from_utf8(content)
            .ok()
            .and_then(|t| t.parse().ok())
        {
            Some(token) => out.push(CaptureEvent::Reached { token }),
            None => tracing::debug!("replication: a sync point message without a token ignored"),
        }
    }

    fn relation(&mut self, relation: Relation<'_>, out: &mut Vec<CaptureEvent>) {
        let oid = relation.oid;
        let Some(plan) = self.plan.find(&relation.namespace, &relation.name) else {
            self.ignored.insert(oid);
            return;
        };
        let table = plan.table;
        let same = |known: &Known| {
            known.relation.columns == relation.columns
                && known.relation.replica_identity == relation.replica_identity
                && known.relation.namespace == relation.namespace
                && known.relation.name == relation.name
        };
        if self.relations.get(&oid).is_some_and(same) {
            return;
        }
        let (map, problems) = match self.catalog.tables.get(&table) {
            Some(expected) => {
                let mapped =
                    map_relation(&relation, plan, self.schemas.get(&table).copied(), expected);
                (mapped.map, mapped.problems)
            }
            None => (
                None,
                vec!["the table was not in the catalog at start".to_owned()],
            ),
        };
        let detail = problems.join("; ");
        if !problems.is_empty() {
            tracing::error!(
                %table,
                %detail,
                "a watched table changed under the hub; its subscribers resync (restart the hub \
                 with schemas that match the table)"
            );
            out.push(CaptureEvent::Resync {
                table: Some(table),
                reason: ResyncReason::SchemaChanged {
                    table,
                    detail: detail.clone(),
                },
            });
        }
        self.relations.insert(
            oid,
            Known {
                relation: relation.into_owned(),
                table,
                map,
                detail,
            },
        );
    }

    /// Insert, Update, Delete or Truncate: emitted unless delivered before.
    fn data(&mut self, message: &PgOutputMessage<'_>, out: &mut Vec<CaptureEvent>) {
        let Some(txn) = self.txn.as_mut() else {
            tracing::warn!(
                message = message.name(),
                "replication: a change outside a transaction; resyncing"
            );
            return self.resync_all("a change outside a transaction", out);
        };
        txn.handled += 1;
        let duplicate = match txn.skip {
            Skip::All => true,
            Skip::First(n) => txn.handled <= n,
            Skip::Nothing => false,
        };
        if txn.skip != Skip::All {
            self.partial = Some(Partial {
                final_lsn: txn.final_lsn,
                handled: txn.handled,
            });
        }
        if duplicate {
            CaptureStats::count(&self.stats.duplicates);
            return;
        }
        let xid = txn.xid;
        match message {
            PgOutputMessage::Insert(m) => {
                self.change(m.relation_oid, out, |map, seq| map.insert(&m.new, xid, seq));
            }
            PgOutputMessage::Update(m) => {
                self.change(m.relation_oid, out, |map, seq| {
                    map.update(m.old.as_ref(), &m.new, xid, seq)
                });
            }
            PgOutputMessage::Delete(m) => {
                self.change(m.relation_oid, out, |map, seq| map.delete(&m.old, xid, seq));
            }
            PgOutputMessage::Truncate(m) => {
                for oid in &m.relation_oids {
                    if let Some(known) = self.relations.get(oid) {
                        let table = known.table;
                        out.push(CaptureEvent::Resync {
                            table: Some(table),
                            reason: ResyncReason::Truncated { table },
                        });
                    }
                }
            }
            _ => {}
        }
    }

    fn change(
        &mut self,
        oid: Oid,
        out: &mut Vec<CaptureEvent>,
        read: impl FnOnce(&TableMap, u64) -> Result<(Change, Carried), Unreadable>,
    ) {
        if self.ignored.contains(&oid) {
            CaptureStats::count(&self.stats.unknown_table);
            return;
        }
        let Some(known) = self.relations.get(&oid) else {
            CaptureStats::count(&self.stats.malformed);
            tracing::warn!(oid, "replication: a change of a relation never described");
            return self.resync_all("a change of a relation never described", out);
        };
        let table = known.table;
        let Some(map) = &known.map else {
            // the table cannot be read any more: its holders reload, once per transaction
            if let Some(txn) = self.txn.as_mut() {
                if txn.resynced.insert(table) {
                    out.push(CaptureEvent::Resync {
                        table: Some(table),
                        reason: ResyncReason::SchemaChanged {
                            table,
                            detail: known.detail.clone(),
                        },
                    });
                }
            }
            return;
        };
        match read(map, self.seq + 1) {
            Ok((change, row)) => {
                self.seq += 1;
                CaptureStats::count(&self.stats.changes);
                out.push(CaptureEvent::Change { change, row });
            }
            Err(Unreadable(error)) => {
                CaptureStats::count(&self.stats.malformed);
                tracing::warn!(%table, %error, "replication: a change could not be read; its table's subscribers resync");
                out.push(CaptureEvent::Resync {
                    table: Some(table),
                    reason: ResyncReason::Unreadable { table, error },
                });
            }
        }
    }

    /// A message that does not decode: its table's holders reload (every watched table's,
    /// when the table cannot be told).
    fn undecodable(&mut self, bytes: &[u8], error: &DecodeError, out: &mut Vec<CaptureEvent>) {
        CaptureStats::count(&self.stats.malformed);
        tracing::error!(%error, "replication: a pgoutput message could not be decoded");
        // why peek: in protocol v1 every message naming a table has its oid right after the tag
        let oid = bytes
            .get(1..5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes);
        let table = match bytes.first() {
            Some(b'I' | b'U' | b'D' | b'R') => oid
                .and_then(|oid| self.relations.get(&oid))
                .map(|known| known.table),
            _ => None,
        };
        match table {
            Some(table) => out.push(CaptureEvent::Resync {
                table: Some(table),
                reason: ResyncReason::Unreadable {
                    table,
                    error: error.to_string(),
                },
            }),
            None => self.resync_all(&error.to_string(), out),
        }
    }

    fn resync_all(&self, error: &str, out: &mut Vec<CaptureEvent>) {
        for table in self.plan.tables().map(|t| t.table) {
            out.push(CaptureEvent::Resync {
                table: Some(table),
                reason: ResyncReason::Unreadable {
                    table,
                    error: error.to_owned(),
                },
            });
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
