//! Multi-phase ("global") stages: the contract between a stage that must see every rank's
//! documents and the engine, launchers and CLI, which run it without naming it.
//!
//! A node normally runs inside every rank of the `run` phase and sees only that rank's
//! documents. A stage whose decision depends on all ranks (distributed near-duplicate
//! removal is the first) declares a list of **phases** that run before `run`, each a
//! number of independent **units**:
//!
//! * [`PhaseDecl::name`]: the name launchers and `sluice run --phase NAME --rank U` use;
//!   it also names job arrays, sbatch scripts and logs (`logs/<phase>-r<U>.log`).
//! * [`PhaseDecl::units`]: how many units, given the world size: one per rank, a count the
//!   stage chooses (e.g. one per hash bucket), or one.
//! * [`PhaseDecl::work`]: who runs a unit. [`Work::Pipeline`]: the engine runs a pipeline
//!   the stage derives from the config ([`GlobalStage::phase_spec`], e.g. the node's
//!   upstream chain ending in an internal sink) as rank `U`, into a run directory under
//!   the stage's state dir, with the engine's own rank contract (marker, lock, skip).
//!   [`Work::Custom`]: the stage runs the unit itself ([`GlobalStage::run_unit`]).
//! * [`PhaseDecl::reads`] / [`PhaseDecl::writes`]: the files a unit reads and writes,
//!   relative to the stage's **state dir** ([`GlobalStage::state_dir`], inside the run
//!   directory), for the docs, logs and tests.
//!
//! The engine then runs the ordinary `run` phase (one unit per rank) over
//! [`GlobalStage::run_spec`] (by default the config unchanged; the stage's builder sees
//! the state dir through `BuildCtx::out_dir` and reads what the phases wrote).
//!
//! **Resume.** A unit is done when its marker exists ([`Plan::marker`]); a unit writes its
//! outputs atomically (temp file + rename), then its marker, so a unit killed at any point
//! leaves nothing that a later phase could read, and a rerun (`--local-tasks`, `sluice slurm
//! resume`) starts exactly the units without a marker. A unit of phase `k` refuses to start
//! until every unit of the phases before it is done ([`Plan::require_before`]).
//!
//! The registry lists the kinds that can be multi-phase ([`crate::registry::global`]);
//! [`plan`] asks each whether a config has such a node. At most one node per config may
//! be multi-phase, and its state dir must be on a local or shared filesystem.

use std::path::{Path, PathBuf};

use crate::config::PipelineSpec;
use crate::error::{Error, Result};

/// The engine's own phase: the whole DAG, one unit per rank. Always the last phase.
pub const RUN: &str = "run";

/// How many units a phase has, given the world size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// One per rank (`world_size` units).
    PerRank,
    /// A count the stage chose when it was planned (e.g. hash buckets); at least 1.
    Fixed(usize),
    /// A single unit.
    One,
}

impl Units {
    /// The unit count at this world size.
    pub fn count(self, world: usize) -> usize {
        match self {
            Units::PerRank => world,
            Units::Fixed(n) => n.max(1),
            Units::One => 1,
        }
    }
}

/// Who runs a unit of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// The engine runs [`GlobalStage::phase_spec`] as rank `unit` of the world into the run
    /// directory `<state dir>/<dir>`; the unit's marker is the engine's rank marker there
    /// (`<dir>/ranks/r<U>-of-<N>.done`). Only with [`Units::PerRank`].
    Pipeline {
        /// Sub-directory of the state dir that is the phase's run directory.
        dir: &'static str,
    },
    /// The stage runs the unit ([`GlobalStage::run_unit`]) and writes its marker
    /// ([`GlobalStage::unit_marker`]) last.
    Custom,
}

/// One phase a multi-phase stage declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseDecl {
    /// Phase name (`--phase NAME`); not `run`, unique within the stage.
    pub name: &'static str,
    /// Units at a given world size.
    pub units: Units,
    /// Who runs a unit.
    pub work: Work,
    /// Files a unit reads, relative to the state dir. Placeholders: `<U>` this unit, `<R>`
    /// every rank, `<B>` every unit of a per-bucket phase, `<N>` the world size, `<NB>` the
    /// bucket count, `<run>` any run number (all 4-digit, zero-padded).
    pub reads: &'static [&'static str],
    /// Files a unit writes, relative to the state dir (same placeholders).
    pub writes: &'static [&'static str],
}

