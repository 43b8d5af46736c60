//! Access contexts: one change of a row that 1,000 subscribers hold, the subscribers spread
//! over 1 / 10 / 100 contexts (a role and `app.tenant_id`, under a row-level security
//! policy), or with no context at all (0). rowsync reads the row once per context
//! concerned; the per-subscriber check baseline (what a system checking visibility per
//! subscriber does) reads it once per subscriber, each under that subscriber's context.
//! rowsync is measured at every context count first; the hub is then stopped and the
//! baselines run with nothing of rowsync alive, on a pool of their own.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use rowsync::{Access, Db, Subscription, NO_PRELOADS};

use super::{Bench, Mode};
use crate::db::{open, Seed, Seeding};
use crate::measure::Window;
use crate::report::{round, Report};
use crate::schema::Tag;
use crate::stats::us;
use crate::writer::Writer;
use crate::BenchResult;

/// The role subscribers act as (no superuser: the policy binds it).
const ROLE: &str = "rowsync_bench_tenant";
/// How many checks the baseline runs at once (its connection pool's size).
const CHECKS_AT_ONCE: usize = 16;

/// Runs the scenario.
pub async fn run(mode: Mode) -> BenchResult<Vec<Report>> {
    let subscribers: usize = mode.pick(200, 1_000);
    let changes: usize = mode.pick(3, 10);
    let seed = Seed {
        persons: 1,
        posts_per_person: 1,
        tags: 10,
        tags_per_post: 1,
    };
    let bench = Bench::start("access", Seeding::Uniform(seed), mode, |b| b).await?;
    policies(&bench).await?;
    let writer = Writer::connect(bench.db.url()).await?;
    let mut runs = Vec::new();
    let mut version = 0usize;
    for contexts in [0usize, 1, 10, 100] {
        eprintln!("  access: {subscribers} subscribers over {contexts} contexts");
        let mut report = Report::new("access");
        report
            .param("subscribers", subscribers as u64)
            .param("contexts", contexts as u64)
            .param("changes", changes as u64);
        // no context: every subscriber as the hub's own role
        let accesses: Vec<Option<Access>> = (0..subscribers)
            .map(|i| (contexts > 0).then(|| tenant(i % contexts)))
            .collect();
        let mut held = Vec::with_capacity(subscribers);
        for access in &accesses {
            let (tags, sub) = match access {
                Some(access) => (
                    bench
                        .hub
                        .query::<Tag>()
                        .access(access.clone())
                        .all()
                        .await?,
                    bench
                        .hub
                        .subscribe_table_as::<Tag>(access, NO_PRELOADS)
                        .await?,
                ),
                None => (
                    bench.hub.query::<Tag>().all().await?,
                    bench.hub.subscribe_table::<Tag>(NO_PRELOADS)?,
                ),
            };
            held.push((tags, sub));
        }

        // rowsync: every subscriber syncs every change
        let loads_before = bench.hub.stats().rows_loaded;
        let window = Window::open(&bench.db).await?;
        for _ in 0..changes {
            rename_tag(&writer, &mut version).await?;
            for (tags, sub) in &mut held {
                sync_next(sub, tags).await?;
            }
        }
        let measured = window.close(&bench.db).await?;
        let loads = bench.hub.stats().rows_loaded - loads_before;
        let expected = format!("v{version}");
        if held
            .iter()
            .any(|(tags, _)| !tags.iter().any(|t| t.id == 1 && t.name == expected))
        {
            report.note("rowsync: a subscriber missed the last change");
        }
        drop(held);
        report
            .rowsync("reads_per_change", per_change(measured.reads.rows, changes))
            .rowsync("hub_loads_per_change", per_change(loads, changes))
            .rowsync("cpu_us_per_change", cpu_per_change(measured.cpu, changes));
        runs.push((report, contexts, accesses, measured.reads.rows));
    }

    // why here: nothing of rowsync runs while the baselines do (see `Bench::stop_hub`)
    bench.stop_hub().await?;
    let checks = Db::connect(bench.db.url())?;
    let mut reports = Vec::new();
    for (mut report, contexts, accesses, reads) in runs {
        // baseline: a change reaches every subscriber, who checks it under its own context
        let window = Window::open(&bench.db).await?;
        for _ in 0..changes {
            rename_tag(&writer, &mut version).await?;
            per_subscriber_check(&checks, &accesses).await?;
        }
        let baseline = window.close(&bench.db).await?;
        report
            .baseline(
                "per_subscriber_check",
                "reads_per_change",
                per_change(baseline.reads.rows, changes),
            )
            .baseline(
                "per_subscriber_check",
                "cpu_us_per_change",
                cpu_per_change(baseline.cpu, changes),
            );
        let reads = reads as f64 / changes as f64;
        report.target(
            format!(
                "at most one read per context per change ({contexts} contexts; none: one read)"
            ),
            reads <= contexts.max(1) as f64,
            format!(
                "{reads:.1} reads per change; the per-subscriber check {:.1}",
                baseline.reads.rows as f64 / changes as f64
            ),
        );
        reports.push(report);
    }
    bench.finish().await?;
    Ok(reports)
}

fn per_change(n: u64, changes: usize) -> f64 {
    round(n as f64 / changes as f64)
}

fn cpu_per_change(cpu: Duration, changes: usize) -> f64 {
    round(us(cpu) / changes as f64)
}

/// The role, a policy on `tags` (shared tags, tenant NULL, are everyone's; others their
/// tenant's) and the grants.
async fn policies(bench: &Bench) -> BenchResult<()> {
    let (client, connection) = open(bench.db.url()).await?;
    client
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {ROLE} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT SELECT ON tags TO {ROLE};
             ALTER TABLE tags ADD COLUMN tenant_id bigint;
             UPDATE tags SET tenant_id = id WHERE id > 1;
             ALTER TABLE tags ENABLE ROW LEVEL SECURITY;
             CREATE POLICY tenant ON tags USING (tenant_id IS NULL
                 OR tenant_id = current_setting('app.tenant_id')::bigint);"
        ))
        .await?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

fn tenant(n: usize) -> Access {
    Access::new()
        .role(ROLE)
        .setting("app.tenant_id", (n + 1).to_string())
}

/// Waits for the next change of `sub` and syncs it into `tags`.
/// The change every round makes: tag 1 renamed to the next version.
async fn rename_tag(writer: &Writer, version: &mut usize) -> BenchResult<()> {
    *version += 1;
    writer
        .execute(&format!("UPDATE tags SET name = 'v{version}' WHERE id = 1"))
        .await
}

async fn sync_next(sub: &mut Subscription, tags: &mut Vec<Tag>) -> BenchResult<()> {
    let message = super::next_change(sub).await?;
    sub.sync(tags, &message).await?;
    Ok(())
}

/// Every subscriber reads the changed row under its own context, on a pool of its own.
async fn per_subscriber_check(db: &Db, accesses: &[Option<Access>]) -> BenchResult<()> {
    let checks = stream::iter(accesses.iter().cloned())
        .map(|access| async move {
            match access {
                Some(access) => db.query::<Tag>().access(access).get(1i64).await,
                None => db.query::<Tag>().get(1i64).await,
            }
        })
        .buffer_unordered(CHECKS_AT_ONCE);
    let results: Vec<_> = checks.collect().await;
    for result in results {
        if result?.is_none() {
            return Err("a subscriber's check did not see the shared tag".into());
        }
    }
    Ok(())
}
