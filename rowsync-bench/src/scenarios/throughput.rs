//! Throughput: the highest change rate carried end to end (capture -> cache -> route ->
//! sync) with 100 subscribers, each holding one person's posts, against the bare listener
//! (capture alone), capture + one read (batched as rowsync batches), the naive and
//! per-subscriber-fetch baselines, and with the replication source `pg_recvlogical`.
//!
//! Two rates, each the median of the same number of rounds for every system:
//! - **live**: the writer commits the K changes as fast as it can, 50 rows per transaction
//!   (each row its own change); the rate is K over the time from the first write to the
//!   last change applied. The writer's own rate is reported: when it is close to the
//!   system's, the writer is the bound.
//! - **drain**: the K changes are committed first, as one transaction, and the rate is K
//!   over the time from its COMMIT returning to the last change applied: the capacity of
//!   the consumer, whatever the writer can do.
//!
//! rowsync runs first and is stopped before any baseline starts.

use std::time::{Duration, Instant};

use rowsync::Db;

use super::{settle, Bench, Mode, Source};
use crate::baselines::{self, BareListener, Fanout, Recvlogical, SharedReader, Strategy};
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
/// Distinct posts, and the rows of one UPDATE of a backlog.
const POSTS: usize = (SUBSCRIBERS * POSTS_PER_PERSON) as usize;
const BATCH: usize = 50;
const DEADLINE: Duration = Duration::from_secs(120);
/// The bound: rowsync at least this share of capture + one read.
const SHARE: f64 = 0.7;

/// How the changes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// `BATCH` rows per transaction, back to back.
    Live,
    /// All of them in one transaction, committed before the rate's clock starts.
    Drain,
}

/// One round of one system.
struct Round {
    /// Time from the first write (drain: the COMMIT returning) to the last change handled.
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
    let bench = Bench::start("throughput", Seeding::Uniform(seed), mode, |b| {
        b.queue_capacity(changes)
    })
    .await?;
    let holdings = bench.holdings(SUBSCRIBERS).await?;
    let lists: Vec<_> = holdings.iter().map(|(_, p)| p.clone()).collect();
    let mut writer = Writer::connect(bench.db.url()).await?;
    let mut report = Report::new("throughput");
    report
        .param("subscribers", SUBSCRIBERS)
        .param("changes", changes as u64)
        .param("rounds", rounds as u64)
        .param("rows_per_transaction", BATCH as u64)
        .param(
            "drain_backlog",
            "all changes in one transaction, committed first",
        )
        .param("each_change_touches", "1 subscriber");
    eprintln!("  throughput: {changes} changes x {rounds} rounds, {SUBSCRIBERS} subscribers");

    let mut rates = Vec::new();
    for load in [Load::Live, Load::Drain] {
        let mut ours = Vec::new();
        for _ in 0..rounds {
            let mut fleet = Fleet::default();
            subscriber::spawn_all(&mut fleet, &bench.hub, lists.clone())?;
            let run = (changes, load, "rowsync");
            let r = fleet_round(&bench, &mut writer, fleet, run, &mut report).await?;
            ours.push(r);
        }
        rates.push(figures(&mut report, None, &ours, changes, load));
    }

    // why here: nothing of rowsync runs while the baselines do.
    let plan = bench.stop_hub().await?;
    let mut limits = Vec::new();
    for load in [Load::Live, Load::Drain] {
        let mut limit = Vec::new();
        for _ in 0..rounds {
            let reader = SharedReader::start(&plan, bench.db.url()).await?;
            let window = Window::open(&bench.db).await?;
            let (markers, wrote, from) = write(&mut writer, changes, load).await?;
            if !reader.wait_for(changes, DEADLINE).await {
                report.note("capture_plus_one_read: deadline passed");
            }
            let started = from.unwrap_or(window.started());
            let measured = window.close(&bench.db).await?;
            let end = last_applied(&[reader.stop()], &markers);
            limit.push(Round {
                elapsed: end.map_or(measured.wall, |e| e.saturating_duration_since(started)),
                wrote,
                measured,
            });
        }
        let system = Some("capture_plus_one_read");
        limits.push(figures(&mut report, system, &limit, changes, load));
    }
    let share = |ours: f64, best: f64| ours / best.max(f64::MIN_POSITIVE);
    let (live, drain) = (share(rates[0], limits[0]), share(rates[1], limits[1]));
    report.target(
        format!(
            "at least {:.0}% of capture + one read per change (live and drain)",
            SHARE * 100.0
        ),
        live >= SHARE && drain >= SHARE,
        format!(
            "live {:.0}/s vs {:.0}/s: {:.0}%; drain {:.0}/s vs {:.0}/s: {:.0}%",
            rates[0],
            limits[0],
            live * 100.0,
            rates[1],
            limits[1],
            drain * 100.0
        ),
    );

    for load in [Load::Live, Load::Drain] {
        let mut bare_rounds = Vec::new();
        for _ in 0..rounds {
            let bare = BareListener::start(bench.db.url(), baselines::CHANNEL).await?;
            let window = Window::open(&bench.db).await?;
            let (_, wrote, from) = write(&mut writer, changes, load).await?;
            if !bare.wait_for(changes, DEADLINE).await {
                report.note("bare_listener: deadline passed");
            }
            let started = from.unwrap_or(window.started());
            let measured = window.close(&bench.db).await?;
            let end = bare.stop().last().copied();
            bare_rounds.push(Round {
                elapsed: end.map_or(measured.wall, |e| e.saturating_duration_since(started)),
                wrote,
                measured,
            });
        }
        figures(
            &mut report,
            Some("bare_listener"),
            &bare_rounds,
            changes,
            load,
        );
    }

    if mode.source == Source::Replication {
        recvlogical(&bench, &mut writer, changes, rounds, &mut report).await?;
    }

