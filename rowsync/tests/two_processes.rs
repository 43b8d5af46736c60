//! Two hubs in two processes on one database: each receives every change, and a subscriber
//! in one sees a change written through the other.
//!
//! why its own binary (`harness = false`): the test re-runs itself as the second process;
//! a plain `main` decides which role it plays.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use rowsync::{Hub, Message};
use support::schemas::{Person, Tag};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

async fn start(url: &str) -> Hub {
    Hub::builder(url)
        .watch::<Person>(["posts.tags"])
        .watch::<Tag>(Vec::<&str>::new())
        .start()
        .await
        .expect("hub starts")
}

async fn expect_name(sub: &mut rowsync::Subscription, hub: &Hub, name: &str) {
    loop {
        let message = timeout(WAIT, sub.next())
            .await
            .expect("a change in time")
            .expect("open");
        let Message::Change(change) = message else {
            panic!("unexpected {message:?}")
        };
        let person = hub
            .get::<Person>(&change)
            .await
            .expect("load")
            .expect("row");
        if person.name == name {
            return;
        }
    }
}

/// The second process: starts its own hub, reports, and answers the parent's commands.
async fn child(url: String) {
    let hub = start(&url).await;
    let mut sub = hub.subscribe_table::<Person>(Vec::<&str>::new()).unwrap();
    println!("ready");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    // 1. the parent writes through its hub; we must see it
    assert_eq!(lines.next().unwrap().unwrap(), "expect parent-wrote");
    expect_name(&mut sub, &hub, "parent-wrote").await;
    println!("saw parent-wrote");
    // 2. we write through our hub's pool; the parent must see it
    assert_eq!(lines.next().unwrap().unwrap(), "write");
    let conn = hub.db().pool().get().await.unwrap();
    conn.execute("UPDATE persons SET name = 'child-wrote' WHERE id = 2", &[])
        .await
        .unwrap();
    expect_name(&mut sub, &hub, "child-wrote").await;
    println!("wrote");
    hub.shutdown().await;
}

async fn parent() {
    let f = support::seeded().await;
    let hub = start(f.db.url()).await;
    let mut sub = hub.subscribe_table::<Person>(Vec::<&str>::new()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--child")
        .env("ROWSYNC_CHILD_URL", f.db.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the second process");
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read = move || from_child.next().expect("child output").expect("utf-8");
    assert_eq!(read(), "ready");

    writeln!(to_child, "expect parent-wrote").unwrap();
    let conn = hub.db().pool().get().await.unwrap();
    conn.execute("UPDATE persons SET name = 'parent-wrote' WHERE id = 1", &[])
        .await
        .unwrap();
    expect_name(&mut sub, &hub, "parent-wrote").await;
    assert_eq!(read(), "saw parent-wrote");

    writeln!(to_child, "write").unwrap();
    expect_name(&mut sub, &hub, "child-wrote").await;
    assert_eq!(read(), "wrote");
    assert!(
        child.wait().unwrap().success(),
        "the second process succeeded"
    );
    hub.shutdown().await;
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if std::env::args().any(|a| a == "--child") {
        let url = std::env::var("ROWSYNC_CHILD_URL").expect("ROWSYNC_CHILD_URL");
        runtime.block_on(child(url));
        return;
    }
    // cargo passes harness flags (e.g. --quiet); only the role flag matters here
    println!("running 1 test");
    runtime
        .block_on(async { timeout(Duration::from_secs(120), parent()).await })
        .expect("the test finishes in time");
    println!("test two_hubs_in_two_processes_see_each_others_writes ... ok");
    println!();
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}
