//! # sluice
//!
//! A streaming DAG of stages that turns raw web scrapes into pretraining data for large
//! language models, with Chinese as a first-class language.
//!
//! `pipeline/` is the engine: the [`document::Document`] model, the [`stage`] contracts,
//! the config model ([`config`]), graph checks ([`graph`]), the [`runtime`], run-directory
//! I/O ([`rundir`]) and the Arrow schema ([`arrow_io`]). `stages/` holds the work, one
//! module per `kind:`; [`registry`] is the only place that names them.

pub mod arrow_io;
pub mod attrs;
#[cfg(feature = "audit")]
pub mod audit;
#[cfg(feature = "audit")]
pub mod cli_audit;
pub mod cli_classifier;
pub mod cli_compliance;
#[cfg(feature = "cloud")]
pub mod cli_slurm;
pub mod cli_takedown;
pub mod cli_trace;
#[cfg(feature = "train")]
pub mod cli_train;
pub mod config;
pub mod document;
pub mod error;
pub mod feed;
pub mod graph;
pub mod io;
pub mod launch;
pub mod phases;
pub mod provenance;
pub mod registry;
pub mod rundir;
pub mod runtime;
pub mod shard_writer;
pub mod stage;
pub mod storage;
pub mod testing;
#[cfg(feature = "train")]
pub mod train;

#[path = "../stages/mod.rs"]
pub mod stages;

pub use document::{DocBatch, Document};
pub use error::{Error, Result};