    let pool = Db::connect(bench.db.url())?;
    let fanout = Fanout::start(&plan, bench.db.url(), changes + 16).await?;
    for strategy in [Strategy::Naive, Strategy::Fetch] {
        let name = strategy.name();
        let mut taken = Vec::new();
        for _ in 0..rounds {
            let mut fleet = Fleet::default();
            baselines::spawn_all(&mut fleet, &fanout, &pool, strategy, holdings.clone());
            let run = (changes, Load::Live, name);
            let r = fleet_round(&bench, &mut writer, fleet, run, &mut report).await?;
            taken.push(r);
        }
        figures(&mut report, Some(name), &taken, changes, Load::Live);
    }
    fanout.stop();
    report.note(
        "naive and per_subscriber_fetch: live rate only (a drain of their backlog takes minutes)",
    );
    bench.finish().await?;
    Ok(vec![report])
}

/// `pg_recvlogical` decoding the same changes, committed first: the live workload (`BATCH`
/// rows per transaction) and the drain backlog (one transaction).
async fn recvlogical(
    bench: &Bench,
    writer: &mut Writer,
    changes: usize,
    rounds: usize,
    report: &mut Report,
) -> BenchResult<()> {
    for load in [Load::Live, Load::Drain] {
        let mut taken = Vec::new();
        for _ in 0..rounds {
            let decoder = Recvlogical::prepare(&bench.db).await?;
            let (_, wrote, _) = write(writer, changes, load).await?;
            let window = Window::open(&bench.db).await?;
            let elapsed = decoder.drain(&bench.db, DEADLINE).await?;
            let measured = window.close(&bench.db).await?;
            taken.push(Round {
                elapsed,
                wrote,
                measured,
            });
        }
        figures(report, Some("pg_recvlogical"), &taken, changes, load);
    }
    report.note("pg_recvlogical: the changes committed first, then decoded (pgoutput) to /dev/null; both rates are its decoding rate of that workload, process start included");
    Ok(())
}

/// Writes `changes` changes as `load` says and waits until `fleet` (of `system`) handled
/// them all.
async fn fleet_round(
    bench: &Bench,
    writer: &mut Writer,
    fleet: Fleet,
    (changes, load, system): (usize, Load, &str),
    report: &mut Report,
) -> BenchResult<Round> {
    let window = Window::open(&bench.db).await?;
    let (markers, wrote, from) = write(writer, changes, load).await?;
    settle(&fleet, changes as u64, DEADLINE, report, system).await;
    let started = from.unwrap_or(window.started());
    let measured = window.close(&bench.db).await?;
    let samples: Vec<Vec<Sample>> = fleet.stop().await;
    let end = last_applied(&samples, &markers);
    Ok(Round {
        elapsed: end.map_or(measured.wall, |e| e.saturating_duration_since(started)),
        wrote,
        measured,
    })
}

/// Writes `count` changes as `load` says; returns the markers, how long the writing took,
/// and for a drain when its COMMIT returned (the clock's start).
async fn write(
    writer: &mut Writer,
    count: usize,
    load: Load,
) -> BenchResult<(std::ops::Range<u32>, Duration, Option<Instant>)> {
    let started = Instant::now();
    let ids: Vec<i64> = (0..count).map(|i| (i % POSTS) as i64 + 1).collect();
    match load {
        Load::Live => {
            let first = writer.next_marker();
            for chunk in ids.chunks(BATCH) {
                writer.batch(chunk).await?;
            }
            Ok((first..writer.next_marker(), started.elapsed(), None))
        }
        Load::Drain => {
            let markers = writer.backlog(&ids, POSTS).await?;
            let committed = markers.clone().next().and_then(|n| writer.commit_of(n));
            Ok((markers, started.elapsed(), committed))
        }
    }
}

/// Changes per second end to end, the writer's own rate, CPU (ours and the server's) and
/// rows read per change (medians over the rounds) under `load`; returns the end-to-end rate.
fn figures(
    report: &mut Report,
    system: Option<&str>,
    rounds: &[Round],
    changes: usize,
    load: Load,
) -> f64 {
    let prefix = match load {
        Load::Live => "",
        Load::Drain => "drain_",
    };
    let name = |figure: &str| format!("{prefix}{figure}");
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
    let server: Vec<Duration> = rounds
        .iter()
        .filter_map(|r| r.measured.server_cpu.map(per_change))
        .collect();
    let (rows, statements) = rounds.iter().fold((0, 0), |(r, s), round| {
        (
            r + round.measured.reads.rows,
            s + round.measured.reads.statements,
        )
    });
    let all = k * rounds.len() as f64;
    let rate = k / elapsed.as_secs_f64().max(1e-9);
    let all_rates: Vec<f64> = rounds
        .iter()
        .map(|r| round(k / r.elapsed.as_secs_f64().max(1e-9)))
        .collect();
    report
        .figure(system, &name("changes_per_s"), round(rate))
        .figure(
            system,
            &name("cpu_us_per_change"),
            round(cpu.as_secs_f64() * 1e6),
        )
        .figure(
            system,
            &name("rows_read_per_change"),
            round(rows as f64 / all),
        )
        .figure(
            system,
            &name("statements_per_change"),
            round(statements as f64 / all),
        );
    if load == Load::Live {
        report.figure(
            system,
            "writer_changes_per_s",
            round(k / wrote.as_secs_f64().max(1e-9)),
        );
    }
    if !server.is_empty() {
        report.figure(
            system,
            &name("server_cpu_us_per_change"),
            round(median(&server).as_secs_f64() * 1e6),
        );
    }
    if rounds.len() > 1 {
        report.figure(system, &name("changes_per_s_each_round"), all_rates);
    }
    rate
}
