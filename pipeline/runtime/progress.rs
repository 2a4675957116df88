//! Progress while a rank runs, and the done line after it.
//!
//! **Progress** is measured in bytes of this rank's input files (the sizes of the splits
//! that fall to it, as fingerprinted for the run directory), so `%` and ETA are right for
//! `.gz` and `.zst` inputs too: readers report their position in the raw file
//! ([`crate::io::track_input_position`]), and a finished split counts as its whole size.
//! On a terminal two lines are redrawn in place every 200 ms:
//!
//! ```text
//! ⠙ 00:00:42 37% of 1.20 GB · 10.6 MB/s · 1.24k docs/s · ETA 1:12
//!   docs 52.1k  clean →50.3k  langid →41.0k  dedup →30.2k  shards 30.2k
//! ```
//!
//! Elsewhere (a log file, a pipe) the same content is one plain line every
//! `SLUICE_PROGRESS_SECS` seconds (default 10), and once more when the sources are done,
//! through the log (no ANSI unless `--color always`). The second line counts documents in
//! and out per node, in config order: a source shows what it read, a node fed by the one
//! before it `→out`, any other node `in→out`, a sink what it took in; documents a node
//! rejected are in its `in` but not its `out`.
//!
//! The **done line** sums the rank up: documents the sources read, rows kept in
//! `shards/`, rows in `rejects/` with the top reasons (`node/reason count`), bad records
//! (input that could not become a document), tokens and shards:
//!
//! ```text
//! done in 4.2 s: 1,234 in → 987 kept, 247 rejected (dedup/duplicate 180, langid/lang_mismatch 60, …), 3 bad records; 512,000 tokens in 2 shards
//! ```

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::accounting::NodeStats;
use super::lock;
use crate::graph::Graph;
use crate::stage::{Role, REJECTED};

/// Run-wide progress counters, written by the sources, read by the reporter.
pub(super) struct Progress {
    /// The rank's input bytes (sum of its input files' sizes).
    total: u64,
    /// Bytes of the input files finished so far.
    finished: AtomicU64,
    /// Per node (sources only): the size of the split being read and the position in it.
    current: Vec<(AtomicU64, Arc<AtomicU64>)>,
    /// Documents the sources emitted or rejected.
    pub docs: AtomicU64,
    /// Set when every node thread has ended.
    pub done: AtomicBool,
}

