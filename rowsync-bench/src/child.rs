//! Running one scenario in a fresh process of this binary.
//!
//! why: `memory` measures resident memory; in a process whose heap earlier scenarios grew
//! and freed, new allocations reuse freed pages and the growth does not show, and the
//! scenarios after it ran measurably slower on the heap it left (1M cached rows freed).

use std::process::{Command, Stdio};

use crate::scenarios::Mode;
use crate::BenchResult;

/// Runs `name` as `<this binary> <name> [--quick] --source <source>`, passing its results
/// through to stdout;
/// returns its target verdict lines.
pub async fn run(name: &str, mode: Mode) -> BenchResult<Vec<String>> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.arg(name);
    if mode.quick {
        command.arg("--quick");
    }
    command.args(["--source", mode.source.name()]);
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    // why a blocking thread: the child runs for a while; the runtime stays free meanwhile.
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut verdicts = Vec::new();
    for line in text.lines() {
        if let Some(verdict) = line.strip_prefix("#   ") {
            verdicts.push(verdict.to_owned());
        } else if !line.starts_with("# machine") && !line.starts_with("# targets") {
            println!("{line}");
        }
    }
    if !output.status.success() {
        return Err(format!(
            "scenario {name} failed in its own process ({})",
            output.status
        )
        .into());
    }
    Ok(verdicts)
}
