//! Test helpers shared by stage unit tests: run a transform or stage over texts at a
//! given batch size, the way the runtime would, and collect the `out` and `rejected` ports.

use crate::document::{DocBatch, Document};
use crate::error::Result;
use crate::stage::{Emitter, Stage, Transform, OUT_REJECTED};

/// Documents with ids `t0, t1, …` and source `test`.
pub fn docs(texts: &[&str]) -> Vec<Document> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| Document::new(format!("t{i}"), "test", *t))
        .collect()
}

fn split(docs: Vec<Document>, batch_size: usize) -> Vec<DocBatch> {
    let mut batches = Vec::new();
    let mut cur = Vec::new();
    for d in docs {
        cur.push(d);
        if cur.len() == batch_size {
            batches.push(DocBatch::new(
                batches.len() as u64,
                std::mem::take(&mut cur),
            ));
        }
    }
    if !cur.is_empty() {
        batches.push(DocBatch::new(batches.len() as u64, cur));
    }
    batches
}

fn collect(em: &mut Emitter, out: &mut Vec<Document>, rej: &mut Vec<Document>) {
    let names = em.names();
    for (i, n) in names.iter().enumerate() {
        let d = em.take(i);
        if *n == "rejected" {
            rej.extend(d);
        } else if i == 0 {
            out.extend(d);
        }
    }
}

/// Run a transform over documents in batches of `batch_size`; return (out, rejected).
pub fn run_transform_docs(
    t: &dyn Transform,
    docs: Vec<Document>,
    batch_size: usize,
) -> (Vec<Document>, Vec<Document>) {
    try_run_transform_docs(t, docs, batch_size).expect("transform failed")
}

/// Fallible form of [`run_transform_docs`].
pub fn try_run_transform_docs(
    t: &dyn Transform,
    docs: Vec<Document>,
    batch_size: usize,
) -> Result<(Vec<Document>, Vec<Document>)> {
    let (mut out, mut rej) = (Vec::new(), Vec::new());
    for b in split(docs, batch_size) {
        let mut em = Emitter::new(OUT_REJECTED);
        t.process(b, &mut em)?;
        collect(&mut em, &mut out, &mut rej);
    }
    Ok((out, rej))
}

/// Run a transform over texts; return (out, rejected).
pub fn run_transform(
    t: &dyn Transform,
    texts: &[&str],
    batch_size: usize,
) -> (Vec<Document>, Vec<Document>) {
    run_transform_docs(t, docs(texts), batch_size)
}

/// Run a stateful stage over documents in batches, then `finish`; return (out, rejected).
pub fn run_stage_docs(
    s: &mut dyn Stage,
    docs: Vec<Document>,
    batch_size: usize,
) -> (Vec<Document>, Vec<Document>) {
    let (mut out, mut rej) = (Vec::new(), Vec::new());
    for b in split(docs, batch_size) {
        let mut em = Emitter::new(OUT_REJECTED);
        s.process(b, &mut em).expect("stage failed");
        collect(&mut em, &mut out, &mut rej);
    }
    let mut em = Emitter::new(OUT_REJECTED);
    s.finish(&mut em).expect("finish failed");
    collect(&mut em, &mut out, &mut rej);
    (out, rej)
}
