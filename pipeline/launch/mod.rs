//! Launchers: run one config as many processes, locally or on Slurm, over the engine's
//! rank contract.
//!
//! The engine stays single-process: `sluice run CONFIG --rank R --world-size N` processes
//! the input splits `i` with `i % N == R` and, when it has finished, writes the completion
//! marker `ranks/r<R:04>-of-<N:04>.done` in the run directory (after its shards). A
//! launcher only decides *which* units still have to run and starts them; everything it
//! knows about progress comes from those markers, so a launcher can die, be re-run, or be
//! swapped (local processes today, Slurm tomorrow) without losing work.
//!
//! A run is a list of [`Phase`]s, each a number of independent units (ranks). Phase `k+1`
//! starts only when every unit of phase `k` is done. A config without a multi-phase stage
//! is a single phase, `run`, with one unit per rank; a config with one runs the phases the
//! stage declares first ([`crate::phases`]), so no launcher names any stage.
//!
//! * [`local`]: `sluice run CONFIG --local-tasks N` runs the phases as N child processes of
//!   the same binary on this machine, with per-rank logs, skipping units already done.
//! * [`slurm`]: `sluice slurm submit|status|resume` writes one sbatch job array per phase,
//!   chained with `afterok`, and reads the same markers back.

pub mod local;
pub mod remote;
#[cfg(feature = "cloud")]
pub mod slurm;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::phases;
use crate::storage;

/// What to run: a config, a run directory and a rank count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSpec {
    /// Absolute path of the config file.
    pub config: PathBuf,
    /// Run directory: an absolute local path or an object-store URL.
    pub out: String,
    /// Number of ranks (units per phase).
    pub tasks: usize,
    /// The `sluice` binary the units run (absolute path).
    pub sluice: PathBuf,
    /// Worker threads per unit (`--threads`); `None` leaves the engine's default.
    #[serde(default)]
    pub threads: Option<usize>,
}

/// One phase of a run: `units` independent processes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    /// Phase name, used in job names, scripts and logs.
    pub name: String,
    /// Independent units (ranks) in this phase.
    pub units: usize,
}

/// Make a path absolute against the current directory (units may run elsewhere).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    Ok(cwd.join(p))
}

/// Normalise a run directory argument: URLs are kept, local paths made absolute.
pub fn absolute_out(out: &str) -> Result<String> {
    if storage::is_remote(out) {
        Ok(out.trim_end_matches('/').to_string())
    } else {
        Ok(absolute(Path::new(out))?.to_string_lossy().into_owned())
    }
}

impl RunSpec {
    /// Build a spec from CLI arguments (paths made absolute, binary = this executable).
    pub fn new(config: &Path, out: &str, tasks: usize, threads: Option<usize>) -> Result<RunSpec> {
        if tasks == 0 {
            return Err(Error::msg("--tasks must be at least 1"));
        }
        if !config.is_file() {
            return Err(Error::msg(format!(
                "config not found: {}",
                config.display()
            )));
        }
        let sluice = std::env::current_exe().map_err(|e| Error::io("current_exe", e))?;
        Ok(RunSpec {
            config: absolute(config)?,
            out: absolute_out(out)?,
            tasks,
            sluice,
            threads,
        })
    }

    /// The config's multi-phase stage, if any (see [`crate::phases`]). A config that does
    /// not load has none here; its units then fail with the config's problems.
    pub fn phase_plan(&self) -> Option<phases::Plan> {
        let spec = crate::config::load(&self.config).ok()?;
        phases::plan(&spec, self.tasks).ok().flatten()
    }

    /// The phases of this run. A config without a multi-phase stage is one phase, `run`,
    /// of `tasks` ranks; otherwise the stage's phases come first (their names and unit
    /// counts are the stage's), then `run`.
    pub fn phases(&self) -> Vec<Phase> {
        match self.phase_plan() {
            Some(plan) => plan
                .schedule(self.tasks)
                .into_iter()
                .map(|p| Phase {
                    name: p.name,
                    units: p.units,
                })
                .collect(),
            None => vec![Phase {
                name: phases::RUN.to_string(),
                units: self.tasks,
            }],
        }
    }

    /// Arguments (after the binary) that run one unit of a phase.
    pub fn unit_args(&self, phase: &Phase, unit: usize) -> Vec<String> {
        let mut a = vec![
            "run".to_string(),
            self.config.to_string_lossy().into_owned(),
            "--out".to_string(),
            self.out.clone(),
            "--rank".to_string(),
            unit.to_string(),
            "--world-size".to_string(),
            self.tasks.to_string(),
        ];
        if phase.name != phases::RUN || self.phase_plan().is_some() {
            a.push("--phase".to_string());
            a.push(phase.name.clone());
        }
        if let Some(t) = self.threads {
            a.push("--threads".to_string());
            a.push(t.to_string());
        }
        a
    }

    /// The completion marker of one unit (written by the engine or the multi-phase stage
    /// after its outputs).
    pub fn unit_marker(&self, phase: &Phase, unit: usize) -> String {
        if phase.name != phases::RUN && !storage::is_remote(&self.out) {
            if let Some(m) = self
                .phase_plan()
                .and_then(|p| p.marker(Path::new(&self.out), &phase.name, unit, self.tasks))
            {
                return m.to_string_lossy().into_owned();
            }
        }
        storage::join(
            &self.out,
            &format!("ranks/r{:04}-of-{:04}.done", unit, self.tasks),
        )
    }

    /// Whether a unit has finished. A rank of the `run` phase (local or object-store run
    /// directory) counts as finished only while its outputs and recorded inputs check out
    /// ([`crate::rundir::rank_done`]), so a damaged rank or one with changed inputs is
    /// started again (and the engine then redoes or refuses it).
    pub fn unit_done(&self, phase: &Phase, unit: usize) -> Result<bool> {
        if phase.name == phases::RUN {
            return Ok(crate::rundir::rank_done(&self.out, unit, self.tasks));
        }
        storage::exists(&self.unit_marker(phase, unit))
    }

    /// Units of a phase that have not finished, in order.
    pub fn pending_units(&self, phase: &Phase) -> Result<Vec<usize>> {
        let mut v = Vec::new();
        for u in 0..phase.units {
            if !self.unit_done(phase, u)? {
                v.push(u);
            }
        }
        Ok(v)
    }
}

/// Compress a sorted unit list to Slurm's array syntax: `0-3,5,7-9`.
pub fn array_spec(units: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let start = units[i];
        let mut end = start;
        while i + 1 < units.len() && units[i + 1] == end + 1 {
            i += 1;
            end = units[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_spec_compresses_ranges() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[1, 3]), "1,3");
        assert_eq!(array_spec(&[0, 1, 2, 5, 7, 8, 9]), "0-2,5,7-9");
        assert_eq!(array_spec(&[4]), "4");
        assert_eq!(array_spec(&[]), "");
    }

    #[test]
    fn unit_args_and_markers_follow_the_rank_contract() {
        let spec = RunSpec {
            config: "/c/x.yaml".into(),
            out: "s3://b/run".into(),
            tasks: 7,
            sluice: "/bin/sluice".into(),
            threads: Some(2),
        };
        let ph = &spec.phases()[0];
        assert_eq!(ph.units, 7);
        assert_eq!(
            spec.unit_args(ph, 3).join(" "),
            "run /c/x.yaml --out s3://b/run --rank 3 --world-size 7 --threads 2"
        );
        assert_eq!(
            spec.unit_marker(ph, 3),
            "s3://b/run/ranks/r0003-of-0007.done"
        );
    }
}
