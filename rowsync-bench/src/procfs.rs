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
    let fields = stat_fields(&text);
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The parent process of `pid` (field 4 of `/proc/<pid>/stat`).
pub fn parent_of(pid: u32) -> Option<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&text).get(1)?.parse().ok()
}

/// CPU time so far of process `parent` and of every process whose parent it is (a
/// PostgreSQL postmaster and its backends), by process id: each one's `schedstat`
/// (backends are single-threaded), and the time of the children `parent` reaped.
///
/// why children only: other PostgreSQL clusters may run on the machine.
pub fn children_cpu(parent: u32) -> ProcessTimes {
    let mut times = ProcessTimes {
        reaped_ns: reaped_children_ns(parent),
        ..ProcessTimes::default()
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return times;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != parent && parent_of(pid) != Some(parent) {
            continue;
        }
        // why skip unreadable ones: a process may end between the listing and the read.
        let Ok(text) = fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
        {
            times.alive.insert(pid, ns);
        }
    }
    times
}

/// `cutime + cstime` of `/proc/<pid>/stat`: the CPU time of the children `pid` waited for
/// (clock ticks of 10 ms).
fn reaped_children_ns(pid: u32) -> u64 {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let fields = stat_fields(&text);
    let ticks: u64 = [13, 14]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks * 10_000_000
}

/// CPU time of a process tree: each live process's, in nanoseconds, and what its root
/// reaped from children that ended.
#[derive(Debug, Clone, Default)]
pub struct ProcessTimes {
    alive: std::collections::HashMap<u32, u64>,
    reaped_ns: u64,
}

impl ProcessTimes {
    /// The sum of all.
    #[cfg(test)]
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.alive.values().sum::<u64>() + self.reaped_ns)
    }

    /// CPU time used between `earlier` and `self`. why not a difference of sums: a process
    /// that ended in between left the live sum with its whole time; its time shows in the
    /// reaped sum instead, less what it had used before `earlier`.
    pub fn since(&self, earlier: &ProcessTimes) -> Duration {
        let alive: u64 = self
            .alive
            .iter()
            .map(|(pid, now)| now.saturating_sub(earlier.alive.get(pid).copied().unwrap_or(0)))
            .sum();
        let ended_before: u64 = earlier
            .alive
            .iter()
            .filter(|(pid, _)| !self.alive.contains_key(pid))
            .map(|(_, ns)| ns)
            .sum();
        let reaped = self.reaped_ns.saturating_sub(earlier.reaped_ns);
        Duration::from_nanos((alive + reaped).saturating_sub(ended_before))
    }
}

/// The fields of a `/proc/<pid>/stat` line after the command name (state first).
fn stat_fields(text: &str) -> Vec<&str> {
    // why after ')': the command name may contain spaces.
    text.rsplit_once(')')
        .map_or_else(Vec::new, |(_, rest)| rest.split_whitespace().collect())
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
    use super::{children_cpu, cpu_time, memory, parent_of};

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

    #[test]
    fn reads_a_process_tree() {
        let me = std::process::id();
        let parent = parent_of(me).expect("a parent");
        assert!(children_cpu(parent).total() >= children_cpu(me).total());
        let before = children_cpu(me);
        assert!(before.total() > std::time::Duration::ZERO);
        assert!(children_cpu(me).since(&before) <= children_cpu(me).total());
    }
}
