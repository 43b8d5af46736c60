//! A minimal server-sent-events client over a plain TCP connection (HTTP/1.1, chunked or
//! not), for the tests and the latency benchmark: what a browser's EventSource does, minus
//! the reconnecting.

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// One event as the browser sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: String,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }

    /// The transaction number in the id (`<feed>-<n>`).
    pub fn seq(&self) -> u64 {
        self.id
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or_else(|| panic!("an event id without a number: {:?}", self.id))
    }
}

pub struct SseClient {
    reader: BufReader<TcpStream>,
    chunked: bool,
    /// Bytes of the event stream not yet split into lines.
    pending: Vec<u8>,
    /// The event being read.
    current: SseEvent,
}

impl SseClient {
    /// `GET path` with `Accept: text/event-stream`, and `Last-Event-ID` when given.
    pub async fn connect(
        address: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
    ) -> std::io::Result<SseClient> {
        SseClient::connect_with(address, path, last_event_id, None).await
    }

    /// [`connect`](Self::connect) with the socket's receive buffer set to `recv_buffer`
    /// bytes (a slow reader: the server's writes stop as soon as that is full).
    pub async fn connect_with(
        address: SocketAddr,
        path: &str,
        last_event_id: Option<&str>,
        recv_buffer: Option<u32>,
    ) -> std::io::Result<SseClient> {
        let socket = TcpSocket::new_v4()?;
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        let mut stream = socket.connect(address).await?;
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).await?;
        if !status.contains(" 200") {
            return Err(std::io::Error::other(format!("status: {status}")));
        }
        let mut chunked = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if line.eq_ignore_ascii_case("transfer-encoding: chunked") {
                chunked = true;
            }
        }
        Ok(SseClient {
            reader,
            chunked,
            pending: Vec::new(),
            current: SseEvent {
                event: String::new(),
                id: String::new(),
                data: String::new(),
            },
        })
    }

    /// More bytes of the event stream; `false` at its end.
    async fn fill(&mut self) -> std::io::Result<bool> {
        if !self.chunked {
            let mut buf = [0u8; 8192];
            let n = self.reader.read(&mut buf).await?;
            self.pending.extend_from_slice(&buf[..n]);
            return Ok(n > 0);
        }
        let mut size = String::new();
        if self.reader.read_line(&mut size).await? == 0 {
            return Ok(false);
        }
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| std::io::Error::other(format!("a chunk size: {size:?}")))?;
        if size == 0 {
            return Ok(false);
        }
        let mut chunk = vec![0u8; size + 2];
        self.reader.read_exact(&mut chunk).await?;
        chunk.truncate(size);
        self.pending.extend_from_slice(&chunk);
        Ok(true)
    }

    /// The next event (comments and keep-alives skipped); `None` when the stream ends.
    pub async fn next(&mut self) -> std::io::Result<Option<SseEvent>> {
        loop {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]).into_owned();
                if line.is_empty() {
                    if !self.current.data.is_empty() || !self.current.event.is_empty() {
                        let mut event = std::mem::replace(
                            &mut self.current,
                            SseEvent {
                                event: String::new(),
                                id: String::new(),
                                data: String::new(),
                            },
                        );
                        if event.data.ends_with('\n') {
                            event.data.pop();
                        }
                        return Ok(Some(event));
                    }
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((&line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => self.current.event = value.to_owned(),
                    "id" => self.current.id = value.to_owned(),
                    "data" => {
                        self.current.data.push_str(value);
                        self.current.data.push('\n');
                    }
                    _ => {}
                }
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }
}
