//! CLI for audits: `sluice audit`, `sluice report`, `sluice diff` (see [`crate::audit`]).
//!
//! ```text
//! sluice audit out/ --preset rejects
//! sluice audit out-r0/ out-r1/ --sql "SELECT lang, COUNT(*) FROM docs GROUP BY lang" --format csv
//! sluice audit out/ --preset languages --show-sql
//! sluice report out/ -o report.html [--baseline last_week/]
//! sluice diff last_week/ out/
//! ```

use std::io::Write;
use std::path::PathBuf;

use crate::audit::{self, presets, report, Audit, Format};
use crate::error::{Error, Result};

/// `sluice audit`: SQL over one or more run directories.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Run directories (`--out` of `sluice run`); several are read as one logical run.
    #[arg(required_unless_present = "list_presets")]
    pub run_dirs: Vec<PathBuf>,
    /// SQL to run. Tables: docs, rejects, stats, nodes, manifest, mixture, docs_index.
    #[arg(long, conflicts_with = "preset")]
    pub sql: Option<String>,
    /// A named query (see --list-presets).
    #[arg(long)]
    pub preset: Option<String>,
    /// Print the preset's SQL instead of running it.
    #[arg(long, requires = "preset")]
    pub show_sql: bool,
    /// List the presets and exit.
    #[arg(long)]
    pub list_presets: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `sluice report`: one self-contained HTML page about a run.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Run directories; several are read as one logical run.
    #[arg(required = true)]
    pub run_dirs: Vec<PathBuf>,
    /// Output HTML file.
    #[arg(short, long, default_value = "report.html")]
    pub output: PathBuf,
    /// Seed of the random samples.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Samples of kept documents, and of rejects per (stage, reason).
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
    /// A baseline run: adds a section with the changes from it to this run.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
}

/// `sluice diff`: per stage and reason, the change in counts and tokens from run A to run B.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The earlier run directory.
    pub run_a: PathBuf,
    /// The later run directory.
    pub run_b: PathBuf,
    /// Also show rows that did not change.
    #[arg(long)]
    pub all: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

fn write_stdout(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a stack of messages.
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Error::io("<stdout>", e)),
    }
}

/// Run `sluice audit`.
pub fn run(args: AuditArgs) -> Result<()> {
    if args.list_presets {
        return write_stdout(&presets::listing());
    }
    let sql = match (&args.sql, &args.preset) {
        (Some(sql), None) => sql.clone(),
        (None, Some(name)) => {
            let p = presets::get(name)?;
            if args.show_sql {
                return write_stdout(&format!("-- {}: {}\n{};\n", p.name, p.about, p.sql));
            }
            p.sql.to_string()
        }
        _ => {
            return Err(Error::msg(
                "give --sql \"...\" or --preset NAME (see --list-presets)",
            ))
        }
    };
    let audit = Audit::open(&args.run_dirs)?;
    let (schema, batches) = audit.sql(&sql)?;
    write_stdout(&audit::format_batches(&schema, &batches, args.format)?)
}

/// Run `sluice report`.
pub fn run_report(args: ReportArgs) -> Result<()> {
    let audit = Audit::open(&args.run_dirs)?;
    let baseline = args
        .baseline
        .as_ref()
        .map(|b| Audit::open(std::slice::from_ref(b)))
        .transpose()?;
    let opts = report::ReportOptions {
        seed: args.seed,
        samples: args.samples,
        ..Default::default()
    };
    let html = report::render(&audit, &opts, baseline.as_ref())?;
    let tmp = args.output.with_extension("html.tmp");
    std::fs::write(&tmp, html).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &args.output).map_err(|e| Error::io(&args.output, e))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// Run `sluice diff`.
pub fn run_diff(args: DiffArgs) -> Result<()> {
    let a = Audit::open(std::slice::from_ref(&args.run_a))?;
    let b = Audit::open(std::slice::from_ref(&args.run_b))?;
    let (schema, batch) = audit::diff::diff(&a, &b, !args.all)?;
    write_stdout(&audit::format_batches(&schema, &[batch], args.format)?)
}
