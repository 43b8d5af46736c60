//! Partitioned: S subscribers each hold one person's posts with tags; changes spread over
//! all of them at a steady rate, each touching one subscriber. CPU per change and latency
//! as S grows: rowsync's routing index should keep both flat.

use std::time::Duration;

use rowsync::Db;

use super::{settle, Bench, Mode, Rng};
use crate::baselines::{self, BareListener, Fanout, Strategy};
use crate::db::{Seed, Seeding};
use crate::fleet::{latencies, Fleet};
use crate::measure::Window;
use crate::report::{round, Report};
use crate::stats::{median, ms, us, Percentiles};
use crate::subscriber;
use crate::writer::Writer;
use crate::BenchResult;

const POSTS_PER_PERSON: i64 = 5;
const DEADLINE: Duration = Duration::from_secs(120);
/// Changes per second the writer keeps up.
const RATE: f64 = 1000.0;
/// Every system's changes are measured in this many rounds; CPU per change is their median.
const ROUNDS: usize = 3;

/// Runs the scenario.
pub async fn run(mode: Mode) -> BenchResult<Vec<Report>> {
    let sizes: &[usize] = mode.pick(&[10, 100], &[10, 100, 1_000, 10_000]);
    let changes: usize = mode.pick(300, 6_000);
    let largest = *sizes.last().unwrap_or(&10);
    let seed = Seed {
        persons: largest as i64,
        posts_per_person: POSTS_PER_PERSON,
        tags: 100,
        tags_per_post: 3,
    };
    let bench = Bench::start("partitioned", Seeding::Uniform(seed), mode, |b| b).await?;
    let everyone = bench.holdings(largest as i64).await?;
    let mut writer = Writer::connect(bench.db.url()).await?;
    let mut reports: Vec<Report> = Vec::new();
    for &s in sizes {
        eprintln!("  partitioned: S={s} rowsync");
        let posts = s as i64 * POSTS_PER_PERSON;
        let mut rng = Rng::new(s as u64);
        let mut report = Report::new("partitioned");
        report
            .param("subscribers", s as u64)
            .param("changes", changes as u64)
            .param("baseline_changes", baseline_changes(changes, s) as u64)
            .param("rounds", ROUNDS as u64)
            .param("rate_per_s", RATE)
            .param("posts_per_subscriber", POSTS_PER_PERSON);

        let mut fleet = Fleet::default();
        let lists = everyone[..s]
            .iter()
            .map(|(_, posts)| posts.clone())
            .collect();
        subscriber::spawn_all(&mut fleet, &bench.hub, lists)?;
        let phase = Phase {
            bench: &bench,
            fleet: Some(&fleet),
            changes,
        };
        let measured = phase
            .run(&mut writer, &mut report, None, &mut rng, posts)
            .await?;
        let samples = fleet.stop().await;
        measured.record(
            &mut report,
            None,
            latencies(&samples, &writer, measured.markers.clone()),
        );
        if let Some(first) = reports.first() {
            target(&mut report, first);
        }
        reports.push(report);
    }

    // why after every rowsync phase: nothing of rowsync runs while the baselines do.
    let plan = bench.stop_hub().await?;
    let pool = Db::connect(bench.db.url())?;
    for (&s, report) in sizes.iter().zip(&mut reports) {
        eprintln!("  partitioned: S={s} baselines");
        // why fewer for the baselines at large S: each change wakes all S of them.
        let baseline_changes = baseline_changes(changes, s);
        let posts = s as i64 * POSTS_PER_PERSON;
        let mut rng = Rng::new(s as u64 + 1);
        let holdings: Vec<_> = everyone[..s].to_vec();
        let fanout = Fanout::start(&plan, bench.db.url(), 4096).await?;
        for strategy in [Strategy::Naive, Strategy::Fetch] {
            let mut fleet = Fleet::default();
            baselines::spawn_all(&mut fleet, &fanout, &pool, strategy, holdings.clone());
            let phase = Phase {
                bench: &bench,
                fleet: Some(&fleet),
                changes: baseline_changes,
            };
            let name = Some(strategy.name());
            let measured = phase
                .run(&mut writer, report, name, &mut rng, posts)
                .await?;
            let samples = fleet.stop().await;
            let lat = latencies(&samples, &writer, measured.markers.clone());
            measured.record(report, name, lat);
        }
        fanout.stop();

        let bare = BareListener::start(bench.db.url(), baselines::CHANNEL).await?;
        let phase = Phase {
            bench: &bench,
            fleet: None,
            changes,
        };
        let name = Some("bare_listener");
        let measured = phase
            .run(&mut writer, report, name, &mut rng, posts)
            .await?;
        if !bare.wait_for(measured.changes, DEADLINE).await {
            report.note("bare_listener: deadline passed");
        }
        let arrivals = bare.stop();
        let lat = measured
            .markers
            .clone()
            .zip(&arrivals)
            .filter_map(|(n, at)| Some(at.saturating_duration_since(writer.commit_of(n)?)))
            .collect();
        measured.record(report, name, lat);
    }
    bench.finish().await?;
    Ok(reports)
}

