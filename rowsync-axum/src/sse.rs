//! The axum side: a connection reads a feed from its cursor and gets server-sent events,
//! produced only as fast as it takes them.
//!
//! Back-pressure: an event is made when the response body is polled, that is when the
//! socket has room; a browser that reads slowly holds its cursor and no more, and once the
//! replay buffer has moved past it, it gets the whole value again (`reset`) instead of the
//! patches it missed — like a `tokio::sync::broadcast` receiver that lagged.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use rowsync::{LiveQuery, Schema};
use serde::Serialize;
use tokio::sync::watch;

use crate::event::EventId;
use crate::feed::{LiveFeed, Next};

/// The events of one connection.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

/// The response of one connection: its events, with keep-alive comments between them.
pub type EventResponse = Sse<KeepAliveStream<EventStream>>;

/// How often an idle connection gets a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How soon a browser reconnects after losing the stream (the `retry` field).
const RETRY: Duration = Duration::from_millis(1000);

/// What a connection has seen.
struct Connection {
    feed: LiveFeed,
    /// The last transaction sent; `None` until the first snapshot.
    cursor: Option<u64>,
    published: watch::Receiver<u64>,
    first: bool,
}

impl Connection {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            // why mark seen first: a transaction published after this line wakes the wait
            // below, so none is missed between the check and the wait
            self.published.borrow_and_update();
            if let Some(event) = self.poll_state() {
                return event;
            }
            if self.published.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The next event if there is one now; `Some(None)` at the end of the feed.
    fn poll_state(&mut self) -> Option<Option<Event>> {
        let shared = &self.feed.shared;
        let mut state = shared.state.lock();
        let (kind, seq, data) = match self.cursor {
            None => ("snapshot", state.seq, state.rows_json()),
            Some(cursor) => match state.next_after(cursor) {
                Next::Wait => return None,
                Next::End => return Some(None),
                Next::Patch(seq, patch) => ("patch", seq, patch),
                Next::Reset { lagged } => {
                    if lagged {
                        shared.lagged.fetch_add(1, Ordering::Relaxed);
                    }
                    ("reset", state.seq, state.rows_json())
                }
            },
        };
        drop(state);
        self.cursor = Some(seq);
        let mut event = Event::default()
            .event(kind)
            .id(shared.id(seq).to_string())
            .data(&*data);
        if std::mem::take(&mut self.first) {
            event = event.retry(RETRY);
        }
        Some(Some(event))
    }
}

/// The id a reconnecting browser sends: the `Last-Event-ID` header (EventSource sets it),
/// else a `lastEventId` query parameter (a reloaded page that kept its data).
fn last_event_id(headers: &HeaderMap, uri: &Uri) -> Option<EventId> {
    if let Some(id) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(EventId::parse)
    {
        return Some(id);
    }
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "lastEventId")
        .and_then(|(_, value)| EventId::parse(value))
}

impl LiveFeed {
    /// The events for one request: a `snapshot`, or the transactions after the request's
    /// `Last-Event-ID` (header, or `lastEventId` query parameter) while the replay buffer
    /// still holds them; then a `patch` per transaction, `reset` after a resync. For a
    /// handler of your own (authentication, other routes' extractors).
    pub fn sse(&self, headers: &HeaderMap, uri: &Uri) -> EventResponse {
        let resume = last_event_id(headers, uri).and_then(|id| {
            let shared = &self.shared;
            let covered = id.epoch == shared.epoch && shared.state.lock().covers(id.seq);
            if covered {
                shared.resumed.fetch_add(1, Ordering::Relaxed);
            }
            covered.then_some(id.seq)
        });
        let connection = Connection {
            published: self.shared.published.subscribe(),
            feed: self.clone(),
            cursor: resume,
            first: true,
        };
        let events = futures_util::stream::unfold(connection, |mut connection| async move {
            let event = connection.next_event().await?;
            Some((Ok(event), connection))
        });
        Sse::new(Box::pin(events) as EventStream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
    }
}

/// An axum handler streaming `feed` to every request:
/// `.route("/people/events", get(rowsync_axum::sse(feed)))`.
pub fn sse(
    feed: LiveFeed,
) -> impl Fn(HeaderMap, Uri) -> std::future::Ready<EventResponse> + Clone + Send + Sync + 'static {
    move |headers: HeaderMap, uri: Uri| std::future::ready(feed.sse(&headers, &uri))
}

/// An axum handler that builds the query for each request (per-user filters) with `build`,
/// and streams it: `build` returns the query, or what to answer instead (e.g.
/// `(StatusCode::FORBIDDEN, "not yours")`). Each connection follows a value of its own, so
/// a reconnecting browser gets a fresh `snapshot`.
pub fn sse_per_request<S, E, F>(
    build: F,
) -> impl Fn(Parts) -> Pin<Box<dyn Future<Output = Response> + Send>> + Clone + Send + Sync + 'static
where
    S: Schema + Serialize,
    E: IntoResponse,
    F: Fn(&Parts) -> Result<LiveQuery<S>, E> + Clone + Send + Sync + 'static,
{
    move |parts: Parts| {
        let query = build(&parts).map_err(IntoResponse::into_response);
        Box::pin(async move {
            let query = match query {
                Ok(query) => query,
                Err(response) => return response,
            };
            match LiveFeed::start(query).await {
                Ok(feed) => feed.sse(&parts.headers, &parts.uri).into_response(),
                Err(error) => {
                    tracing::error!(%error, "a live query for a request failed to load");
                    (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()
                }
            }
        })
    }
}
