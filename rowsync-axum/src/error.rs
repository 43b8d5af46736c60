//! What can go wrong when publishing a live query.

use rowsync::HubError;

/// An error of a [`LiveFeed`](crate::LiveFeed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The query could not be loaded or subscribed (see the hub's error).
    #[error("the live query did not start: {0}")]
    Start(#[from] HubError),
    /// A row did not serialize to JSON: check the schema's `Serialize` (a map with
    /// non-string keys, a custom impl that fails).
    #[error("a row does not serialize to JSON: {0}")]
    Serialize(#[from] serde_json::Error),
}
