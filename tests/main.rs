//! All integration tests build into this one binary (link time on 2 cores).

mod accounting;
#[cfg(feature = "audit")]
mod audit;
mod classifier;
mod common;
mod compliance;
mod decontam;
mod dedup;
mod engine;
mod extract;
mod long;
mod memory;
mod mix;
mod progress;
mod provenance;
mod readers;
#[cfg(feature = "audit")]
mod report_packed;
mod rundir;
#[cfg(feature = "cloud")]
mod s3;
mod scale;
mod tokenize_parity;
#[cfg(feature = "train")]
mod train;
mod validate;
mod warc;
mod zh;
