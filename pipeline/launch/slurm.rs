//! Slurm: one sbatch job array per phase, chained with `afterok`.
//!
//! `sluice slurm submit CONFIG --tasks N --out DIR` writes, under the Slurm directory
//! (`DIR/slurm` by default; `--slurm-dir` when `DIR` is an object-store URL, since Slurm
//! needs a shared filesystem for scripts and logs):
//!
//! * `<phase>-<attempt>.sbatch`: a job array script, `--array=<units>%<max_running>`, whose
//!   task `$SLURM_ARRAY_TASK_ID` runs `sluice run CONFIG --out DIR --rank R --world-size N`;
//! * `logs/<phase>-r<rank:04>.log`: one log per rank, appended across attempts;
//! * `jobs.json`: the run spec, the sbatch options and every submission (job id, units),
//!   which `status` and `resume` read back.
//!
//! Progress comes from the engine's completion markers, never from Slurm's memory: a unit
//! is *done* when its marker exists (for the `run` phase in a local run directory, also
//! only while the outputs and inputs it records still check out, see
//! [`crate::rundir::rank_done`]). A requeued task whose previous attempt is still alive
//! (a node Slurm lost touch with) finds the rank's lock held and exits 75 without touching
//! anything; the live attempt finishes and writes the marker. Otherwise `squeue` says whether it is *running* or
//! *pending*; a unit that was submitted, left the queue and has no marker is *failed*
//! (without slurmdbd there is no `sacct`, so exit codes come from the rank's log); a unit
//! never submitted is *missing*. `resume` cancels jobs that can never start (an `afterok`
//! on a failed array) and resubmits only failed and missing units, with the same rank
//! count, so finished ranks are never redone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{array_spec, Phase, RunSpec};
use crate::error::{Error, Result};

/// sbatch options applied to every phase's job array.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SbatchOpts {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (Slurm syntax, e.g. `04:00:00`).
    pub time: Option<String>,
    /// `--mem` per task (Slurm syntax, e.g. `16G`).
    pub mem: Option<String>,
    /// `--cpus-per-task`; also passed to `sluice run --threads`.
    pub cpus_per_task: Option<usize>,
    /// Most array tasks running at once (`%M` in `--array`).
    pub max_running: Option<usize>,
    /// `--account`.
    pub account: Option<String>,
    /// Extra raw sbatch arguments, each written as one `#SBATCH` line.
    #[serde(default)]
    pub extra: Vec<String>,
    /// Job name prefix (default `sluice`).
    pub job_name: String,
}

/// One `sbatch` call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Submission {
    /// Phase name.
    pub phase: String,
    /// Slurm job id of the array.
    pub job_id: String,
    /// Array task ids (ranks) it covers.
    pub units: Vec<usize>,
    /// Script path.
    pub script: PathBuf,
    /// Job it waited on (`afterok`), if any.
    pub after: Option<String>,
}

/// Everything about a Slurm run, saved as `jobs.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlurmRun {
    /// What runs.
    pub spec: RunSpec,
    /// How it is submitted.
    pub opts: SbatchOpts,
    /// Slurm directory (scripts, logs, jobs.json).
    pub dir: PathBuf,
    /// Every submission so far, oldest first.
    pub submissions: Vec<Submission>,
}

/// The state of one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    /// Completion marker present.
    Done,
    /// Running in Slurm.
    Running,
    /// Queued in Slurm (possibly waiting on a dependency).
    Pending,
    /// Submitted, gone from the queue, no marker.
    Failed,
    /// Never submitted.
    Missing,
}

/// One unit's status line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnitStatus {
    /// Phase name.
    pub phase: String,
    /// Rank.
    pub unit: usize,
    /// State.
    pub state: UnitState,
    /// Slurm job id (`<array>_<task>`) when known.
    pub job: Option<String>,
    /// Slurm's pending reason, if pending.
    pub reason: Option<String>,
    /// The rank's log.
    pub log: PathBuf,
}

