//! Writer cost: what capturing changes costs the application's writers. `pgbench` runs
//! single-row UPDATE transactions on the bench's posts with 1, 4 and 16 clients, with no
//! capture, with rowsync's triggers (a hub listening) and with logical replication (a hub
//! streaming from its slot), and, to tell the server's share of replication from the hub's,
//! with `pg_recvlogical` as the only consumer of a slot; TPS of each, as the median of the
//! same number of rounds, the captures taking turns in each round.
//!
//! Besides the table, one JSON line per (capture, clients): `{"scenario": "writer-cost",
//! "capture": "none|triggers|replication|pg_recvlogical", "clients": n, "tps": x}`.

use std::time::Duration;

use rowsync::Hub;
use serde_json::json;

use super::{Mode, Source};
use crate::baselines::{bindir, Following, Recvlogical, CHANNEL};
use crate::db::{BenchDb, Seed, Seeding};
use crate::report::{round, source, Report};
use crate::schema::{Person, TABLES, WATCH};
use crate::BenchResult;

const CLIENTS: [u32; 3] = [1, 4, 16];
const POSTS: i64 = 1_000;
/// The goal of issue 14: replication costs writers at most this share of their TPS.
const REPLICATION_GOAL: f64 = 0.05;

/// How changes are captured while the writers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    None,
    Triggers,
    Replication,
    /// A slot streamed by `pg_recvlogical` alone (no hub).
    Recvlogical,
}

impl Capture {
    fn name(self) -> &'static str {
        match self {
            Capture::None => "none",
            Capture::Triggers => "triggers",
            Capture::Replication => "replication",
            Capture::Recvlogical => "pg_recvlogical",
        }
    }
}

/// What runs while the writers do.
enum Consumer {
    Hub(Hub),
    Recvlogical(Following),
}

/// Runs the scenario.
pub async fn run(mode: Mode) -> BenchResult<Vec<Report>> {
    let seconds: u32 = mode.pick(1, 5);
    let rounds: usize = mode.pick(1, 3);
    let db = BenchDb::create("rowsync_bench_writer_cost").await?;
    db.seed(&Seeding::Uniform(Seed {
        persons: POSTS / 10,
        posts_per_person: 10,
        tags: 50,
        tags_per_post: 3,
    }))
    .await?;
    let script = std::env::temp_dir().join(format!(
        "rowsync-bench-writer-cost-{}.sql",
        std::process::id()
    ));
    std::fs::write(
        &script,
        format!(
            "\\set id random(1, {POSTS})\nUPDATE posts SET name = 'w' || :id WHERE id = :id;\n"
        ),
    )?;
    let captures = [
        Capture::None,
        Capture::Triggers,
        Capture::Replication,
        Capture::Recvlogical,
    ];
    eprintln!("  writer-cost: {rounds} rounds x {seconds} s per run");
    // tps[capture][clients]: one figure per round
    let mut tps = vec![vec![Vec::new(); CLIENTS.len()]; captures.len()];
    for r in 0..rounds {
        // why in turns: each capture gets the early and the late moments of the run alike
        for turn in 0..captures.len() {
            let c = (r + turn) % captures.len();
            let capture = captures[c];
            let hub = start(&db, capture).await?;
            for (i, &clients) in CLIENTS.iter().enumerate() {
                tps[c][i].push(pgbench(&db, &script, clients, seconds).await?);
            }
            stop(&db, hub).await?;
        }
    }
    let _ = std::fs::remove_file(&script);

    let mut reports = Vec::new();
    for (i, &clients) in CLIENTS.iter().enumerate() {
        let median = |c: usize| {
            let mut all = tps[c][i].clone();
            all.sort_by(f64::total_cmp);
            all.get(all.len() / 2).copied().unwrap_or(0.0)
        };
        for (c, capture) in captures.iter().enumerate() {
            let line = json!({
                "scenario": "writer-cost",
                "source": source(),
                "capture": capture.name(),
                "clients": clients,
                "tps": round(median(c)),
                "tps_each_round": tps[c][i].iter().map(|x| round(*x)).collect::<Vec<_>>(),
            });
            println!("{line}");
        }
        let none = median(0).max(f64::MIN_POSITIVE);
        let cost = |c: usize| round((1.0 - median(c) / none) * 100.0);
        let mut report = Report::new("writer-cost");
        report
            .param("clients", clients)
            .param("seconds_per_run", seconds)
            .param("rounds", rounds as u64)
            .param("transaction", "UPDATE of one post (pgbench)");
        report
            .rowsync("replication_tps", round(median(2)))
            .rowsync("replication_cost_pct", cost(2))
            .rowsync("triggers_tps", round(median(1)))
            .rowsync("triggers_cost_pct", cost(1))
            .baseline("no_capture", "tps", round(median(0)))
            .baseline("pg_recvlogical", "tps", round(median(3)))
            .baseline("pg_recvlogical", "cost_pct", cost(3));
        report.target(
            format!(
                "replication costs writers at most {:.0}% of their TPS",
                REPLICATION_GOAL * 100.0
            ),
            cost(2) <= REPLICATION_GOAL * 100.0,
            format!(
                "{clients} clients: {:.0} vs {:.0} TPS: {:+.1}% (triggers {:+.1}%)",
                median(2),
                median(0),
                -cost(2),
                -cost(1)
            ),
        );
        reports.push(report);
    }
    db.drop_database().await?;
    Ok(reports)
}

