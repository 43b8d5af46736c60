//! Broadcast latency: every subscriber holds the same list, so each change touches all of
//! them; changes come at a steady rate. Latency from the writer's COMMIT returning to the
//! change applied in each subscriber.

use std::time::Duration;

use rowsync::Db;

use super::{settle, Bench, Mode};
use crate::baselines::{self, BareListener, Fanout, Strategy};
use crate::db::{Seed, Seeding};
use crate::fleet::{latencies, Fleet};
use crate::measure::{Measured, Window};
use crate::report::{round, Report};
use crate::stats::{ms, Percentiles};
use crate::subscriber;
use crate::writer::Writer;
use crate::BenchResult;

const POSTS: i64 = 100;
const RATE: f64 = 200.0;
const DEADLINE: Duration = Duration::from_secs(120);
/// The bound on p99.
const P99_BOUND_MS: f64 = 50.0;

/// Runs the scenario.
pub async fn run(mode: Mode) -> BenchResult<Vec<Report>> {
    let subscribers: usize = mode.pick(50, 1_000);
    let changes: usize = mode.pick(200, 2_000);
    // why fewer for the baselines: naive reloads the whole list in every subscriber.
    let baseline_changes: usize = mode.pick(10, 20);
    let seed = Seed {
        persons: 1,
        posts_per_person: POSTS,
        tags: 20,
        tags_per_post: 3,
    };
    let bench = Bench::start("broadcast", Seeding::Uniform(seed), mode, |b| b).await?;
    let list = bench.holdings(1).await?.remove(0).1;
    let mut writer = Writer::connect(bench.db.url()).await?;
    let mut report = Report::new("broadcast");
    report
        .param("subscribers", subscribers as u64)
        .param("rate_per_s", RATE)
        .param("changes", changes as u64)
        .param("baseline_changes", baseline_changes as u64)
        .param("posts_held", POSTS);
    eprintln!("  broadcast: {subscribers} subscribers, {changes} changes at {RATE}/s");

    let mut fleet = Fleet::default();
    subscriber::spawn_all(&mut fleet, &bench.hub, vec![list.clone(); subscribers])?;
    let window = Window::open(&bench.db).await?;
    let markers = writer
        .paced(changes, RATE, |i| i as i64 % POSTS + 1)
        .await?;
    let target = (subscribers * changes) as u64;
    settle(&fleet, target, DEADLINE, &mut report, "rowsync").await;
    let m = window.close(&bench.db).await?;
    let samples = fleet.stop().await;
    let p99 = figures(
        &mut report,
        None,
        &m,
        latencies(&samples, &writer, markers),
        target,
        changes,
    );
    report.target(
        format!(
            "p99 below {P99_BOUND_MS} ms at {RATE} changes/s with {subscribers} subscribers (issue: 1,000)"
        ),
        p99 < P99_BOUND_MS,
        format!("p99 {p99:.1} ms"),
    );

    let shared_p99 = super::live_scale::shared_broadcast(
        &bench,
        &mut writer,
        &mut report,
        subscribers,
        changes,
        RATE,
        POSTS,
    )
    .await?;
    report.note(format!(
        "shared live value: p99 {shared_p99:.1} ms (issue 15: below 10 ms)"
    ));

    // why here: nothing of rowsync runs while the baselines do.
    let plan = bench.stop_hub().await?;
    let fanout = Fanout::start(&plan, bench.db.url(), 4096).await?;
    let pool = Db::connect(bench.db.url())?;
    for strategy in [Strategy::Naive, Strategy::Fetch] {
        let mut fleet = Fleet::default();
        let holdings = vec![(1, list.clone()); subscribers];
        baselines::spawn_all(&mut fleet, &fanout, &pool, strategy, holdings);
        let window = Window::open(&bench.db).await?;
        let markers = writer
            .paced(baseline_changes, RATE, |i| i as i64 % POSTS + 1)
            .await?;
        let target = (subscribers * baseline_changes) as u64;
        settle(&fleet, target, DEADLINE, &mut report, strategy.name()).await;
        let m = window.close(&bench.db).await?;
        let samples = fleet.stop().await;
        let lat = latencies(&samples, &writer, markers);
        let name = Some(strategy.name());
        figures(&mut report, name, &m, lat, target, baseline_changes);
    }
    fanout.stop();

    let bare = BareListener::start(bench.db.url(), baselines::CHANNEL).await?;
    let window = Window::open(&bench.db).await?;
    let markers = writer
        .paced(changes, RATE, |i| i as i64 % POSTS + 1)
        .await?;
    if !bare.wait_for(changes, DEADLINE).await {
        report.note("bare_listener: deadline passed");
    }
    let m = window.close(&bench.db).await?;
    let arrivals = bare.stop();
    let lat = markers
        .zip(&arrivals)
        .filter_map(|(n, at)| Some(at.saturating_duration_since(writer.commit_of(n)?)))
        .collect();
    let expected = changes as u64;
    figures(
        &mut report,
        Some("bare_listener"),
        &m,
        lat,
        expected,
        changes,
    );
    report.note("latency: writer's COMMIT returned -> change held by the subscriber (bare listener: notification received)");
    bench.finish().await?;
    Ok(vec![report])
}

/// Latency percentiles, how many (subscriber, change) pairs were seen applied, reads and
/// the server's CPU per change; returns p99 in ms.
pub(super) fn figures(
    report: &mut Report,
    system: Option<&str>,
    m: &Measured,
    latencies: Vec<Duration>,
    expected: u64,
    changes: usize,
) -> f64 {
    let p = Percentiles::of(latencies);
    report
        .figure(system, "latency_p50_ms", round(ms(p.p50)))
        .figure(system, "latency_p99_ms", round(ms(p.p99)))
        .figure(system, "latency_max_ms", round(ms(p.max)))
        .figure(system, "applied_seen", p.count as u64)
        .figure(system, "applied_expected", expected)
        .figure(system, "cpu_s", round(m.cpu.as_secs_f64()));
    m.record_reads(report, system, changes);
    ms(p.p99)
}
