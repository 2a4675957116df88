//! Stage kinds: one module per `kind:`. The engine never names a concrete stage except
//! in [`crate::registry`].

pub mod length_filter;
pub mod minhash_dedup;
pub mod exact_dedup;
pub mod line_dedup;
