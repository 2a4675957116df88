//! `length_filter`: keep documents whose length in characters is within bounds.
//!
//! The simplest real filter: it proves the `rejected` port end to end. Length is counted
//! in Unicode scalar values (characters), not bytes, so a Chinese page and an English page
//! of the same visible length are treated alike.
//!
//! * Reads: `text`. Writes: `attrs["length_filter.chars"]`.
//! * Rejects: `too_short` / `too_long`, with the character count as score.
//! * Memory: none beyond the batch.
//!
//! ```yaml
//! short:
//!   kind: length_filter
//!   inputs: [wiki]
//!   min_chars: 50
//!   max_chars: 100000
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::attrs::AttrDecl;
use crate::document::DocBatch;
use crate::error::Result;
use crate::stage::{
    parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role, StageConfig, Transform, OUT_REJECTED,
};

/// Config for `length_filter`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Minimum length in characters (inclusive). Default 0.
    #[serde(default)]
    pub min_chars: usize,
    /// Maximum length in characters (inclusive). Default: no limit.
    #[serde(default = "default_max")]
    pub max_chars: usize,
}

fn default_max() -> usize {
    usize::MAX
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.min_max("min_chars", self.min_chars, "max_chars", self.max_chars);
        c.into_vec()
    }
}

/// The `length_filter` transform.
pub struct LengthFilter {
    cfg: Config,
}

impl LengthFilter {
    /// Build from a config.
    pub fn new(cfg: Config) -> Self {
        LengthFilter { cfg }
    }
}

impl Transform for LengthFilter {
    fn attrs(&self) -> Vec<AttrDecl> {
        vec![AttrDecl::int("length_filter.chars")]
    }

    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            let n = doc.text.chars().count();
            doc.attrs.insert("length_filter.chars".into(), n as f64);
            if n < self.cfg.min_chars {
                out.reject(
                    doc,
                    "too_short",
                    Some(n as f64),
                    format!("min_chars={}", self.cfg.min_chars),
                );
            } else if n > self.cfg.max_chars {
                out.reject(
                    doc,
                    "too_long",
                    Some(n as f64),
                    format!("max_chars={}", self.cfg.max_chars),
                );
            } else {
                out.emit(doc);
            }
        }
        Ok(())
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "length_filter",
        doc: "Keep documents whose length in characters is within [min_chars, max_chars].",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(Arc::new(LengthFilter::new(cfg))))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_transform;

    #[test]
    fn routes_by_char_count_not_bytes() {
        let f = LengthFilter::new(Config {
            min_chars: 5,
            max_chars: 10,
        });
        // 6 Chinese characters = 18 bytes: kept by chars, would fail a byte bound.
        let texts = ["中文维基百科", "短", "This is far too long for ten"];
        for bs in [1, 3, 1000] {
            let (out, rej) = run_transform(&f, &texts, bs);
            assert_eq!(
                out.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
                vec!["中文维基百科"]
            );
            let reasons: Vec<_> = rej
                .iter()
                .map(|d| d.reject.as_ref().unwrap().reason.clone())
                .collect();
            assert_eq!(reasons, vec!["too_short", "too_long"]);
            assert_eq!(rej[0].reject.as_ref().unwrap().score, Some(1.0));
        }
    }
}
