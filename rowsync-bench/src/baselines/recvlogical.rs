//! `pg_recvlogical` decoding the same workload with pgoutput: the physical limit of logical
//! decoding on this machine (the server's WAL sender decodes, the client only receives).
//!
//! Run on a backlog committed first: a slot is created before the writes, then
//! `pg_recvlogical --start --endpos=<LSN after the writes>` receives everything and exits;
//! the rate is the changes over its run time (connection and start-up included: a few ms).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::db::BenchDb;
use crate::BenchResult;

/// Slot and publication of the measurement (dropped after each run).
const SLOT: &str = "rowsync_bench_recvlogical";

/// The tables the publication carries: the bench's.
const TABLES: &str = "persons, posts, tags, posts_tags";

/// A slot waiting for a backlog.
pub struct Recvlogical {
    binary: std::path::PathBuf,
}

impl Recvlogical {
    /// Finds `pg_recvlogical` (`pg_config --bindir`, then `PATH`) and creates the slot and
    /// publication on `db`; the changes written after this call are what [`Self::drain`]
    /// decodes.
    pub async fn prepare(db: &BenchDb) -> BenchResult<Recvlogical> {
        let binary = bindir().join("pg_recvlogical");
        db.execute(&format!(
            "DROP PUBLICATION IF EXISTS \"{SLOT}\"; CREATE PUBLICATION \"{SLOT}\" FOR TABLE {TABLES}"
        ))
        .await?;
        db.execute(&format!(
            "SELECT pg_create_logical_replication_slot('{SLOT}', 'pgoutput')"
        ))
        .await?;
        Ok(Recvlogical { binary })
    }

    /// Decodes everything written since [`Self::prepare`] up to the server's current WAL
    /// position, then drops the slot; returns how long `pg_recvlogical` ran.
    pub async fn drain(self, db: &BenchDb, deadline: Duration) -> BenchResult<Duration> {
        let end = db.wal_lsn().await?;
        let mut command = Command::new(&self.binary);
        command
            .args(["--start", "--no-loop", "-S", SLOT, "-f", "/dev/null"])
            .args(["-o", "proto_version=1", "-o"])
            .arg(format!("publication_names={SLOT}"))
            .arg(format!("--endpos={end}"))
            .args(["-d", db.url()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        // why a blocking thread: the workspace's tokio has no `process` feature.
        let child = tokio::task::spawn_blocking(move || command.output());
        let output = tokio::time::timeout(deadline, child).await;
        let elapsed = started.elapsed();
        let drop_slot = db
            .execute(&format!("SELECT pg_drop_replication_slot('{SLOT}')"))
            .await;
        let output = output.map_err(|_| "pg_recvlogical: deadline passed")???;
        if !output.status.success() {
            return Err(format!(
                "pg_recvlogical failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        drop_slot?;
        Ok(elapsed)
    }
}

/// `pg_recvlogical` following the slot as changes come (a consumer of the stream, for the
/// writers' cost), until stopped.
pub struct Following {
    child: std::process::Child,
}

impl Recvlogical {
    /// Starts `pg_recvlogical` on the slot, writing what it receives to `/dev/null`.
    pub fn follow(self, db: &BenchDb) -> BenchResult<Following> {
        let child = Command::new(&self.binary)
            .args(["--start", "-S", SLOT, "-f", "/dev/null", "-s", "1"])
            .args(["-o", "proto_version=1", "-o"])
            .arg(format!("publication_names={SLOT}"))
            .args(["-d", db.url()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Following { child })
    }
}

impl Following {
    /// Stops `pg_recvlogical` and drops its slot and publication.
    pub async fn stop(mut self, db: &BenchDb) -> BenchResult<()> {
        let _ = self.child.kill();
        // why a blocking thread: waiting for the process blocks.
        let _ = tokio::task::spawn_blocking(move || self.child.wait()).await;
        // why retried: the WAL sender may hold the slot for a moment after its client went
        for _ in 0..50 {
            let dropped = db
                .execute(&format!(
                    "SELECT pg_drop_replication_slot('{SLOT}') FROM pg_replication_slots
                     WHERE slot_name = '{SLOT}'"
                ))
                .await;
            if dropped.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        db.execute(&format!("DROP PUBLICATION IF EXISTS \"{SLOT}\""))
            .await
    }
}

/// PostgreSQL's binaries: `pg_config --bindir`, else the newest Debian server directory,
/// else the `PATH` (an empty path).
pub fn bindir() -> std::path::PathBuf {
    let from_pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|dir| std::path::Path::new(dir).join("pg_recvlogical").exists());
    if let Some(dir) = from_pg_config {
        return dir.into();
    }
    let mut debian: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|dir| dir.join("pg_recvlogical").exists())
        .collect();
    debian.sort();
    debian.pop().unwrap_or_default()
}
