//! Routing: topics, the subscription index, fan-out and bounded per-subscriber queues.

mod derive;
mod held;
mod holders;
mod inbox;
mod index;
pub(crate) mod queue;
pub(crate) mod router;
mod slot;
mod topic;

pub use derive::{topics_for_rows, topics_for_table};
pub use inbox::Inbox;
pub use index::SubscriptionId;
pub use queue::Message;
pub use topic::{Ops, Selector, Topic};
