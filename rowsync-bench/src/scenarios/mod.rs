//! The scenarios of issue 5, one module each, and what they share: a fresh database with a
//! hub watching it (through the capture source of the run), and the lists subscribers hold.
//!
//! why the hub is stopped before the baselines run: a hub left running would charge its
//! LISTEN, decoding and routing to every baseline's CPU (issue 15). Every scenario measures
//! rowsync first, stops it ([`Bench::stop_hub`]), then measures the baselines, which always
//! capture with triggers and LISTEN: what a plain LISTEN/NOTIFY application does.

pub mod access;
pub mod broadcast;
pub mod live_scale;
pub mod memory;
pub mod partitioned;
pub mod stampede;
pub mod sync_cost;
pub mod throughput;
pub mod writer_cost;

use std::time::Duration;

use rowsync::{CapturePlan, Filter, Hub, HubBuilder, ReplicationConfig};

use crate::baselines::CHANNEL;
use crate::db::{BenchDb, Seeding};
use crate::fleet::Fleet;
use crate::report::Report;
use crate::schema::{Person, Post, WATCH};
use crate::BenchResult;

/// Scenario names, in the order `all` runs them (`memory` in a process of its own, see
/// `child.rs`).
pub const NAMES: [&str; 9] = [
    "stampede",
    "partitioned",
    "broadcast",
    "throughput",
    "sync-cost",
    "writer-cost",
    "access",
    "memory",
    "live-scale",
];

/// Where the hub's changes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Triggers and LISTEN/NOTIFY (each change read once).
    Triggers,
    /// A logical replication slot (rows carried, nothing read).
    Replication,
}

impl Source {
    /// The name the command line and the JSON lines use.
    pub fn name(self) -> &'static str {
        match self {
            Source::Triggers => "triggers",
            Source::Replication => "replication",
        }
    }

    /// The source named `name`.
    pub fn parse(name: &str) -> Option<Source> {
        [Source::Triggers, Source::Replication]
            .into_iter()
            .find(|s| s.name() == name)
    }

    /// `builder` capturing from this source; a replication hub gets a temporary slot
    /// (and publication) named `slot`.
    pub fn configure(self, builder: HubBuilder, slot: &str) -> HubBuilder {
        match self {
            Source::Triggers => builder,
            Source::Replication => builder.replication(ReplicationConfig::temporary(slot)),
        }
    }
}

/// Full or quick (small S and K: every figure, in seconds, for CI), and the capture source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Small sizes.
    pub quick: bool,
    /// The hub's capture source.
    pub source: Source,
}

impl Mode {
    /// `quick` in quick mode, else `full`.
    pub fn pick<T>(self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// Runs scenario `name` and returns its results.
pub async fn run(name: &str, mode: Mode) -> BenchResult<Vec<Report>> {
    match name {
        "stampede" => stampede::run(mode).await,
        "partitioned" => partitioned::run(mode).await,
        "broadcast" => broadcast::run(mode).await,
        "throughput" => throughput::run(mode).await,
        "sync-cost" => Box::pin(sync_cost::run(mode)).await,
        "writer-cost" => writer_cost::run(mode).await,
        "access" => Box::pin(access::run(mode)).await,
        "memory" => memory::run(mode).await,
        "live-scale" => live_scale::run(mode).await,
        other => Err(format!("unknown scenario `{other}`").into()),
    }
}

/// A fresh, seeded database and a hub watching all of it.
pub struct Bench {
    /// The database.
    pub db: BenchDb,
    /// The hub.
    pub hub: Hub,
}

impl Bench {
    /// Creates database `rowsync_bench_<scenario>`, seeds it, then starts a hub capturing
    /// from `mode.source` (so the seeding fires no trigger); `configure` adjusts the hub.
    pub async fn start(
        scenario: &str,
        seeding: Seeding,
        mode: Mode,
        configure: impl FnOnce(HubBuilder) -> HubBuilder,
    ) -> BenchResult<Bench> {
        let name = format!("rowsync_bench_{}", scenario.replace('-', "_"));
        let db = BenchDb::create(&name).await?;
        db.seed(&seeding).await?;
        let builder = Hub::builder(db.url())
            .channel(CHANNEL)
            .watch::<Person>(WATCH);
        let hub = configure(mode.source.configure(builder, &name))
            .start()
            .await?;
        Ok(Bench { db, hub })
    }

    /// Stops the hub (nothing of rowsync runs afterwards) and makes sure the triggers the
    /// baselines listen to are installed; returns the plan their payloads decode with.
    pub async fn stop_hub(&self) -> BenchResult<CapturePlan> {
        self.hub.shutdown().await;
        // why a trigger hub started and stopped: it installs (or finds) the triggers and
        // their plan, whatever source the measured hub had; it leaves nothing running.
        let installer = Hub::builder(self.db.url())
            .channel(CHANNEL)
            .watch::<Person>(WATCH)
            .start()
            .await?;
        let plan = installer.plan().clone();
        installer.shutdown().await;
        Ok(plan)
    }

    /// Persons `1..=persons` with posts and tags: each person's id and posts.
    pub async fn holdings(&self, persons: i64) -> BenchResult<Vec<(i64, Vec<Post>)>> {
        let people = self
            .hub
            .query::<Person>()
            .filter(Filter::in_list("id", (1..=persons).collect::<Vec<i64>>()))
            .preload(WATCH)
            .all()
            .await?;
        Ok(people
            .into_iter()
            .map(|p| (p.id, p.posts.into_loaded().unwrap_or_default()))
            .collect())
    }

    /// Stops the hub and drops the database.
    pub async fn finish(self) -> BenchResult<()> {
        self.hub.shutdown().await;
        self.db.drop_database().await
    }
}

/// Waits for a fleet to handle `target` messages and notes on `report` what did not go to
/// plan (a deadline missed, resyncs, errors) under `system`. Stop the fleet only after the
/// measurement window closed: ending thousands of subscriptions is not part of a change.
pub async fn settle(
    fleet: &Fleet,
    target: u64,
    deadline: Duration,
    report: &mut Report,
    system: &str,
) {
    let reached = fleet.wait_applied(target, deadline).await;
    note_trouble(fleet, reached, target, report, system);
}

/// Notes a missed deadline, resyncs and errors of `fleet` on `report`.
pub fn note_trouble(fleet: &Fleet, reached: bool, target: u64, report: &mut Report, system: &str) {
    let probe = fleet.probe();
    if !reached {
        report.note(format!(
            "{system}: deadline passed with {} of {target} messages handled",
            probe.applied_count()
        ));
    }
    if probe.resync_count() > 0 {
        report.note(format!(
            "{system}: {} resyncs (subscribers fell behind and reloaded)",
            probe.resync_count()
        ));
    }
    let (errors, first) = probe.errors();
    if errors > 0 {
        report.note(format!(
            "{system}: {errors} errors, first: {}",
            first.unwrap_or_default()
        ));
    }
}

/// A small deterministic generator (xorshift64*), so runs change the same rows.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// A number in `1..=n`.
    pub fn one_to(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x % n.max(1) as u64) as i64 + 1
    }
}

/// The next message of `sub`, which must be a change (a resync would mean the measured work
/// is not what the scenario set up).
pub(super) async fn next_change(sub: &mut rowsync::Subscription) -> BenchResult<rowsync::Message> {
    let message = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .map_err(|_| "no change arrived within 30 s")?
        .ok_or("the hub stopped")?;
    if let rowsync::Message::Resync(reason) = &message {
        return Err(format!("unexpected resync: {reason:?}").into());
    }
    Ok(message)
}
