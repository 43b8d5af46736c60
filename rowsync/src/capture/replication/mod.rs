//! Logical replication as a capture source: PostgreSQL streams committed row changes from a
//! replication slot through the `pgoutput` plugin, with no trigger and no NOTIFY on the writer's
//! path.
//!
//! Today this holds the wire decoder only ([`pgoutput`]): pure bytes → messages. The source
//! that opens the replication connection, keeps the slot's position and turns messages into
//! `Change`s will sit next to it.

pub mod pgoutput;
