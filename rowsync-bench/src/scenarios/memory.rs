//! Memory: resident memory per 1,000 subscriptions, and the shared row cache staying within
//! its bound over 1,000,000 changes.
//!
//! The million changes are synthetic: `Hub::get` on made-up `Change`s (each a new version of
//! an existing post, so each is a real read through the cache), because a million NOTIFYs
//! through the triggers would take minutes and exercise capture, not the cache.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rowsync::CacheConfig;
use rowsync::{Change, Hub, Key, Op, Schema};
use tokio::sync::broadcast;

use super::{Bench, Mode};
use crate::db::{Seed, Seeding};
use crate::procfs::memory;
use crate::report::{round, Report};
use crate::schema::{Post, POST_SHAPE};
use crate::BenchResult;

const POSTS_PER_PERSON: i64 = 5;
/// Tasks calling `Hub::get` at once.
const CONCURRENCY: u64 = 32;
/// Checkpoints over the run.
const CHECKPOINTS: u64 = 10;
/// RSS growth allowed once the cache is full.
const RSS_SLACK: f64 = 0.10;

/// Runs the scenario.
pub async fn run(mode: Mode) -> BenchResult<Vec<Report>> {
    let subscriptions: i64 = mode.pick(1_000, 10_000);
    let changes: u64 = mode.pick(20_000, 1_000_000);
    let seed = Seed {
        persons: subscriptions,
        posts_per_person: POSTS_PER_PERSON,
        tags: 100,
        tags_per_post: 3,
    };
    let bench = Bench::start("memory", Seeding::Uniform(seed), |b| b).await?;
    let mut reports = vec![subscriptions_report(&bench, subscriptions).await?];
    reports.push(cache_report(&bench.hub, changes, subscriptions * POSTS_PER_PERSON).await?);
    bench.finish().await?;
    Ok(reports)
}

/// KiB of resident memory per 1,000 subscriptions (held data excluded: it is loaded first).
async fn subscriptions_report(bench: &Bench, count: i64) -> BenchResult<Report> {
    eprintln!("  memory: {count} subscriptions");
    let holdings = bench.holdings(count).await?;
    let mut report = Report::new("memory");
    report
        .param("subscriptions", count)
        .param("posts_per_subscription", POSTS_PER_PERSON)
        .param("tags_per_post", 3);
    let per_thousand = |before: u64, after: u64| {
        round(after.saturating_sub(before) as f64 / (count as f64 / 1_000.0))
    };

    let before = memory();
    let mut subs = Vec::with_capacity(holdings.len());
    for (_, posts) in &holdings {
        subs.push(bench.hub.subscribe(posts, POST_SHAPE)?);
    }
    let after = memory();
    let stats = bench.hub.stats();
    report
        .rowsync(
            "rss_kib_per_1000_subscriptions",
            per_thousand(before.rss_kib, after.rss_kib),
        )
        .rowsync("routing_topics", stats.topics)
        .rowsync("peak_rss_mib", round(after.peak_kib as f64 / 1024.0));

    // naive and per-subscriber fetch keep, per subscriber, a receiver of every change and
    // the ids of the posts it holds to tell relevant changes apart
    let before = memory();
    let (tx, _) = broadcast::channel::<Arc<Change>>(4096);
    let baseline: Vec<(broadcast::Receiver<Arc<Change>>, HashSet<i64>)> = holdings
        .iter()
        .map(|(_, posts)| (tx.subscribe(), posts.iter().map(|p| p.id).collect()))
        .collect();
    let after = memory();
    report.baseline(
        "naive",
        "rss_kib_per_1000_subscriptions",
        per_thousand(before.rss_kib, after.rss_kib),
    );
    report.note("held data excluded: loaded before measuring; baselines keep a broadcast receiver and a set of held ids per subscriber");
    drop(baseline);
    drop(subs);
    Ok(report)
}

/// Drives `changes` synthetic changes through `Hub::get`, checking the cache's entry count
/// and resident memory at checkpoints.
async fn cache_report(hub: &Hub, changes: u64, posts: i64) -> BenchResult<Report> {
    eprintln!("  memory: {changes} changes through the cache");
    let bound = CacheConfig::default().max_entries;
    let mut report = Report::new("memory");
    report
        .param("changes", changes)
        .param("cache_bound_entries", bound)
        .param(
            "source",
            "synthetic changes through Hub::get (one real read each), not NOTIFY",
        );
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut max_entries = 0;
    let mut rss_when_full = None;
    let mut rss = Vec::new();
    let loads_before = hub.stats().rows_loaded;
    for checkpoint in 1..=CHECKPOINTS {
        let until = changes * checkpoint / CHECKPOINTS;
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            let (hub, next) = (hub.clone(), next.clone());
            tasks.push(tokio::spawn(drive(hub, next, until, posts)));
        }
        for task in tasks {
            task.await??;
        }
        let entries = hub.cache_entries().await;
        max_entries = max_entries.max(entries);
        let now = memory().rss_kib;
        rss.push(now);
        if rss_when_full.is_none() && entries * 10 >= bound * 9 {
            rss_when_full = Some(now);
        }
    }
    let elapsed = started.elapsed();
    let loads = hub.stats().rows_loaded - loads_before;
    let end = *rss.last().unwrap_or(&0);
    let full = rss_when_full.unwrap_or(end);
    let growth = end as f64 / full.max(1) as f64 - 1.0;
    report
        .rowsync("max_cache_entries", max_entries)
        .rowsync("loads", loads)
        .rowsync("rss_mib_when_cache_full", round(full as f64 / 1024.0))
        .rowsync("rss_mib_at_end", round(end as f64 / 1024.0))
        .rowsync("rss_growth_after_full_pct", round(growth * 100.0))
        .rowsync(
            "changes_per_s",
            round(changes as f64 / elapsed.as_secs_f64()),
        );
    report.note(format!(
        "rss MiB at each tenth: {:?}",
        rss.iter().map(|k| k / 1024).collect::<Vec<_>>()
    ));
    report.target(
        format!("no growth over {changes} changes beyond the cache bound"),
        max_entries <= bound && growth <= RSS_SLACK,
        format!(
            "max {max_entries} entries (bound {bound}); RSS {:+.1}% after the cache filled",
            growth * 100.0
        ),
    );
    Ok(report)
}

/// Takes change numbers from `next` until `until`, asking the hub for each one's post.
async fn drive(hub: Hub, next: Arc<AtomicU64>, until: u64, posts: i64) -> BenchResult<()> {
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= until {
            // why put it back: the next checkpoint's tasks start from the first unused one.
            next.fetch_min(until, Ordering::Relaxed);
            return Ok(());
        }
        let change = Change {
            op: Op::Updated,
            table: Post::meta().table,
            key: Key::from(i as i64 % posts + 1),
            old_key: None,
            columns: Vec::new(),
            old_columns: Vec::new(),
            xid: 0,
            // why far ahead: no real change of this run gets these versions.
            seq: 1_000_000_000 + i,
        };
        hub.get::<Post>(&change).await?;
    }
}
