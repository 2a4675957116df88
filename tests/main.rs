//! All integration tests build into this one binary (link time on 2 cores).

mod audit;
mod classifier;
mod common;
mod dedup;
mod engine;
mod memory;
mod mix;
mod s3;
mod scale;
mod train;
mod warc;
mod zh;
