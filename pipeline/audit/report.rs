//! `sluice report RUN_DIR [-o report.html]`: one self-contained HTML page about a run.
//!
//! Sections: summary, funnel per node (in / out / rejected), rejects by reason, length
//! histogram (kept vs rejected), score histograms (kept documents' `attrs`, rejects'
//! `score`), top languages and domains, dedup cluster sizes, mixture target vs achieved,
//! tokens per source, seeded random samples of kept documents and of rejects per
//! (stage, reason), and optionally a diff against a baseline run.
//!
//! Every number comes from SQL over the audit tables (the presets where one fits), so the
//! page and `sluice audit` never disagree.
//!
//! **Self-contained and safe.** Charts are inline SVG, styles are one inline `<style>`,
//! fonts are the system's; there is no script, no external URL, no image. Every string
//! that comes from data (text, URLs, ids, node names, reasons, attr keys) passes through
//! [`esc`], so a scraped page containing `<script>` shows as text and never runs. URLs
//! are shown as text, never as links.
//!
//! Memory: one result set at a time; the samples hold at most `samples` rows per reason,
//! each text cut to [`TEXT_CHARS`] characters.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::{presets, Audit, Format};
use crate::error::{Error, Result};

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

/// HTML-escape text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Control characters other than tab/newline are not allowed in HTML text.
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

type Row = Map<String, Value>;

fn rows(audit: &Audit, sql: &str) -> Result<Vec<Row>> {
    let (schema, batches) = audit.sql(sql)?;
    let json = super::format_batches(&schema, &batches, Format::Json)?;
    let v: Vec<Row> = serde_json::from_str(&json)?;
    Ok(v)
}

fn s(r: &Row, k: &str) -> String {
    match r.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(x)) => x.clone(),
        Some(v) => v.to_string(),
    }
}

fn f(r: &Row, k: &str) -> f64 {
    match r.get(k) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(x)) => x.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        let n = x as i64;
        let d = n.abs().to_string();
        let mut o = String::new();
        for (i, c) in d.chars().enumerate() {
            if i > 0 && (d.len() - i) % 3 == 0 {
                o.push(',');
            }
            o.push(c);
        }
        if n < 0 {
            o.insert(0, '-');
        }
        o
    } else {
        let s = format!("{x:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

const COLORS: [&str; 4] = ["#2f7d4f", "#c2453c", "#3b6ea8", "#b7862a"];

/// The colour of a series: green for what was kept, red for rejects, blue for inputs and
/// targets, so the same meaning has the same colour in every chart.
fn color(series: &str, j: usize) -> &'static str {
    match series {
        "out" | "kept" | "achieved %" => COLORS[0],
        "rejected" | "rejected docs" => COLORS[1],
        "in" | "target %" => COLORS[2],
        _ => COLORS[(j + 2) % COLORS.len()],
    }
}

/// Horizontal bar chart. `rows`: (label, values per series); series are drawn side by side.
fn bar_chart(rows: &[(String, Vec<f64>)], series: &[&str]) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">No data in this run.</p>".into();
    }
    let max = rows
        .iter()
        .flat_map(|r| r.1.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-12);
    let label_w = 260.0;
    let bar_w = 420.0;
    let band = 6.0 + 14.0 * series.len() as f64;
    let h = band * rows.len() as f64 + 24.0;
    let mut o = String::new();
    let _ = write!(o, "<svg class=\"chart\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" viewBox=\"0 0 {} {h}\">", label_w + bar_w + 110.0, label_w + bar_w + 110.0);
    for (i, (label, vals)) in rows.iter().enumerate() {
        let y0 = 4.0 + band * i as f64;
        let short: String = label.chars().take(40).collect();
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"lbl\"><title>{}</title>{}</text>",
            label_w - 6.0,
            y0 + band / 2.0 + 1.0,
            esc(label),
            esc(&short)
        );
        for (j, v) in vals.iter().enumerate() {
            let y = y0 + 14.0 * j as f64;
            let w = (v / max * bar_w).max(if *v > 0.0 { 1.0 } else { 0.0 });
            let _ = write!(
                o,
                "<rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"12\" fill=\"{}\"><title>{}: {}</title></rect><text x=\"{:.1}\" y=\"{}\" class=\"val\">{}</text>",
                color(series.get(j).copied().unwrap_or(""), j),
                esc(series.get(j).copied().unwrap_or("")),
                num(*v),
                label_w + w + 4.0,
                y + 10.0,
                num(*v)
            );
        }
    }
    let ly = h - 8.0;
    for (j, name) in series.iter().enumerate() {
        let x = label_w + 120.0 * j as f64;
        let _ = write!(o, "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{ly}\" class=\"lbl\">{}</text>", ly - 9.0, color(name, j), x + 14.0, esc(name));
    }
    o.push_str("</svg>");
    o
}

