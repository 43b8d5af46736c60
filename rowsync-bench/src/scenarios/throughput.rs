//! Throughput: the highest change rate carried end to end (capture -> cache -> route ->
//! sync) with 100 subscribers, each holding one person's posts, against the bare listener
//! (capture alone) and capture + one shared read per change.
//!
//! The writer commits the K changes as fast as it can, 50 rows per transaction (each row
//! its own notification); the rate is K over the time from the first write to the last
//! change applied. The writer's own rate is reported, to show the consumer is the bound.
//! rowsync and capture + one read run in alternating rounds and report their medians, so
//! neither gets the quieter moments of the server.

use std::time::{Duration, Instant};

use rowsync::Db;

use super::{settle, Bench, Mode};
use crate::baselines::{self, BareListener, Fanout, SharedReader, Strategy};
use crate::db::{Seed, Seeding};
use crate::fleet::{last_applied, Fleet, Sample};
use crate::measure::{Measured, Window};
use crate::report::{round, Report};
use crate::stats::median;
use crate::subscriber;
use crate::writer::Writer;
use crate::BenchResult;

const SUBSCRIBERS: i64 = 100;
const POSTS_PER_PERSON: i64 = 10;
const BATCH: usize = 50;
const DEADLINE: Duration = Duration::from_secs(120);
/// The bound: rowsync at least this share of capture + one read.
const SHARE: f64 = 0.7;

/// One round of one system.
struct Round {
    /// Time from the first write to the last change handled.
    elapsed: Duration,
    /// Time the writer took.
    wrote: Duration,
    measured: Measured,
}

/// Runs the scenario.
pub async fn run(mode: Mode) -> BenchResult<Vec<Report>> {
    let changes: usize = mode.pick(1_000, 30_000);
    let rounds: usize = mode.pick(1, 3);
    let seed = Seed {
        persons: SUBSCRIBERS,
        posts_per_person: POSTS_PER_PERSON,
        tags: 50,
        tags_per_post: 3,
    };
    let bench = Bench::start("throughput", Seeding::Uniform(seed), |b| {
        b.queue_capacity(changes)
    })
    .await?;
    let holdings = bench.holdings(SUBSCRIBERS).await?;
    let lists: Vec<_> = holdings.iter().map(|(_, p)| p.clone()).collect();
    let mut writer = Writer::connect(bench.db.url()).await?;
    let pool = Db::connect(bench.db.url())?;
    let mut report = Report::new("throughput");
    report
        .param("subscribers", SUBSCRIBERS)
        .param("changes", changes as u64)
        .param("rounds", rounds as u64)
        .param("rows_per_transaction", BATCH as u64)
        .param("each_change_touches", "1 subscriber");
    eprintln!("  throughput: {changes} changes x {rounds} rounds, {SUBSCRIBERS} subscribers");

    let (mut ours, mut limit) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut fleet = Fleet::default();
        subscriber::spawn_all(&mut fleet, &bench.hub, lists.clone())?;
        ours.push(fleet_round(&bench, &mut writer, fleet, changes, &mut report, "rowsync").await?);

        let reader = SharedReader::start(&bench.hub, bench.db.url(), &pool).await?;
        let window = Window::open(&bench.db).await?;
        let (markers, wrote) = write_all(&mut writer, changes).await?;
        if !reader.wait_for(changes, DEADLINE).await {
            report.note("capture_plus_one_read: deadline passed");
        }
        let started = window.started();
        let measured = window.close(&bench.db).await?;
        let end = last_applied(&[reader.stop()], &markers);
        limit.push(Round {
            elapsed: end.map_or(measured.wall, |e| e.saturating_duration_since(started)),
            wrote,
            measured,
        });
    }
    let rowsync = figures(&mut report, None, &ours, changes);
    let best = figures(&mut report, Some("capture_plus_one_read"), &limit, changes);
    let share = rowsync / best.max(f64::MIN_POSITIVE);
    report.target(
        format!(
            "at least {:.0}% of capture + one read per change",
            SHARE * 100.0
        ),
        share >= SHARE,
        format!("{rowsync:.0}/s vs {best:.0}/s: {:.0}%", share * 100.0),
    );

    let bare = BareListener::start(bench.db.url(), baselines::CHANNEL).await?;
    let window = Window::open(&bench.db).await?;
    let (_, wrote) = write_all(&mut writer, changes).await?;
    if !bare.wait_for(changes, DEADLINE).await {
        report.note("bare_listener: deadline passed");
    }
    let started = window.started();
    let measured = window.close(&bench.db).await?;
    let end = bare.stop().last().copied();
    let round_of_bare = Round {
        elapsed: end.map_or(measured.wall, |e| e.saturating_duration_since(started)),
        wrote,
        measured,
    };
    figures(
        &mut report,
        Some("bare_listener"),
        &[round_of_bare],
        changes,
    );

    let fanout = Fanout::start(&bench.hub, bench.db.url(), changes + 16).await?;
    for strategy in [Strategy::Naive, Strategy::Fetch] {
        let mut fleet = Fleet::default();
        baselines::spawn_all(&mut fleet, &fanout, &pool, strategy, holdings.clone());
        let name = strategy.name();
        let r = fleet_round(&bench, &mut writer, fleet, changes, &mut report, name).await?;
        figures(&mut report, Some(name), &[r], changes);
    }
    fanout.stop();
    bench.finish().await?;
    Ok(vec![report])
}

