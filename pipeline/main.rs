//! The `sluice` binary: run, validate and describe pipelines (see `sluice --help`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sluice::runtime::{self, RunOptions};
use sluice::stage::{BuildCtx, Role};
use sluice::{config, phases, registry, Error};

/// sluice: turn raw web scrapes into LLM pretraining data, Chinese first.
///
/// A pipeline is a YAML DAG of stages (sources, transforms, sinks). `sluice run` streams
/// documents through it and writes Parquet shards, rejects, stats.json and manifest.json
/// to a run directory.
#[derive(Parser)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less logging (warnings and errors only).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Colour in log lines: auto (only on a terminal, and not when NO_COLOR is set),
    /// always or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline config and write a run directory. A finished rank is skipped only
    /// after its outputs and inputs are checked. Exit codes: 0 done (or already done),
    /// 1 error, 2 config problems, 75 another attempt is running this rank.
    Run(RunArgs),
    /// Check a config and report every problem at once (exit code 2 if any).
    Validate {
        /// Pipeline config (YAML).
        config: PathBuf,
    },
    /// Run a config as Slurm job arrays: submit, status, resume.
    #[cfg(feature = "cloud")]
    Slurm(sluice::cli_slurm::SlurmArgs),
    /// List stage kinds with their one-line doc and config fields.
    Stages {
        /// Show only this kind.
        kind: Option<String>,
    },
    /// SQL over run directories (tables docs, rejects, stats, nodes, manifest, mixture, docs_index).
    #[cfg(feature = "audit")]
    Audit(sluice::cli_audit::AuditArgs),
    /// Write a self-contained HTML report about a run.
    #[cfg(feature = "audit")]
    Report(sluice::cli_audit::ReportArgs),
    /// Per stage and reason, the change in counts and tokens between two runs.
    #[cfg(feature = "audit")]
    Diff(sluice::cli_audit::DiffArgs),
    /// Regulator reports from a run: EU training-content summary, Chinese audit sample
    /// and keyword hit rates; `--reviews` checks the reviewed sample (exit 3 above 5% bad).
    Compliance(sluice::cli_compliance::ComplianceArgs),
    /// Remove documents (by URL, domain or id) from a finished run: rewrites only the
    /// shards holding them, records the takedown in manifest.json with a new version.
    Takedown(sluice::cli_takedown::TakedownArgs),
    /// Follow a packed row, document id or segment id down to its input bytes and verify
    /// them (WARC block digest, input sha256). Exit code 1 if any is not verified.
    Trace(sluice::cli_trace::TraceArgs),
    /// Train and evaluate fastText quality classifiers (`train`, `eval`).
    Classifier(sluice::cli_classifier::ClassifierArgs),
    /// Train the reference MoE model on packed shards (exact resume with --resume).
    #[cfg(feature = "train")]
    Train(sluice::cli_train::TrainArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Pipeline config (YAML).
    config: PathBuf,
    /// Run directory: a local path or an object-store URL (s3://, gs://, az://).
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Run the config as N local processes (ranks 0..N-1, same markers as Slurm),
    /// skipping ranks already done.
    #[arg(long, conflicts_with_all = ["rank", "world_size"])]
    local_tasks: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// This process's rank (0-based) when the input files are split across processes.
    #[arg(long, default_value_t = 0)]
    rank: usize,
    /// Number of ranks.
    #[arg(long, default_value_t = 1)]
    world_size: usize,
    /// Discard the previous run in the run directory (every rank's outputs) first. Needed
    /// after the inputs of a finished rank changed. Refused while another attempt of any
    /// rank holds its lock.
    #[arg(long)]
    overwrite: bool,
    /// Before skipping a finished rank, check the sha256 of every output its manifest lists
    /// (not only sizes), and compare inputs by content when only their mtime changed.
    #[arg(long)]
    verify: bool,
    /// No progress bar or progress log lines.
    #[arg(long)]
    no_progress: bool,
    /// Run one unit of one phase (set by the launchers): a phase declared by the config's
    /// multi-phase stage, or `run`; `--rank` is the unit. Only configs with a multi-phase
    /// node (e.g. a distributed dedup) have phases; their names come from the stage.
    #[arg(long)]
    phase: Option<String>,
}

