//! Live values at scale (issue 15): 100,000 live queries, each holding one person with posts
//! and tags as a web session does, changes at a steady rate, each touching one of them:
//! commit → applied latency, and the hub's memory per subscription beyond the data it holds.
//! Also the shared-value variant of `broadcast`: identical live queries, one synced value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use rowsync::{Changes, Filter, Live, LiveValue};
use tokio::sync::watch;

use super::{settle, Bench, Mode, Rng};
use crate::db::{Seed, Seeding};
use crate::fleet::{latencies, Fleet, Probe, Sample};
use crate::measure::Window;
use crate::procfs::memory;
use crate::report::{round, Report};
use crate::schema::{find_post, marker_of, post_id_of, Person, Post, POST_SHAPE, WATCH};
use crate::stats::{ms, Percentiles};
use crate::writer::Writer;
use crate::BenchResult;

const POSTS_PER_PERSON: i64 = 5;
const TAGS_PER_POST: i64 = 3;
const RATE: f64 = 200.0;
const DEADLINE: Duration = Duration::from_secs(120);
/// Live queries started at once (each a load under a snapshot of its own).
const STARTING: usize = 64;
/// The bounds.
const P99_BOUND_MS: f64 = 10.0;
const BYTES_BOUND: f64 = 1024.0;
/// The name of the shared-value variant in `broadcast`'s report.
pub const SHARED: &str = "rowsync_shared_live";

/// Runs the scenario.
pub async fn run(mode: Mode) -> BenchResult<Vec<Report>> {
    let persons: i64 = mode.pick(2_000, 100_000);
    let changes: usize = mode.pick(400, 4_000);
    let seed = Seed {
        persons,
        posts_per_person: POSTS_PER_PERSON,
        tags: 100,
        tags_per_post: TAGS_PER_POST,
    };
    let bench = Bench::start("live-scale", Seeding::Uniform(seed), mode, |b| b).await?;
    let mut report = Report::new("live-scale");
    report
        .param("subscriptions", persons)
        .param("posts_per_person", POSTS_PER_PERSON)
        .param("tags_per_post", TAGS_PER_POST)
        .param("rate_per_s", RATE)
        .param("changes", changes as u64);

    // the data alone, each person loaded by itself as a live query loads it: what the live
    // values will hold, with the same allocation pattern
    eprintln!("  live-scale: loading {persons} persons one by one for the data's size");
    let hub = bench.hub.clone();
    let before = memory();
    let data: Vec<Option<Person>> = stream::iter(1..=persons)
        .map(|id| {
            let hub = hub.clone();
            async move { hub.query::<Person>().preload(WATCH).get(id).await }
        })
        .buffer_unordered(STARTING)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let data_kib = memory().rss_kib.saturating_sub(before.rss_kib);

    eprintln!("  live-scale: starting {persons} live queries");
    let started = Instant::now();
    let before = memory();
    let lives: Vec<Live<Option<Person>>> = stream::iter(1..=persons)
        .map(|id| {
            let hub = hub.clone();
            async move { hub.live::<Person>().preload(WATCH).get(id).await }
        })
        .buffer_unordered(STARTING)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let lives_kib = memory().rss_kib.saturating_sub(before.rss_kib);
    let start_s = started.elapsed().as_secs_f64();
    drop(data);
    let stats = bench.hub.stats();
    let per_sub = |kib: u64| round(kib as f64 * 1024.0 / persons as f64);
    let bytes = per_sub(lives_kib.saturating_sub(data_kib));
    report
        .rowsync("subscriptions", stats.subscriptions)
        .rowsync("bytes_per_subscription", bytes)
        .rowsync("data_bytes_per_subscription", per_sub(data_kib))
        .rowsync("live_bytes_per_subscription", per_sub(lives_kib))
        .rowsync("topics", stats.topics)
        .rowsync("start_s", round(start_s));

    let before = memory();
    let mut fleet = Fleet::default();
    for live in lives {
        fleet.spawn(move |probe, stop| follow_person(live, probe, stop));
    }
    let tasks_kib = memory().rss_kib.saturating_sub(before.rss_kib);
    report.rowsync("task_bytes_per_subscription", per_sub(tasks_kib));

    let mut writer = Writer::connect(bench.db.url()).await?;
    let window = Window::open(&bench.db).await?;
    let mut rng = Rng::new(15);
    let posts = persons * POSTS_PER_PERSON;
    let markers = writer.paced(changes, RATE, |_| rng.one_to(posts)).await?;
    settle(&fleet, changes as u64, DEADLINE, &mut report, "rowsync").await;
    let m = window.close(&bench.db).await?;
    let samples = fleet.stop().await;
    let p = Percentiles::of(latencies(&samples, &writer, markers));
    let p99 = ms(p.p99);
    report
        .rowsync("p50_ms", round(ms(p.p50)))
        .rowsync("p99_ms", round(p99))
        .rowsync("max_ms", round(ms(p.max)))
        .rowsync("applied_seen", p.count as u64)
        .rowsync(
            "cpu_us_per_change",
            round(m.cpu.as_secs_f64() * 1e6 / changes as f64),
        )
        .rowsync("reads", m.reads.rows)
        .rowsync("peak_rss_mib", round(memory().peak_kib as f64 / 1024.0));
    report.note("bytes_per_subscription: RSS growth of starting the live queries less that of loading the same persons one by one (kept alive meanwhile), per subscription (the hub's routing, queues, subscriptions and live values; tasks apart)");
    report.note("latency: writer's COMMIT returned -> the changed post held by its live value");
    report.target(
        format!(
            "{persons} live subscriptions, {RATE} changes/s: p99 below {P99_BOUND_MS} ms and at most {BYTES_BOUND} bytes per subscription beyond its data"
        ),
        p99 < P99_BOUND_MS && bytes <= BYTES_BOUND,
        format!("p99 {p99:.2} ms, {bytes} bytes per subscription"),
    );
    bench.finish().await?;
    Ok(vec![report])
}

