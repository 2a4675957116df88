//! Source nodes: read this rank's splits into batches, stamp provenance, enforce the
//! run's document bound, count bad records against the budget, and report progress in
//! input-file bytes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::accounting::NodeStats;
use super::ports::Outputs;
use super::progress::Progress;
use super::{guarded, lock, Abort, NodeEnv};
use crate::document::{Document, Origin};
use crate::error::{Error, Result};
use crate::stage::{Emitter, Source, SourceSink};

/// The source side of the runtime: batches documents and counts bad records.
struct SourceCtx<'a> {
    em: Emitter<'static>,
    out: &'a mut Outputs,
    batch_size: usize,
    budget: u64,
    abort: &'a Abort,
    stats: Arc<Mutex<NodeStats>>,
    progress: &'a Progress,
    /// Bytes read by this source alone, as the source reports them (`bytes_in` in stats).
    node_bytes: u64,
    /// Global index of the split being read and the next record number in it.
    split: usize,
    record: u64,
    /// `run.max_doc_bytes`: a bigger document is rejected as `too_large` here.
    max_doc_bytes: u64,
    /// `run.reject_prefix_chars`: what of a `too_large` document's text is kept.
    reject_prefix_chars: usize,
    /// The split being read (`meta.input`) and the source's declared licence and terms
    /// (`meta.license`, `meta.terms_url`), written on every document it emits.
    input: String,
    license: Option<String>,
    terms_url: Option<String>,
}

impl SourceCtx<'_> {
    /// Provenance every source document carries (see `stage::source_license`).
    fn stamp(&self, doc: &mut Document) {
        doc.meta.insert("input".into(), self.input.clone());
        if let Some(l) = &self.license {
            doc.meta.insert("license".into(), l.clone());
        }
        if let Some(t) = &self.terms_url {
            doc.meta.insert("terms_url".into(), t.clone());
        }
    }
    fn maybe_flush(&mut self) -> Result<()> {
        if self.abort.aborted() {
            return Err(Error::Cancelled);
        }
        if self.em.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        if !self.em.is_empty() {
            self.out.send(&mut self.em)?;
        }
        Ok(())
    }
    /// Keep only the prefix of a document over `run.max_doc_bytes` and reject it.
    fn reject_too_large(&mut self, mut doc: Document) -> Result<()> {
        // Every source kind gets the run's document bound here. Only the text's prefix
        // (what `rejects/` keeps anyway) is held on, so the big string is freed now.
        let size = doc.byte_len();
        let cut = doc
            .text
            .char_indices()
            .nth(self.reject_prefix_chars)
            .map_or(doc.text.len(), |(i, _)| i);
        doc.text.truncate(cut);
        doc.text.shrink_to_fit();
        doc.words = None;
        doc.tokens = None;
        if size as usize >= crate::stages::normalize::HUGE_DOC_BYTES {
            crate::stages::normalize::release_freed_memory();
        }
        let detail = format!("{size} bytes > run.max_doc_bytes ({})", self.max_doc_bytes);
        self.reject(doc, "too_large", Some(size as f64), detail)
    }
}

impl SourceSink for SourceCtx<'_> {
    fn emit(&mut self, mut doc: Document) -> Result<()> {
        self.stamp(&mut doc);
        if doc.byte_len() > self.max_doc_bytes {
            return self.reject_too_large(doc);
        }
        self.progress.docs.fetch_add(1, Ordering::Relaxed);
        doc.origin = Origin::new(self.split, self.record);
        self.record += 1;
        self.em.emit(doc);
        self.maybe_flush()
    }
    fn reject(
        &mut self,
        doc: Document,
        reason: &str,
        score: Option<f64>,
        detail: String,
    ) -> Result<()> {
        self.progress.docs.fetch_add(1, Ordering::Relaxed);
        let mut doc = doc;
        self.stamp(&mut doc);
        doc.origin = Origin::new(self.split, self.record);
        self.record += 1;
        self.em.reject(doc, reason, score, detail);
        self.maybe_flush()
    }
    fn bad_record(&mut self, location: &str, reason: &str) -> Result<()> {
        let mut st = lock(&self.stats);
        st.bad_count += 1;
        let key = reason
            .split(':')
            .next()
            .unwrap_or(reason)
            .trim()
            .to_string();
        *st.bad_by_reason.entry(key).or_default() += 1;
        let line = format!("{location}: {reason}");
        if st.bad_examples.len() < 20 {
            tracing::warn!(target: "sluice::bad_record", "{line}");
            st.bad_examples.push(line.clone());
        } else {
            tracing::debug!(target: "sluice::bad_record", "{line}");
        }
        if st.bad_count > self.budget {
            return Err(Error::BadRecordBudget {
                count: st.bad_count,
                budget: self.budget,
                last: line,
            });
        }
        Ok(())
    }
    fn bytes_read(&mut self, n: u64) {
        self.node_bytes += n;
    }
}