fn init_logging(verbose: u8, quiet: bool, color: ColorChoice) {
    let level = if quiet {
        "warn"
    } else {
        match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,sluice={level}")));
    use std::io::IsTerminal;
    let ansi = match color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// `sluice stages | head -1`: a closed stdout ends the process quietly (status 0), as
/// Unix filters do, instead of the `println!` panic and a backtrace. SIGPIPE stays
/// ignored (object-store sockets must not kill the process); only this panic is caught.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Ctrl-C during `sluice run`: say what happened and how to go on, exit 130. Nothing is
/// lost: outputs in progress are temp files and an unfinished rank is redone on rerun.
fn on_interrupt() {
    extern "C" fn handler(_: libc::c_int) {
        const MSG: &[u8] =
            b"\ninterrupted; rerun the same command to resume (finished ranks are kept)\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(130);
        }
    }
    // SAFETY: installs a handler that only calls async-signal-safe functions.
    unsafe {
        libc::signal(libc::SIGINT, handler as *const () as libc::sighandler_t);
    }
}

fn main() -> ExitCode {
    sluice::runtime::tune_allocator();
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.color);
    let res = match cli.command {
        Command::Run(a) => {
            on_interrupt();
            cmd_run(a)
        }
        Command::Validate { config } => cmd_validate(&config),
        Command::Stages { kind } => cmd_stages(kind.as_deref()),
        #[cfg(feature = "cloud")]
        Command::Slurm(a) => sluice::cli_slurm::run(a)
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into),
        #[cfg(feature = "audit")]
        Command::Audit(a) => sluice::cli_audit::run(a)
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into),
        #[cfg(feature = "audit")]
        Command::Report(a) => sluice::cli_audit::run_report(a)
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into),
        #[cfg(feature = "audit")]
        Command::Diff(a) => sluice::cli_audit::run_diff(a)
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Compliance(a) => sluice::cli_compliance::run(&a)
            .map(|ok| {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(3)
                }
            })
            .map_err(Into::into),
        Command::Takedown(a) => sluice::cli_takedown::run(a)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Trace(a) => sluice::cli_trace::run(a)
            .map(|ok| {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            })
            .map_err(Into::into),
        Command::Classifier(a) => sluice::cli_classifier::run(a)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        #[cfg(feature = "train")]
        Command::Train(a) => sluice::cli_train::run(a, cli.quiet)
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn print_problems(path: &std::path::Path, problems: &[String]) {
    eprintln!(
        "{}: {} problem{}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        eprintln!("  - {p}");
    }
}

