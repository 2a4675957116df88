//! Named audit queries: `sluice audit RUN --preset NAME` (`--show-sql` prints the SQL).
//!
//! Each preset is plain SQL over the tables of [`super`], so a user can copy it and edit
//! it. Every preset runs on every run: where its data is absent (no dedup stage, no mix
//! node, no packed shards) it returns zero rows, never an error. Every `ORDER BY` is
//! total, so output is deterministic.

use crate::error::{Error, Result};

/// One named query.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// Name given to `--preset`.
    pub name: &'static str,
    /// One line: the question it answers.
    pub about: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// All presets, in the order `--list-presets` shows them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "funnel",
        about: "documents in, out and rejected per node (sources first)",
        sql: "SELECT node, kind, role, docs_in, docs_out, rejected, bad_records,
       ROUND(100.0 * CAST(rejected AS DOUBLE) / CAST(NULLIF(docs_in, 0) AS DOUBLE), 2) AS pct_rejected,
       ROUND(busy_secs, 3) AS busy_secs
FROM (SELECT node, MAX(kind) AS kind, MAX(role) AS role,
             SUM(docs_in) AS docs_in, SUM(docs_out) AS docs_out, SUM(rejected) AS rejected,
             SUM(bad_records) AS bad_records, SUM(busy_secs) AS busy_secs
      FROM nodes GROUP BY node) AS n
ORDER BY CASE role WHEN 'source' THEN 0 WHEN 'sink' THEN 2 ELSE 1 END,
         COALESCE(NULLIF(docs_in, 0), docs_out) DESC, node",
    },
    Preset {
        name: "rejects",
        about: "rejects by stage and reason: counted (stats.json) and written (rejects/)",
        sql: "WITH counted AS (
  SELECT node AS stage, key AS reason, SUM(docs) AS docs FROM stats WHERE metric = 'reject' GROUP BY node, key
), stage_in AS (
  SELECT node, SUM(docs) AS docs_in FROM stats WHERE metric = 'docs_in' GROUP BY node
), written AS (
  SELECT stage, reason, COUNT(*) AS written, SUM(n_chars) AS chars, AVG(score) AS mean_score
  FROM rejects GROUP BY stage, reason
), keys AS (
  SELECT stage, reason FROM counted UNION SELECT stage, reason FROM written
)
SELECT k.stage, k.reason, c.docs,
       ROUND(100.0 * CAST(c.docs AS DOUBLE) / CAST(NULLIF(i.docs_in, 0) AS DOUBLE), 2) AS pct_of_stage_in,
       w.written, w.chars, ROUND(w.mean_score, 4) AS mean_score
FROM keys k
LEFT JOIN counted c ON c.stage = k.stage AND c.reason = k.reason
LEFT JOIN written w ON w.stage = k.stage AND w.reason = k.reason
LEFT JOIN stage_in i ON i.node = k.stage
ORDER BY COALESCE(c.docs, w.written) DESC, k.stage, k.reason",
    },
    Preset {
        name: "length_histogram",
        about: "documents per length bucket [2^k, 2^(k+1)) chars, kept vs rejected",
        sql: "WITH l AS (
  SELECT 'kept' AS side, n_chars, CAST(n_tokens AS BIGINT) AS n_tokens FROM docs WHERE n_chars IS NOT NULL
  UNION ALL
  SELECT 'rejected' AS side, n_chars, CAST(NULL AS BIGINT) AS n_tokens FROM rejects WHERE n_chars IS NOT NULL
)
SELECT side,
       CASE WHEN n_chars = 0 THEN 0
            ELSE CAST(power(2, floor(log2(CAST(n_chars AS DOUBLE)))) AS BIGINT) END AS min_chars,
       COUNT(*) AS docs, SUM(n_tokens) AS tokens
FROM l
GROUP BY 1, 2
ORDER BY 1, 2",
    },
    Preset {
        name: "languages",
        about: "language mix of the kept documents",
        sql: "SELECT COALESCE(lang, '(none)') AS lang, COUNT(*) AS docs, SUM(n_chars) AS chars,
       SUM(CAST(n_tokens AS BIGINT)) AS tokens,
       ROUND(100.0 * CAST(COUNT(*) AS DOUBLE) / CAST(SUM(COUNT(*)) OVER () AS DOUBLE), 2) AS pct_docs
FROM docs
WHERE n_chars IS NOT NULL
GROUP BY 1
ORDER BY docs DESC, lang",
    },
    Preset {
        name: "domains",
        about: "top 50 domains, kept vs rejected",
        sql: "WITH d AS (
  SELECT domain(COALESCE(url, json_get(meta, 'url'))) AS domain, 1 AS kept, 0 AS rejected
  FROM docs WHERE n_chars IS NOT NULL
  UNION ALL
  SELECT domain(COALESCE(url, json_get(meta, 'url'))) AS domain, 0 AS kept, 1 AS rejected FROM rejects
)
SELECT domain, SUM(kept) AS kept, SUM(rejected) AS rejected,
       ROUND(100.0 * CAST(SUM(rejected) AS DOUBLE) / CAST(COUNT(*) AS DOUBLE), 1) AS pct_rejected
