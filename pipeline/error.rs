//! One error type for the engine and every stage.
//!
//! Errors carry context (node, path, document id) so a failed run names what failed.
//! `anyhow` is used only in `main.rs`; everything below it returns [`Error`].

use std::path::PathBuf;

/// The engine's error. The runtime wraps stage errors in [`Error::Node`] so the
/// message always names the node that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a path. Displayed once, with what was being done when known:
    /// `cannot create run directory /proc/x: No such file or directory (os error 2)`.
    /// (The OS error is part of the message, not a `source`, so `{:#}` does not repeat it.)
    #[error("{}{}: {err}", .action.map(|a| format!("{a} ")).unwrap_or_default(), .path.display())]
    Io {
        /// What was being attempted ("cannot create run directory"), when known.
        action: Option<&'static str>,
        path: PathBuf,
        err: std::io::Error,
    },
    /// A configuration problem list (all problems at once).
    #[error("invalid config:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<String>),
    /// A failure inside a node, tagged with the node name.
    #[error("node `{node}`: {source}")]
    Node {
        node: String,
        #[source]
        source: Box<Error>,
    },
    /// Too many bad records in one source.
    #[error("bad-record budget exceeded: {count} bad records (max_bad_records = {budget}); last: {last}")]
    BadRecordBudget {
        count: u64,
        budget: u64,
        last: String,
    },
    /// An Arrow / Parquet failure, with the file when known. The library's error is kept
    /// typed in `err` for callers that act on it; like [`Error::Io`], it is part of the
    /// message rather than a `source`, so it prints once.
    #[error("parquet: {}{err}", .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Parquet {
        path: Option<PathBuf>,
        err: ColumnarError,
    },
    /// A JSON (de)serialization failure.
    #[error("json: {0}")]
    Json(serde_json::Error),
    /// A problem with one document, named by its id (a stage input that breaks an
    /// invariant, not a bad record: those are skipped and counted).
    #[error("document `{id}`: {message}")]
    Data { id: String, message: String },
    /// A stage panicked; the runtime caught it.
    #[error("node `{node}` panicked on batch {batch}: {message}")]
    Panic {
        node: String,
        batch: u64,
        message: String,
    },
    /// The document accounting invariant failed: documents left a node through no port.
    #[error("document accounting failed (a bug: please report it):\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Accounting(Vec<String>),
    /// The run was cancelled because another node failed first.
    #[error("cancelled")]
    Cancelled,
    /// Another attempt holds the lock of this rank (see `rundir::RankLock`).
    #[error("rank {rank} is being run by another attempt ({holder}); lock file {}", path.display())]
    RankBusy {
        rank: usize,
        holder: String,
        path: PathBuf,
    },
    /// Anything else, with a message.
    #[error("{0}")]
    Msg(String),
}

/// Result alias used across the engine and stages.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A free-form error.
    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action: None,
            path: path.into(),
            err: source,
        }
    }
    /// Wrap an I/O error with what was being attempted and the path it concerns.
    pub fn io_doing(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action: Some(action),
            path: path.into(),
            err: source,
        }
    }
    /// An Arrow / Parquet error (or a schema problem) reading or writing `path`.
    pub fn parquet_at(path: impl Into<PathBuf>, err: impl Into<ColumnarError>) -> Self {
        Error::Parquet {
            path: Some(path.into()),
            err: err.into(),
        }
    }
    /// A schema problem (missing column, wrong type) in the Parquet file `path`.
    pub fn schema(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::parquet_at(path, ColumnarError::Schema(message.into()))
    }
    /// A problem with one document.
    pub fn data(id: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Data {
            id: id.into(),
            message: message.into(),
        }
    }
    /// Tag an error with a node name (idempotent: an already tagged error is kept).
    pub fn in_node(self, node: &str) -> Self {
        match self {
            e @ (Error::Node { .. } | Error::Panic { .. }) => e,
            Error::Cancelled => Error::Cancelled,
            e => Error::Node {
                node: node.to_string(),
                source: Box::new(e),
            },
        }
    }
}

/// The columnar libraries' errors, kept typed, plus schema problems found by sluice's
/// readers (a missing column, a wrong type).
#[derive(Debug, thiserror::Error)]
pub enum ColumnarError {
    #[error("{0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    Schema(String),
}

impl<E: Into<ColumnarError>> From<E> for Error {
    fn from(e: E) -> Self {
        Error::Parquet {
            path: None,
            err: e.into(),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e)
    }
}
