//! All integration tests build into this one binary (link time on 2 cores).

mod audit;
mod common;
mod dedup;
mod engine;
mod s3;
mod scale;
mod warc;
mod train;
mod mix;
mod zh;
mod classifier;
