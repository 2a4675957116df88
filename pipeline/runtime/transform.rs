//! Stateless transforms: batches fan out to the rayon pool, up to `2 × threads + 1` in
//! flight, and leave in their input order (restored by sequence number), so the output
//! is the same at any thread count.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Select};

use super::ports::MergedInput;
use super::{count_in, guarded, lock, NodeEnv};
use crate::error::{Error, Result};
use crate::stage::{Emitter, Transform};

type TransformResult = (u64, Result<Emitter<'static>>, Duration);

/// Run a transform node until its inputs end; then record its stats and manifest extras.
pub(super) fn run_transform(t: Arc<dyn Transform>, env: &mut NodeEnv<'_>) -> Result<()> {
    let sh = env.sh;
    let max_inflight = env.opts.threads.max(1) * 2 + 1;
    let names = env.names;
    let (res_tx, res_rx) = bounded::<TransformResult>(max_inflight);
    let mut input = MergedInput::new(std::mem::take(&mut env.rx));
    let mut next_in = 0u64;
    let mut next_out = 0u64;
    let mut inflight = 0usize;
    let mut ready: BTreeMap<u64, Emitter> = BTreeMap::new();
    while !(input.done() && inflight == 0) {
        let can_take = inflight < max_inflight && !input.done();
        let cur_rx = if can_take {
            input.current().cloned()
        } else {
            None
        };
        let mut sel = Select::new();
        let in_idx = cur_rx.as_ref().map(|r| sel.recv(r));
        let res_idx = sel.recv(&res_rx);
        let op = sel.select();
        if Some(op.index()) == in_idx {
            let r = cur_rx.as_ref().expect("selected input");
            match op.recv(r) {
                Ok(mut b) => {
                    input.advance(true);
                    count_in(&env.st, &b);
                    b.seq = next_in;
                    next_in += 1;
                    inflight += 1;
                    let t = t.clone();
                    let tx = res_tx.clone();
                    let node = env.name.clone();
                    sh.pool.spawn(move || {
                        let seq = b.seq;
                        let t0 = Instant::now();
                        let mut em = Emitter::new(names);
                        let r = guarded(&node, seq, || t.process(b, &mut em)).map(|_| em);
                        let _ = tx.send((seq, r, t0.elapsed()));
                    });
                }
                Err(_) => input.advance(false),
            }
        } else {
            debug_assert_eq!(op.index(), res_idx);
            let (seq, r, dt) = op
                .recv(&res_rx)
                .map_err(|_| Error::msg("worker channel closed"))?;
            inflight -= 1;
            lock(&env.st).busy += dt;
            ready.insert(seq, r?);
            while let Some(mut em) = ready.remove(&next_out) {
                env.outputs.send(&mut em)?;
                next_out += 1;
            }
        }
    }
    if sh.abort.aborted() {
        return Err(Error::Cancelled);
    }
    lock(&sh.extras).insert(env.name.clone(), (t.stats(), t.manifest()));
    Ok(())
}
