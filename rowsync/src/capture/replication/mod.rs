//! Logical replication as a capture source: PostgreSQL streams committed row changes from a
//! replication slot through the `pgoutput` plugin, with no trigger and no NOTIFY on the
//! writer's path. Selected with
//! [`HubBuilder::replication`](crate::HubBuilder::replication) (cargo feature
//! `replication`); triggers stay the default.
//!
//! # How it runs
//!
//! At start the hub checks the server (`wal_level = logical`, a role with `REPLICATION`, a
//! free slot and WAL sender) and each watched table's replica identity, makes a publication
//! publish exactly the watched tables, creates its slot if missing and moves it to the
//! current WAL position: a hub that starts holds no data, so a backlog concerns nobody.
//! Then one connection streams from the slot ([`session`]); each message becomes
//! [`CaptureEvent`](crate::capture::CaptureEvent)s in commit order ([`stream`]): inserts,
//! updates and deletes carry their row ([`convert`]), so no sync reads it; a `TRUNCATE`
//! resyncs the table's subscribers; a column renamed, dropped or retyped under the hub is
//! logged as an error and resyncs them too. Every transaction ends with `Committed`; the
//! hub acknowledges the slot up to what it has routed to every subscriber ([`source`]), so
//! a lost connection resumes where it was and no subscriber resyncs.
//!
//! # Replica identity: DEFAULT or FULL
//!
//! With `REPLICA IDENTITY DEFAULT` (the primary key) an update sends the old key only when
//! the key changed, and a delete sends the key only. `FULL` sends the whole old row with
//! every update and delete (the server writes it into the WAL: more WAL per update).
//!
//! The hub needs the old values of routing columns (foreign keys), as the trigger capture
//! sends them: a row moving away from a parent, or deleted, must reach the old parent's
//! holders, `has_many through` owners, and `subscribe_to(.., Selector::foreign(..))`
//! topics on the old value. `DEFAULT` is enough for tables whose key is all they route by
//! (join tables keyed by their two columns, tables nothing points from); the hub sets
//! `FULL` on the others ([`ReplicationConfig::manage_replica_identity`], on by default;
//! off, `start` names the tables that need it).
//!
//! `FULL` also sends the old values of unchanged TOASTed columns (large text, json, bytea),
//! so an update that leaves one untouched still carries its row; on a `DEFAULT` table such
//! a row is not carried and is read once instead.
//!
//! # Slots and disk
//!
//! A permanent slot keeps every WAL segment from its confirmed position on, also while no hub
//! runs. Bound it on the server with `max_slot_wal_keep_size` (the server then invalidates a
//! slot left behind, and the hub creates it again and resyncs), and while the hub runs with
//! [`ReplicationConfig::max_lag_bytes`]. `HubBuilder::uninstall` removes the slot and the
//! publication.

pub mod pgoutput;

#[cfg(feature = "replication")]
mod catalog;
#[cfg(feature = "replication")]
mod config;
#[cfg(feature = "replication")]
mod convert;
#[cfg(all(test, feature = "replication"))]
mod fixtures;
#[cfg(feature = "replication")]
mod lag;
#[cfg(feature = "replication")]
mod publication;
#[cfg(feature = "replication")]
mod session;
#[cfg(feature = "replication")]
pub(crate) mod setup;
#[cfg(feature = "replication")]
mod slot;
#[cfg(feature = "replication")]
mod source;
#[cfg(feature = "replication")]
mod stream;
#[cfg(feature = "replication")]
mod xid;

#[cfg(feature = "replication")]
pub use config::ReplicationConfig;
#[cfg(feature = "replication")]
pub(crate) use source::{ReplicationSource, Start};
#[cfg(feature = "replication")]
pub(crate) use stream::Stream;