/// A multi-phase stage, planned for one config and world size.
pub trait GlobalStage: std::fmt::Debug + Send + Sync {
    /// The node's name in the config.
    fn node(&self) -> &str;
    /// The node's `kind:`.
    fn kind(&self) -> &'static str;
    /// The stage's state dir inside the run directory `out`.
    fn state_dir(&self, out: &Path) -> PathBuf;
    /// The phases before `run`, in order.
    fn phases(&self) -> Vec<PhaseDecl>;
    /// What a rank of the `run` phase reads from the state dir.
    fn run_reads(&self) -> &'static [&'static str] {
        &[]
    }
    /// The pipeline a [`Work::Pipeline`] phase runs (derived from the config).
    fn phase_spec(&self, _phase: &str, spec: &PipelineSpec) -> PipelineSpec {
        spec.clone()
    }
    /// The pipeline of the `run` phase (default: the config unchanged).
    fn run_spec(&self, spec: PipelineSpec) -> PipelineSpec {
        spec
    }
    /// The marker of a unit of a [`Work::Custom`] phase.
    fn unit_marker(&self, out: &Path, phase: &str, unit: usize, world: usize) -> PathBuf;
    /// Run one unit of a [`Work::Custom`] phase: write its outputs atomically, then its
    /// marker. Returns false if the unit was already done.
    fn run_unit(&self, out: &Path, phase: &str, unit: usize, world: usize) -> Result<bool>;
}

/// A registry entry: a kind that may be multi-phase. `plan` looks at a config and returns
/// the planned stage if the config has such a node (e.g. `mode: distributed`), `None`
/// otherwise, or the config's problem with it.
#[derive(Clone, Copy)]
pub struct GlobalKind {
    /// The `kind:` string.
    pub kind: &'static str,
    /// Planner: (config, world size) → the stage, if this config has one.
    pub plan: PlanFn,
}

/// A [`GlobalKind`]'s planner.
pub type PlanFn = fn(&PipelineSpec, usize) -> Result<Option<Box<dyn GlobalStage>>>;

/// What the engine does for one unit of a phase.
#[derive(Debug)]
pub enum UnitWork {
    /// Run this pipeline as rank `unit` into `out_dir` (the engine's rank contract).
    Pipeline {
        /// The derived pipeline.
        spec: PipelineSpec,
        /// Its run directory.
        out_dir: PathBuf,
    },
    /// The stage ran the unit (`false`: it was already done).
    Ran(bool),
}

/// The multi-phase stage of a config with its declared phases.
#[derive(Debug)]
pub struct Plan {
    stage: Box<dyn GlobalStage>,
    phases: Vec<PhaseDecl>,
}

/// A phase resolved for a world size: name and unit count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseUnits {
    /// Phase name.
    pub name: String,
    /// Units.
    pub units: usize,
}

/// The config's multi-phase stage, if any (asks every kind in
/// [`crate::registry::global`]). Errors: the stage's own (e.g. a bad upstream shape),
/// more than one multi-phase node, or a stage that declares its phases wrongly.
pub fn plan(spec: &PipelineSpec, world: usize) -> Result<Option<Plan>> {
    let mut found: Vec<Box<dyn GlobalStage>> = Vec::new();
    for k in crate::registry::global() {
        if let Some(s) = (k.plan)(spec, world)? {
            found.push(s);
        }
    }
    if found.len() > 1 {
        let names: Vec<String> = found
            .iter()
            .map(|s| format!("`{}` ({})", s.node(), s.kind()))
            .collect();
        return Err(Error::msg(format!(
            "only one multi-phase node per config, found {}",
            names.join(" and ")
        )));
    }
    let Some(stage) = found.pop() else {
        return Ok(None);
    };
    let phases = stage.phases();
    for (i, p) in phases.iter().enumerate() {
        let bad = if p.name == RUN || phases[..i].iter().any(|q| q.name == p.name) {
            Some("a duplicate or reserved phase name")
        } else if matches!(p.work, Work::Pipeline { .. }) && p.units != Units::PerRank {
            Some("a pipeline phase must have one unit per rank")
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(Error::msg(format!(
                "node `{}` ({}): phase `{}`: {why}",
                stage.node(),
                stage.kind(),
                p.name
            )));
        }
    }
    Ok(Some(Plan { stage, phases }))
}

