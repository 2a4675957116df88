//! `sluice slurm submit|status|resume`: run a config as Slurm job arrays.
//!
//! See [`crate::launch::slurm`] for the layout and the state model.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::launch::slurm::{default_dir, format_status, SbatchOpts, SlurmRun, UnitState};
use crate::launch::RunSpec;

/// `sluice slurm ...`
#[derive(Debug, clap::Args)]
pub struct SlurmArgs {
    #[command(subcommand)]
    cmd: SlurmCmd,
}

// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
enum SlurmCmd {
    /// Write one sbatch job array per phase (chained with afterok) and submit them.
    Submit(SubmitArgs),
    /// Show each phase and rank: done, running, pending, failed or missing.
    Status(StatusArgs),
    /// Resubmit only the failed and missing ranks of a run.
    Resume(ResumeArgs),
}

#[derive(Debug, clap::Args)]
struct SubmitArgs {
    /// Pipeline config (YAML).
    config: PathBuf,
    /// Number of ranks (array tasks per phase).
    #[arg(long)]
    tasks: usize,
    /// Run directory (local shared path or s3:// / gs:// / az:// URL).
    #[arg(long, default_value = "out")]
    out: String,
    /// Where scripts, logs and jobs.json go (default OUT/slurm; required for a URL OUT).
    #[arg(long)]
    slurm_dir: Option<PathBuf>,
    /// Slurm partition.
    #[arg(long)]
    partition: Option<String>,
    /// Slurm account.
    #[arg(long)]
    account: Option<String>,
    /// Time limit per task, Slurm syntax (e.g. 04:00:00).
    #[arg(long)]
    time: Option<String>,
    /// Memory per task, Slurm syntax (e.g. 16G).
    #[arg(long)]
    mem: Option<String>,
    /// CPUs per task; also the engine's --threads.
    #[arg(long)]
    cpus_per_task: Option<usize>,
    /// Most array tasks running at once (--array=0-(N-1)%M).
    #[arg(long)]
    max_running: Option<usize>,
    /// Extra sbatch argument, repeatable (e.g. --sbatch-arg=--qos=high).
    #[arg(long = "sbatch-arg")]
    sbatch_arg: Vec<String>,
    /// Job name prefix.
    #[arg(long, default_value = "sluice")]
    job_name: String,
    /// Print the scripts and sbatch commands without submitting.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The run directory (holding slurm/jobs.json) or the Slurm directory.
    run: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ResumeArgs {
    /// The run directory (holding slurm/jobs.json) or the Slurm directory.
    run: PathBuf,
    /// Print the scripts and sbatch commands without submitting.
    #[arg(long)]
    dry_run: bool,
}

/// Entry point for `sluice slurm`.
pub fn run(args: SlurmArgs) -> Result<()> {
    match args.cmd {
        SlurmCmd::Submit(a) => {
            let spec = RunSpec::new(&a.config, &a.out, a.tasks, a.cpus_per_task)?;
            let dir = match a.slurm_dir {
                Some(d) => crate::launch::absolute(&d)?,
                None => default_dir(&spec.out)?,
            };
            if !a.dry_run && SlurmRun::state_path(&dir).exists() {
                return Err(Error::msg(format!(
                    "{} already holds a submitted run: use `sluice slurm status|resume`",
                    dir.display()
                )));
            }
            let mut run = SlurmRun {
                spec,
                opts: SbatchOpts {
                    partition: a.partition,
                    time: a.time,
                    mem: a.mem,
                    cpus_per_task: a.cpus_per_task,
                    max_running: a.max_running,
                    account: a.account,
                    extra: a.sbatch_arg,
                    job_name: a.job_name,
                },
                dir,
                submissions: vec![],
            };
            let ids = run.submit(a.dry_run)?;
            if !a.dry_run {
                if ids.is_empty() {
                    println!("nothing to do: every rank is already done");
                } else {
                    println!(
                        "submitted job(s) {}; logs in {}",
                        ids.join(", "),
                        run.dir.join("logs").display()
                    );
                }
            }
            Ok(())
        }
        SlurmCmd::Status(a) => {
            let run = SlurmRun::load(&a.run)?;
            let st = run.status()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", format_status(&run, &st));
            }
            Ok(())
        }
        SlurmCmd::Resume(a) => {
            let mut run = SlurmRun::load(&a.run)?;
            let before = run.status()?;
            let ids = run.resume(a.dry_run)?;
            let redo = before
                .iter()
                .filter(|u| matches!(u.state, UnitState::Failed | UnitState::Missing))
                .count();
            if ids.is_empty() {
                println!(
                    "nothing to resubmit ({} ranks done or still queued)",
                    before.len()
                );
            } else if !a.dry_run {
                println!(
                    "resubmitted {redo} failed/missing rank(s) as job(s) {}",
                    ids.join(", ")
                );
            }
            Ok(())
        }
    }
}
