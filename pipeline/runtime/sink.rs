//! Sinks: the configured output nodes, which write batches in order on their own thread,
//! and the rejects writer, which writes every rejected document no node consumes to
//! `rejects/<node>-r<rank>-<idx>.parquet`.

use std::collections::BTreeMap;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::ports::{MergedInput, RejectMsg};
use super::{count_in, guarded, lock, NodeEnv, Shared};
use crate::error::{Error, Result};
use crate::shard_writer::{RotatingWriter, ShardLimits};
use crate::stage::Sink;

/// Run a sink node until its inputs end, then `finish` it and record its files.
pub(super) fn run_sink(mut sink: Box<dyn Sink>, env: &mut NodeEnv<'_>) -> Result<()> {
    let sh = env.sh;
    // The sink runs on this thread and may spawn work on the pool and wait for it (a
    // pool worker must never block like that).
    sink.use_pool(sh.pool.clone());
    let mut input = MergedInput::new(std::mem::take(&mut env.rx));
    let mut seq = 0u64;
    while let Some(b) = input.recv() {
        count_in(&env.st, &b);
        let t0 = Instant::now();
        guarded(&env.name, seq, || sink.write(b))?;
        seq += 1;
        lock(&env.st).busy += t0.elapsed();
    }
    if sh.abort.aborted() {
        return Err(Error::Cancelled);
    }
    let files = guarded(&env.name, seq, || sink.finish())?;
    lock(&env.st).accounting = Some(sink.accounting());
    lock(&sh.shards).extend(files);
    lock(&sh.extras).insert(env.name.clone(), (None, sink.manifest()));
    Ok(())
}

/// Where rejected documents go: one rotating zstd Parquet writer per node.
pub(super) struct RejectsWriter<'a> {
    pub names: Vec<String>,
    pub out: std::path::PathBuf,
    pub rank: usize,
    pub prefix_chars: usize,
    pub shard_rows: u64,
    pub sh: &'a Shared,
}

impl RejectsWriter<'_> {
    fn limits(&self) -> ShardLimits {
        ShardLimits {
            shard_size_bytes: 256 << 20,
            shard_rows: self.shard_rows,
            row_group_rows: 65536,
            row_group_bytes: 64 << 20,
            // Level 1, the shards' default: rejects are often most of a web crawl, and
            // level 3 cost ~4 % of a dedup run's CPU for a few percent of size.
            compression: parquet::basic::Compression::ZSTD(
                parquet::basic::ZstdLevel::try_new(1).expect("valid level"),
            ),
        }
    }

    /// Write every batch that arrives until all senders are gone; then finish the files
    /// and record them (not when the run was aborted).
    pub fn run(self, rx: Receiver<RejectMsg>) {
        let res = (|| -> Result<()> {
            let mut writers: BTreeMap<usize, RotatingWriter> = BTreeMap::new();
            while let Ok((node, batch)) = rx.recv() {
                let w = writers.entry(node).or_insert_with(|| {
                    RotatingWriter::new(
                        self.out.clone(),
                        "rejects",
                        format!("{}-r{:04}", self.names[node], self.rank),
                        self.names[node].clone(),
                        crate::arrow_io::reject_schema(&self.sh.attrs),
                        self.limits(),
                    )
                });
                let rb = crate::arrow_io::rejects_to_batch(
                    &batch.docs,
                    self.prefix_chars,
                    &self.sh.attrs,
                )?;
                w.write(&rb, &vec![0; batch.docs.len()])?;
            }
            if self.sh.abort.aborted() {
                return Err(Error::Cancelled);
            }
            let mut all = Vec::new();
            for w in writers.values_mut() {
                all.extend(w.finish()?);
            }
            lock(&self.sh.shards).extend(all);
            Ok(())
        })();
        if let Err(e) = res {
            self.sh.abort.fail("rejects", e);
        }
    }
}
