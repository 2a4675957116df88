//! The report's sections, one function each: SQL (presets where one fits) → maud markup.
//! A section without data says so once, with the reason (no dedup node, no mix node, ...).

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::charts::{bar_chart, value_hist, Hist};
use super::data::{f, lit, num, rows, s, Graph, Row, T};
use super::{ReportOptions, TEXT_CHARS};
use crate::audit::{presets, Audit};
use crate::error::Result;

/// What every section needs: the run, its graph, and where its documents are.
pub struct Ctx<'a> {
    pub audit: &'a Audit,
    pub graph: Graph,
    pub opts: &'a ReportOptions,
    /// The table of kept documents: `docs` (document shards) or `docs_index` (the pack
    /// stage's index of a packed run).
    pub kept: &'static str,
    /// The output is packed sequences.
    pub packed: bool,
}

impl Ctx<'_> {
    /// Rows of a preset, its kept-document table swapped to [`Ctx::kept`].
    pub fn preset(&self, name: &str) -> Result<Vec<Row>> {
        rows(self.audit, &self.on_kept(presets::get(name)?.sql))
    }

    /// `sql` with `FROM docs` read from the kept table.
    pub fn on_kept(&self, sql: &str) -> String {
        if self.kept == "docs" {
            return sql.to_string();
        }
        sql.replace("FROM docs ", &format!("FROM {} ", self.kept))
            .replace("FROM docs\n", &format!("FROM {}\n", self.kept))
    }

    /// Where the document-level sections come from, for a note under their heading.
    pub fn kept_note(&self) -> Option<&'static str> {
        (self.kept == "docs_index").then_some(
            "Packed run: documents as they went into the pack stage (its document index, docs_index/).",
        )
    }
}

/// One `<section>`; `empty` (the reason there is no data) replaces the body.
pub fn section(
    id: &str,
    title: &str,
    note: Option<&str>,
    empty: Option<String>,
    body: Markup,
) -> Markup {
    html! {
        section id=(T(id)) {
            h2 { (T(title)) }
            @if let Some(n) = note { p.meta { (T(n)) } }
            @match empty {
                Some(why) => p.empty { (T(&why)) },
                None => (body),
            }
        }
    }
}

