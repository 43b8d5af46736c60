//! Logical replication as a capture source: PostgreSQL streams committed row changes from a
//! replication slot through the `pgoutput` plugin, with no trigger and no NOTIFY on the writer's
//! path.
//!
//! Today this holds the wire decoder only ([`pgoutput`]): pure bytes → messages. The source
//! that opens the replication connection, keeps the slot's position and turns messages into
//! [`Change`](super::Change)s will sit next to it.

// why hidden and public: the replication source is not built yet, and the integration tests
// decode real server output through this path (the lead may re-home it).
#![doc(hidden)]

pub mod pgoutput;