impl Progress {
    pub fn new(total: u64, nodes: usize) -> Progress {
        Progress {
            total,
            finished: AtomicU64::new(0),
            current: (0..nodes)
                .map(|_| (AtomicU64::new(0), Arc::new(AtomicU64::new(0))))
                .collect(),
            docs: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }
    /// Node `i` starts a split of `size` bytes; returns the counter its readers report
    /// their position in.
    pub fn begin_split(&self, i: usize, size: u64) -> Arc<AtomicU64> {
        let (sz, pos) = &self.current[i];
        pos.store(0, Ordering::Relaxed);
        sz.store(size, Ordering::Relaxed);
        pos.clone()
    }
    /// Node `i` finished a split of `size` bytes (however much its readers reported).
    pub fn end_split(&self, i: usize, size: u64) {
        let (sz, pos) = &self.current[i];
        sz.store(0, Ordering::Relaxed);
        pos.store(0, Ordering::Relaxed);
        self.finished.fetch_add(size, Ordering::Relaxed);
    }
    /// Input bytes read so far, at most the total.
    pub fn read(&self) -> u64 {
        let partial: u64 = self
            .current
            .iter()
            .map(|(sz, pos)| pos.load(Ordering::Relaxed).min(sz.load(Ordering::Relaxed)))
            .sum();
        (self.finished.load(Ordering::Relaxed) + partial).min(self.total)
    }
}

/// One node's documents in and out, for the per-stage line.
#[derive(Debug, Clone, PartialEq)]
pub struct StageCount {
    /// Node name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Whether its only input is the node listed just before it.
    pub fed_by_previous: bool,
    /// Documents taken in (a source: documents read).
    pub docs_in: u64,
    /// Documents sent out on ports other than `rejected`.
    pub docs_out: u64,
}

/// `987`, `12.3k`, `123k`, `4.56M`, `1.23G`: a count in at most four digits.
pub fn compact(n: u64) -> String {
    let f = n as f64;
    let (v, unit) = match n {
        0..=999 => return n.to_string(),
        1_000..=999_999 => (f / 1e3, "k"),
        1_000_000..=999_999_999 => (f / 1e6, "M"),
        _ => (f / 1e9, "G"),
    };
    // Round first, so 99,960 reads `100k`, not `100.0k`.
    if v >= 99.95 {
        format!("{v:.0}{unit}")
    } else if v >= 9.995 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `812 kB`, `4.2 MB`, `1.23 GB` (decimal units).
pub fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

/// A duration as a clock: `0:07`, `12:05`, `1:02:03`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Whole percent of the input read, or `None` when the total is unknown (0).
pub fn percent(read: u64, total: u64) -> Option<u64> {
    (total > 0).then(|| (read.min(total) as u128 * 100 / total as u128) as u64)
}

/// `ETA 1:12` from the rate so far, or `ETA —` while it means nothing yet: no total,
/// under 2 s in, or under 1 % read. Once every input byte is read, `input read` (what
/// is left is the rest of the pipeline draining, which the input rate cannot time).
pub fn eta(read: u64, total: u64, elapsed: f64) -> String {
    if total > 0 && read >= total {
        return "input read".into();
    }
    if total == 0 || elapsed < 2.0 || read == 0 || (read as f64) < total as f64 * 0.01 {
        return "ETA —".into();
    }
    let left = total.saturating_sub(read) as f64;
    format!("ETA {}", clock(left / (read as f64 / elapsed)))
}

/// The first progress line: `37% of 1.20 GB · 10.6 MB/s · 1.24k docs/s · ETA 1:12`.
pub fn input_line(read: u64, total: u64, docs: u64, elapsed: f64) -> String {
    let secs = elapsed.max(1e-6);
    let head = match percent(read, total) {
        Some(p) => format!("{p}% of {}", size(total)),
        None => format!("{} read", size(read)),
    };
    format!(
        "{head} · {:.1} MB/s · {} docs/s · {}",
        read as f64 / 1e6 / secs,
        compact((docs as f64 / secs) as u64),
        eta(read, total, elapsed)
    )
}

/// The per-stage line: `docs 12.3k  extract →10.1k  langid →9.8k  mix 9.8k→7.2k  shards 7.2k`.
pub fn stage_line(stages: &[StageCount]) -> String {
    let parts: Vec<String> = stages
        .iter()
        .map(|s| match s.role {
            Role::Source => format!("{} {}", s.name, compact(s.docs_in)),
            Role::Sink => format!("{} {}", s.name, compact(s.docs_in)),
            _ if s.fed_by_previous => format!("{} →{}", s.name, compact(s.docs_out)),
            _ => format!("{} {}→{}", s.name, compact(s.docs_in), compact(s.docs_out)),
        })
        .collect();
    parts.join("  ")
}

/// Counts of every node now.
fn stage_counts(graph: &Graph, stats: &[Arc<Mutex<NodeStats>>]) -> Vec<StageCount> {
    graph
        .spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let st = lock(&stats[i]);
            let ports = graph.kinds[i].ports;
            let out: u64 = (0..ports.len())
                .filter(|&p| ports[p] != REJECTED)
                .map(|p| st.ports[p].docs)
                .sum();
            let role = graph.kinds[i].role;
            let docs_in = match role {
                Role::Source => st.ports.iter().map(|p| p.docs).sum(),
                _ => st.docs_in,
            };
            let fed_by_previous = i > 0
                && n.inputs.len() == 1
                && n.inputs[0].node == graph.spec.nodes[i - 1].name
                && n.inputs[0].port != REJECTED;
            StageCount {
                name: n.name.clone(),
                role,
                fed_by_previous,
                docs_in,
                docs_out: out,
            }
        })
        .collect()
}