/// Run a source node: read the splits that fall to this rank (split `k` goes to rank
/// `k % world_size`), in order. `sizes` are this rank's input file sizes by path, the
/// progress total's parts.
pub(super) fn run_source(
    mut src: Box<dyn Source>,
    env: &mut NodeEnv<'_>,
    sizes: &HashMap<String, u64>,
) -> Result<()> {
    let sh = env.sh;
    let (rank, world) = (env.opts.rank, env.opts.world_size);
    let mine: Vec<(usize, String)> = src
        .splits()?
        .into_iter()
        .enumerate()
        .filter(|(k, _)| k % world == rank)
        .collect();
    lock(&env.st).splits = mine.len() as u64;
    let run = &env.graph.spec.run;
    let (license, terms_url) = crate::stage::source_license(&env.graph.spec.nodes[env.idx].params);
    let mut ctx = SourceCtx {
        em: Emitter::new(env.names),
        out: &mut env.outputs,
        batch_size: run.batch_size,
        budget: run.max_bad_records,
        abort: &sh.abort,
        stats: env.st.clone(),
        progress: &sh.progress,
        node_bytes: 0,
        split: 0,
        record: 0,
        max_doc_bytes: run.max_doc_bytes,
        reject_prefix_chars: run.reject_prefix_chars,
        input: String::new(),
        license,
        terms_url,
    };
    let t0 = Instant::now();
    for (k, s) in &mine {
        ctx.input = s.clone();
        ctx.split = *k;
        ctx.record = 0;
        let size = sizes.get(s).copied().unwrap_or(0);
        let progress = &sh.progress;
        let pos = progress.begin_split(env.idx, size);
        // Readers opened on this thread (`io::open_input`, the ingest stages) report
        // their position in the raw file through this counter.
        let prev = crate::io::track_input_position(Some(pos));
        let res = guarded(&env.name, *k as u64, || src.read(s, &mut ctx));
        crate::io::track_input_position(prev);
        progress.end_split(env.idx, size);
        res?;
    }
    ctx.flush()?;
    let node_bytes = ctx.node_bytes;
    let mut g = lock(&env.st);
    g.busy += t0.elapsed();
    g.docs_in = g.ports.iter().map(|p| p.docs).sum();
    g.bytes_in = node_bytes;
    drop(g);
    lock(&sh.extras).insert(env.name.clone(), (src.stats(), None));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use crate::graph;
    use crate::stage::{BuildCtx, Node};
    use crate::stages::ingest_warc::CollectSink;

    /// Every source kind reports its position in the raw input file while it reads, so
    /// progress is a share of the file sizes: at the end of a file the position is its
    /// size (compressed for `.gz`), never the decoded bytes.
    #[test]
    fn every_source_kind_reports_its_position_in_the_raw_file() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("cmrc.jsonl.gz");
        let text = std::fs::read("samples/text/cmrc2018_zh.jsonl").unwrap();
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        e.write_all(&text).unwrap();
        e.finish().unwrap();
        let yaml = format!(
            "nodes:
  j: {{kind: ingest_jsonl, paths: [{}]}}
  j2: {{kind: ingest_instructions, paths: [samples/synthetic/alpaca_cot_zh.jsonl]}}
  p: {{kind: ingest_parquet, paths: [samples/parquet/cmrc2018_zh_200.parquet], text_column: text}}
  w: {{kind: ingest_warc, paths: [samples/warc/whirlwind.warc.gz]}}
  shards: {{kind: parquet_shards, inputs: [j, j2, p, w]}}
",
            gz.display()
        );
        let g = graph::check(crate::config::parse(&yaml, "t.yaml").unwrap()).unwrap();
        let base = BuildCtx {
            node: String::new(),
            inputs: vec![],
            run: g.spec.run.clone(),
            out_dir: dir.path().join("out"),
            scratch_dir: dir.path().join("out/tmp"),
            rank: 0,
            world_size: 1,
            threads: 1,
            validate_only: false,
        };
        for node in graph::build(&g, &base).unwrap() {
            let Node::Source(mut src) = node else {
                continue;
            };
            let split = src.splits().unwrap().remove(0);
            let size = std::fs::metadata(&split).unwrap().len();
            let pos = Arc::new(AtomicU64::new(0));
            let prev = crate::io::track_input_position(Some(pos.clone()));
            let mut sink = CollectSink::default();
            src.read(&split, &mut sink).unwrap();
            crate::io::track_input_position(prev);
            assert!(!sink.docs.is_empty(), "{split}");
            let at = pos.load(Ordering::Relaxed);
            // A gzip trailer may be consumed after the last document's bytes.
            assert!(at <= size && at + 64 >= size, "{split}: at {at} of {size}");
        }
    }
}