impl Plan {
    /// The planned stage.
    pub fn stage(&self) -> &dyn GlobalStage {
        self.stage.as_ref()
    }

    /// The declared phases (without `run`).
    pub fn phases(&self) -> &[PhaseDecl] {
        &self.phases
    }

    fn decl(&self, phase: &str) -> Result<&PhaseDecl> {
        self.phases.iter().find(|p| p.name == phase).ok_or_else(|| {
            let names: Vec<&str> = self.phases.iter().map(|p| p.name).collect();
            Error::msg(format!(
                "unknown phase `{phase}` (node `{}` has {}, then {RUN})",
                self.stage.node(),
                names.join(", ")
            ))
        })
    }

    /// Every phase of the run at this world size, `run` last.
    pub fn schedule(&self, world: usize) -> Vec<PhaseUnits> {
        self.phases
            .iter()
            .map(|p| PhaseUnits {
                name: p.name.to_string(),
                units: p.units.count(world),
            })
            .chain(std::iter::once(PhaseUnits {
                name: RUN.to_string(),
                units: world,
            }))
            .collect()
    }

    /// The marker of a unit of a declared phase (`None` for `run` and unknown phases).
    pub fn marker(&self, out: &Path, phase: &str, unit: usize, world: usize) -> Option<PathBuf> {
        let p = self.decl(phase).ok()?;
        Some(match p.work {
            Work::Pipeline { dir } => self
                .stage
                .state_dir(out)
                .join(dir)
                .join("ranks")
                .join(format!("r{unit:04}-of-{world:04}.done")),
            Work::Custom => self.stage.unit_marker(out, phase, unit, world),
        })
    }

