//! A plain LISTEN loop on a connection of its own, calling a handler for each notification.

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::BenchResult;

/// A LISTEN connection whose notifications go to a handler, in the order received.
pub struct PlainListener {
    _client: Client,
    task: JoinHandle<()>,
}

impl PlainListener {
    /// Connects, starts driving the connection, and returns once LISTEN is in effect.
    pub async fn start(
        url: &str,
        channel: &str,
        mut on_notification: impl FnMut(Instant, &str) + Send + 'static,
    ) -> BenchResult<PlainListener> {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
        // why poll_message: awaiting the connection future alone drops notifications.
        let task = tokio::spawn(async move {
            while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        on_notification(Instant::now(), n.payload())
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await?;
        Ok(PlainListener {
            _client: client,
            task,
        })
    }

    /// Closes the connection.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// The bare listener: receives every notification and only notes when it arrived.
pub struct BareListener {
    listener: PlainListener,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl BareListener {
    /// Starts listening on `channel`.
    pub async fn start(url: &str, channel: &str) -> BenchResult<BareListener> {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let sink = arrivals.clone();
        let listener = PlainListener::start(url, channel, move |at, _| {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(at);
        })
        .await?;
        Ok(BareListener { listener, arrivals })
    }

    /// Notifications received so far.
    pub fn received(&self) -> usize {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Waits until `count` notifications arrived or `deadline` passed.
    pub async fn wait_for(&self, count: usize, deadline: std::time::Duration) -> bool {
        let end = Instant::now() + deadline;
        while self.received() < count {
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops listening; returns when each notification arrived, in order.
    pub fn stop(self) -> Vec<Instant> {
        self.listener.stop();
        std::mem::take(&mut *self.arrivals.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
