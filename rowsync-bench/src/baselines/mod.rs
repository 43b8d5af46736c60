//! The alternatives rowsync is measured against, run in the same process on the same
//! notifications (the hub's triggers send them; the baselines LISTEN themselves):
//!
//! - **naive**: every subscriber reloads its data on each relevant notification;
//! - **per-subscriber fetch**: every subscriber fetches the changed row itself (no shared
//!   cache) and patches its data by hand;
//! - **bare listener**: a plain LISTEN loop that does nothing (the limit of capture);
//! - **capture + one read**: the bare listener reading each changed row once (the limit of
//!   capture plus the one read a change needs), batching its reads as rowsync does;
//! - **pg_recvlogical**: PostgreSQL's own logical decoding client on the same workload (the
//!   limit of the replication source).
//!
//! why one shared LISTEN connection fanned out to every baseline subscriber: that is what
//! a plain LISTEN/NOTIFY application gets (every listener of a channel receives every
//! notification and decides for itself whether it is relevant), without opening thousands of
//! connections the server would refuse.

/// The NOTIFY channel of the bench's hubs, which the baselines LISTEN on too.
pub const CHANNEL: &str = "rowsync";

mod fanout;
mod listen;
mod reader;
mod recvlogical;
mod subscriber;

pub use fanout::Fanout;
pub use listen::BareListener;
pub use reader::SharedReader;
pub use recvlogical::{bindir, Following, Recvlogical};
pub use subscriber::{spawn_all, Strategy};
