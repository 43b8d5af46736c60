//! Routing: topics, the subscription index, fan-out and bounded per-subscriber queues.

mod derive;
mod index;
pub(crate) mod router;
mod subscription;
mod topic;

pub use derive::{topics_for_rows, topics_for_table};
pub use index::SubscriptionId;
pub use subscription::{Inbox, Message, ResyncReason};
pub use topic::{Ops, Selector, Topic};