FROM d
WHERE domain IS NOT NULL
GROUP BY domain
ORDER BY COUNT(*) DESC, domain
LIMIT 50",
    },
    Preset {
        name: "dedup_clusters",
        about: "dedup cluster-size distribution (kept documents' `*.cluster_size` attr)",
        sql: "WITH c AS (
  SELECT CAST(json_find_f64(attrs, 'cluster_size') AS BIGINT) AS cluster_size
  FROM docs WHERE n_chars IS NOT NULL
)
SELECT cluster_size, COUNT(*) AS clusters, SUM(cluster_size) AS docs_before_dedup
FROM c
WHERE cluster_size IS NOT NULL
GROUP BY cluster_size
ORDER BY cluster_size",
    },
    Preset {
        name: "mixture",
        about: "mixture target vs achieved token share per source (mix nodes' manifest)",
        sql: "SELECT run, node, source,
       ROUND(100.0 * target, 2) AS target_pct,
       ROUND(100.0 * COALESCE(achieved,
             CAST(tokens AS DOUBLE) / CAST(NULLIF(SUM(tokens) OVER (PARTITION BY run, node), 0) AS DOUBLE)), 2) AS achieved_pct,
       ROUND(100.0 * (COALESCE(achieved,
             CAST(tokens AS DOUBLE) / CAST(NULLIF(SUM(tokens) OVER (PARTITION BY run, node), 0) AS DOUBLE)) - target), 2) AS diff_pp,
       tokens
FROM mixture
ORDER BY run, node, source",
    },
    Preset {
        name: "tokens_per_source",
        about: "documents and tokens per source in the output (document and packed shards)",
        sql: "WITH t AS (
  SELECT 'documents' AS shard_kind, source, COUNT(*) AS docs, SUM(CAST(n_tokens AS BIGINT)) AS tokens
  FROM docs WHERE n_chars IS NOT NULL GROUP BY source
  UNION ALL
  SELECT 'packed' AS shard_kind, src AS source, CAST(NULL AS BIGINT) AS docs, SUM(tok) AS tokens
  FROM (SELECT s['source'] AS src, CAST(s['tokens'] AS BIGINT) AS tok
        FROM (SELECT unnest(source_mix) AS s FROM docs WHERE source_mix IS NOT NULL) AS u) AS p
  GROUP BY src
)
SELECT shard_kind, source, docs, tokens,
       ROUND(100.0 * CAST(tokens AS DOUBLE) / CAST(NULLIF(SUM(tokens) OVER (PARTITION BY shard_kind), 0) AS DOUBLE), 2) AS pct_tokens
FROM t
ORDER BY shard_kind, tokens DESC, source",
    },
    Preset {
        name: "bad_records",
        about: "bad (unreadable) input records per node and reason",
        sql: "SELECT node, key AS reason, SUM(docs) AS records
FROM stats WHERE metric = 'bad_record'
GROUP BY node, key
ORDER BY records DESC, node, reason",
    },
    Preset {
        name: "attrs",
        about: "every score in the kept documents' attrs: count, min, mean, max",
        sql: "WITH k AS (
  SELECT unnest(json_keys(attrs)) AS attr, attrs FROM docs WHERE n_chars IS NOT NULL
)
SELECT attr, COUNT(*) AS docs,
       MIN(json_get_f64(attrs, attr)) AS min,
       ROUND(AVG(json_get_f64(attrs, attr)), 6) AS mean,
       MAX(json_get_f64(attrs, attr)) AS max
FROM k
GROUP BY attr
ORDER BY attr",
    },
];

/// The preset with this name, or an error listing the names (with a suggestion).
pub fn get(name: &str) -> Result<&'static Preset> {
    if let Some(p) = PRESETS.iter().find(|p| p.name == name) {
        return Ok(p);
    }
    let best = PRESETS
        .iter()
        .map(|p| (strsim::jaro_winkler(p.name, name), p.name))
        .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
    let hint = if best.0 > 0.8 {
        format!(" (did you mean `{}`?)", best.1)
    } else {
        String::new()
    };
    let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
    Err(Error::msg(format!(
        "unknown preset `{name}`{hint}; presets: {}",
        names.join(", ")
    )))
}

/// `name  about` lines for `--list-presets`.
pub fn listing() -> String {
    let w = PRESETS.iter().map(|p| p.name.len()).max().unwrap_or(0);
    PRESETS
        .iter()
        .map(|p| format!("{:w$}  {}\n", p.name, p.about, w = w))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_preset_suggests() {
        let e = super::get("reject").unwrap_err().to_string();
        assert!(e.contains("did you mean `rejects`"), "{e}");
        assert!(super::get("funnel").is_ok());
    }
}
