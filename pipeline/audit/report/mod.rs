//! `sluice report RUN_DIR [-o report.html]`: one self-contained HTML page about a run.
//!
//! Sections: summary, funnel per node (in / out / rejected, in the order of the config's
//! graph), rejects by reason, length histogram (kept vs rejected, with `length_filter`
//! bounds), score histograms (kept documents' `attrs`, rejects' `score`, with the
//! configured thresholds), top languages and domains, dedup cluster sizes, mixture target
//! vs achieved, tokens per source, seeded random samples of kept documents and of rejects
//! per (stage, reason), and optionally a diff against a baseline run.
//!
//! Every number comes from SQL over the audit tables (the presets where one fits), so the
//! page and `sluice audit` never disagree. `attrs` is read only through the SQL functions
//! (`json_keys`, `json_get_f64`, `json_find_f64`), never parsed here.
//!
//! **Packed runs.** The shards of a run that ends in `pack` hold sequences, not
//! documents. The pack stage writes a document index on the side (`docs_index/`, see
//! `stages::pack::index`): every document that went into a sequence, with its source,
//! language, lengths and attrs, and the text of a seeded sample. For such a run the
//! document sections (lengths, scores, languages, domains, dedup, kept samples) read the
//! `docs_index` table instead of `docs`, and say so. A section with no data says once why
//! (no dedup node, no mix node, ...).
//!
//! **Templates and safety.** The page is built with `maud` templates (compiled, escaping
//! by default); every string that comes from data (text, URLs, ids, node names, reasons,
//! attr keys) is written through [`data::T`], which escapes `& < > " '` and replaces
//! control characters, so a scraped page containing `<script>` shows as text and never
//! runs. Charts are inline SVG, styles one inline `<style>`, fonts the system's (a CJK
//! stack first); there is no script, no external URL, no image, and a
//! Content-Security-Policy forbids them. URLs are shown as text, never as links.
//!
//! Memory: one result set at a time; the samples hold at most `samples` rows per reason,
//! each text cut to [`TEXT_CHARS`] characters.

mod charts;
mod data;
mod sections;

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{Audit, Format};
use crate::error::{Error, Result};
pub use data::esc;
use data::{f, num, rows, s, Graph, Row, T};
use sections::{section, table, Ctx};

/// Characters of document text shown per sample.
pub const TEXT_CHARS: usize = 600;

/// Report options.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Seed of the random samples (same seed, same samples).
    pub seed: u64,
    /// Samples of kept documents, and of rejects per (stage, reason).
    pub samples: usize,
    /// Title shown at the top.
    pub title: String,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            seed: 42,
            samples: 3,
            title: "sluice run report".into(),
        }
    }
}

/// The page's font stack: CJK-capable fonts first (Linux, macOS, Windows), so Chinese text
/// never falls back to whatever font the browser picks first.
pub const FONT_STACK: &str = "\"Noto Sans CJK SC\",\"Source Han Sans SC\",\"PingFang SC\",\"Hiragino Sans GB\",\"Microsoft YaHei\",\"WenQuanYi Micro Hei\",system-ui,sans-serif";

