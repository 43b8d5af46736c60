//! Memory: resident memory per 1,000 subscriptions, and the hub (row cache, routing,
//! subscriptions) staying within its bounds over 1,000,000 real changes applied by real
//! subscriptions.
//!
//! Until 2026-12 the million changes were synthetic (`Hub::get` on made-up `Change`s); they
//! are now written to the database and travel capture -> cache -> route -> sync (issue 15).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rowsync::CacheConfig;
use rowsync::Change;
use tokio::sync::broadcast;

use super::{note_trouble, Bench, Mode};
use crate::db::open;
use crate::db::{Seed, Seeding};
use crate::fleet::Fleet;
use crate::procfs::memory;
use crate::report::{round, Report};
use crate::schema::POST_SHAPE;
use crate::subscriber;
use crate::BenchResult;

const POSTS_PER_PERSON: i64 = 5;
/// Rows per transaction of the writer.
const BATCH: usize = 50;
/// Step between the posts one transaction changes (coprime with the post count, so a
/// transaction spreads over many subscribers).
const STRIDE: u64 = 7_919;
/// How long the subscribers may take to catch up at a checkpoint.
const DEADLINE: Duration = Duration::from_secs(120);
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
    let bench = Bench::start("memory", Seeding::Uniform(seed), mode, |b| b).await?;
    let mut reports = vec![subscriptions_report(&bench, subscriptions).await?];
    reports.push(changes_report(&bench, subscriptions, changes).await?);
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

/// Writes `changes` real changes (`BATCH` rows per transaction, spread over every
/// subscriber's posts) while `subscriptions` subscribers apply them, checking the cache's
/// entry count and resident memory at checkpoints.
async fn changes_report(bench: &Bench, subscriptions: i64, changes: u64) -> BenchResult<Report> {
    eprintln!("  memory: {changes} changes to {subscriptions} subscribers");
    let bound = CacheConfig::default().max_entries;
    let posts = subscriptions * POSTS_PER_PERSON;
    let mut report = Report::new("memory");
    report
        .param("changes", changes)
        .param("subscriptions", subscriptions)
        .param("cache_bound_entries", bound)
        .param("rows_per_transaction", BATCH as u64)
        .param(
            "workload",
            "real changes written to the database, applied by real subscriptions",
        );
    let holdings = bench.holdings(subscriptions).await?;
    let mut fleet = Fleet::default();
    // why unsampled, and a writer of its own: the other scenarios' subscribers and writer
    // note every change (when, which post): 1M changes would grow this process by tens of
    // MB that are not rowsync's
    subscriber::spawn_unsampled(
        &mut fleet,
        &bench.hub,
        holdings.into_iter().map(|(_, p)| p).collect(),
    )?;
    let (writer, _connection) = open(bench.db.url()).await?;
    let update = writer
        .prepare(
            "UPDATE posts AS p SET name = 'n' || v.n FROM unnest($1::int8[], $2::int8[]) AS v(id, n)
             WHERE p.id = v.id",
        )
        .await?;
    let started = Instant::now();
    let mut max_entries = 0;
    let mut rss_when_full = None;
    let mut rss = Vec::new();
    let loads_before = bench.hub.stats().rows_loaded;
    let mut written = 0u64;
    for checkpoint in 1..=CHECKPOINTS {
        let until = changes * checkpoint / CHECKPOINTS;
        while written < until {
            let n = (BATCH as u64).min(until - written);
            let ids: Vec<i64> = (written..written + n)
                .map(|i| (i * STRIDE) as i64 % posts + 1)
                .collect();
            let names: Vec<i64> = (written..written + n).map(|i| i as i64).collect();
            writer.execute(&update, &[&ids, &names]).await?;
            written += n;
        }
        let reached = fleet.wait_applied(written, DEADLINE).await;
        note_trouble(&fleet, reached, written, &mut report, "rowsync");
        let entries = bench.hub.cache_entries().await;
        max_entries = max_entries.max(entries);
        let now = memory().rss_kib;
        rss.push(now);
        if rss_when_full.is_none() && entries * 10 >= bound * 9 {
            rss_when_full = Some(now);
        }
    }
    let elapsed = started.elapsed();
    fleet.stop().await;
    let loads = bench.hub.stats().rows_loaded - loads_before;
    let end = *rss.last().unwrap_or(&0);
    // why the first checkpoint when the cache never filled: growth after the start counts
    let full = rss_when_full.or(rss.first().copied()).unwrap_or(end);
    let growth = end as f64 / full.max(1) as f64 - 1.0;
    report
        .rowsync("max_cache_entries", max_entries)
        .rowsync("hub_loads", loads)
        .rowsync("rss_mib_when_cache_full", round(full as f64 / 1024.0))
        .rowsync("rss_mib_at_end", round(end as f64 / 1024.0))
        .rowsync("rss_growth_after_full_pct", round(growth * 100.0))
        .rowsync(
            "changes_per_s",
            round(changes as f64 / elapsed.as_secs_f64()),
        );
    report.note("max_cache_entries: what the row cache held at the checkpoints, its bounded store and its front maps (rows filed or loading for the syncs of recent changes, which never enter the store)");
    report.note(format!(
        "rss MiB at each tenth: {:?}",
        rss.iter().map(|k| k / 1024).collect::<Vec<_>>()
    ));
    if rss_when_full.is_none() {
        report.note(
            "the cache never reached 90% of its bound: growth is counted from the first tenth",
        );
    }
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
