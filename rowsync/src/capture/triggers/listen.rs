//! The listener: the one long-lived connection of a hub that LISTENs for change payloads,
//! forwards every notification in commit order, and reconnects when the connection is lost.
//!
//! Notifications sent while no connection is listening are lost for good (PostgreSQL keeps
//! no backlog for a listener that is gone). sqlx's `PgListener` reconnects silently; this
//! listener says so instead: after a reconnect it sends [`ListenEvent::Listening`] with
//! `reconnect: true`, which the hub turns into a resync of every subscriber.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Notification, SimpleQueryMessage};

use crate::error::describe;
pub use crate::error::ListenError;
use crate::load::{DriveConnection, Tls};
use crate::schema::quote_ident;

/// What the listener tells its owner, in the order things happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEvent {
    /// Every channel is LISTENed on. Sent once after [`Listener::start`] (`reconnect: false`)
    /// and again after each reconnect (`reconnect: true`): notifications committed while
    /// disconnected are lost, so whoever holds rows must resync them.
    Listening {
        /// `true` when this follows a [`ListenEvent::Disconnected`].
        reconnect: bool,
    },
    /// A notification on one of the channels, in commit order.
    Notification {
        /// The channel it was sent on.
        channel: String,
        /// The payload (at most 8000 bytes; PostgreSQL rejects larger ones in the writer).
        payload: String,
        /// The backend pid of the session that sent it (not the listener's).
        process_id: i32,
    },
    /// The connection was lost; the listener is reconnecting with backoff. Notifications
    /// committed from now until the next `Listening { reconnect: true }` will never arrive.
    Disconnected {
        /// Why the connection ended, with its causes.
        error: String,
    },
}

impl From<Notification> for ListenEvent {
    fn from(n: Notification) -> Self {
        ListenEvent::Notification {
            channel: n.channel().to_owned(),
            payload: n.payload().to_owned(),
            process_id: n.process_id(),
        }
    }
}

/// Where to listen, and how patiently to reconnect.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The connection string (URL or `key=value` form), as for `tokio_postgres::connect`.
    pub url: String,
    /// The channels to LISTEN on, exactly as spelled in `pg_notify` (they are quoted).
    pub channels: Vec<String>,
    /// The wait before the first reconnect attempt; it doubles after each failure.
    pub initial_backoff: Duration,
    /// The longest wait between reconnect attempts.
    pub max_backoff: Duration,
    /// The connection's encryption.
    pub tls: Tls,
}

impl ListenerConfig {
    /// A config with the default backoff: 50 ms, doubling up to 5 s.
    pub fn new(
        url: impl Into<String>,
        channels: impl IntoIterator<Item = impl Into<String>>,
    ) -> ListenerConfig {
        ListenerConfig {
            url: url.into(),
            channels: channels.into_iter().map(Into::into).collect(),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            tls: Tls::Disabled,
        }
    }
}

/// The one long-lived LISTEN connection, driven by a background task that sends
/// [`ListenEvent`]s to the channel given to [`Listener::start`].
///
/// Dropping it stops the task too: the task sees its stop signal's sender gone and closes
/// the connection as [`Listener::shutdown`] would, only without being awaited.
#[derive(Debug)]
pub struct Listener {
    process_id: Arc<AtomicI32>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// `process_id` when no connection is up; real backend pids are positive.
const NO_PROCESS: i32 = 0;

/// How long a clean close may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The connect timeout used when the URL sets none.
// why: without one, a server that silently drops packets makes `start` (and every
// reconnect) hang for the OS's TCP timeout, minutes, instead of failing.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Listener {
    /// Connects and LISTENs on every channel, then hands the connection to a background task.
    ///
    /// Returns only once the LISTENs are in effect: a notification committed after `start`
    /// returns is delivered, and a bad URL, an unreachable server or a refused LISTEN is an
    /// error here rather than an endless reconnect loop. The task's first event is
    /// `Listening { reconnect: false }`.
    ///
    /// `events` is the backpressure: while it is full the task stops reading, and the server
    /// queues notifications for us. When its receiver is dropped the task ends.
    pub async fn start(
        config: ListenerConfig,
        events: mpsc::Sender<ListenEvent>,
    ) -> Result<Listener, ListenError> {
        let (session, early) = connect(&config).await?;
        let process_id = Arc::new(AtomicI32::new(session.pid));
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(
            config,
            events,
            session,
            early,
            stop_rx,
            Arc::clone(&process_id),
        ));
        Ok(Listener {
            process_id,
            stop,
            task,
        })
    }

    /// The backend pid of the connection that is listening now; `None` while reconnecting
    /// or after the task ended. It changes on every reconnect.
    pub fn process_id(&self) -> Option<i32> {
        match self.process_id.load(Ordering::Acquire) {
            NO_PROCESS => None,
            pid => Some(pid),
        }
    }

    /// Stops the task and closes the connection cleanly (the server is told, not left to
    /// find a dead socket); returns when the task has ended.
    pub async fn shutdown(self) {
        let Listener { stop, task, .. } = self;
        // why: the task may already have ended (events receiver dropped); then no one listens.
        let _ = stop.send(());
        if let Err(error) = task.await {
            tracing::warn!(%error, "the listener task did not end cleanly");
        }
    }
}

