//! Stampede: S subscribers hold the same posts-with-tags list and K posts change. How many
//! rows does the database read per change? rowsync: at most one per change per hub,
//! whatever S, with triggers; none with replication (the change carries its row).

use std::time::Duration;

use rowsync::Db;

use super::{settle, Bench, Mode, Source};
use crate::baselines::{self, BareListener, Fanout, Strategy};
use crate::db::{Seed, Seeding};
use crate::fleet::Fleet;
use crate::measure::{Measured, Window};
use crate::report::{round, Report};
use crate::stats::ms;
use crate::subscriber;
use crate::writer::Writer;
use crate::BenchResult;

const POSTS: i64 = 20;
const TAGS_PER_POST: i64 = 3;
/// How long any one phase may take before it is reported as unfinished.
const DEADLINE: Duration = Duration::from_secs(300);

/// Runs the scenario.
pub async fn run(mode: Mode) -> BenchResult<Vec<Report>> {
    let sizes: &[usize] = mode.pick(&[1, 10, 100], &[1, 10, 100, 1_000, 10_000]);
    let changes = mode.pick(5, 20);
    let seed = Seed {
        persons: 1,
        posts_per_person: POSTS,
        tags: 10,
        tags_per_post: TAGS_PER_POST,
    };
    let bench = Bench::start("stampede", Seeding::Uniform(seed), mode, |b| b).await?;
    let list = bench.holdings(1).await?.remove(0).1;
    let mut writer = Writer::connect(bench.db.url()).await?;
    let mut reports = Vec::new();
    for &s in sizes {
        eprintln!("  stampede: S={s} rowsync");
        let mut report = Report::new("stampede");
        report
            .param("subscribers", s as u64)
            .param("changes", changes as u64)
            .param("baseline_changes", baseline_changes(changes, s) as u64)
            .param("posts_held", POSTS)
            .param("tags_per_post", TAGS_PER_POST);

        let mut fleet = Fleet::default();
        subscriber::spawn_all(&mut fleet, &bench.hub, vec![list.clone(); s])?;
        warm_up(&mut writer, &fleet, s, &mut report, "rowsync").await?;
        let loads_before = bench.hub.stats().rows_loaded;
        let window = Window::open(&bench.db).await?;
        burst(&mut writer, changes).await?;
        let target = (s * changes + s) as u64;
        settle(&fleet, target, DEADLINE, &mut report, "rowsync").await;
        let m = window.close(&bench.db).await?;
        fleet.stop().await;
        let loads = bench.hub.stats().rows_loaded - loads_before;
        figures(&mut report, None, &m, changes);
        report.rowsync("hub_loads_per_change", round(loads as f64 / changes as f64));
        let rows = m.reads.rows;
        // why "at most": changes that reach the hub in one burst share one read (the hub's
        // batched reads); one by one it is exactly one each. Replication carries the rows.
        let (goal, met) = match mode.source {
            Source::Triggers => (
                "at most 1 row read per change per hub, for every S (issue 5: exactly 1)",
                rows >= 1 && rows <= changes as u64,
            ),
            Source::Replication => (
                "0 rows read per change, for every S (issue 14)",
                rows == 0 && m.reads.statements == 0,
            ),
        };
        report.target(
            goal,
            met,
            format!(
                "{rows} rows in {} statements for {changes} changes",
                m.reads.statements
            ),
        );
        reports.push(report);
    }

    // why after every rowsync phase: nothing of rowsync runs while the baselines do.
    let plan = bench.stop_hub().await?;
    let pool = Db::connect(bench.db.url())?;
    for (&s, report) in sizes.iter().zip(&mut reports) {
        eprintln!("  stampede: S={s} baselines");
        // why fewer changes for the baselines at large S: naive costs 2·S reads per change.
        let baseline_changes = baseline_changes(changes, s);
        let fanout = Fanout::start(&plan, bench.db.url(), 4096).await?;
        for strategy in [Strategy::Naive, Strategy::Fetch] {
            let mut fleet = Fleet::default();
            let holdings = vec![(1, list.clone()); s];
            baselines::spawn_all(&mut fleet, &fanout, &pool, strategy, holdings);
            warm_up(&mut writer, &fleet, s, report, strategy.name()).await?;
            let window = Window::open(&bench.db).await?;
            burst(&mut writer, baseline_changes).await?;
            let target = (s * baseline_changes + s) as u64;
            settle(&fleet, target, DEADLINE, report, strategy.name()).await;
            let m = window.close(&bench.db).await?;
            fleet.stop().await;
            figures(report, Some(strategy.name()), &m, baseline_changes);
        }
        fanout.stop();

        let bare = BareListener::start(bench.db.url(), baselines::CHANNEL).await?;
        let window = Window::open(&bench.db).await?;
        burst(&mut writer, changes).await?;
        if !bare.wait_for(changes, DEADLINE).await {
            report.note("bare_listener: deadline passed");
        }
        let m = window.close(&bench.db).await?;
        bare.stop();
        figures(report, Some("bare_listener"), &m, changes);
    }
    bench.finish().await?;
    Ok(reports)
}

/// Changes the baselines are measured on at S subscribers (naive reads 2·S per change).
fn baseline_changes(changes: usize, subscribers: usize) -> usize {
    changes.min((100_000 / subscribers).max(5))
}

/// `count` single-row transactions, back to back, each renaming another post.
async fn burst(writer: &mut Writer, count: usize) -> BenchResult<()> {
    let posts = (0..count as i64).map(|i| i % POSTS + 1).collect();
    writer.posts(posts, None).await?;
    Ok(())
}

/// One change every subscriber applies before measuring: first-use costs (connections,
/// allocations) stay out of the window.
async fn warm_up(
    writer: &mut Writer,
    fleet: &Fleet,
    subscribers: usize,
    report: &mut Report,
    system: &str,
) -> BenchResult<()> {
    burst(writer, 1).await?;
    settle(fleet, subscribers as u64, DEADLINE, report, system).await;
    Ok(())
}

/// Rows and statements read, the server's CPU, wall time and CPU time per change, for
/// rowsync (`None`) or a baseline.
fn figures(report: &mut Report, system: Option<&str>, m: &Measured, changes: usize) {
    let k = changes as f64;
    m.record_reads(report, system, changes);
    let values = [
        ("wall_ms_per_change", round(ms(m.wall) / k)),
        ("cpu_ms_per_change", round(ms(m.cpu) / k)),
    ];
    for (name, value) in values {
        report.figure(system, name, value);
    }
}
