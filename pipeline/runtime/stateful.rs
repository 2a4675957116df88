//! Stateful stages (`Role::Stage`): batches strictly in order on the node's own thread
//! (the work inside may use the pool), then `finish`, whose output is streamed
//! downstream in batches.

use std::time::Instant;

use super::ports::MergedInput;
use super::{count_in, guarded, lock, NodeEnv};
use crate::error::{Error, Result};
use crate::stage::{Emitter, Stage};

/// Run a stateful stage until its inputs end, then `finish` it.
pub(super) fn run_stage(mut s: Box<dyn Stage>, env: &mut NodeEnv<'_>) -> Result<()> {
    let sh = env.sh;
    let names = env.names;
    let name = env.name.clone();
    let mut input = MergedInput::new(std::mem::take(&mut env.rx));
    let mut seq = 0u64;
    while let Some(b) = input.recv() {
        count_in(&env.st, &b);
        let mut em = Emitter::new(names);
        let t0 = Instant::now();
        sh.pool
            .install(|| guarded(&name, seq, || s.process(b, &mut em)))?;
        seq += 1;
        lock(&env.st).busy += t0.elapsed();
        env.outputs.send(&mut em)?;
    }
    if sh.abort.aborted() {
        return Err(Error::Cancelled);
    }
    // `finish` may release a large state (mix, pack): the flush hook streams it
    // downstream in batches instead of holding it all.
    let t0 = Instant::now();
    {
        let batch_size = env.graph.spec.run.batch_size;
        let out = &mut env.outputs;
        let mut em = Emitter::with_flush(
            names,
            Box::new(move |p, docs| out.send_port(p, docs, batch_size)),
        );
        // Not on the pool: the hook blocks on downstream channels, and a pool worker
        // blocked here could starve the consumers' work.
        guarded(&name, seq, || s.finish(&mut em))?;
        em.flush()?;
    }
    {
        let mut g = lock(&env.st);
        g.busy += t0.elapsed();
        g.accounting = Some(s.accounting());
    }
    lock(&sh.extras).insert(name, (s.stats(), s.manifest()));
    Ok(())
}