/// How often a plain progress line is logged when stderr is not a terminal.
fn log_interval() -> Duration {
    let secs = std::env::var("SLUICE_PROGRESS_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(10.0);
    Duration::from_secs_f64(secs)
}

/// Two lines redrawn in place (terminal only): the input line as the bar's prefix, the
/// per-stage line as its message, cut to the terminal's width.
fn terminal_bar() -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new_spinner();
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {prefix}\n  {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    b
}

/// Report progress until `progress.done` is set: redrawn in place on a terminal, a plain
/// log line every [`log_interval`] elsewhere (and a last one when the run ends).
pub(super) fn progress_loop(progress: &Progress, graph: &Graph, stats: &[Arc<Mutex<NodeStats>>]) {
    let t0 = Instant::now();
    let bar = std::io::stderr().is_terminal().then(terminal_bar);
    let every = log_interval();
    let tick = Duration::from_millis(200).min(every.max(Duration::from_millis(10)));
    let mut last_log = Instant::now();
    let mut last_tick = Instant::now();
    let lines = || {
        let elapsed = t0.elapsed().as_secs_f64();
        let read = progress.read();
        let docs = progress.docs.load(Ordering::Relaxed);
        (
            input_line(read, progress.total, docs, elapsed),
            stage_line(&stage_counts(graph, stats)),
        )
    };
    while !progress.done.load(Ordering::SeqCst) {
        // Short sleeps, so the run does not wait on this thread when it ends.
        std::thread::sleep(Duration::from_millis(10));
        if last_tick.elapsed() < tick {
            continue;
        }
        last_tick = Instant::now();
        match &bar {
            Some(b) => {
                let (input, stages) = lines();
                b.set_prefix(input);
                b.set_message(stages);
                b.tick();
            }
            None if last_log.elapsed() >= every => {
                let (input, stages) = lines();
                tracing::info!("progress: {input} | {stages}");
                last_log = Instant::now();
            }
            None => {}
        }
    }
    match bar {
        Some(b) => b.finish_and_clear(),
        None => {
            let (input, stages) = lines();
            tracing::info!("progress: {input} | {stages}");
        }
    }
}

/// The done line of a finished rank, from its `stats.json` and `manifest.json`.
pub fn done_line(stats: &Value, manifest: &Value) -> String {
    let empty = serde_json::Map::new();
    let nodes = stats["nodes"].as_object().unwrap_or(&empty);
    let read: u64 = nodes
        .values()
        .filter(|n| n["role"] == "source")
        .filter_map(|n| n["docs_in"].as_u64())
        .sum();
    let bad: u64 = nodes
        .values()
        .filter_map(|n| n["bad_records"]["count"].as_u64())
        .sum();
    let mut reasons: Vec<(u64, String)> = nodes
        .iter()
        .flat_map(|(name, n)| {
            n["rejects"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(move |(r, c)| c.as_u64().map(|c| (c, format!("{name}/{r}"))))
        })
        .filter(|(c, _)| *c > 0)
        .collect();
    reasons.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let t = &manifest["totals"];
    let num = |v: &Value| v.as_u64().unwrap_or(0);
    let mut line = format!(
        "done in {}: {} in → {} kept, {} rejected",
        seconds(stats["wall_secs"].as_f64().unwrap_or(0.0)),
        thousands(read),
        thousands(num(&t["rows"])),
        thousands(num(&t["reject_rows"])),
    );
    if !reasons.is_empty() {
        let mut top: Vec<String> = reasons
            .iter()
            .take(3)
            .map(|(c, r)| format!("{r} {}", thousands(*c)))
            .collect();
        if reasons.len() > 3 {
            top.push("…".into());
        }
        line += &format!(" ({})", top.join(", "));
    }
    line += &format!(
        ", {} bad record{}",
        thousands(bad),
        if bad == 1 { "" } else { "s" }
    );
    let shards = manifest["shards"].as_array().map_or(0, |a| a.len());
    if num(&t["tokens"]) > 0 {
        line += &format!("; {} tokens", thousands(num(&t["tokens"])));
        line += &format!(" in {shards} shard{}", if shards == 1 { "" } else { "s" });
    } else {
        line += &format!("; {shards} shard{}", if shards == 1 { "" } else { "s" });
    }
    line
}

/// `4.2 s` under a minute, a clock (`12:05`) above.
fn seconds(secs: f64) -> String {
    if secs < 59.95 {
        format!("{secs:.1} s")
    } else {
        clock(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_sizes_and_clocks() {
        assert_eq!(compact(0), "0");
        assert_eq!(compact(987), "987");
        assert_eq!(compact(1_000), "1.00k");
        assert_eq!(compact(12_345), "12.3k");
        assert_eq!(compact(99_960), "100k");
        assert_eq!(compact(123_456), "123k");
        assert_eq!(compact(4_560_000), "4.56M");
        assert_eq!(compact(1_230_000_000), "1.23G");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(size(812_000), "812 kB");
        assert_eq!(size(4_200_000), "4.2 MB");
        assert_eq!(size(1_234_000_000), "1.23 GB");
        assert_eq!(clock(7.4), "0:07");
        assert_eq!(clock(725.0), "12:05");
        assert_eq!(clock(3723.0), "1:02:03");
        assert_eq!(seconds(4.24), "4.2 s");
        assert_eq!(seconds(125.0), "2:05");
    }

    #[test]
    fn percent_and_eta() {
        assert_eq!(percent(0, 0), None);
        assert_eq!(percent(0, 200), Some(0));
        assert_eq!(percent(74, 200), Some(37));
        assert_eq!(percent(250, 200), Some(100));
        // Not meaningful yet: no total, too early, too little read.
        assert_eq!(eta(10, 0, 30.0), "ETA —");
        assert_eq!(eta(50, 100, 1.0), "ETA —");
        assert_eq!(eta(0, 100, 30.0), "ETA —");
        assert_eq!(eta(5, 1_000, 30.0), "ETA —");
        // A quarter in 30 s: 90 s to go.
        assert_eq!(eta(250, 1_000, 30.0), "ETA 1:30");
        assert_eq!(eta(100, 1_000, 3_600.0), "ETA 9:00:00");
        assert_eq!(eta(1_000, 1_000, 30.0), "input read");
        assert_eq!(
            input_line(370_000_000, 1_000_000_000, 81_000, 10.0),
            "37% of 1.00 GB · 37.0 MB/s · 8.10k docs/s · ETA 0:17"
        );
        assert_eq!(
            input_line(3_000_000, 0, 10, 1.0),
            "3.0 MB read · 3.0 MB/s · 10 docs/s · ETA —"
        );
    }

    #[test]
    fn progress_counts_finished_splits_and_positions_capped() {
        let p = Progress::new(1_000, 3);
        let pos = p.begin_split(0, 600);
        pos.store(250, Ordering::Relaxed);
        assert_eq!(p.read(), 250);
        // A reader that overshoots its file (a footer read twice) is capped at its size.
        pos.store(700, Ordering::Relaxed);
        assert_eq!(p.read(), 600);
        p.end_split(0, 600);
        let pos2 = p.begin_split(2, 400);
        pos2.store(100, Ordering::Relaxed);
        assert_eq!(p.read(), 700);
        // A source whose readers report nothing still counts whole splits.
        p.end_split(2, 400);
        assert_eq!(p.read(), 1_000);
    }

    fn count(name: &str, role: Role, fed: bool, i: u64, o: u64) -> StageCount {
        StageCount {
            name: name.into(),
            role,
            fed_by_previous: fed,
            docs_in: i,
            docs_out: o,
        }
    }

    #[test]
    fn stage_line_is_compact() {
        let line = stage_line(&[
            count("docs", Role::Source, false, 12_345, 12_300),
            count("extract", Role::Transform, true, 12_300, 10_100),
            count("langid", Role::Transform, true, 10_100, 9_800),
            count("mix", Role::Stage, false, 9_800, 7_200),
            count("shards", Role::Sink, true, 7_200, 0),
        ]);
        assert_eq!(
            line,
            "docs 12.3k  extract →10.1k  langid →9.80k  mix 9.80k→7.20k  shards 7.20k"
        );
        assert!(!line.contains('\u{1b}'));
    }

    #[test]
    fn done_line_counts_bad_records_and_names_top_reasons() {
        let stats = json!({
            "wall_secs": 4.21,
            "nodes": {
                "docs": {"role": "source", "docs_in": 1234,
                         "rejects": {"too_large": 2},
                         "bad_records": {"count": 3}},
                "length_filter": {"role": "transform", "docs_in": 1232,
                                  "rejects": {"too_short": 60, "too_long": 5}},
                "minhash_dedup": {"role": "stage", "docs_in": 1167,
                                  "rejects": {"duplicate": 180}},
                "shards": {"role": "sink", "docs_in": 987, "rejects": {}},
            }
        });
        let manifest = json!({
            "totals": {"rows": 987, "reject_rows": 247, "tokens": 512_000},
            "shards": [{}, {}],
        });
        assert_eq!(
            done_line(&stats, &manifest),
            "done in 4.2 s: 1,234 in → 987 kept, 247 rejected (minhash_dedup/duplicate 180, \
             length_filter/too_short 60, length_filter/too_long 5, …), 3 bad records; \
             512,000 tokens in 2 shards"
        );
        // Nothing rejected, one bad record, no tokens.
        let stats = json!({"wall_secs": 75.0, "nodes": {
            "docs": {"role": "source", "docs_in": 10, "rejects": {}, "bad_records": {"count": 1}}
        }});
        let manifest =
            json!({"totals": {"rows": 10, "reject_rows": 0, "tokens": 0}, "shards": [{}]});
        assert_eq!(
            done_line(&stats, &manifest),
            "done in 1:15: 10 in → 10 kept, 0 rejected, 1 bad record; 1 shard"
        );
    }
}