/// An HTML table of result rows (every cell escaped, numbers rounded).
pub fn table(rows: &[Row], cols: &[&str]) -> Markup {
    html! {
        table {
            thead { tr { @for c in cols { th { (T(c)) } } } }
            tbody {
                @for r in rows {
                    tr {
                        @for c in cols {
                            @match r.get(*c) {
                                Some(serde_json::Value::Number(n)) => td.n { (num(n.as_f64().unwrap_or(0.0))) },
                                _ => td { (T(&s(r, c))) },
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Funnel: documents in / out / rejected per node, in the order of the pipeline's graph.
pub fn funnel(cx: &Ctx) -> Result<Markup> {
    let mut funnel = cx.preset("funnel")?;
    funnel.sort_by_key(|r| (cx.graph.rank(&s(r, "node")), s(r, "node")));
    let chart: Vec<(String, Vec<f64>)> = funnel
        .iter()
        .map(|r| {
            (
                format!("{} ({})", s(r, "node"), s(r, "kind")),
                vec![f(r, "docs_in"), f(r, "docs_out"), f(r, "rejected")],
            )
        })
        .collect();
    let cols = [
        "node",
        "kind",
        "role",
        "docs_in",
        "docs_out",
        "rejected",
        "bad_records",
        "pct_rejected",
        "busy_secs",
    ];
    let note = (!cx.graph.order.is_empty()).then_some(
        "Nodes in pipeline order (the config's graph, from the run's manifest). A pack node's out counts sequences.",
    );
    Ok(section(
        "funnel",
        "Funnel: documents per node",
        note,
        funnel
            .is_empty()
            .then(|| "No node statistics (stats.json) in this run.".into()),
        html! { (bar_chart(&chart, &["in", "out", "rejected"])) (table(&funnel, &cols)) },
    ))
}

/// Rejects by stage and reason.
pub fn rejects(cx: &Ctx) -> Result<Markup> {
    let rej = cx.preset("rejects")?;
    let chart: Vec<(String, Vec<f64>)> = rej
        .iter()
        .map(|r| {
            let n = if r.get("docs").is_some_and(|v| !v.is_null()) {
                f(r, "docs")
            } else {
                f(r, "written")
            };
            (format!("{} / {}", s(r, "stage"), s(r, "reason")), vec![n])
        })
        .collect();
    let cols = [
        "stage",
        "reason",
        "docs",
        "pct_of_stage_in",
        "written",
        "chars",
        "mean_score",
    ];
    Ok(section(
        "rejects",
        "Rejects by stage and reason",
        None,
        rej.is_empty()
            .then(|| "No document was rejected in this run.".into()),
        html! { (bar_chart(&chart, &["rejected docs"])) (table(&rej, &cols)) },
    ))
}

/// Length histogram: kept vs rejected per power-of-two bucket, with length_filter bounds.
pub fn lengths(cx: &Ctx) -> Result<Markup> {
    let len = cx.preset("length_histogram")?;
    let mut buckets: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for r in &len {
        let e = buckets.entry(f(r, "min_chars") as i64).or_default();
        if s(r, "side") == "kept" {
            e.0 += f(r, "docs");
        } else {
            e.1 += f(r, "docs");
        }
    }
    // Contiguous powers of two (bucket 0 holds empty documents).
    let log = |b: i64| if b <= 0 { -1 } else { b.ilog2() as i64 };
    let (k0, k1) = match (buckets.keys().next(), buckets.keys().last()) {
        (Some(a), Some(b)) => (log(*a), log(*b)),
        _ => (0, 0),
    };
    let ks: Vec<i64> = (k0..=k1).collect();
    let start = |k: i64| if k < 0 { 0 } else { 1i64 << k };
    let labels = ks.iter().map(|k| num(start(*k) as f64)).collect();
    let get = |k: i64| buckets.get(&start(k)).copied().unwrap_or_default();
    let kept: Vec<f64> = ks.iter().map(|k| get(*k).0).collect();
    let rej: Vec<f64> = ks.iter().map(|k| get(*k).1).collect();
    // A bound v sits at log2(v) on this axis, in bins from 2^k0.
    let lines = cx
        .graph
        .nodes_of(&["length_filter"])
        .iter()
        .flat_map(|n| cx.graph.node_thresholds(n))
        .map(|(l, v)| (l, if v <= 0.0 { 0.0 } else { v.log2() - k0 as f64 }))
        .collect();
    let hist = Hist {
        title: "documents per length (characters, power-of-two buckets; a label is the bucket's lower bound)",
        bin_labels: labels,
        series: vec![("kept", kept), ("rejected", rej)],
        lines,
        width: 640.0,
    };
    Ok(section(
        "lengths",
        "Length histogram (characters)",
        cx.kept_note(),
        len.is_empty().then(|| no_docs_reason(cx)),
        hist.render(),
    ))
}

/// Why there are no kept documents to describe.
fn no_docs_reason(cx: &Ctx) -> String {
    if cx.packed {
        "No document-level data: the packed shards hold sequences, and this run has no document index (docs_index/, written by pack since sluice 0.1 with the report's packed sections).".into()
    } else if cx.audit.files.shards.is_empty() {
        "No shards in this run: no sink wrote any, or every document was rejected.".into()
    } else {
        "No kept documents in this run.".into()
    }
}

/// Histograms drawn per group (kept attrs; rejects): thresholded attrs come first.
const MAX_HISTS: usize = 12;

/// Score histograms: kept documents' attrs and rejects' scores, with thresholds.
pub fn scores(cx: &Ctx) -> Result<Markup> {
    let attr_bins = rows(
        cx.audit,
        &format!(
            "WITH k AS (SELECT unnest(json_keys(attrs)) AS attr, attrs FROM {} WHERE n_chars IS NOT NULL),
             v AS (SELECT attr, json_get_f64(attrs, attr) AS x FROM k),
             b AS (SELECT attr, MIN(x) AS lo, MAX(x) AS hi FROM v WHERE x IS NOT NULL GROUP BY attr)
             SELECT v.attr AS name, b.lo, b.hi,
                    COALESCE(LEAST(CAST(floor((v.x - b.lo) / NULLIF(b.hi - b.lo, 0) * 20) AS BIGINT), 19), 0) AS bin,
                    COUNT(*) AS n
             FROM v JOIN b ON v.attr = b.attr WHERE v.x IS NOT NULL
             GROUP BY v.attr, b.lo, b.hi, 4 ORDER BY 1, 4",
            cx.kept
        ),
    )?;
    let rej_bins = rows(
        cx.audit,
        "WITH r AS (SELECT stage, reason, score AS x FROM rejects WHERE score IS NOT NULL AND NOT isnan(score)),
         b AS (SELECT stage, reason, MIN(x) AS lo, MAX(x) AS hi FROM r GROUP BY stage, reason)
         SELECT r.stage, r.reason, r.stage || ' / ' || r.reason AS name, b.lo, b.hi,
                COALESCE(LEAST(CAST(floor((r.x - b.lo) / NULLIF(b.hi - b.lo, 0) * 20) AS BIGINT), 19), 0) AS bin,
                COUNT(*) AS n
         FROM r JOIN b ON r.stage = b.stage AND r.reason = b.reason
         GROUP BY r.stage, r.reason, b.lo, b.hi, 6 ORDER BY 3, 6",
    )?;
    let group = |bins: &[Row]| {
        let mut by: BTreeMap<String, (f64, f64, Vec<f64>, String)> = BTreeMap::new();
        for r in bins {
            let e = by
                .entry(s(r, "name"))
                .or_insert_with(|| (f(r, "lo"), f(r, "hi"), vec![0.0; 20], s(r, "stage")));
            e.2[(f(r, "bin") as usize).min(19)] += f(r, "n");
        }
        by
    };
    // Ids are not scores (`dedup.cluster_id`); attrs with a configured threshold first.
    let (constant, varying): (Vec<_>, Vec<_>) = group(&attr_bins)
        .into_iter()
        .filter(|(name, _)| !name.ends_with("_id"))
        .partition(|(_, (lo, hi, _, _))| hi <= lo);
    let mut kept: Vec<_> = varying
        .into_iter()
        .map(|(name, v)| (cx.graph.attr_thresholds(&name), name, v))
        .collect();
    kept.sort_by_key(|(t, name, _)| (t.is_empty(), name.clone()));
    let rej = group(&rej_bins);
    let constant: Vec<String> = constant
        .iter()
        .map(|(name, (lo, _, b, _))| {
            format!("{name} = {} ({} docs)", num(*lo), num(b.iter().sum()))
        })
        .collect();
    let body = html! {
        @if !kept.is_empty() {
            h3 { "Kept documents: attrs" }
            @for (lines, name, (lo, hi, b, _)) in kept.iter().take(MAX_HISTS) {
                (value_hist(name, *lo, *hi, b, lines))
            }
            @if kept.len() > MAX_HISTS {
                p.meta { (kept.len() - MAX_HISTS) " more attrs vary; their count, min, mean and max: `sluice audit RUN --preset attrs`." }
            }
        }
        @if !constant.is_empty() {
            p.meta { "One value only: " (T(&constant.join(" · "))) }
        }
        @if !rej.is_empty() {
            h3 { "Rejected documents: score, per stage / reason" }
            @for (name, (lo, hi, b, stage)) in rej.iter().take(MAX_HISTS) {
                (value_hist(name, *lo, *hi, b, &cx.graph.node_thresholds(stage)))
            }
            @if rej.len() > MAX_HISTS { p.meta { (rej.len() - MAX_HISTS) " more stage / reason pairs: see the rejects table." } }
        }
    };
    let empty = (kept.is_empty() && rej.is_empty() && constant.is_empty()).then(|| {
        "No scores in this run: no kept document carries a numeric attr and no reject has a score.".to_string()
    });
    Ok(section(
        "scores",
        "Quality-score histograms",
        Some("Red lines: the configured threshold of the node that uses the score (from the config in the run's manifest)."),
        empty,
        body,
    ))
}

/// Top languages of the kept documents.
pub fn languages(cx: &Ctx) -> Result<Markup> {
    let langs = cx.preset("languages")?;
    let chart: Vec<(String, Vec<f64>)> = langs
        .iter()
        .take(20)
        .map(|r| (s(r, "lang"), vec![f(r, "docs")]))
        .collect();
    let mut empty = langs.is_empty().then(|| no_docs_reason(cx));
    if empty.is_none()
        && langs.iter().all(|r| s(r, "lang") == "(none)")
        && cx.graph.nodes_of(&["langid"]).is_empty()
    {
        empty = Some("No language ids: no langid node in this run.".into());
    }
    Ok(section(
        "languages",
        "Top languages (kept)",
        cx.kept_note(),
        empty,
        html! { (bar_chart(&chart, &["docs"])) (table(&langs, &["lang", "docs", "chars", "tokens", "pct_docs"])) },
    ))
}

/// Top domains, kept vs rejected.
pub fn domains(cx: &Ctx) -> Result<Markup> {
    let doms = cx.preset("domains")?;
    let chart: Vec<(String, Vec<f64>)> = doms
        .iter()
        .take(25)
        .map(|r| (s(r, "domain"), vec![f(r, "kept"), f(r, "rejected")]))
        .collect();
    Ok(section(
        "domains",
        "Top domains",
        cx.kept_note(),
        doms.is_empty()
            .then(|| "No URLs in this run: no document has a url (or meta.url).".into()),
        bar_chart(&chart, &["kept", "rejected"]),
    ))
}

/// Dedup cluster sizes (kept documents' `*.cluster_size`).
pub fn dedup(cx: &Ctx) -> Result<Markup> {
    let dd = cx.preset("dedup_clusters")?;
    let chart: Vec<(String, Vec<f64>)> = dd
        .iter()
        .map(|r| {
            (
                format!("size {}", s(r, "cluster_size")),
                vec![f(r, "clusters")],
            )
        })
        .collect();
    let nodes = cx
        .graph
        .nodes_of(&["minhash_dedup", "exact_dedup", "line_dedup"]);
    let empty = dd.is_empty().then(|| {
        if nodes.is_empty() && !cx.graph.order.is_empty() {
            "No dedup node in this run.".to_string()
        } else if nodes.is_empty() {
            "No cluster sizes: no kept document carries a *.cluster_size attr.".to_string()
        } else if cx.packed && cx.kept == "docs" {
            no_docs_reason(cx)
        } else {
            format!(
                "No cluster sizes: the dedup node(s) {} wrote no *.cluster_size attr on kept documents (only minhash_dedup does).",
                nodes.join(", ")
            )
        }
    });
    Ok(section(
        "dedup",
        "Dedup cluster sizes",
        cx.kept_note(),
        empty,
        html! { (bar_chart(&chart, &["clusters"])) (table(&dd, &["cluster_size", "clusters", "docs_before_dedup"])) },
    ))
}

/// Mixture target vs achieved, and tokens per source.
pub fn mixture(cx: &Ctx) -> Result<Markup> {
    let mix = cx.preset("mixture")?;
    let chart: Vec<(String, Vec<f64>)> = mix
        .iter()
        .map(|r| {
            (
                format!("{} / {}", s(r, "node"), s(r, "source")),
                vec![f(r, "target_pct"), f(r, "achieved_pct")],
            )
        })
        .collect();
    let cols = [
        "node",
        "source",
        "target_pct",
        "achieved_pct",
        "diff_pp",
        "tokens",
    ];
    let empty = mix.is_empty().then(|| {
        if cx.graph.nodes_of(&["mix"]).is_empty() {
            "No mix node in this run: there is no target mixture to compare with (tokens per source are below).".to_string()
        } else {
            "The mix node reported no target/achieved shares in the manifest.".to_string()
        }
    });
    Ok(section(
        "mixture",
        "Mixture: target vs achieved (% of tokens)",
        None,
        empty,
        html! { (bar_chart(&chart, &["target %", "achieved %"])) (table(&mix, &cols)) },
    ))
}

/// Tokens per source in the output (document and packed shards).
pub fn tokens(cx: &Ctx) -> Result<Markup> {
    let tps = cx.preset("tokens_per_source")?;
    let tps = if cx.packed {
        // `tokens_per_source` reads packed rows' source_mix: keep it on `docs`.
        rows(cx.audit, presets::get("tokens_per_source")?.sql)?
    } else {
        tps
    };
    let chart: Vec<(String, Vec<f64>)> = tps
        .iter()
        .map(|r| {
            (
                format!("{} ({})", s(r, "source"), s(r, "shard_kind")),
                vec![f(r, "tokens")],
            )
        })
        .collect();
    Ok(section(
        "tokens",
        "Tokens per source",
        None,
        tps.is_empty()
            .then(|| "No tokens in the output: no shard rows carry tokens.".into()),
        html! { (bar_chart(&chart, &["tokens"])) (table(&tps, &["shard_kind", "source", "docs", "tokens", "pct_tokens"])) },
    ))
}

/// `name value · name value` of the attrs of the given ids (read through the SQL
/// functions only, whatever the column's encoding).
fn attrs_of(cx: &Ctx, list: &str) -> Result<BTreeMap<String, String>> {
    let r = rows(
        cx.audit,
        &format!(
            "WITH k AS (SELECT id, unnest(json_keys(attrs)) AS attr, attrs FROM {} WHERE id IN ({list}) AND n_chars IS NOT NULL)
             SELECT id, attr, json_get_f64(attrs, attr) AS x FROM k ORDER BY id, attr",
            cx.kept
        ),
    )?;
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for row in &r {
        let e = out.entry(s(row, "id")).or_default();
        if !e.is_empty() {
            e.push_str(" · ");
        }
        let v = if row.get("x").is_some_and(|v| v.is_number()) {
            num(f(row, "x"))
        } else {
            "-".into()
        };
        e.push_str(&format!("{} {v}", s(row, "attr")));
    }
    Ok(out)
}

/// Seeded random samples of kept documents and of rejects per (stage, reason).
pub fn samples(cx: &Ctx) -> Result<Markup> {
    let seed = cx.opts.seed as i64;
    let n = cx.opts.samples;
    let with_text = if cx.kept == "docs_index" {
        " AND text <> ''"
    } else {
        ""
    };
    let ids = rows(
        cx.audit,
        &format!(
            "SELECT id FROM {} WHERE n_chars IS NOT NULL AND id IS NOT NULL{with_text} ORDER BY sample_key(id, {seed}), id LIMIT {n}",
            cx.kept
        ),
    )?;
    let mut kept = Vec::new();
    let mut attrs = BTreeMap::new();
    if !ids.is_empty() {
        let list: Vec<String> = ids.iter().map(|r| lit(&s(r, "id"))).collect();
        let list = list.join(", ");
        kept = rows(
            cx.audit,
            &format!(
                "SELECT id, source, lang, COALESCE(url, json_get(meta, 'url')) AS url, n_chars, n_tokens, substr(text, 1, {TEXT_CHARS}) AS text
                 FROM {} WHERE id IN ({list}) AND n_chars IS NOT NULL ORDER BY sample_key(id, {seed}), id",
                cx.kept
            ),
        )?;
        attrs = attrs_of(cx, &list)?;
    }
    let rs = rows(
        cx.audit,
        &format!(
            "SELECT stage, reason, id, source, url, score, detail, n_chars, text_prefix FROM (
               SELECT stage, reason, id, source, COALESCE(url, json_get(meta, 'url')) AS url, score, detail, n_chars, text_prefix,
                      ROW_NUMBER() OVER (PARTITION BY stage, reason ORDER BY sample_key(id, {seed}), id) AS rn
               FROM rejects) AS t
             WHERE rn <= {n} ORDER BY stage, reason, rn"
        ),
    )?;
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in &rs {
        let g = format!("{} / {}", s(r, "stage"), s(r, "reason"));
        match groups.last_mut() {
            Some((name, v)) if *name == g => v.push(r),
            _ => groups.push((g, vec![r])),
        }
    }
    let kept_note = (cx.kept == "docs_index").then_some(
        "Packed run: drawn from the pack stage's document index, which keeps the text of a seeded sample of documents.",
    );
    let body = html! {
        h3 { "Kept documents" }
        @if let Some(n) = kept_note { p.meta { (n) } }
        @if kept.is_empty() { p.empty { (T(&no_docs_reason(cx))) } }
        @for r in &kept {
            div.sample.kept {
                div.k { "id " (T(&s(r, "id"))) " · source " (T(&s(r, "source"))) " · lang " (T(&s(r, "lang")))
                        " · " (num(f(r, "n_chars"))) " chars · " (num(f(r, "n_tokens"))) " tokens" }
                div.k { "url " (T(&s(r, "url"))) }
                div.k { "attrs " (T(attrs.get(&s(r, "id")).map_or("", |x| x.as_str()))) }
                pre { (T(&s(r, "text"))) }
            }
        }
        h3 { "Rejected documents, per stage and reason" }
        @if rs.is_empty() { p.empty { "No rejects written in this run." } }
        @for (g, items) in &groups {
            details open {
                summary { (T(g)) }
                @for r in items {
                    div.sample {
                        div.k { "id " (T(&s(r, "id"))) " · source " (T(&s(r, "source")))
                                " · score " (score(r)) " · " (T(&s(r, "n_chars"))) " chars" }
                        div.k { "url " (T(&s(r, "url"))) }
                        div.k { "detail " (T(&s(r, "detail"))) }
                        pre { (T(&s(r, "text_prefix"))) }
                    }
                }
            }
        }
    };
    Ok(section(
        "samples",
        &format!("Random samples (seed {})", cx.opts.seed),
        None,
        None,
        body,
    ))
}

fn score(r: &Row) -> String {
    match r.get("score") {
        Some(serde_json::Value::Number(n)) => num(n.as_f64().unwrap_or(0.0)),
        _ => s(r, "score"),
    }
}