/// The wait before reconnect attempt `attempt` (0-based): `initial`, doubling, capped at `max`.
// why: at least 1 ms, so a zero `initial_backoff` cannot turn an outage into a busy loop.
pub(crate) fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let initial = initial.max(Duration::from_millis(1));
    2u32.checked_pow(attempt)
        .and_then(|factor| initial.checked_mul(factor))
        .map_or(max, |wait| wait.min(max))
}

/// A live connection with its LISTENs in effect.
struct Session {
    // why: never used after setup, but dropping the Client makes the connection send
    // Terminate and close, which would end the LISTEN.
    client: Client,
    driver: Driver,
    pid: i32,
}

/// Reads the connection's messages; the only thing that drives the connection's IO.
// why: the `Connection` future tokio-postgres suggests spawning discards notifications;
// `poll_message` hands them to us.
struct Driver(Option<Box<dyn DriveConnection>>);

impl Driver {
    /// The next notification or notice; `None` or an error once the connection has ended,
    /// and `None` forever after that.
    async fn next(&mut self) -> Option<Result<AsyncMessage, tokio_postgres::Error>> {
        poll_fn(|cx| {
            let Some(connection) = self.0.as_mut() else {
                return Poll::Ready(None);
            };
            let polled = connection.poll_message(cx);
            if let Poll::Ready(None | Some(Err(_))) = polled {
                // why: tokio-postgres forbids polling again after a terminal result, and
                // dropping the connection fails the client's in-flight requests instead of
                // leaving them waiting forever.
                self.0 = None;
            }
            polled
        })
        .await
    }
}

/// Why a session stopped forwarding.
enum Ended {
    /// `shutdown` was called or the `Listener` dropped.
    Stopped,
    /// The events receiver is gone: no one wants the notifications any more.
    EventsClosed,
    /// The connection failed; reconnect.
    Lost(String),
}

/// Connects, LISTENs on every channel and reads the backend pid. Notifications that arrive
/// before that is done are returned, to be sent after the `Listening` event.
async fn connect(config: &ListenerConfig) -> Result<(Session, Vec<Notification>), ListenError> {
    let mut pg: tokio_postgres::Config = config
        .url
        .parse()
        .map_err(|source| ListenError::Connect { source })?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    let (client, connection) = config
        .tls
        .connect(&pg)
        .await
        .map_err(|source| ListenError::Connect { source })?;
    let mut driver = Driver(Some(connection));
    let mut early = Vec::new();
    // why: the LISTEN round trips only complete while the connection is being polled, so
    // the setup runs alongside the driver rather than before it.
    let pid = drive_until(&mut driver, setup(&client, &config.channels), &mut early).await?;
    let session = Session {
        client,
        driver,
        pid,
    };
    Ok((session, early))
}

/// LISTENs on every channel, then returns the backend pid (tokio-postgres does not expose it).
async fn setup(client: &Client, channels: &[String]) -> Result<i32, ListenError> {
    for channel in channels {
        client
            .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
            .await
            .map_err(|source| ListenError::Listen {
                channel: channel.clone(),
                source,
            })?;
    }
    // why: the simple protocol, not `query_one`: that prepares a statement whose Close is
    // sent later, and a backend killed with that message unread resets the socket, so the
    // server's "terminating connection" error never reaches us.
    let messages = client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .map_err(|source| ListenError::Connect { source })?;
    let pid = messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
        _ => None,
    });
    Ok(pid.unwrap_or_else(|| {
        tracing::warn!("pg_backend_pid() returned no integer; the listener's pid is unknown");
        NO_PROCESS
    }))
}

/// Runs `work` while driving the connection, keeping the notifications that arrive meanwhile.
async fn drive_until<T>(
    driver: &mut Driver,
    work: impl Future<Output = Result<T, ListenError>>,
    early: &mut Vec<Notification>,
) -> Result<T, ListenError> {
    tokio::pin!(work);
    let mut lost = None;
    loop {
        tokio::select! {
            result = &mut work => {
                // why: when the connection died, its error says why; the work's says only
                // "connection closed".
                return match (result, lost) {
                    (Err(_), Some(source)) => Err(ListenError::Connect { source }),
                    (result, _) => result,
                };
            }
            message = driver.next(), if driver.0.is_some() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => early.push(n),
                Some(Ok(_)) => {}
                // The driver dropped the connection, so `work` fails next.
                Some(Err(error)) => lost = Some(error),
                None => {}
            },
        }
    }
}

