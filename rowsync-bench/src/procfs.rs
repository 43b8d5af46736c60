//! What the process costs, from `/proc/self`: CPU time and resident memory.
//!
//! why /proc and not getrusage: the workspace forbids `unsafe`, and `libc::getrusage` needs
//! it. `/proc/self/task/*/schedstat` gives each thread's run time in nanoseconds; the
//! runtime keeps its threads alive for the whole run (see `main.rs`), so the sum only grows.

use std::collections::HashSet;
use std::fs;
use std::sync::Mutex;
use std::time::Duration;

/// Threads left out of [`cpu_time`], by their `/proc/self/task` entry name (the thread id).
static EXCLUDED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Leaves the calling thread out of [`cpu_time`] (the writer's thread: its cost is not
/// rowsync's).
pub fn exclude_this_thread() {
    // why /proc/thread-self: it names the thread id without a syscall wrapper (no `unsafe`).
    let Ok(link) = fs::read_link("/proc/thread-self") else {
        return;
    };
    if let Some(tid) = link.file_name().and_then(|t| t.to_str()) {
        EXCLUDED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(tid.to_owned());
    }
}

/// CPU time used by every thread of the process so far (user + system), less the threads
/// left out with [`exclude_this_thread`].
pub fn cpu_time() -> Duration {
    schedstat_total().unwrap_or_else(stat_total)
}

/// Sum of the first field (ns on CPU) of each thread's `schedstat`.
fn schedstat_total() -> Option<Duration> {
    let excluded = EXCLUDED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut total: u64 = 0;
    for entry in fs::read_dir("/proc/self/task").ok()? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if excluded
            .as_ref()
            .is_some_and(|set| name.to_str().is_some_and(|n| set.contains(n)))
        {
            continue;
        }
        // why skip unreadable threads: one may end between the listing and the read.
        let Ok(text) = fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// `utime + stime` of `/proc/self/stat` in clock ticks (100 per second on Linux): coarser,
/// the fallback when schedstat is missing (it includes excluded threads).
fn stat_total() -> Duration {
    let Ok(text) = fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // why after ')': the command name may contain spaces.
    let Some((_, rest)) = text.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The machine in one line: CPUs, memory and CPU model (`/proc/cpuinfo`, `/proc/meminfo`).
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB memory",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

/// Resident memory now and at its peak, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmRSS`.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident set since the process started.
    pub peak_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/self/status`.
pub fn memory() -> Memory {
    let text = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    use super::{cpu_time, memory};

    #[test]
    fn reads_cpu_and_memory() {
        let before = cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_time() > before);
        let m = memory();
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib);
    }
}
