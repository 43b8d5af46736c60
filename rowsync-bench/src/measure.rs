//! A measurement window: wall time, process CPU time, the server's CPU time and the
//! database reads served between opening and closing it.

use std::time::{Duration, Instant};

use crate::db::{BenchDb, Reads};
use crate::procfs::{cpu_time, ProcessTimes};
use crate::report::{round, Report};
use crate::stats::us;
use crate::BenchResult;

/// An open window.
pub struct Window {
    started: Instant,
    cpu: Duration,
    server_cpu: Option<ProcessTimes>,
}

/// What a window measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall time.
    pub wall: Duration,
    /// CPU time of this process (every thread but the writer's: hub, subscribers,
    /// baselines).
    pub cpu: Duration,
    /// CPU time of the PostgreSQL server's processes (backends, the writer's included, WAL
    /// senders, background workers); `None` when `/proc` does not show the server.
    pub server_cpu: Option<Duration>,
    /// What the server read on the bench tables (`pg_stat_statements`).
    pub reads: Reads,
}

impl Window {
    /// Resets the server's statement counts and starts the clocks.
    pub async fn open(db: &BenchDb) -> BenchResult<Window> {
        db.reset_reads().await?;
        Ok(Window {
            started: Instant::now(),
            cpu: cpu_time(),
            server_cpu: db.server_cpu(),
        })
    }

    /// When the window opened.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops the clocks and reads the server's statement counts.
    pub async fn close(self, db: &BenchDb) -> BenchResult<Measured> {
        let wall = self.started.elapsed();
        let cpu = cpu_time().saturating_sub(self.cpu);
        let server_cpu = match (db.server_cpu(), &self.server_cpu) {
            (Some(end), Some(start)) => Some(end.since(start)),
            _ => None,
        };
        let reads = db.reads().await?;
        Ok(Measured {
            wall,
            cpu,
            server_cpu,
            reads,
        })
    }
}

impl Measured {
    /// The server's CPU time per change in microseconds, if it was measured.
    pub fn server_us_per_change(&self, changes: usize) -> Option<f64> {
        self.server_cpu
            .map(|cpu| round(us(cpu) / changes.max(1) as f64))
    }

    /// Records rows and statements read per change and the server's CPU per change of
    /// `system` (rowsync: `None`) on `report`.
    pub fn record_reads(&self, report: &mut Report, system: Option<&str>, changes: usize) {
        let k = changes.max(1) as f64;
        report
            .figure(
                system,
                "rows_read_per_change",
                round(self.reads.rows as f64 / k),
            )
            .figure(
                system,
                "statements_per_change",
                round(self.reads.statements as f64 / k),
            );
        if let Some(server) = self.server_us_per_change(changes) {
            report.figure(system, "server_cpu_us_per_change", server);
        }
    }
}