/// The background task: forwards notifications, and reconnects when the connection is lost.
async fn run(
    config: ListenerConfig,
    events: mpsc::Sender<ListenEvent>,
    mut session: Session,
    mut early: Vec<Notification>,
    mut stop: oneshot::Receiver<()>,
    process_id: Arc<AtomicI32>,
) {
    let mut reconnect = false;
    loop {
        process_id.store(session.pid, Ordering::Release);
        let Err(ended) = serve(&mut session, early, reconnect, &events, &mut stop).await;
        process_id.store(NO_PROCESS, Ordering::Release);
        let error = match ended {
            Ended::Lost(error) => error,
            Ended::Stopped | Ended::EventsClosed => return close(session).await,
        };
        drop(session);
        tracing::warn!(%error, channels = ?config.channels, "LISTEN connection lost; reconnecting");
        if deliver(&events, ListenEvent::Disconnected { error }, &mut stop)
            .await
            .is_err()
        {
            return;
        }
        let Some((next, next_early)) = reconnect_with_backoff(&config, &events, &mut stop).await
        else {
            return;
        };
        tracing::info!(pid = next.pid, channels = ?config.channels, "LISTEN connection restored");
        (session, early, reconnect) = (next, next_early, true);
    }
}

/// Announces `Listening`, sends the early notifications, then forwards until the session ends.
async fn serve(
    session: &mut Session,
    early: Vec<Notification>,
    reconnect: bool,
    events: &mpsc::Sender<ListenEvent>,
    stop: &mut oneshot::Receiver<()>,
) -> Result<Infallible, Ended> {
    deliver(events, ListenEvent::Listening { reconnect }, stop).await?;
    for n in early {
        deliver(events, n.into(), stop).await?;
    }
    loop {
        let message = tokio::select! {
            _ = &mut *stop => return Err(Ended::Stopped),
            message = session.driver.next() => message,
        };
        match message {
            Some(Ok(AsyncMessage::Notification(n))) => deliver(events, n.into(), stop).await?,
            Some(Ok(AsyncMessage::Notice(notice))) => {
                tracing::debug!(
                    severity = notice.severity(),
                    message = notice.message(),
                    "notice on the LISTEN connection"
                );
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(Ended::Lost(describe(&error))),
            None => return Err(Ended::Lost("the server closed the connection".to_owned())),
        }
    }
}

/// Sends one event, unless the listener is stopped first.
async fn deliver(
    events: &mpsc::Sender<ListenEvent>,
    event: ListenEvent,
    stop: &mut oneshot::Receiver<()>,
) -> Result<(), Ended> {
    tokio::select! {
        _ = stop => Err(Ended::Stopped),
        sent = events.send(event) => sent.map_err(|_| Ended::EventsClosed),
    }
}

/// Reconnects, waiting longer after each failure; `None` when stopped meanwhile or when no
/// one receives events any more.
async fn reconnect_with_backoff(
    config: &ListenerConfig,
    events: &mpsc::Sender<ListenEvent>,
    stop: &mut oneshot::Receiver<()>,
) -> Option<(Session, Vec<Notification>)> {
    let mut attempt = 0u32;
    while !events.is_closed() {
        let wait = backoff(attempt, config.initial_backoff, config.max_backoff);
        let connected = tokio::select! {
            _ = &mut *stop => return None,
            connected = async {
                tokio::time::sleep(wait).await;
                connect(config).await
            } => connected,
        };
        match connected {
            Ok(connected) => return Some(connected),
            Err(error) => {
                tracing::warn!(attempt, error = %describe(&error), "LISTEN reconnect failed");
            }
        }
        attempt = attempt.saturating_add(1);
    }
    None
}

/// Closes the connection the polite way: Terminate, then close our side of the socket.
async fn close(session: Session) {
    let Session {
        client, mut driver, ..
    } = session;
    // why: a Client dropped with nothing in flight makes the connection send Terminate and
    // end, which the driver must be polled to carry out.
    drop(client);
    let drained = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(_)) = driver.next().await {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("the LISTEN connection did not close in time; dropping the socket");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_initial_up_to_max() {
        let ms = Duration::from_millis;
        let waits: Vec<Duration> = (0..10).map(|a| backoff(a, ms(50), ms(5000))).collect();
        assert_eq!(
            waits,
            [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(ms)
        );
    }

    #[test]
    fn backoff_never_overflows_and_never_exceeds_max() {
        let max = Duration::from_secs(5);
        assert_eq!(backoff(31, Duration::from_millis(50), max), max);
        assert_eq!(backoff(32, Duration::from_millis(50), max), max);
        assert_eq!(backoff(u32::MAX, Duration::MAX, max), max);
        assert_eq!(backoff(0, Duration::from_secs(60), max), max);
    }

    #[test]
    fn zero_initial_backoff_still_waits() {
        let wait = backoff(0, Duration::ZERO, Duration::from_secs(5));
        assert_eq!(wait, Duration::from_millis(1));
    }
}
