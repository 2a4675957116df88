//! All integration tests build into this one binary (link time on 2 cores).

mod common;
mod engine;
mod train;
mod mix;
