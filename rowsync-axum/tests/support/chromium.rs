//! Headless Chromium over the DevTools protocol (a WebSocket of JSON commands), just what
//! the browser test needs: open pages, evaluate JavaScript, reload, take a screenshot.
//!
//! No Chromium is a loud failure, never a skipped test: `.ci/run` installs Debian's
//! `chromium`; `CHROMIUM` names another binary.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::{Child, Command};

use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<parking_lot::Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A running headless Chromium; killed when dropped.
pub struct Browser {
    child: Child,
    _profile: TempDir,
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

/// A page (tab) of the browser.
#[derive(Clone)]
pub struct Page {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    session: String,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn binary() -> String {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return path;
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return name.to_owned();
        }
    }
    panic!(
        "no Chromium found for the browser test: install it (`apt-get install -y chromium`, \
         as .ci/run does) or set CHROMIUM to its binary"
    );
}

async fn send(
    out: &mpsc::UnboundedSender<String>,
    pending: &Pending,
    next_id: &AtomicU64,
    session: Option<&str>,
    method: &str,
    params: Value,
) -> Result<Value, String> {
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    let mut message = json!({ "id": id, "method": method, "params": params });
    if let Some(session) = session {
        message["sessionId"] = json!(session);
    }
    let (tx, rx) = oneshot::channel();
    pending.lock().insert(id, tx);
    out.send(message.to_string())
        .map_err(|_| "the browser connection is closed".to_owned())?;
    let reply = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .map_err(|_| format!("{method}: no answer within 30 s"))?
        .map_err(|_| format!("{method}: the browser connection closed"))?;
    if let Some(error) = reply.get("error") {
        return Err(format!("{method}: {error}"));
    }
    Ok(reply["result"].clone())
}

impl Browser {
    /// Starts headless Chromium and connects to it.
    pub async fn launch() -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "rowsync-chromium-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let mut child = Command::new(binary())
            .args([
                "--headless=new",
                // why: the test runs as root in CI, where Chromium's sandbox refuses to start
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1000,900",
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("Chromium does not start: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (found, address) = oneshot::channel();
        // a thread reads stderr to its end, so Chromium never blocks on a full pipe
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(found) = found.take() {
                        let _ = found.send(url.trim().to_owned());
                    }
                }
            }
        });
        let url = tokio::time::timeout(Duration::from_secs(60), address)
            .await
            .expect("Chromium's DevTools address within 60 s")
            .expect("Chromium exited without a DevTools address");

        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to Chromium at {url}: {e}"));
        let (mut sink, mut stream) = socket.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let replies = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Ok(text) = message.to_text() else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(text) else {
                    continue;
                };
                if let Some(id) = value.get("id").and_then(Value::as_u64) {
                    if let Some(tx) = replies.lock().remove(&id) {
                        let _ = tx.send(value);
                    }
                } else if value["method"] == "Runtime.exceptionThrown" {
                    eprintln!("page exception: {}", value["params"]["exceptionDetails"]);
                }
            }
        });
        Browser {
            child,
            _profile: TempDir(profile),
            out,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Opens a new page at `url`.
    pub async fn open(&self, url: &str) -> Page {
        let target = send(
            &self.out,
            &self.pending,
            &self.next_id,
            None,
            "Target.createTarget",
            json!({ "url": "about:blank" }),
        )
        .await
        .expect("a new page");
        let attached = send(
            &self.out,
            &self.pending,
            &self.next_id,
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await
        .expect("attach to the page");
        let page = Page {
            out: self.out.clone(),
            pending: Arc::clone(&self.pending),
            next_id: Arc::clone(&self.next_id),
            session: attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        };
        page.call("Runtime.enable", json!({}))
            .await
            .expect("runtime");
        page.call("Page.enable", json!({})).await.expect("page");
        page.call("Page.navigate", json!({ "url": url }))
            .await
            .expect("navigate");
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page {
    /// One DevTools command on this page.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        send(
            &self.out,
            &self.pending,
            &self.next_id,
            Some(&self.session),
            method,
            params,
        )
        .await
    }

    /// Evaluates `expression` (a promise is awaited) and returns its value as JSON.
    pub async fn eval(&self, expression: &str) -> Result<Value, String> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {details}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `predicate` (a JavaScript expression) is true, checking every 25 ms.
    pub async fn wait_for(&self, what: &str, predicate: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            match self.eval(predicate).await {
                Ok(Value::Bool(true)) => return,
                Ok(other) => last = other,
                // the page is between documents (a reload)
                Err(error) => last = Value::String(error),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the page never showed {what} within {timeout:?} ({predicate} was {last})");
    }

    /// Reloads the page.
    pub async fn reload(&self) {
        self.call("Page.reload", json!({})).await.expect("reload");
    }

    /// A PNG of the page.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await
            .expect("a screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64")
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