/// Starts what `capture` needs: nothing, a trigger hub, a replication hub, or
/// `pg_recvlogical` on a slot.
async fn start(db: &BenchDb, capture: Capture) -> BenchResult<Option<Consumer>> {
    let builder = Hub::builder(db.url())
        .channel(CHANNEL)
        .watch::<Person>(WATCH);
    let source = match capture {
        Capture::None => return Ok(None),
        Capture::Triggers => Source::Triggers,
        Capture::Replication => Source::Replication,
        Capture::Recvlogical => {
            let following = Recvlogical::prepare(db).await?.follow(db)?;
            return Ok(Some(Consumer::Recvlogical(following)));
        }
    };
    let hub = source
        .configure(builder, "rowsync_bench_writer_cost")
        .start()
        .await?;
    Ok(Some(Consumer::Hub(hub)))
}

/// Stops the consumer and removes what it left that would cost the next writers: the
/// triggers, the slot, and the replica identity a replication hub set.
async fn stop(db: &BenchDb, consumer: Option<Consumer>) -> BenchResult<()> {
    match consumer {
        Some(Consumer::Hub(hub)) => hub.shutdown().await,
        Some(Consumer::Recvlogical(following)) => following.stop(db).await?,
        None => {}
    }
    Hub::builder(db.url())
        .channel(CHANNEL)
        .watch::<Person>(WATCH)
        .uninstall()
        .await?;
    for table in TABLES {
        db.execute(&format!("ALTER TABLE \"{table}\" REPLICA IDENTITY DEFAULT"))
            .await?;
    }
    Ok(())
}

/// Runs `pgbench` with `clients` clients for `seconds`; returns its TPS.
async fn pgbench(
    db: &BenchDb,
    script: &std::path::Path,
    clients: u32,
    seconds: u32,
) -> BenchResult<f64> {
    let mut command = std::process::Command::new(bindir().join("pgbench"));
    command
        .args(["-n", "-M", "prepared", "-f"])
        .arg(script)
        .arg(format!("--client={clients}"))
        .arg(format!("--jobs={}", clients.min(4)))
        .arg(format!("--time={seconds}"))
        .arg(db.url());
    // why a blocking thread: the workspace's tokio has no `process` feature.
    let output = tokio::time::timeout(
        Duration::from_secs(u64::from(seconds) + 60),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .map_err(|_| "pgbench: deadline passed")???;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    text.lines()
        .find_map(|line| line.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .ok_or_else(|| format!("no TPS in pgbench's output: {text}").into())
}