    /// Fail unless every unit of every phase before `phase` is done.
    pub fn require_before(&self, out: &Path, phase: &str, world: usize) -> Result<()> {
        for p in self.phases.iter().take_while(|p| p.name != phase) {
            for u in 0..p.units.count(world) {
                let m = self.marker(out, p.name, u, world).unwrap_or_default();
                if !m.exists() {
                    return Err(Error::msg(format!(
                        "phase {} unit {u} is not done ({} missing); run the earlier phases first",
                        p.name,
                        m.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The multi-phase state lives on a filesystem: refuse an object-store run directory.
    pub fn check_out(&self, out: &str) -> Result<()> {
        if crate::storage::is_remote(out) {
            return Err(Error::msg(format!(
                "node `{}` ({}) runs in phases and needs a local or shared-filesystem run directory, not {out}",
                self.stage.node(),
                self.stage.kind()
            )));
        }
        Ok(())
    }

    /// One unit of a declared phase: the pipeline for the engine to run, or the stage runs
    /// it here. A unit whose marker exists is not run again (a pipeline unit is skipped by
    /// the engine's own rank check).
    pub fn unit(
        &self,
        spec: &PipelineSpec,
        out: &Path,
        phase: &str,
        unit: usize,
        world: usize,
    ) -> Result<UnitWork> {
        let p = self.decl(phase)?;
        let units = p.units.count(world);
        if unit >= units {
            return Err(Error::msg(format!(
                "phase {phase}: unit {unit} out of range (it has {units})"
            )));
        }
        self.require_before(out, phase, world)?;
        match p.work {
            Work::Pipeline { dir } => Ok(UnitWork::Pipeline {
                spec: self.stage.phase_spec(phase, spec),
                out_dir: self.stage.state_dir(out).join(dir),
            }),
            Work::Custom => {
                if self
                    .marker(out, phase, unit, world)
                    .is_some_and(|m| m.exists())
                {
                    return Ok(UnitWork::Ran(false));
                }
                tracing::debug!(
                    "phase {phase} unit {unit}: reads {:?}, writes {:?} under {}",
                    p.reads,
                    p.writes,
                    self.stage.state_dir(out).display()
                );
                self.stage
                    .run_unit(out, phase, unit, world)
                    .map(UnitWork::Ran)
            }
        }
    }

    /// The pipeline of the `run` phase.
    pub fn run_spec(&self, spec: PipelineSpec) -> PipelineSpec {
        self.stage.run_spec(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist_config(extra: &str) -> PipelineSpec {
        let yaml = format!(
            "nodes:\n  src:\n    kind: ingest_jsonl\n    paths: [x.jsonl]\n  dd:\n    kind: minhash_dedup\n    inputs: [src]\n    mode: distributed\n{extra}  out:\n    kind: parquet_shards\n    inputs: [dd]\n"
        );
        crate::config::parse(&yaml, "t.yaml").unwrap()
    }

    #[test]
    fn the_schedule_comes_from_the_stage() {
        let plan = plan(&dist_config("    buckets: 3\n"), 5).unwrap().unwrap();
        let got: Vec<(String, usize)> = plan
            .schedule(5)
            .into_iter()
            .map(|p| (p.name, p.units))
            .collect();
        let want = [
            ("minhash-sig", 5),
            ("minhash-pairs", 3),
            ("minhash-clusters", 1),
            (RUN, 5),
        ];
        assert_eq!(
            got,
            want.map(|(n, u)| (n.to_string(), u)).to_vec(),
            "phases of a distributed dedup at 5 ranks, 3 buckets"
        );
        let out = Path::new("/r");
        assert_eq!(
            plan.marker(out, "minhash-sig", 2, 5).unwrap(),
            Path::new("/r/_minhash/dd/sig/ranks/r0002-of-0005.done")
        );
        assert_eq!(
            plan.marker(out, "minhash-pairs", 1, 5).unwrap(),
            Path::new("/r/_minhash/dd/pairs/b0001-of-0003.done")
        );
        assert_eq!(plan.marker(out, RUN, 0, 5), None);
        assert!(plan.check_out("s3://b/run").is_err());
        // No local dedup node is phased.
        let yaml = "nodes:\n  src:\n    kind: ingest_jsonl\n    paths: [x.jsonl]\n  dd:\n    kind: minhash_dedup\n    inputs: [src]\n  out:\n    kind: parquet_shards\n    inputs: [dd]\n";
        assert!(plan_of(yaml).is_none());
    }

    fn plan_of(yaml: &str) -> Option<Plan> {
        plan(&crate::config::parse(yaml, "t.yaml").unwrap(), 2).unwrap()
    }

    #[test]
    fn a_unit_checks_its_phase_its_range_and_the_earlier_phases() {
        let spec = dist_config("");
        let plan = plan(&spec, 2).unwrap().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let err = |ph: &str, u: usize| {
            plan.unit(&spec, tmp.path(), ph, u, 2)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("nope", 0).contains("unknown phase `nope`"),
            "{}",
            err("nope", 0)
        );
        assert!(err("nope", 0).contains("minhash-sig, minhash-pairs, minhash-clusters"));
        assert!(err("minhash-clusters", 1).contains("out of range"));
        // Phase 2 before phase 1: refused, naming the missing marker.
        let e = err("minhash-pairs", 0);
        assert!(e.contains("phase minhash-sig unit 0 is not done"), "{e}");
        // Phase 1 is a pipeline the engine runs: the upstream chain into the signature sink.
        match plan.unit(&spec, tmp.path(), "minhash-sig", 1, 2).unwrap() {
            UnitWork::Pipeline { spec: s, out_dir } => {
                assert_eq!(out_dir, tmp.path().join("_minhash/dd/sig"));
                let kinds: Vec<&str> = s.nodes.iter().map(|n| n.kind.as_str()).collect();
                assert_eq!(kinds, ["ingest_jsonl", "minhash_signatures"]);
            }
            w => panic!("phase 1 should be a pipeline, got {w:?}"),
        }
    }

    /// The engine's CLI and launchers name no stage: a new multi-phase stage needs no edit
    /// there. Reads the sources, so a stage name that creeps back in fails this test.
    #[test]
    fn the_cli_and_launchers_name_no_stage() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline");
        let mut files = vec![root.join("main.rs"), root.join("cli_slurm.rs")];
        let launch = root.join("launch");
        let mut l: Vec<PathBuf> = std::fs::read_dir(&launch)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        l.sort();
        assert!(l.len() >= 4, "launchers not found: {l:?}");
        files.extend(l);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let low = line.to_lowercase();
                for word in ["minhash", "dist::", "dedup_plan"] {
                    assert!(
                        !low.contains(word),
                        "{}:{}: names a stage (`{word}`): {line}",
                        f.display(),
                        i + 1
                    );
                }
            }
        }
    }
}