const CSS: &str = "
body{margin:0;color:#1d232a;background:#f6f7f9}
body,svg text{font-family:__FONTS__}
pre{font-family:\"Noto Sans Mono CJK SC\",__FONTS__,monospace}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px 0}h2{margin-top:12px;border-bottom:2px solid #d9dde3;padding-bottom:4px}
section{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:8px 20px 20px;margin:18px 0}
.meta{color:#5a6470;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:12px}
.card{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:10px 16px;min-width:140px}
.card b{display:block;font-size:22px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #e8eaee;padding:3px 10px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg text.lbl{font-size:11px;fill:#333}svg text.val{font-size:10px;fill:#555}
svg text.thr{font-size:10px;fill:#c2453c}
svg line.grid{stroke:#e8eaee}svg line.axis{stroke:#8a939e}
svg line.threshold{stroke:#c2453c;stroke-width:1.5;stroke-dasharray:4 3}
.hist{display:inline-block;margin:6px 18px 6px 0;vertical-align:top}.hist figcaption{font-size:12px;color:#333}
.empty{color:#8a939e;font-style:italic}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.sample{border-left:3px solid #c2453c;padding:4px 10px;margin:8px 0;background:#fbfbfc}
.sample.kept{border-color:#2f7d4f}
.sample pre{white-space:pre-wrap;word-break:break-word;font-size:12px;margin:4px 0;max-height:14em;overflow:auto}
.k{color:#5a6470;font-size:12px}
";

/// The table that describes the run's documents, and whether its output is packed.
fn kept_table(audit: &Audit) -> Result<(&'static str, bool)> {
    let r = rows(
        audit,
        "SELECT (SELECT COUNT(*) FROM docs WHERE n_chars IS NOT NULL) AS docs,
                (SELECT COUNT(*) FROM docs WHERE source_mix IS NOT NULL) AS packed,
                (SELECT COUNT(*) FROM docs_index) AS indexed",
    )?;
    let r = r.first().cloned().unwrap_or_default();
    let packed = f(&r, "packed") > 0.0;
    let kept = if f(&r, "docs") == 0.0 && f(&r, "indexed") > 0.0 {
        "docs_index"
    } else {
        "docs"
    };
    Ok((kept, packed))
}

/// The header: title, run, and the headline numbers.
fn header(cx: &Ctx) -> Result<Markup> {
    let audit = cx.audit;
    let runs: Vec<String> = audit
        .files
        .dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let meta = rows(
        audit,
        "SELECT SUM(bytes) AS bytes FROM manifest WHERE kind = 'shard'",
    )?;
    let funnel = cx.preset("funnel")?;
    let src_out: f64 = funnel
        .iter()
        .filter(|r| s(r, "role") == "source")
        .map(|r| f(r, "docs_out"))
        .sum();
    let rejected: f64 = funnel.iter().map(|r| f(r, "rejected")).sum();
    let shard = rows(
        audit,
        "SELECT COUNT(*) AS docs, SUM(CAST(n_tokens AS BIGINT)) AS tokens FROM docs",
    )?;
    let kept = rows(
        audit,
        &format!(
            "SELECT COUNT(*) AS docs FROM {} WHERE n_chars IS NOT NULL",
            cx.kept
        ),
    )?;
    let (m, k, d) = (
        meta.first().cloned().unwrap_or_default(),
        shard.first().cloned().unwrap_or_default(),
        kept.first().cloned().unwrap_or_default(),
    );
    let mut cards = vec![("documents read", src_out)];
    if cx.packed {
        cards.push(("documents packed", f(&d, "docs")));
        cards.push(("sequences in shards", f(&k, "docs")));
    } else {
        cards.push(("rows in shards", f(&k, "docs")));
    }
    cards.extend([
        ("rejected", rejected),
        ("tokens", f(&k, "tokens")),
        ("shard bytes (manifest)", f(&m, "bytes")),
    ]);
    Ok(html! {
        header {
            h1 { (T(&cx.opts.title)) }
            div.meta {
                "run: " (T(&runs.join(", "))) " · files: " (audit.files.shards.len()) " shards, "
                (audit.files.rejects.len()) " reject files"
                @if cx.packed { ", " (audit.files.docs_index.len()) " document-index files (packed run)" }
            }
            div.cards {
                @for (label, v) in &cards { div.card { (label) b { (num(*v)) } } }
            }
        }
    })
}

/// The diff section against a baseline run.
fn diff_section(base: &Audit, audit: &Audit) -> Result<Markup> {
    let (schema, batch) = super::diff::diff(base, audit, true)?;
    let json = super::format_batches(&schema, &[batch], Format::Json)?;
    let d: Vec<Row> = serde_json::from_str(&json).map_err(|e| Error::msg(format!("diff: {e}")))?;
    let runs: Vec<String> = base
        .files
        .dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let cols = [
        "section",
        "stage",
        "key",
        "metric",
        "a",
        "b",
        "delta",
        "pct_change",
    ];
    Ok(section(
        "diff",
        "Changes against the baseline",
        None,
        d.is_empty()
            .then(|| "No changes against the baseline.".into()),
        html! {
            p.meta { "a = baseline (" (T(&runs.join(", "))) "), b = this run; unchanged rows omitted" }
            (table(&d, &cols))
        },
    ))
}

/// Render the report for an opened run. `baseline` adds a diff section against it.
pub fn render(audit: &Audit, opts: &ReportOptions, baseline: Option<&Audit>) -> Result<String> {
    let (kept, packed) = kept_table(audit)?;
    let cx = Ctx {
        audit,
        graph: Graph::of(audit),
        opts,
        kept,
        packed,
    };
    let parts = [
        header(&cx)?,
        sections::funnel(&cx)?,
        sections::rejects(&cx)?,
        sections::lengths(&cx)?,
        sections::scores(&cx)?,
        sections::languages(&cx)?,
        sections::domains(&cx)?,
        sections::dedup(&cx)?,
        sections::mixture(&cx)?,
        sections::tokens(&cx)?,
        sections::samples(&cx)?,
    ];
    let diff = match baseline {
        Some(base) => Some(diff_section(base, audit)?),
        None => None,
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:";
                title { (T(&opts.title)) }
                style { (PreEscaped(CSS.replace("__FONTS__", FONT_STACK))) }
            }
            body {
                main {
                    @for p in &parts { (p) }
                    @if let Some(d) = &diff { (d) }
                    p.meta { "Generated by sluice " (env!("CARGO_PKG_VERSION")) "." }
                }
            }
        }
    };
    let mut out = page.into_string();
    out.push('\n');
    Ok(out)
}
