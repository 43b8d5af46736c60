//! `rowsync-bench`: rowsync measured against its baselines (naive reload, per-subscriber
//! fetch, bare listener, capture + one read) in one process and one run.
//!
//! ```text
//! cargo run --release -p rowsync-bench -- <scenario> [--quick] [--source triggers|replication]
//! ```
//!
//! Scenarios: stampede, partitioned, broadcast, throughput, sync-cost, writer-cost, access,
//! memory, live-scale, all. Each prints a table and one JSON line per result, naming the
//! capture source of the hub (`--source`, triggers by default). The database is a throwaway
//! PostgreSQL cluster, or the server of `DATABASE_URL` (replication needs `wal_level =
//! logical` there); each scenario uses a fresh database of its own.

mod baselines;
mod child;
mod db;
mod fleet;
mod measure;
mod procfs;
mod report;
mod scenarios;
mod schema;
mod stats;
mod subscriber;
mod writer;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use scenarios::{Mode, Source, NAMES};

/// Errors of the bench: shown to the user, then the process exits non-zero.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Results of the bench.
pub type BenchResult<T> = Result<T, BenchError>;

const USAGE: &str = "usage: rowsync-bench <stampede|partitioned|broadcast|throughput|sync-cost|writer-cost|access|memory|live-scale|all> [--quick] [--source triggers|replication]";

/// The command line: which scenarios, full or quick.
#[derive(Debug, PartialEq)]
struct Args {
    scenarios: Vec<&'static str>,
    mode: Mode,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut scenarios = None;
    let mut quick = false;
    let mut source = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--source" if source.is_none() => {
                let name = args.next().unwrap_or_default();
                source = Some(Source::parse(&name).ok_or_else(|| {
                    format!("unknown source `{name}`: use `triggers` or `replication`")
                })?);
            }
            "-h" | "--help" => return Err(String::new()),
            "all" if scenarios.is_none() => scenarios = Some(NAMES.to_vec()),
            name if scenarios.is_none() => match NAMES.iter().find(|n| **n == name) {
                Some(n) => scenarios = Some(vec![*n]),
                None => return Err(format!("unknown scenario `{name}`")),
            },
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let scenarios = scenarios.ok_or_else(|| "no scenario given".to_owned())?;
    Ok(Args {
        scenarios,
        mode: Mode {
            quick,
            source: source.unwrap_or(Source::Triggers),
        },
    })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("rowsync-bench: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // why a long keep-alive: CPU time is summed over live threads (procfs.rs); a blocking
    // thread that exited would take its CPU time out of the sum.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rowsync-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // why the chain: a driver error says "db error"; its source says what went wrong.
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("rowsync-bench: {text}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> BenchResult<()> {
    let mode_name = if args.mode.quick { "quick" } else { "full" };
    let source = args.mode.source.name();
    report::set_source(source);
    let version = db::server_version().await?;
    println!(
        "# machine: {}, PostgreSQL {version}, source: {source}",
        procfs::machine()
    );
    let mut verdicts = Vec::new();
    let several = args.scenarios.len() > 1;
    for name in args.scenarios {
        eprintln!("rowsync-bench: {name} ({mode_name}, {source}) ...");
        let started = Instant::now();
        if several && matches!(name, "memory" | "live-scale") {
            verdicts.extend(child::run(name, args.mode).await?);
            continue;
        }
        let reports = scenarios::run(name, args.mode).await?;
        for report in &reports {
            report.print();
            if let Some(t) = report.target_verdict() {
                verdicts.push(format!(
                    "{name}: {} -> {} ({})",
                    t.goal,
                    if t.met { "MET" } else { "MISSED" },
                    t.measured
                ));
            }
        }
        eprintln!(
            "rowsync-bench: {name} done in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    println!("# targets");
    for verdict in verdicts {
        println!("#   {verdict}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn args(list: &[&str]) -> Result<super::Args, String> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_scenarios_and_quick() {
        let a = args(&["stampede", "--quick"]).unwrap();
        assert_eq!(a.scenarios, ["stampede"]);
        assert!(a.mode.quick);
        assert_eq!(a.mode.source, super::Source::Triggers);
        let a = args(&["--source", "replication", "throughput"]).unwrap();
        assert_eq!(a.mode.source, super::Source::Replication);
        assert!(args(&["all", "--source", "nope"]).is_err());
        assert!(args(&["all", "--source"]).is_err());
        assert_eq!(args(&["all"]).unwrap().scenarios.len(), 9);
        assert!(args(&["nope"]).is_err());
        assert!(args(&[]).is_err());
        assert!(args(&["memory", "memory"]).is_err());
    }
}
