//! A measurement window: wall time, process CPU time and the database reads served between
//! opening and closing it.

use std::time::{Duration, Instant};

use crate::db::BenchDb;
use crate::procfs::cpu_time;
use crate::BenchResult;

/// An open window.
pub struct Window {
    started: Instant,
    cpu: Duration,
}

/// What a window measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall time.
    pub wall: Duration,
    /// CPU time of this process (every thread: hub, subscribers, writer, baselines).
    pub cpu: Duration,
    /// SELECT statements on the bench tables the server executed (`pg_stat_statements`).
    pub reads: u64,
}

impl Window {
    /// Resets the server's statement counts and starts the clocks.
    pub async fn open(db: &BenchDb) -> BenchResult<Window> {
        db.reset_reads().await?;
        Ok(Window {
            started: Instant::now(),
            cpu: cpu_time(),
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
        let reads = db.reads().await?;
        Ok(Measured { wall, cpu, reads })
    }
}
