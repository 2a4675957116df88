//! The local launcher: `sluice run CONFIG --local-tasks N`.
//!
//! Runs every phase of a [`RunSpec`] as child processes of this binary (the same command
//! lines a Slurm array task runs), at most `max_running` at a time, each with its own log
//! `<logs>/<phase>-r<rank:04>.log` (appended, so a re-run keeps the history). Units whose
//! completion marker exists are skipped, so re-running the same command resumes. A phase
//! starts only when the previous one has fully finished; if any unit fails, the launcher
//! lets the others of that phase finish, then fails naming the failed ranks and their logs.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::RunSpec;
use crate::error::{Error, Result};

/// Where per-unit logs go: `<out>/logs` for a local run directory; for an object-store
/// run directory, `$TMPDIR/sluice-logs/<hash of the URL>`.
pub fn log_dir(spec: &RunSpec) -> PathBuf {
    if crate::storage::is_remote(&spec.out) {
        let h = xxhash_rust::xxh3::xxh3_64(spec.out.as_bytes());
        std::env::temp_dir()
            .join("sluice-logs")
            .join(format!("{h:016x}"))
    } else {
        Path::new(&spec.out).join("logs")
    }
}

/// Run all phases locally. Returns the number of units that ran (skipped ones excluded).
pub fn run(spec: &RunSpec, max_running: usize) -> Result<usize> {
    let logs = log_dir(spec);
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let max_running = max_running.max(1);
    let mut ran = 0;
    for phase in spec.phases() {
        let todo = spec.pending_units(&phase)?;
        if todo.is_empty() {
            tracing::info!(
                "phase {}: all {} units already done",
                phase.name,
                phase.units
            );
            continue;
        }
        tracing::info!(
            "phase {}: running {} of {} units, {} at a time",
            phase.name,
            todo.len(),
            phase.units,
            max_running
        );
        let mut queue: VecDeque<usize> = todo.into_iter().collect();
        let mut running: Vec<(usize, Child, PathBuf)> = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        while !queue.is_empty() || !running.is_empty() {
            while running.len() < max_running {
                let Some(u) = queue.pop_front() else { break };
                let log = logs.join(format!("{}-r{:04}.log", phase.name, u));
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .map_err(|e| Error::io(&log, e))?;
                let f2 = f.try_clone().map_err(|e| Error::io(&log, e))?;
                let child = Command::new(&spec.sluice)
                    .args(spec.unit_args(&phase, u))
                    .env("SLUICE_LAUNCHER", "local")
                    .stdin(Stdio::null())
                    .stdout(f)
                    .stderr(f2)
                    .spawn()
                    .map_err(|e| Error::io(&spec.sluice, e))?;
                running.push((u, child, log));
            }
            // Poll: children are few and long-lived, so a short sleep costs nothing.
            let mut i = 0;
            let mut progressed = false;
            while i < running.len() {
                let status = running[i]
                    .1
                    .try_wait()
                    .map_err(|e| Error::io(&running[i].2, e))?;
                if let Some(st) = status {
                    let (u, _, log) = running.swap_remove(i);
                    progressed = true;
                    ran += 1;
                    let done = spec.unit_done(&phase, u)?;
                    if !st.success() || !done {
                        failed.push(format!("rank {u} ({st}; log {})", log.display()));
                    }
                } else {
                    i += 1;
                }
            }
            if !progressed {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        if !failed.is_empty() {
            return Err(Error::msg(format!(
                "phase {}: {} unit(s) failed: {}; re-run the same command to resume",
                phase.name,
                failed.len(),
                failed.join(", ")
            )));
        }
    }
    Ok(ran)
}

/// `sluice run CONFIG --out OUT --local-tasks N [--threads T]`: N ranks, all running at
/// once; each gets `T` threads (default: the machine's cores divided among the ranks).
pub fn run_cli(config: &Path, out: &str, tasks: usize, threads: Option<usize>) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = threads.unwrap_or_else(|| (cores / tasks.max(1)).max(1));
    let spec = RunSpec::new(config, out, tasks, Some(threads))?;
    let ran = run(&spec, tasks)?;
    tracing::info!(
        "{} of {} ranks ran ({} already done); logs in {}",
        ran,
        tasks,
        tasks - ran.min(tasks),
        log_dir(&spec).display()
    );
    Ok(())
}