/// A vertical histogram of `bins` counts between `lo` and `hi`.
fn histogram(title: &str, lo: f64, hi: f64, bins: &[f64]) -> String {
    let w = 300.0;
    let h = 110.0;
    let max = bins.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    let bw = w / bins.len().max(1) as f64;
    let mut o = String::new();
    let _ = write!(o, "<figure class=\"hist\"><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\">", esc(title), h + 16.0, h + 16.0);
    for (i, c) in bins.iter().enumerate() {
        let bh = c / max * h;
        let x0 = lo + (hi - lo) * i as f64 / bins.len() as f64;
        let _ = write!(o, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#3b6ea8\"><title>≥ {x0:.4}: {}</title></rect>", bw * i as f64 + 0.5, h - bh, (bw - 1.0).max(0.5), num(*c));
    }
    let _ = write!(o, "<text x=\"0\" y=\"{}\" class=\"val\">{lo:.3}</text><text x=\"{w}\" y=\"{}\" text-anchor=\"end\" class=\"val\">{hi:.3}</text></svg></figure>", h + 13.0, h + 13.0);
    o
}

/// An HTML table of result rows (every cell escaped).
fn table(rows: &[Row], cols: &[&str]) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">No data in this run.</p>".into();
    }
    let mut o = String::from("<table><thead><tr>");
    for c in cols {
        let _ = write!(o, "<th>{}</th>", esc(c));
    }
    o.push_str("</tr></thead><tbody>");
    for r in rows {
        o.push_str("<tr>");
        for c in cols {
            let cell = match r.get(*c) {
                Some(Value::Number(n)) => num(n.as_f64().unwrap_or(0.0)),
                _ => s(r, c),
            };
            let class = if matches!(r.get(*c), Some(Value::Number(_))) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(o, "<td{class}>{}</td>", esc(&cell));
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    o
}

fn preset_rows(audit: &Audit, name: &str) -> Result<Vec<Row>> {
    rows(audit, presets::get(name)?.sql)
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI','PingFang SC','Hiragino Sans GB','Microsoft YaHei','Noto Sans CJK SC','Source Han Sans SC','WenQuanYi Micro Hei',sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px 0}h2{margin-top:36px;border-bottom:2px solid #d9dde3;padding-bottom:4px}
section{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:8px 20px 20px;margin:18px 0}
.meta{color:#5a6470;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:12px}
.card{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:10px 16px;min-width:140px}
.card b{display:block;font-size:22px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #e8eaee;padding:3px 10px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg text.lbl{font-size:11px;fill:#333}svg text.val{font-size:10px;fill:#555}
.hist{display:inline-block;margin:6px 18px 6px 0}.hist figcaption{font-size:12px;color:#333}
.empty{color:#8a939e;font-style:italic}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.sample{border-left:3px solid #c2453c;padding:4px 10px;margin:8px 0;background:#fbfbfc}
.sample.kept{border-color:#2f7d4f}
.sample pre{white-space:pre-wrap;word-break:break-word;font-size:12px;margin:4px 0;max-height:14em;overflow:auto}
.k{color:#5a6470;font-size:12px}
";

/// Render the report for an opened run. `baseline` adds a diff section against it.
pub fn render(audit: &Audit, opts: &ReportOptions, baseline: Option<&Audit>) -> Result<String> {
    let mut body = String::new();

    // Summary.
    let runs: Vec<String> = audit
        .files
        .dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let meta = rows(audit, "SELECT * FROM (SELECT COUNT(*) AS shards, SUM(rows) AS shard_rows, SUM(tokens) AS tokens, SUM(bytes) AS bytes FROM manifest WHERE kind = 'shard')")?;
    let funnel = preset_rows(audit, "funnel")?;
    let src_out: f64 = funnel
        .iter()
        .filter(|r| s(r, "role") == "source")
        .map(|r| f(r, "docs_out"))
        .sum();
    let rejected: f64 = funnel.iter().map(|r| f(r, "rejected")).sum();
    let kept = rows(
        audit,
        "SELECT COUNT(*) AS docs, SUM(CAST(n_tokens AS BIGINT)) AS tokens FROM docs",
    )?;
    let _ = write!(
        body,
        "<header><h1>{}</h1><div class=\"meta\">run: {} · files: {} shards, {} reject files</div>",
        esc(&opts.title),
        esc(&runs.join(", ")),
        audit.files.shards.len(),
        audit.files.rejects.len()
    );
    body.push_str("<div class=\"cards\">");
    let m = meta.first().cloned().unwrap_or_default();
    let k = kept.first().cloned().unwrap_or_default();
    for (label, v) in [
        ("documents read", src_out),
        ("rows in shards", f(&k, "docs")),
        ("rejected", rejected),
        ("tokens", f(&k, "tokens")),
        ("shard bytes (manifest)", f(&m, "bytes")),
    ] {
        let _ = write!(
            body,
            "<div class=\"card\">{}<b>{}</b></div>",
            esc(label),
            num(v)
        );
    }
    body.push_str("</div></header>");

    let mut section = |id: &str, title: &str, html: String| {
        let _ = write!(
            body,
            "<section id=\"{}\"><h2>{}</h2>{html}</section>",
            esc(id),
            esc(title)
        );
    };

    // Funnel.
    let chart_rows: Vec<(String, Vec<f64>)> = funnel
        .iter()
        .map(|r| {
            (
                format!("{} ({})", s(r, "node"), s(r, "kind")),
                vec![f(r, "docs_in"), f(r, "docs_out"), f(r, "rejected")],
            )
        })
        .collect();
    section(
        "funnel",
        "Funnel: documents per node",
        format!(
            "{}{}",
            bar_chart(&chart_rows, &["in", "out", "rejected"]),
            table(
                &funnel,
                &[
                    "node",
                    "kind",
                    "role",
                    "docs_in",
                    "docs_out",
                    "rejected",
                    "bad_records",
                    "pct_rejected",
                    "busy_secs"
                ]
            )
        ),
    );

    // Rejects by reason.
    let rej = preset_rows(audit, "rejects")?;
    let chart_rows: Vec<(String, Vec<f64>)> = rej
        .iter()
        .map(|r| {
            (
                format!("{} / {}", s(r, "stage"), s(r, "reason")),
                vec![if r.get("docs").is_some_and(|v| !v.is_null()) {
                    f(r, "docs")
                } else {
                    f(r, "written")
                }],
            )
        })
        .collect();
    section(
        "rejects",
        "Rejects by stage and reason",
        format!(
            "{}{}",
            bar_chart(&chart_rows, &["rejected docs"]),
            table(
                &rej,
                &[
                    "stage",
                    "reason",
                    "docs",
                    "pct_of_stage_in",
                    "written",
                    "chars",
                    "mean_score"
                ]
            )
        ),
    );

    // Length histogram.
    let len = preset_rows(audit, "length_histogram")?;
    let mut buckets: std::collections::BTreeMap<i64, (f64, f64)> = Default::default();
    for r in &len {
        let e = buckets.entry(f(r, "min_chars") as i64).or_default();
        if s(r, "side") == "kept" {
            e.0 += f(r, "docs");
        } else {
            e.1 += f(r, "docs");
        }
    }
    let chart_rows: Vec<(String, Vec<f64>)> = buckets
        .iter()
        .map(|(b, (k, r))| {
            (
                format!(
                    "{}–{} chars",
                    num(*b as f64),
                    num((*b * 2).max(1) as f64 - 1.0)
                ),
                vec![*k, *r],
            )
        })
        .collect();
    section(
        "lengths",
        "Length histogram (characters)",
        bar_chart(&chart_rows, &["kept", "rejected"]),
    );

    // Score histograms.
    let attr_bins = rows(
        audit,
        "WITH k AS (SELECT unnest(json_keys(attrs)) AS attr, attrs FROM docs WHERE n_chars IS NOT NULL),
         v AS (SELECT attr, json_get_f64(attrs, attr) AS x FROM k),
         b AS (SELECT attr, MIN(x) AS lo, MAX(x) AS hi FROM v WHERE x IS NOT NULL GROUP BY attr)
         SELECT v.attr AS name, b.lo, b.hi,
                COALESCE(LEAST(CAST(floor((v.x - b.lo) / NULLIF(b.hi - b.lo, 0) * 20) AS BIGINT), 19), 0) AS bin,
                COUNT(*) AS n
         FROM v JOIN b ON v.attr = b.attr WHERE v.x IS NOT NULL
         GROUP BY v.attr, b.lo, b.hi, 4 ORDER BY 1, 4",
    )?;
    let rej_bins = rows(
        audit,
        "WITH r AS (SELECT stage || ' / ' || reason AS name, score AS x FROM rejects WHERE score IS NOT NULL AND NOT isnan(score)),
         b AS (SELECT name, MIN(x) AS lo, MAX(x) AS hi FROM r GROUP BY name)
         SELECT r.name, b.lo, b.hi,
                COALESCE(LEAST(CAST(floor((r.x - b.lo) / NULLIF(b.hi - b.lo, 0) * 20) AS BIGINT), 19), 0) AS bin,
                COUNT(*) AS n
         FROM r JOIN b ON r.name = b.name GROUP BY r.name, b.lo, b.hi, 4 ORDER BY 1, 4",
    )?;
    let hists = |bins: &[Row], prefix: &str| -> String {
        let mut by: std::collections::BTreeMap<String, (f64, f64, Vec<f64>)> = Default::default();
        for r in bins {
            let e = by
                .entry(s(r, "name"))
                .or_insert_with(|| (f(r, "lo"), f(r, "hi"), vec![0.0; 20]));
            let b = (f(r, "bin") as usize).min(19);
            e.2[b] += f(r, "n");
        }
        if by.is_empty() {
            return String::new();
        }
        let mut o = format!("<h3>{}</h3>", esc(prefix));
        for (name, (lo, hi, b)) in by.iter().take(24) {
            o.push_str(&histogram(name, *lo, *hi, b));
        }
        o
    };
    let mut score_html = hists(&attr_bins, "Kept documents: attrs");
    score_html.push_str(&hists(
        &rej_bins,
        "Rejected documents: score, per stage / reason",
    ));
    if score_html.is_empty() {
        score_html = "<p class=\"empty\">No data in this run.</p>".into();
    }
    section("scores", "Quality-score histograms", score_html);

    // Languages and domains.
    let langs = preset_rows(audit, "languages")?;
    let chart_rows: Vec<(String, Vec<f64>)> = langs
        .iter()
        .take(20)
        .map(|r| (s(r, "lang"), vec![f(r, "docs")]))
        .collect();
    section(
        "languages",
        "Top languages (kept)",
        format!(
            "{}{}",
            bar_chart(&chart_rows, &["docs"]),
            table(&langs, &["lang", "docs", "chars", "tokens", "pct_docs"])
        ),
    );
    let doms = preset_rows(audit, "domains")?;
    let chart_rows: Vec<(String, Vec<f64>)> = doms
        .iter()
        .take(25)
        .map(|r| (s(r, "domain"), vec![f(r, "kept"), f(r, "rejected")]))
        .collect();
    section(
        "domains",
        "Top domains",
        bar_chart(&chart_rows, &["kept", "rejected"]),
    );

    // Dedup.
    let dd = preset_rows(audit, "dedup_clusters")?;
    let chart_rows: Vec<(String, Vec<f64>)> = dd
        .iter()
        .map(|r| {
            (
                format!("size {}", s(r, "cluster_size")),
                vec![f(r, "clusters")],
            )
        })
        .collect();
    section(
        "dedup",
        "Dedup cluster sizes",
        format!(
            "{}{}",
            bar_chart(&chart_rows, &["clusters"]),
            table(&dd, &["cluster_size", "clusters", "docs_before_dedup"])
        ),
    );

    // Mixture and tokens.
    let mix = preset_rows(audit, "mixture")?;
    let chart_rows: Vec<(String, Vec<f64>)> = mix
        .iter()
        .map(|r| {
            (
                format!("{} / {}", s(r, "node"), s(r, "source")),
                vec![f(r, "target_pct"), f(r, "achieved_pct")],
            )
        })
        .collect();
    section(
        "mixture",
        "Mixture: target vs achieved (% of tokens)",
        format!(
            "{}{}",
            bar_chart(&chart_rows, &["target %", "achieved %"]),
            table(
                &mix,
                &[
                    "node",
                    "source",
                    "target_pct",
                    "achieved_pct",
                    "diff_pp",
                    "tokens"
                ]
            )
        ),
    );
    let tps = preset_rows(audit, "tokens_per_source")?;
    let chart_rows: Vec<(String, Vec<f64>)> = tps
        .iter()
        .map(|r| {
            (
                format!("{} ({})", s(r, "source"), s(r, "shard_kind")),
                vec![f(r, "tokens")],
            )
        })
        .collect();
    section(
        "tokens",
        "Tokens per source",
        format!(
            "{}{}",
            bar_chart(&chart_rows, &["tokens"]),
            table(
                &tps,
                &["shard_kind", "source", "docs", "tokens", "pct_tokens"]
            )
        ),
    );

    // Samples.
    let seed = opts.seed as i64;
    let n = opts.samples;
    let ids = rows(audit, &format!("SELECT id FROM docs WHERE n_chars IS NOT NULL AND id IS NOT NULL ORDER BY sample_key(id, {seed}), id LIMIT {n}"))?;
    let mut samples = String::from("<h3>Kept documents</h3>");
    if ids.is_empty() {
        samples.push_str("<p class=\"empty\">No document shards in this run.</p>");
    } else {
        let list: Vec<String> = ids.iter().map(|r| lit(&s(r, "id"))).collect();
        let kept = rows(
            audit,
            &format!(
                "SELECT id, source, lang, COALESCE(url, json_get(meta, 'url')) AS url, n_chars, n_tokens, substr(text, 1, {TEXT_CHARS}) AS text, attrs
                 FROM docs WHERE id IN ({}) ORDER BY sample_key(id, {seed}), id",
                list.join(", ")
            ),
        )?;
        for r in &kept {
            let _ = write!(
                samples,
                "<div class=\"sample kept\"><div class=\"k\">id {} · source {} · lang {} · {} chars · {} tokens</div><div class=\"k\">url {}</div><div class=\"k\">attrs {}</div><pre>{}</pre></div>",
                esc(&s(r, "id")),
                esc(&s(r, "source")),
                esc(&s(r, "lang")),
                esc(&s(r, "n_chars")),
                esc(&s(r, "n_tokens")),
                esc(&s(r, "url")),
                esc(&s(r, "attrs")),
                esc(&s(r, "text"))
            );
        }
    }
    samples.push_str("<h3>Rejected documents, per stage and reason</h3>");
    let rs = rows(
        audit,
        &format!(
            "SELECT stage, reason, id, source, url, score, detail, n_chars, text_prefix FROM (
               SELECT stage, reason, id, source, COALESCE(url, json_get(meta, 'url')) AS url, score, detail, n_chars, text_prefix,
                      ROW_NUMBER() OVER (PARTITION BY stage, reason ORDER BY sample_key(id, {seed}), id) AS rn
               FROM rejects) AS t
             WHERE rn <= {n} ORDER BY stage, reason, rn"
        ),
    )?;
    if rs.is_empty() {
        samples.push_str("<p class=\"empty\">No rejects written in this run.</p>");
    }
    let mut current = String::new();
    for r in &rs {
        let group = format!("{} / {}", s(r, "stage"), s(r, "reason"));
        if group != current {
            if !current.is_empty() {
                samples.push_str("</details>");
            }
            let _ = write!(samples, "<details open><summary>{}</summary>", esc(&group));
            current = group;
        }
        let _ = write!(
            samples,
            "<div class=\"sample\"><div class=\"k\">id {} · source {} · score {} · {} chars</div><div class=\"k\">url {}</div><div class=\"k\">detail {}</div><pre>{}</pre></div>",
            esc(&s(r, "id")),
            esc(&s(r, "source")),
            esc(&s(r, "score")),
            esc(&s(r, "n_chars")),
            esc(&s(r, "url")),
            esc(&s(r, "detail")),
            esc(&s(r, "text_prefix"))
        );
    }
    if !current.is_empty() {
        samples.push_str("</details>");
    }
    section(
        "samples",
        &format!("Random samples (seed {})", opts.seed),
        samples,
    );

    if let Some(base) = baseline {
        let (schema, batch) = super::diff::diff(base, audit, true)?;
        let json = super::format_batches(&schema, &[batch], Format::Json)?;
        let d: Vec<Row> =
            serde_json::from_str(&json).map_err(|e| Error::msg(format!("diff: {e}")))?;
        let runs: Vec<String> = base
            .files
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        section(
            "diff",
            "Changes against the baseline",
            format!(
                "<p class=\"meta\">a = baseline ({}), b = this run; unchanged rows omitted</p>{}",
                esc(&runs.join(", ")),
                table(
                    &d,
                    &[
                        "section",
                        "stage",
                        "key",
                        "metric",
                        "a",
                        "b",
                        "delta",
                        "pct_change"
                    ]
                )
            ),
        );
    }

    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\"><title>{}</title><style>{CSS}</style></head><body><main>{body}<p class=\"meta\">Generated by sluice {}.</p></main></body></html>\n",
        esc(&opts.title),
        env!("CARGO_PKG_VERSION")
    ))
}