/// Default Slurm directory for a run directory.
pub fn default_dir(out: &str) -> Result<PathBuf> {
    if crate::storage::is_remote(out) {
        return Err(Error::msg(
            "the run directory is an object-store URL: pass --slurm-dir DIR on a filesystem shared by the nodes",
        ));
    }
    Ok(Path::new(out).join("slurm"))
}

fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=,+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl SlurmRun {
    /// Path of `jobs.json`.
    pub fn state_path(dir: &Path) -> PathBuf {
        dir.join("jobs.json")
    }

    /// Load a run from its Slurm directory, or from a run directory holding `slurm/jobs.json`.
    pub fn load(run: &Path) -> Result<SlurmRun> {
        let candidates = [Self::state_path(run), Self::state_path(&run.join("slurm"))];
        for p in &candidates {
            if p.is_file() {
                let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
                return Ok(serde_json::from_slice(&bytes)?);
            }
        }
        Err(Error::msg(format!(
            "{}: no jobs.json here or in slurm/ (was this run submitted with `sluice slurm submit`?)",
            run.display()
        )))
    }

    /// Save `jobs.json` atomically.
    pub fn save(&self) -> Result<()> {
        let p = Self::state_path(&self.dir);
        let s = serde_json::to_vec_pretty(self)?;
        crate::storage::put(&p.to_string_lossy(), &s)
    }

    /// Log path of a unit (matches the `#SBATCH --output` pattern).
    pub fn log_path(&self, phase: &str, unit: usize) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{phase}-r{unit:04}.log"))
    }

    /// The sbatch script for some units of a phase.
    pub fn render_script(&self, phase: &Phase, units: &[usize]) -> String {
        let o = &self.opts;
        let mut s = String::from("#!/bin/bash\n");
        let mut sb = |line: String| {
            s.push_str("#SBATCH ");
            s.push_str(&line);
            s.push('\n');
        };
        sb(format!("--job-name={}-{}", o.job_name, phase.name));
        let mut array = array_spec(units);
        if let Some(m) = o.max_running {
            array.push_str(&format!("%{m}"));
        }
        sb(format!("--array={array}"));
        sb(format!(
            "--output={}/logs/{}-r%4a.log",
            self.dir.display(),
            phase.name
        ));
        sb("--open-mode=append".to_string());
        sb("--ntasks=1".to_string());
        if let Some(p) = &o.partition {
            sb(format!("--partition={p}"));
        }
        if let Some(a) = &o.account {
            sb(format!("--account={a}"));
        }
        if let Some(t) = &o.time {
            sb(format!("--time={t}"));
        }
        if let Some(m) = &o.mem {
            sb(format!("--mem={m}"));
        }
        if let Some(c) = o.cpus_per_task {
            sb(format!("--cpus-per-task={c}"));
        }
        for e in &o.extra {
            sb(e.clone());
        }
        s.push_str("set -uo pipefail\n");
        s.push_str("rank=\"${SLURM_ARRAY_TASK_ID:?this script runs as a Slurm array task}\"\n");
        s.push_str(&format!(
            "echo \"sluice: phase {} rank $rank of {} on $(hostname) job ${{SLURM_ARRAY_JOB_ID:-?}}_${{rank}} start $(date -u +%FT%TZ)\"\n",
            phase.name, phase.units
        ));
        // The unit's command line, with the rank substituted at run time.
        let args = self.spec.unit_args(phase, usize::MAX);
        let rendered: Vec<String> = args
            .iter()
            .map(|a| {
                if a == &usize::MAX.to_string() {
                    "\"$rank\"".to_string()
                } else {
                    sh_quote(a)
                }
            })
            .collect();
        s.push_str(&format!(
            "{} {}\n",
            sh_quote(&self.spec.sluice.to_string_lossy()),
            rendered.join(" ")
        ));
        s.push_str("rc=$?\n");
        s.push_str("echo \"sluice: rank $rank exit $rc end $(date -u +%FT%TZ)\"\n");
        s.push_str("exit $rc\n");
        s
    }

    /// Write a script for `units` of `phase` and submit it (or, with `dry_run`, print it).
    /// `after` is the job id it must wait for (`afterok`). Returns the job id.
    fn submit_phase(
        &mut self,
        phase: &Phase,
        units: &[usize],
        after: Option<&str>,
        dry_run: bool,
    ) -> Result<String> {
        let attempt = self
            .submissions
            .iter()
            .filter(|s| s.phase == phase.name)
            .count();
        let script = self.dir.join(format!("{}-{}.sbatch", phase.name, attempt));
        let text = self.render_script(phase, units);
        let mut cmd = vec!["sbatch".to_string(), "--parsable".to_string()];
        if let Some(a) = after {
            cmd.push(format!("--dependency=afterok:{a}"));
        }
        cmd.push(script.to_string_lossy().into_owned());
        if dry_run {
            println!("# {}\n{}", script.display(), text);
            println!("# submit: {}\n", cmd.join(" "));
            return Ok(format!("<{}-job>", phase.name));
        }
        std::fs::create_dir_all(self.dir.join("logs")).map_err(|e| Error::io(&self.dir, e))?;
        crate::storage::put(&script.to_string_lossy(), text.as_bytes())?;
        let out = Command::new(&cmd[0])
            .args(&cmd[1..])
            .output()
            .map_err(|e| Error::msg(format!("cannot run sbatch (is Slurm installed?): {e}")))?;
        if !out.status.success() {
            return Err(Error::msg(format!(
                "sbatch failed for phase {}: {}",
                phase.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let job_id = stdout.trim().split(';').next().unwrap_or("").to_string();
        if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::msg(format!("sbatch printed no job id: {stdout:?}")));
        }
        self.submissions.push(Submission {
            phase: phase.name.clone(),
            job_id: job_id.clone(),
            units: units.to_vec(),
            script,
            after: after.map(str::to_string),
        });
        self.save()?;
        Ok(job_id)
    }

    /// Submit every unit that is not done yet, phase after phase. Returns job ids.
    pub fn submit(&mut self, dry_run: bool) -> Result<Vec<String>> {
        let mut after: Option<String> = None;
        let mut ids = Vec::new();
        for phase in self.spec.phases() {
            let units = self.spec.pending_units(&phase)?;
            if units.is_empty() {
                continue;
            }
            let id = self.submit_phase(&phase, &units, after.as_deref(), dry_run)?;
            ids.push(id.clone());
            after = Some(id);
        }
        Ok(ids)
    }

    /// Each unit's state from the markers and `squeue`.
    pub fn status(&self) -> Result<Vec<UnitStatus>> {
        let queue = squeue()?;
        let mut out = Vec::new();
        for phase in self.spec.phases() {
            for u in 0..phase.units {
                let log = self.log_path(&phase.name, u);
                let last = self
                    .submissions
                    .iter()
                    .rev()
                    .find(|s| s.phase == phase.name && s.units.contains(&u));
                let mut st = UnitStatus {
                    phase: phase.name.clone(),
                    unit: u,
                    state: UnitState::Missing,
                    job: last.map(|s| format!("{}_{}", s.job_id, u)),
                    reason: None,
                    log,
                };
                if self.spec.unit_done(&phase, u)? {
                    st.state = UnitState::Done;
                } else if let Some(sub) = last {
                    match queue.get(&(sub.job_id.clone(), u)) {
                        Some((state, reason)) => {
                            st.state = if matches!(
                                state.as_str(),
                                "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "SUSPENDED"
                            ) {
                                UnitState::Pending
                            } else {
                                UnitState::Running
                            };
                            if st.state == UnitState::Pending {
                                st.reason = Some(reason.clone());
                            }
                        }
                        None => st.state = UnitState::Failed,
                    }
                }
                out.push(st);
            }
        }
        Ok(out)
    }

    /// Resubmit failed and missing units (and cancel jobs that can never start).
    /// Returns the job ids submitted.
    pub fn resume(&mut self, dry_run: bool) -> Result<Vec<String>> {
        let status = self.status()?;
        // Jobs waiting on a dependency that failed will never run: cancel them so their
        // units are resubmitted with a fresh chain.
        // A unit still waiting on a dependency behind a phase that has failed or missing
        // units is dead too, even before Slurm marks it `DependencyNeverSatisfied` (that
        // takes a scheduler pass): its chain must be rebuilt after the resubmitted units.
        let mut dead: Vec<String> = Vec::new();
        let mut broken = false;
        for phase in self.spec.phases() {
            for s in status.iter().filter(|s| s.phase == phase.name) {
                let reason = s.reason.as_deref().unwrap_or("");
                if s.state == UnitState::Pending
                    && (reason == "DependencyNeverSatisfied"
                        || (broken && reason.starts_with("Dependency")))
                {
                    dead.extend(s.job.clone());
                }
            }
            broken |= status.iter().any(|s| {
                s.phase == phase.name && matches!(s.state, UnitState::Failed | UnitState::Missing)
            });
        }
        dead.sort();
        dead.dedup();
        let mut cancelled: Vec<(String, usize)> = Vec::new();
        if !dead.is_empty() && !dry_run {
            let o = Command::new("scancel")
                .args(&dead)
                .output()
                .map_err(|e| Error::msg(format!("cannot run scancel: {e}")))?;
            if !o.status.success() {
                return Err(Error::msg(format!(
                    "scancel failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
        }
        for s in &status {
            if let Some(j) = &s.job {
                if dead.contains(j) {
                    cancelled.push((s.phase.clone(), s.unit));
                }
            }
        }
        let mut after: Option<String> = None;
        let mut ids = Vec::new();
        for phase in self.spec.phases() {
            let mine: Vec<&UnitStatus> = status.iter().filter(|s| s.phase == phase.name).collect();
            let redo: Vec<usize> = mine
                .iter()
                .filter(|s| {
                    matches!(s.state, UnitState::Failed | UnitState::Missing)
                        || cancelled.contains(&(s.phase.clone(), s.unit))
                })
                .map(|s| s.unit)
                .collect();
            // Units still queued in this phase must finish before the next phase too.
            let active_job = mine
                .iter()
                .filter(|s| matches!(s.state, UnitState::Running | UnitState::Pending))
                .filter(|s| !cancelled.contains(&(s.phase.clone(), s.unit)))
                .filter_map(|s| {
                    s.job
                        .as_ref()
                        .and_then(|j| j.split('_').next().map(str::to_string))
                })
                .next();
            let mut deps: Vec<String> = after.iter().cloned().collect();
            if redo.is_empty() {
                if let Some(j) = active_job {
                    after = Some(j);
                }
                continue;
            }
            if let Some(j) = &active_job {
                // keep the next phase behind the still-running array as well
                deps.push(j.clone());
            }
            let dep = if deps.is_empty() {
                None
            } else {
                Some(deps.join(":"))
            };
            let id = self.submit_phase(&phase, &redo, dep.as_deref(), dry_run)?;
            ids.push(id.clone());
            after = Some(match active_job {
                Some(j) => format!("{id}:{j}"),
                None => id,
            });
        }
        Ok(ids)
    }
}

/// `(array job id, task id) -> (state, reason)` for every job in the queue.
fn squeue() -> Result<BTreeMap<(String, usize), (String, String)>> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i|%T|%r"])
        .output()
        .map_err(|e| Error::msg(format!("cannot run squeue (is Slurm installed?): {e}")))?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "squeue failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

/// Parse `squeue -h -r -o "%i|%T|%r"`: `123_4|RUNNING|None`, also `123_[5-7%2]|PENDING|..`.
pub fn parse_squeue(text: &str) -> BTreeMap<(String, usize), (String, String)> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.trim().split('|');
        let (Some(id), Some(state)) = (f.next(), f.next()) else {
            continue;
        };
        let reason = f.next().unwrap_or("").to_string();
        let Some((job, task)) = id.split_once('_') else {
            continue;
        };
        let task = task.trim_start_matches('[').trim_end_matches(']');
        let task = task.split('%').next().unwrap_or("");
        for part in task.split(',') {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<usize>(), b.parse::<usize>()),
                None => (part.parse::<usize>(), part.parse::<usize>()),
            };
            if let (Ok(a), Ok(b)) = (a, b) {
                for t in a..=b {
                    m.insert((job.to_string(), t), (state.to_string(), reason.clone()));
                }
            }
        }
    }
    m
}

/// Human-readable status table.
pub fn format_status(run: &SlurmRun, st: &[UnitStatus]) -> String {
    let mut s = format!(
        "run {} ({} ranks), config {}\n",
        run.spec.out,
        run.spec.tasks,
        run.spec.config.display()
    );
    for phase in run.spec.phases() {
        let mine: Vec<&UnitStatus> = st.iter().filter(|u| u.phase == phase.name).collect();
        let count = |k: UnitState| mine.iter().filter(|u| u.state == k).count();
        s.push_str(&format!(
            "phase {}: {} done, {} running, {} pending, {} failed, {} missing (of {})\n",
            phase.name,
            count(UnitState::Done),
            count(UnitState::Running),
            count(UnitState::Pending),
            count(UnitState::Failed),
            count(UnitState::Missing),
            phase.units
        ));
        for u in mine.iter().filter(|u| u.state != UnitState::Done) {
            s.push_str(&format!(
                "  rank {:>4}: {:?}{}{} log {}\n",
                u.unit,
                u.state,
                u.job
                    .as_ref()
                    .map(|j| format!(" job {j}"))
                    .unwrap_or_default(),
                u.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                u.log.display()
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> SlurmRun {
        SlurmRun {
            spec: RunSpec {
                config: "/data/cfg/zh web.yaml".into(),
                out: "/scratch/run1".into(),
                tasks: 8,
                sluice: "/opt/sluice/bin/sluice".into(),
                threads: Some(4),
            },
            opts: SbatchOpts {
                partition: Some("cpu".into()),
                time: Some("04:00:00".into()),
                mem: Some("16G".into()),
                cpus_per_task: Some(4),
                max_running: Some(3),
                account: None,
                extra: vec!["--qos=normal".into()],
                job_name: "sluice".into(),
            },
            dir: "/scratch/run1/slurm".into(),
            submissions: vec![],
        }
    }

    #[test]
    fn script_has_array_limits_logs_and_the_rank_contract() {
        let r = run();
        let ph = &r.spec.phases()[0];
        let s = r.render_script(ph, &[0, 1, 2, 3, 4, 5, 6, 7]);
        for want in [
            "#SBATCH --job-name=sluice-run\n",
            "#SBATCH --array=0-7%3\n",
            "#SBATCH --output=/scratch/run1/slurm/logs/run-r%4a.log\n",
            "#SBATCH --partition=cpu\n",
            "#SBATCH --time=04:00:00\n",
            "#SBATCH --mem=16G\n",
            "#SBATCH --cpus-per-task=4\n",
            "#SBATCH --qos=normal\n",
            "/opt/sluice/bin/sluice run '/data/cfg/zh web.yaml' --out /scratch/run1 --rank \"$rank\" --world-size 8 --threads 4\n",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        let resumed = r.render_script(ph, &[2, 5, 6]);
        assert!(resumed.contains("#SBATCH --array=2,5-6%3\n"), "{resumed}");
    }

    #[test]
    fn squeue_lines_expand_to_tasks() {
        let m = parse_squeue(
            "12_3|RUNNING|None\n13_[0-2,5%2]|PENDING|Dependency\n14|PENDING|Priority\n",
        );
        assert_eq!(m[&("12".to_string(), 3)].0, "RUNNING");
        for t in [0, 1, 2, 5] {
            assert_eq!(
                m[&("13".to_string(), t)],
                ("PENDING".to_string(), "Dependency".to_string())
            );
        }
        assert!(!m.contains_key(&("13".to_string(), 3)));
        assert_eq!(m.len(), 5);
    }
}