/// Writes `changes` changes and waits until `fleet` handled them all.
async fn fleet_round(
    bench: &Bench,
    writer: &mut Writer,
    fleet: Fleet,
    changes: usize,
    report: &mut Report,
    system: &str,
) -> BenchResult<Round> {
    let window = Window::open(&bench.db).await?;
    let (markers, wrote) = write_all(writer, changes).await?;
    settle(&fleet, changes as u64, DEADLINE, report, system).await;
    let started = window.started();
    let measured = window.close(&bench.db).await?;
    let samples: Vec<Vec<Sample>> = fleet.stop().await;
    let end = last_applied(&samples, &markers);
    Ok(Round {
        elapsed: end.map_or(measured.wall, |e| e.saturating_duration_since(started)),
        wrote,
        measured,
    })
}

/// Writes `count` changes, `BATCH` distinct posts per transaction; returns the markers and
/// how long the writing took.
async fn write_all(
    writer: &mut Writer,
    count: usize,
) -> BenchResult<(std::ops::Range<u32>, Duration)> {
    let posts = (SUBSCRIBERS * POSTS_PER_PERSON) as usize;
    let started = Instant::now();
    let first = writer.next_marker();
    let mut written = 0;
    while written < count {
        let n = BATCH.min(count - written);
        let ids: Vec<i64> = (written..written + n)
            .map(|i| (i % posts) as i64 + 1)
            .collect();
        writer.batch(&ids).await?;
        written += n;
    }
    Ok((first..writer.next_marker(), started.elapsed()))
}

/// Changes per second end to end, the writer's own rate, CPU and reads per change (medians
/// over the rounds); returns the end-to-end rate.
fn figures(report: &mut Report, system: Option<&str>, rounds: &[Round], changes: usize) -> f64 {
    let k = changes as f64;
    let per_change = |d: Duration| d / changes as u32;
    let elapsed = median(&rounds.iter().map(|r| r.elapsed).collect::<Vec<_>>());
    let wrote = median(&rounds.iter().map(|r| r.wrote).collect::<Vec<_>>());
    let cpu = median(
        &rounds
            .iter()
            .map(|r| per_change(r.measured.cpu))
            .collect::<Vec<_>>(),
    );
    let reads: u64 = rounds.iter().map(|r| r.measured.reads).sum();
    let rate = k / elapsed.as_secs_f64().max(1e-9);
    let all_rates: Vec<f64> = rounds
        .iter()
        .map(|r| round(k / r.elapsed.as_secs_f64().max(1e-9)))
        .collect();
    report
        .figure(system, "changes_per_s", round(rate))
        .figure(
            system,
            "writer_changes_per_s",
            round(k / wrote.as_secs_f64().max(1e-9)),
        )
        .figure(system, "cpu_us_per_change", round(cpu.as_secs_f64() * 1e6))
        .figure(
            system,
            "reads_per_change",
            round(reads as f64 / (k * rounds.len() as f64)),
        );
    if rounds.len() > 1 {
        report.figure(system, "changes_per_s_each_round", all_rates);
    }
    rate
}