fn cmd_run(a: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = a.local_tasks {
        sluice::launch::local::run_cli(&a.config, &a.out.to_string_lossy(), n, a.threads)?;
        return Ok(ExitCode::SUCCESS);
    }
    let spec = match config::load(&a.config) {
        Ok(s) => s,
        Err(p) => {
            print_problems(&a.config, &p);
            return Ok(ExitCode::from(2));
        }
    };
    let out_str = a.out.to_string_lossy().into_owned();
    let plan = match phases::plan(&spec, a.world_size) {
        Ok(p) => p,
        Err(e) => {
            print_problems(&a.config, &[e.to_string()]);
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(p) = &plan {
        p.check_out(&out_str)?;
    }
    let mut spec = spec;
    let mut out_dir = a.out.clone();
    match (a.phase.as_deref(), &plan) {
        (None, Some(_)) if a.rank == 0 && a.world_size == 1 => {
            // A phased config run plainly: all phases as one local rank.
            sluice::launch::local::run_cli(&a.config, &out_str, 1, a.threads)?;
            return Ok(ExitCode::SUCCESS);
        }
        (None | Some(phases::RUN), Some(p)) => spec = p.run_spec(spec),
        (None | Some(phases::RUN), None) => {}
        (Some(ph), None) => {
            anyhow::bail!("--phase {ph}: this config has no multi-phase stage")
        }
        (Some(ph), Some(p)) => match p.unit(&spec, &a.out, ph, a.rank, a.world_size)? {
            phases::UnitWork::Pipeline {
                spec: s,
                out_dir: d,
            } => {
                spec = s;
                out_dir = d;
            }
            phases::UnitWork::Ran(ran) => {
                if !ran {
                    tracing::info!("phase {ph} unit {} already done", a.rank);
                }
                return Ok(ExitCode::SUCCESS);
            }
        },
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let opts = RunOptions {
        out_dir: out_dir.clone(),
        threads,
        rank: a.rank,
        world_size: a.world_size,
        progress: !a.no_progress,
        overwrite: a.overwrite,
        verify: a.verify,
    };
    let result = if sluice::storage::is_remote(&out_str) {
        sluice::launch::remote::run(spec, &opts, &out_str)
    } else {
        runtime::run(spec, &opts)
    };
    match result {
        Ok(s) if s.skipped => {
            tracing::info!(
                "nothing to do: rank {} of {} already finished",
                a.rank,
                a.world_size
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(s) => {
            tracing::info!(
                "{} → {}",
                runtime::done_line(&s.stats, &s.manifest),
                a.out.display()
            );
            for line in run_notes(&s.stats) {
                tracing::info!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Config(p)) => {
            print_problems(&a.config, &p);
            Ok(ExitCode::from(2))
        }
        Err(e @ Error::RankBusy { .. }) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(sluice::rundir::EXIT_RANK_BUSY))
        }
        Err(e) => Err(e.into()),
    }
}

/// Lines printed after the done line (which counts bad records and names the top reject
/// reasons): each node's own `summary` (a stage puts one in its stats when a user must
/// know something, e.g. what capped a mixture). Generic: no stage is named here.
fn run_notes(stats: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(nodes) = stats["nodes"].as_object() else {
        return lines;
    };
    for (name, n) in nodes {
        if let Some(sm) = n["extra"]["summary"].as_str() {
            lines.push(format!("{name}: {sm}"));
        }
    }
    lines
}

fn cmd_validate(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let spec = match config::load(path) {
        Ok(s) => s,
        Err(p) => {
            print_problems(path, &p);
            return Ok(ExitCode::from(2));
        }
    };
    let n = spec.nodes.len();
    let base = BuildCtx::for_tests("", "out");
    match runtime::validate(spec, &base) {
        Ok(_) => {
            println!("{}: ok ({n} nodes)", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(p) => {
            print_problems(path, &p);
            Ok(ExitCode::from(2))
        }
    }
}

/// A field's type for `sluice stages`: the JSON type, or the choices of a string enum.
fn type_name(v: &serde_json::Value, root: &serde_json::Value) -> String {
    if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
        let target = r
            .strip_prefix('#')
            .and_then(|ptr| root.pointer(ptr))
            .filter(|t| !std::ptr::eq(*t, v));
        return match target {
            Some(t) => type_name(t, root),
            None => "object".into(),
        };
    }
    // A unit-variant enum: `enum: [..]`, or `oneOf` of documented `const` strings.
    let choices: Option<Vec<&str>> = match (v.get("enum"), v.get("oneOf")) {
        (Some(serde_json::Value::Array(e)), _) => e.iter().map(|x| x.as_str()).collect(),
        (_, Some(serde_json::Value::Array(alts))) => alts
            .iter()
            .map(|a| a.get("const").and_then(|c| c.as_str()))
            .collect(),
        _ => None,
    };
    if let Some(c) = choices.filter(|c| !c.is_empty()) {
        return c.join(" | ");
    }
    if let Some(t) = v.get("type") {
        return match t {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str())
                .filter(|x| *x != "null")
                .collect::<Vec<_>>()
                .join("|"),
            _ => "value".into(),
        };
    }
    if v.get("anyOf").is_some() || v.get("oneOf").is_some() {
        return "object".into();
    }
    "value".into()
}

fn cmd_stages(only: Option<&str>) -> anyhow::Result<ExitCode> {
    let kinds = registry::all();
    if let Some(k) = only {
        if !kinds.iter().any(|x| x.name == k) {
            eprintln!("unknown kind `{k}`");
            return Ok(ExitCode::from(2));
        }
    }
    for k in kinds.iter().filter(|k| only.is_none_or(|o| o == k.name)) {
        let role = match k.role {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Stage => "stage",
            Role::Sink => "sink",
        };
        println!(
            "{} ({role}; ports: {})",
            k.name,
            if k.ports.is_empty() {
                "-".into()
            } else {
                k.ports.join(", ")
            }
        );
        println!("    {}", k.doc);
        let schema = (k.schema)();
        let required: Vec<String> = schema
            .get("required")
            .and_then(|r| r.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, p) in props {
                let desc = p
                    .get("description")
                    .and_then(|d| d.as_str())
                    .unwrap_or("")
                    .replace('\n', " ");
                let req = if required.contains(name) {
                    " (required)"
                } else {
                    ""
                };
                println!(
                    "    {name}: {}{req} — {desc}",
                    type_name(p, schema.as_value())
                );
            }
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
