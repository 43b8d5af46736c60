//! The board demo in a real headless Chromium: two pages follow the same people; writes by
//! a third connection, by page A's form, a multi-row transaction, a TRUNCATE and a killed
//! capture connection show in both; no page ever renders a transaction half-applied; a
//! page reloaded mid-stream resumes without losing a transaction. A screenshot goes under
//! the target directory for review.

use std::time::Duration;

use rowsync_axum::FeedConfig;
use serde_json::Value;

use crate::support::chromium::{Browser, Page};
use crate::support::{serve, WAIT};

/// Every state a page rendered (kept across reloads in sessionStorage).
async fn log(page: &Page) -> Vec<Value> {
    match page.eval("window.boardLog").await.expect("the page's log") {
        Value::Array(entries) => entries,
        other => panic!("no log: {other}"),
    }
}

/// Post titles of one rendered state.
fn titles(entry: &Value) -> Vec<String> {
    entry["state"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|person| person["posts"].as_array().cloned().unwrap_or_default())
        .map(|post| post["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The name page shows for person `id` (a JavaScript expression).
fn name_of(id: i64) -> String {
    format!("document.querySelector('[data-person=\"{id}\"] b')?.textContent")
}

/// Whether some post shows `title` (a JavaScript expression).
fn shows_post(title: &str) -> String {
    format!(
        "[...document.querySelectorAll('[data-post]')].some(p => p.firstChild?.textContent === {})",
        serde_json::to_string(title).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_is_live_in_two_browser_pages() {
    let served = serve(FeedConfig::default()).await;
    let browser = Browser::launch().await;
    let a = browser.open(&served.url("/")).await;
    let b = browser.open(&served.url("/")).await;
    for page in [&a, &b] {
        page.wait_for("the snapshot", &format!("{} === 'Ada'", name_of(1)), WAIT)
            .await;
    }

    // a write by a third connection, in plain SQL
    served
        .sql
        .batch_execute("UPDATE board_people SET name = 'Ada Lovelace' WHERE id = 1")
        .await
        .unwrap();
    for page in [&a, &b] {
        page.wait_for(
            "the SQL update",
            &format!("{} === 'Ada Lovelace'", name_of(1)),
            WAIT,
        )
        .await;
    }

    // an edit through page A's form
    a.eval(
        "(() => { const f = document.getElementById('add');
           f.person_id.value = '2'; f.title.value = 'From the form'; f.tags.value = 'web, ui';
           f.querySelector('button').click(); return true; })()",
    )
    .await
    .unwrap();
    for page in [&a, &b] {
        page.wait_for("the form's post", &shows_post("From the form"), WAIT)
            .await;
        page.wait_for(
            "the form's tags",
            "[...([...document.querySelectorAll('[data-person=\"2\"] [data-post]')]
                .find(p => p.firstChild?.textContent === 'From the form')
                ?.querySelectorAll('.tag') ?? [])].map(t => t.textContent).join() === 'ui,web'",
            WAIT,
        )
        .await;
    }

    // one transaction, many rows, under three people: all or nothing in every page
    served
        .sql
        .batch_execute(
            "BEGIN;
             INSERT INTO board_posts (person_id, title) VALUES
                 (1, 'batch 1'), (2, 'batch 2'), (3, 'batch 3'), (3, 'batch 4');
             INSERT INTO board_posts_tags
                 SELECT p.id, 2 FROM board_posts p WHERE p.title LIKE 'batch %';
             UPDATE board_people SET name = 'Edsger W.' WHERE id = 3;
             COMMIT;",
        )
        .await
        .unwrap();
    for page in [&a, &b] {
        page.wait_for("the batch", &shows_post("batch 4"), WAIT)
            .await;
        page.wait_for(
            "the batch's rename",
            &format!("{} === 'Edsger W.'", name_of(3)),
            WAIT,
        )
        .await;
    }

    // TRUNCATE: a reset, every post gone
    served
        .sql
        .batch_execute("TRUNCATE board_posts CASCADE")
        .await
        .unwrap();
    for page in [&a, &b] {
        page.wait_for(
            "the truncate",
            "document.querySelectorAll('[data-post]').length === 0",
            WAIT,
        )
        .await;
    }

    // the capture connection killed: a reset, and what comes after still shows
    served.kill_listener().await;
    served
        .sql
        .batch_execute(
            "INSERT INTO board_posts (person_id, title) VALUES (1, 'after the listener died')",
        )
        .await
        .unwrap();
    for page in [&a, &b] {
        page.wait_for(
            "the write after the kill",
            &shows_post("after the listener died"),
            WAIT,
        )
        .await;
    }

    // a page reloaded while transactions stream: it resumes after its last one
    let writer = {
        let url = served.db.url().to_owned();
        tokio::spawn(async move {
            let (sql, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            for i in 0..40 {
                sql.execute(
                    "UPDATE board_people SET name = $1 WHERE id = 2",
                    &[&format!("tick {i}")],
                )
                .await
                .expect("a tick");
                // why: spread the ticks over the reload (pacing the writer, not waiting
                // for anything)
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    b.wait_for(
        "the first ticks",
        &format!("{}?.startsWith('tick 1')", name_of(2)),
        WAIT,
    )
    .await;
    let before_reload = log(&b).await.len();
    b.reload().await;
    writer.await.expect("the writer");
    for page in [&a, &b] {
        page.wait_for(
            "the last tick",
            &format!("{} === 'tick 39'", name_of(2)),
            WAIT,
        )
        .await;
    }

    // what each page rendered: never a transaction in part
    let (log_a, log_b) = (log(&a).await, log(&b).await);
    for (page, entries) in [("A", &log_a), ("B", &log_b)] {
        for entry in entries.iter() {
            let batch = titles(entry)
                .iter()
                .filter(|t| t.starts_with("batch "))
                .count();
            assert!(
                batch == 0 || batch == 4,
                "page {page} rendered {batch} of the batch's 4 posts: {entry}"
            );
            let renamed = entry["state"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "Edsger W.");
            assert!(
                batch != 4 || renamed,
                "page {page} rendered the batch's posts without its rename: {entry}"
            );
        }
    }
    // B resumed from its last event: no snapshot after the reload, and every tick A saw
    // after the reload, B saw too
    let after: Vec<&Value> = log_b[before_reload..].iter().collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|e| e["kind"] != "snapshot"),
        "page B started over instead of resuming: {:?}",
        after.iter().map(|e| &e["kind"]).collect::<Vec<_>>()
    );
    let ticks = |entries: &[&Value]| -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for entry in entries {
            if let Some(name) = entry["state"]
                .as_array()
                .and_then(|people| people.iter().find(|p| p["id"] == 2))
                .and_then(|p| p["name"].as_str())
            {
                if name.starts_with("tick ") && seen.last().map(String::as_str) != Some(name) {
                    seen.push(name.to_owned());
                }
            }
        }
        seen
    };
    let seen_by_b = ticks(&log_b.iter().collect::<Vec<_>>());
    let seen_by_a = ticks(&log_a.iter().collect::<Vec<_>>());
    let first_after = ticks(&after)
        .first()
        .cloned()
        .expect("ticks after the reload");
    let from = seen_by_a
        .iter()
        .position(|t| *t == first_after)
        .expect("A saw B's first tick after the reload");
    for tick in &seen_by_a[from..] {
        assert!(
            seen_by_b.contains(tick),
            "page B lost {tick} (A: {seen_by_a:?}, B: {seen_by_b:?})"
        );
    }
    let resumed = served.board.feed.stats().resumed;
    assert!(resumed >= 1, "the reloaded page resumed by its event id");

    // a picture of the board for review
    served
        .sql
        .batch_execute(
            "INSERT INTO board_posts (person_id, title) VALUES
                 (1, 'Notes on the engine'), (2, 'Compilers'), (3, 'Go to statement');
             INSERT INTO board_posts_tags SELECT id, 1 FROM board_posts WHERE person_id = 1;",
        )
        .await
        .unwrap();
    a.wait_for("the last posts", &shows_post("Go to statement"), WAIT)
        .await;
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = dir.join("screenshots/board.png");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, a.screenshot().await).unwrap();
    eprintln!("screenshot: {}", path.display());
}
