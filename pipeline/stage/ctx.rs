//! What a builder gets: the run-wide settings, the [`BuildCtx`], a stage's typed config
//! contract ([`StageConfig`]) and the registry entry ([`Kind`]).

use super::*;

/// Run-wide settings (the `run:` section of the config).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Documents per batch produced by sources. Default 256.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Batches buffered on each edge (backpressure). Default 4.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// Bad records tolerated per source before the run fails. Default 1000.
    #[serde(default = "default_max_bad_records")]
    pub max_bad_records: u64,
    /// Characters of text kept in `rejects/` rows. Default 200.
    #[serde(default = "default_reject_prefix_chars")]
    pub reject_prefix_chars: usize,
    /// Reject rows per rejects file before rotating. Default 500000.
    #[serde(default = "default_reject_shard_rows")]
    pub reject_shard_rows: usize,
    /// Largest document text, in bytes, any source may emit. A bigger one goes to the
    /// source's `rejected` port as `too_large` (score = its size in bytes) right after the
    /// source, so no stage ever holds it. Bounds every stage's working memory (see
    /// `docs/memory.md`). Default 67108864 (64 MiB).
    #[serde(default = "default_max_doc_bytes")]
    pub max_doc_bytes: u64,
    /// Licences the run may use: every source's `license` (an undeclared one counts as
    /// `unknown`) must be in this list, or the run fails before reading anything, naming
    /// each offending source. Default: none (every licence allowed). See docs/compliance.md.
    #[serde(default)]
    pub allowed_licenses: Option<Vec<String>>,
}

fn default_batch_size() -> usize {
    256
}
fn default_queue_batches() -> usize {
    4
}
fn default_max_bad_records() -> u64 {
    1000
}
fn default_reject_prefix_chars() -> usize {
    200
}
fn default_reject_shard_rows() -> usize {
    500_000
}
fn default_max_doc_bytes() -> u64 {
    64 << 20
}

impl RunSettings {
    /// Values that parse but make no sense (a batch of zero documents, ...).
    pub fn check(&self) -> Vec<String> {
        let mut c = Checks::new();
        c.at_least("batch_size", self.batch_size, 1);
        c.at_least("queue_batches", self.queue_batches, 1);
        c.at_least("reject_shard_rows", self.reject_shard_rows, 1);
        c.into_vec()
    }
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            batch_size: default_batch_size(),
            queue_batches: default_queue_batches(),
            max_bad_records: default_max_bad_records(),
            reject_prefix_chars: default_reject_prefix_chars(),
            reject_shard_rows: default_reject_shard_rows(),
            max_doc_bytes: default_max_doc_bytes(),
            allowed_licenses: None,
        }
    }
}

/// The licence a source node declares (`license:` in its parameters), or `unknown`.
pub const UNKNOWN_LICENSE: &str = "unknown";

/// The `license` and `terms_url` a source node's parameters declare. Every source kind
/// takes both fields; the runtime writes them into each document's `meta` (`license`,
/// `terms_url`), with `input`, the file or URI the document was read from.
pub fn source_license(params: &serde_json::Value) -> (Option<String>, Option<String>) {
    let get = |k: &str| {
        params
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    (get("license"), get("terms_url"))
}

/// Everything a builder may need to know about where and how it runs.
#[derive(Debug, Clone)]
pub struct BuildCtx {
    /// Node name.
    pub node: String,
    /// Names of this node's inputs as written in the config (`node` or `node.port`).
    pub inputs: Vec<String>,
    /// Run-wide settings.
    pub run: RunSettings,
    /// Run directory.
    pub out_dir: PathBuf,
    /// Private scratch directory for this node and rank (created on demand by the stage).
    pub scratch_dir: PathBuf,
    /// This process's rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Worker threads.
    pub threads: usize,
    /// True for `sluice validate`: check everything, but do not create files.
    pub validate_only: bool,
}

impl BuildCtx {
    /// A context for tests and tools: rank 0 of 1, scratch under the given dir.
    pub fn for_tests(node: &str, out_dir: impl Into<PathBuf>) -> Self {
        let out_dir = out_dir.into();
        BuildCtx {
            node: node.to_string(),
            inputs: vec![],
            run: RunSettings::default(),
            scratch_dir: out_dir.join("tmp").join(node),
            out_dir,
            rank: 0,
            world_size: 1,
            threads: 1,
            validate_only: false,
        }
    }
}

impl BuildCtx {
    /// The context `sluice validate` builds nodes with: rank 0 of 1, nothing created.
    pub fn for_validation(run: &RunSettings) -> Self {
        let mut ctx = BuildCtx::for_tests("", "out");
        ctx.run = run.clone();
        ctx.validate_only = true;
        ctx
    }
}

/// A stage's typed config. `validate` returns every semantic problem (bad values,
/// missing files); the node name is prefixed by the caller.
pub trait StageConfig: DeserializeOwned + schemars::JsonSchema {
    /// Semantic checks beyond types. Return all problems, not just the first.
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        Vec::new()
    }
}

/// Builder signature: typed parameters in, a node (or every problem) out.
pub type BuildFn = fn(&serde_json::Value, &BuildCtx) -> std::result::Result<Node, Vec<String>>;

/// A registry entry: maps a config `kind:` to a builder.
#[derive(Clone)]
pub struct Kind {
    /// The `kind:` string, equal to the module name.
    pub name: &'static str,
    /// One-line description for `sluice stages`.
    pub doc: &'static str,
    /// Role, for graph checks.
    pub role: Role,
    /// Output ports.
    pub ports: &'static [&'static str],
    /// JSON schema of the config (field names, types, defaults, docs).
    pub schema: fn() -> schemars::Schema,
    /// Builder.
    pub build: BuildFn,
}