/// A web session: applies each transaction to its person and notes when it held which change.
async fn follow_person(
    live: Live<Option<Person>>,
    probe: Arc<Probe>,
    stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    follow(live, probe, stop, |live, _, at, samples| {
        let posts = live.as_ref().and_then(|p| p.posts.loaded());
        for post in posts.into_iter().flatten() {
            if let Some(marker) = marker_of(&post.name) {
                samples.push((marker, at));
            }
        }
    })
    .await
}

/// Applies each transaction to `live` until stopped; `note` records which changes the value
/// holds once a transaction is applied.
async fn follow<T: LiveValue>(
    mut live: Live<T>,
    probe: Arc<Probe>,
    mut stop: watch::Receiver<bool>,
    note: impl Fn(&Live<T>, &Changes, Instant, &mut Vec<Sample>),
) -> Vec<Sample> {
    let mut samples = Vec::new();
    loop {
        let next = tokio::select! {
            n = live.next() => n,
            _ = stop.changed() => None,
        };
        match next {
            None => break,
            Some(Err(e)) => probe.error(e),
            Some(Ok(changes)) => {
                if changes.reloaded {
                    probe.resynced();
                }
                note(&live, &changes, Instant::now(), &mut samples);
                probe.applied();
            }
        }
    }
    samples
}

/// The shared-value variant of `broadcast`: `subscribers` identical live queries of person
/// 1's posts (one value, one subscription), `changes` at `rate`; adds its figures to `report`
/// under [`SHARED`] and returns p99 in ms.
pub async fn shared_broadcast(
    bench: &Bench,
    writer: &mut Writer,
    report: &mut Report,
    subscribers: usize,
    changes: usize,
    rate: f64,
    posts: i64,
) -> BenchResult<f64> {
    let mut fleet = Fleet::default();
    for _ in 0..subscribers {
        let live = bench
            .hub
            .live::<Post>()
            .filter(Filter::eq("person_id", 1i64))
            .preload(POST_SHAPE)
            .all()
            .await?;
        fleet.spawn(move |probe, stop| follow_posts(live, probe, stop));
    }
    let shared = bench.hub.stats().subscriptions;
    let window = Window::open(&bench.db).await?;
    let markers = writer
        .paced(changes, rate, |i| i as i64 % posts + 1)
        .await?;
    let target = (subscribers * changes) as u64;
    settle(&fleet, target, DEADLINE, report, SHARED).await;
    let m = window.close(&bench.db).await?;
    let samples = fleet.stop().await;
    let p99 = super::broadcast::figures(
        report,
        Some(SHARED),
        &m,
        latencies(&samples, writer, markers),
        target,
        changes,
    );
    report.baseline(SHARED, "hub_subscriptions", shared);
    report.note(format!(
        "{SHARED}: {subscribers} identical live queries (`hub.live()`), one shared value"
    ));
    Ok(p99)
}

/// A viewer of a shared list: notes when it held which change.
async fn follow_posts(
    live: Live<Vec<Post>>,
    probe: Arc<Probe>,
    stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    follow(live, probe, stop, |live, changes, at, samples| {
        for key in &changes.updated {
            let post = post_id_of(key).and_then(|id| find_post(live, id));
            if let Some(marker) = post.and_then(|p| marker_of(&p.name)) {
                samples.push((marker, at));
            }
        }
    })
    .await
}
