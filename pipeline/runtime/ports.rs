//! The edges between nodes: a node's output side ([`Outputs`]: one batch per port per
//! input batch, sequence-numbered, rejected documents stamped and counted) and its input
//! side ([`MergedInput`]: several inputs read round-robin), and the wiring of one bounded
//! channel per edge.

use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::accounting::NodeStats;
use super::lock;
use crate::document::{DocBatch, Document};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::stage::{Emitter, REJECTED};

/// A rejected batch on its way to the rejects writer, with the index of its node.
pub(super) type RejectMsg = (usize, DocBatch);
/// Per port of one node: the consumers' senders and their input index.
pub(super) type PortTargets = Vec<Vec<(Sender<DocBatch>, usize)>>;

/// The channels of a graph: per node, its input receivers (by input index) and, per
/// port, its consumers' senders.
pub(super) struct Wiring {
    pub inputs: Vec<Vec<Option<Receiver<DocBatch>>>>,
    pub targets: Vec<PortTargets>,
}

impl Wiring {
    /// One bounded channel of `queue_batches` per edge.
    pub fn new(graph: &Graph, queue_batches: usize) -> Wiring {
        let mut inputs: Vec<Vec<Option<Receiver<DocBatch>>>> = graph
            .spec
            .nodes
            .iter()
            .map(|s| s.inputs.iter().map(|_| None).collect())
            .collect();
        let mut targets: Vec<PortTargets> = graph
            .kinds
            .iter()
            .map(|k| k.ports.iter().map(|_| Vec::new()).collect())
            .collect();
        for (up, node_consumers) in graph.consumers.iter().enumerate() {
            for (p, cons) in node_consumers.iter().enumerate() {
                for &(c, j) in cons {
                    let (tx, rx) = bounded(queue_batches);
                    targets[up][p].push((tx, j));
                    inputs[c][j] = Some(rx);
                }
            }
        }
        Wiring { inputs, targets }
    }

    /// Node `i`'s receivers, in input order (taken: call once per node).
    pub fn take_inputs(&mut self, i: usize) -> Vec<Receiver<DocBatch>> {
        self.inputs[i].iter_mut().filter_map(|r| r.take()).collect()
    }
}

/// The output side of one node: per port, the consumers' senders.
pub(super) struct Outputs {
    pub node: String,
    pub node_idx: usize,
    pub names: &'static [&'static str],
    pub targets: Vec<Vec<(Sender<DocBatch>, usize)>>,
    pub to_rejects: Vec<bool>,
    pub rejects_tx: Sender<RejectMsg>,
    pub seq: u64,
    pub stats: Arc<Mutex<NodeStats>>,
}

impl Outputs {
    /// Send one batch per port (possibly empty) with the next sequence number.
    pub fn send(&mut self, em: &mut Emitter) -> Result<()> {
        let seq = self.seq;
        self.seq += 1;
        for (p, port_name) in self.names.iter().enumerate() {
            let mut docs = em.take(p);
            let is_rej = *port_name == REJECTED;
            {
                let mut st = lock(&self.stats);
                st.ports[p].docs += docs.len() as u64;
                st.ports[p].bytes += docs.iter().map(|d| d.byte_len()).sum::<u64>();
                if is_rej {
                    for d in &docs {
                        let reason = d
                            .reject
                            .as_ref()
                            .map(|r| r.reason.clone())
                            .unwrap_or_else(|| "unspecified".into());
                        *st.rejects.entry(reason).or_default() += 1;
                    }
                }
            }
            if is_rej {
                for d in docs.iter_mut() {
                    let r = d.reject.get_or_insert_with(Default::default);
                    if r.stage.is_empty() {
                        r.stage = self.node.clone();
                    }
                    if r.reason.is_empty() {
                        r.reason = "unspecified".into();
                    }
                }
            }
            if self.to_rejects[p] {
                if !docs.is_empty() {
                    self.rejects_tx
                        .send((self.node_idx, DocBatch::new(seq, docs)))
                        .map_err(|_| Error::Cancelled)?;
                }
                continue;
            }
            let n = self.targets[p].len();
            for (k, (tx, input)) in self.targets[p].iter().enumerate() {
                let d = if k + 1 == n {
                    std::mem::take(&mut docs)
                } else {
                    docs.clone()
                };
                tx.send(DocBatch {
                    seq,
                    input: *input,
                    docs: d,
                })
                .map_err(|_| Error::Cancelled)?;
            }
        }
        Ok(())
    }

    /// Send one port's documents (from `finish`, possibly many) as batches of `batch_size`.
    pub fn send_port(&mut self, port: usize, docs: Vec<Document>, batch_size: usize) -> Result<()> {
        let mut docs = docs.into_iter().peekable();
        while docs.peek().is_some() {
            let mut chunk = Emitter::new(self.names);
            for d in docs.by_ref().take(batch_size.max(1)) {
                chunk.emit_to(self.names[port], d);
            }
            self.send(&mut chunk)?;
        }
        Ok(())
    }
}

/// Round-robin reader over a node's inputs.
pub(super) struct MergedInput {
    rx: Vec<Receiver<DocBatch>>,
    alive: Vec<bool>,
    cur: usize,
}

impl MergedInput {
    pub fn new(rx: Vec<Receiver<DocBatch>>) -> Self {
        let n = rx.len();
        MergedInput {
            rx,
            alive: vec![true; n],
            cur: 0,
        }
    }
    pub fn done(&self) -> bool {
        !self.alive.iter().any(|a| *a)
    }
    pub fn current(&mut self) -> Option<&Receiver<DocBatch>> {
        if self.done() {
            return None;
        }
        while !self.alive[self.cur] {
            self.cur = (self.cur + 1) % self.rx.len();
        }
        Some(&self.rx[self.cur])
    }
    /// Record the outcome of a receive on the current input.
    pub fn advance(&mut self, got: bool) {
        if !got {
            self.alive[self.cur] = false;
        }
        if !self.rx.is_empty() {
            self.cur = (self.cur + 1) % self.rx.len();
        }
    }
    pub fn recv(&mut self) -> Option<DocBatch> {
        loop {
            let r = self.current()?.recv();
            match r {
                Ok(b) => {
                    self.advance(true);
                    return Some(b);
                }
                Err(_) => self.advance(false),
            }
        }
    }
}
