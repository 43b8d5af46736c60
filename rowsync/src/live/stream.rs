//! A live value as a stream of whole transactions: `impl Stream for Live<T>`, and a
//! subscription's messages grouped by transaction.
//!
//! why a value in flight: applying a transaction awaits reads, and a `Stream` must keep that
//! work between polls. The viewer moves into the flight; the `Live` keeps the `Arc` of the
//! last whole state to show meanwhile, so a reader never sees a transaction half-applied,
//! and a poll dropped halfway (`select!`) loses nothing: the next poll, or `next()`,
//! finishes the same flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;

use super::shared::{View, Viewer};
use super::{Live, LiveValue};
use crate::error::SyncError;
use crate::hub::Subscription;
use crate::route::{Message, SubscriptionId};
use crate::sync::Changes;

/// One item of a live value's stream: what one committed transaction did to it, applied
/// whole, or a reload.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum LiveUpdate {
    /// One committed transaction, applied whole: the root rows it inserted, updated
    /// (changed anywhere inside) and deleted.
    Transaction(Changes),
    /// The value was reloaded (a resync: changes were lost for it, a table was truncated,
    /// the capture reconnected): read it again whole.
    Reset,
}

impl LiveUpdate {
    fn from_changes(changes: Changes) -> LiveUpdate {
        if changes.reloaded {
            LiveUpdate::Reset
        } else {
            LiveUpdate::Transaction(changes)
        }
    }
}

/// A transaction being applied by the stream: the viewer moved into `future`, which gives
/// it back with the item.
pub(super) struct Flight<T: LiveValue> {
    future: Pin<Box<dyn Future<Output = Landed<T>> + Send>>,
    /// What readers see meanwhile: the last whole state (an `Arc`, no copy).
    pub(super) data: Arc<T>,
    pub(super) view: View,
    pub(super) id: SubscriptionId,
}

type Landed<T> = (Viewer<T>, Option<Result<Changes, SyncError>>);

impl<T: LiveValue> Live<T> {
    /// Finishes a transaction the stream was applying, if any, and puts the viewer back;
    /// returns its item (`Some(None)`: the hub shut down meanwhile). Cancel-safe: the
    /// flight stays until it lands.
    pub(super) async fn land(&mut self) -> Option<Option<Result<Changes, SyncError>>> {
        let flight = self.flight.as_mut()?;
        let (viewer, item) = std::future::poll_fn(|cx| flight.future.as_mut().poll(cx)).await;
        self.flight = None;
        self.viewer = Some(viewer);
        Some(item)
    }

    fn take_off(&mut self) -> bool {
        let Some(mut viewer) = self.viewer.take() else {
            return false;
        };
        let (data, view, id) = (
            viewer.data.clone(),
            viewer.view.clone(),
            viewer.subscription_id(),
        );
        let future = async move {
            let item = viewer.next().await;
            (viewer, item)
        };
        self.flight = Some(Box::new(Flight {
            future: Box::pin(future),
            data,
            view,
            id,
        }));
        true
    }
}

/// Each item is one committed transaction applied whole ([`LiveUpdate::Transaction`]) or a
/// reload ([`LiveUpdate::Reset`]); between items the value shows a state the database was
/// in. `None` once the hub shut down. Cancel-safe (unlike [`Live::next`]).
impl<T: LiveValue> Stream for Live<T> {
    type Item = Result<LiveUpdate, SyncError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.flight.is_none() && !this.take_off() {
            return Poll::Ready(None);
        }
        let Some(flight) = this.flight.as_mut() else {
            return Poll::Ready(None);
        };
        let (viewer, item) = match flight.future.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(landed) => landed,
        };
        this.flight = None;
        this.viewer = Some(viewer);
        Poll::Ready(item.map(|result| result.map(LiveUpdate::from_changes)))
    }
}

impl Subscription {
    /// The messages grouped by transaction, as a stream: each item is every change of one
    /// committed transaction that concerns this subscriber (what
    /// [`next_batch`](Subscription::next_batch) gives), or one resync. Dropping the stream
    /// while a transaction is half-read loses those messages (the next resync repairs them).
    pub fn transactions(&mut self) -> futures_util::stream::BoxStream<'_, Vec<Message>> {
        Box::pin(futures_util::stream::unfold(self, |sub| async move {
            let batch = sub.next_batch().await?;
            Some((batch, sub))
        }))
    }
}
