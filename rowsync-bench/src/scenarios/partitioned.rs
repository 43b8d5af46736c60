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
/// rowsync's changes are measured in this many rounds; CPU per change is their median.
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
    let bench = Bench::start("partitioned", Seeding::Uniform(seed), |b| b).await?;
    let everyone = bench.holdings(largest as i64).await?;
    let mut writer = Writer::connect(bench.db.url()).await?;
    let pool = Db::connect(bench.db.url())?;
    let mut reports: Vec<Report> = Vec::new();
    for &s in sizes {
        eprintln!("  partitioned: S={s}");
        // why fewer for the baselines at large S: each change wakes all S of them.
        let baseline_changes = (changes * 100 / s).clamp(changes.min(100), changes);
        let posts = s as i64 * POSTS_PER_PERSON;
        let mut rng = Rng::new(s as u64);
        let mut report = Report::new("partitioned");
        report
            .param("subscribers", s as u64)
            .param("changes", changes as u64)
            .param("baseline_changes", baseline_changes as u64)
            .param("rate_per_s", RATE)
            .param("posts_per_subscriber", POSTS_PER_PERSON);
        let holdings: Vec<_> = everyone[..s].to_vec();

        let mut fleet = Fleet::default();
        let lists = holdings.iter().map(|(_, posts)| posts.clone()).collect();
        subscriber::spawn_all(&mut fleet, &bench.hub, lists)?;
        let phase = Phase {
            bench: &bench,
            fleet: &fleet,
            rounds: ROUNDS,
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

        // why started here: its listener must not cost rowsync's measurement anything.
        let fanout = Fanout::start(&bench.hub, bench.db.url(), 4096).await?;
        for strategy in [Strategy::Naive, Strategy::Fetch] {
            let mut fleet = Fleet::default();
            baselines::spawn_all(&mut fleet, &fanout, &pool, strategy, holdings.clone());
            let phase = Phase {
                bench: &bench,
                fleet: &fleet,
                rounds: 1,
                changes: baseline_changes,
            };
            let name = Some(strategy.name());
            let measured = phase
                .run(&mut writer, &mut report, name, &mut rng, posts)
                .await?;
            let samples = fleet.stop().await;
            let lat = latencies(&samples, &writer, measured.markers.clone());
            measured.record(&mut report, name, lat);
        }
        fanout.stop();

        let bare = BareListener::start(bench.db.url(), baselines::CHANNEL).await?;
        let window = Window::open(&bench.db).await?;
        let markers = writer.paced(changes, RATE, |_| rng.one_to(posts)).await?;
        if !bare.wait_for(changes, DEADLINE).await {
            report.note("bare_listener: deadline passed");
        }
        let m = window.close(&bench.db).await?;
        let arrivals = bare.stop();
        let lat = markers
            .clone()
            .zip(&arrivals)
            .filter_map(|(n, at)| Some(at.saturating_duration_since(writer.commit_of(n)?)))
            .collect();
        let measured = Measured {
            markers,
            cpu_per_change: m.cpu / changes as u32,
            reads: m.reads,
            changes,
        };
        measured.record(&mut report, Some("bare_listener"), lat);

        if let Some(first) = reports.first() {
            target(&mut report, first);
        }
        reports.push(report);
    }
    bench.finish().await?;
    Ok(reports)
}

/// One system's measurement: `changes` changes in `rounds` windows.
struct Phase<'a> {
    bench: &'a Bench,
    fleet: &'a Fleet,
    rounds: usize,
    changes: usize,
}

/// What a phase measured.
struct Measured {
    markers: std::ops::Range<u32>,
    /// Median over the rounds.
    cpu_per_change: Duration,
    reads: u64,
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
        let per_round = self.changes / self.rounds;
        let first = writer.next_marker();
        let mut cpu = Vec::new();
        let mut reads = 0;
        for round in 1..=self.rounds {
            let window = Window::open(&self.bench.db).await?;
            writer.paced(per_round, RATE, |_| rng.one_to(posts)).await?;
            let target = (round * per_round) as u64;
            settle(
                self.fleet,
                target,
                DEADLINE,
                report,
                system.unwrap_or("rowsync"),
            )
            .await;
            let m = window.close(&self.bench.db).await?;
            cpu.push(m.cpu / per_round as u32);
            reads += m.reads;
        }
        Ok(Measured {
            markers: first..writer.next_marker(),
            cpu_per_change: median(&cpu),
            reads,
            changes: per_round * self.rounds,
        })
    }
}

impl Measured {
    /// CPU per change, reads per change and latency percentiles.
    fn record(&self, report: &mut Report, system: Option<&str>, latencies: Vec<Duration>) {
        let p = Percentiles::of(latencies);
        report
            .figure(system, "cpu_us_per_change", round(us(self.cpu_per_change)))
            .figure(
                system,
                "reads_per_change",
                round(self.reads as f64 / self.changes as f64),
            )
            .figure(system, "latency_p50_ms", round(ms(p.p50)))
            .figure(system, "latency_p99_ms", round(ms(p.p99)))
            .figure(system, "latency_max_ms", round(ms(p.max)))
            .figure(system, "latency_samples", p.count as u64);
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