/// Changes the baselines are measured on at S subscribers (each change wakes all of them).
fn baseline_changes(changes: usize, subscribers: usize) -> usize {
    (changes * 100 / subscribers).clamp(changes.min(100), changes)
}

/// One system's measurement: `changes` changes in `ROUNDS` windows (every system the same
/// number, scored on the median).
struct Phase<'a> {
    bench: &'a Bench,
    /// The subscribers to wait for (the bare listener has none: its window closes when
    /// the writer is done, its arrivals are checked afterwards).
    fleet: Option<&'a Fleet>,
    changes: usize,
}

/// What a phase measured.
struct Measured {
    markers: std::ops::Range<u32>,
    /// Median over the rounds.
    cpu_per_change: Duration,
    /// Median over the rounds, when the server's CPU shows.
    server_cpu_per_change: Option<Duration>,
    rows: u64,
    statements: u64,
    changes: usize,
}

impl Phase<'_> {
    async fn run(
        &self,
        writer: &mut Writer,
        report: &mut Report,
        system: Option<&str>,
        rng: &mut Rng,
        posts: i64,
    ) -> BenchResult<Measured> {
        let per_round = self.changes / ROUNDS;
        let first = writer.next_marker();
        let (mut cpu, mut server) = (Vec::new(), Vec::new());
        let (mut rows, mut statements) = (0, 0);
        for round in 1..=ROUNDS {
            let window = Window::open(&self.bench.db).await?;
            writer.paced(per_round, RATE, |_| rng.one_to(posts)).await?;
            if let Some(fleet) = self.fleet {
                let target = (round * per_round) as u64;
                let system = system.unwrap_or("rowsync");
                settle(fleet, target, DEADLINE, report, system).await;
            }
            let m = window.close(&self.bench.db).await?;
            cpu.push(m.cpu / per_round as u32);
            server.extend(m.server_cpu.map(|c| c / per_round as u32));
            rows += m.reads.rows;
            statements += m.reads.statements;
        }
        Ok(Measured {
            markers: first..writer.next_marker(),
            cpu_per_change: median(&cpu),
            server_cpu_per_change: (!server.is_empty()).then(|| median(&server)),
            rows,
            statements,
            changes: per_round * ROUNDS,
        })
    }
}

impl Measured {
    /// CPU per change (ours and the server's), rows and statements read per change and
    /// latency percentiles.
    fn record(&self, report: &mut Report, system: Option<&str>, latencies: Vec<Duration>) {
        let p = Percentiles::of(latencies);
        let k = self.changes.max(1) as f64;
        report
            .figure(system, "cpu_us_per_change", round(us(self.cpu_per_change)))
            .figure(system, "rows_read_per_change", round(self.rows as f64 / k))
            .figure(
                system,
                "statements_per_change",
                round(self.statements as f64 / k),
            )
            .figure(system, "latency_p50_ms", round(ms(p.p50)))
            .figure(system, "latency_p99_ms", round(ms(p.p99)))
            .figure(system, "latency_max_ms", round(ms(p.max)))
            .figure(system, "latency_samples", p.count as u64);
        if let Some(server) = self.server_cpu_per_change {
            report.figure(system, "server_cpu_us_per_change", round(us(server)));
        }
    }
}

/// CPU per change at this S within 1.5x of the smallest S.
fn target(report: &mut Report, smallest: &Report) {
    let (Some(now), Some(base)) = (
        report.rowsync_f64("cpu_us_per_change"),
        smallest.rowsync_f64("cpu_us_per_change"),
    ) else {
        return;
    };
    let ratio = now / base.max(f64::MIN_POSITIVE);
    let smallest_s = smallest.param_value("subscribers").unwrap_or_default();
    report.target(
        format!("CPU per change within 1.5x of S={smallest_s} (issue: S=10,000 vs S=10)"),
        ratio <= 1.5,
        format!("{now:.0} vs {base:.0} us: {ratio:.2}x"),
    );
}
