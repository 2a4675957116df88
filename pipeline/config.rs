//! The YAML pipeline config: a `run:` section and a `nodes:` mapping of named nodes,
//! each with a `kind`, optional `inputs` (`node` or `node.port`) and typed parameters.
//!
//! YAML is parsed with `serde_norway`, a maintained fork of the deprecated `serde_yaml`
//! with the same API, then converted to `serde_json::Value` so every stage deserializes
//! its typed `Config` the same way. Parsing collects every problem it can find rather
//! than stopping at the first; [`crate::graph`] adds the structural checks.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::stage::{unknown_field_message, RunSettings};

/// A reference to a node's output port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRef {
    /// Upstream node name.
    pub node: String,
    /// Port name (`out` when omitted).
    pub port: String,
}

impl std::fmt::Display for InputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.node, self.port)
    }
}

/// One node as written in the config.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name (the mapping key).
    pub name: String,
    /// `kind:`.
    pub kind: String,
    /// Inputs as written.
    pub inputs: Vec<InputRef>,
    /// Everything else: the stage's typed parameters.
    pub params: serde_json::Value,
}

/// A parsed pipeline config.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Run-wide settings.
    pub run: RunSettings,
    /// Nodes in file order.
    pub nodes: Vec<NodeSpec>,
    /// sha256 of the config file bytes.
    pub config_hash: String,
    /// Where it was read from.
    pub path: String,
}

/// Read and parse a config file.
pub fn load(path: &Path) -> Result<PipelineSpec, Vec<String>> {
    let bytes = std::fs::read(path)
        .map_err(|e| vec![format!("cannot read config {}: {e}", path.display())])?;
    let text = String::from_utf8(bytes)
        .map_err(|_| vec![format!("{}: config is not UTF-8", path.display())])?;
    parse(&text, &path.display().to_string())
}

/// Parse config text.
pub fn parse(text: &str, path: &str) -> Result<PipelineSpec, Vec<String>> {
    let config_hash = hex::encode(Sha256::digest(text.as_bytes()));
    let value: serde_json::Value =
        serde_norway::from_str(text).map_err(|e| vec![format!("YAML syntax: {e}")])?;
    let mut problems = Vec::new();
    let top = match value.as_object() {
        Some(o) => o,
        None => {
            return Err(vec![
                "config must be a mapping with `nodes:` (and optionally `run:`)".into(),
            ])
        }
    };
    for key in top.keys() {
        if key != "run" && key != "nodes" {
            problems.push(format!(
                "top level: {}",
                unknown_field_message(key, &["run".into(), "nodes".into()])
            ));
        }
    }
    let run = match top.get("run") {
        None | Some(serde_json::Value::Null) => RunSettings::default(),
        Some(v) => {
            let allowed = schema_fields(&schemars::schema_for!(RunSettings));
            let mut ok = true;
            if let Some(o) = v.as_object() {
                for k in o.keys() {
                    if !allowed.contains(k) {
                        problems.push(format!("run: {}", unknown_field_message(k, &allowed)));
                        ok = false;
                    }
                }
            }
            if ok {
                match serde_json::from_value::<RunSettings>(v.clone()) {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push(format!("run: bad value: {e}"));
                        RunSettings::default()
                    }
                }
            } else {
                RunSettings::default()
            }
        }
    };
    if run.batch_size == 0 {
        problems.push("run: bad value: batch_size must be at least 1".into());
    }
    if run.queue_batches == 0 {
        problems.push("run: bad value: queue_batches must be at least 1".into());
    }
    let mut nodes = Vec::new();
    match top.get("nodes").and_then(|n| n.as_object()) {
        None => problems.push("`nodes:` mapping is missing or empty".into()),
        Some(map) => {
            if map.is_empty() {
                problems.push("`nodes:` mapping is empty".into());
            }
            for (name, body) in map {
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                {
                    problems.push(format!(
                        "node `{name}`: names may contain only letters, digits, `_` and `-`"
                    ));
                }
                let Some(obj) = body.as_object() else {
                    problems.push(format!("node `{name}`: must be a mapping with `kind:`"));
                    continue;
                };
                let kind = match obj.get("kind").and_then(|k| k.as_str()) {
                    Some(k) => k.to_string(),
                    None => {
                        problems.push(format!("node `{name}`: missing `kind:`"));
                        String::new()
                    }
                };
                let mut inputs = Vec::new();
                match obj.get("inputs") {
                    None | Some(serde_json::Value::Null) => {}
                    Some(serde_json::Value::String(s)) => inputs.push(parse_input(s)),
                    Some(serde_json::Value::Array(a)) => {
                        for i in a {
                            match i.as_str() {
                                Some(s) => inputs.push(parse_input(s)),
                                None => problems.push(format!("node `{name}`: inputs must be strings like `node` or `node.port`")),
                            }
                        }
                    }
                    Some(_) => problems.push(format!(
                        "node `{name}`: inputs must be a list of `node` or `node.port`"
                    )),
                }
                let mut params = serde_json::Map::new();
                for (k, v) in obj {
                    if k != "kind" && k != "inputs" {
                        params.insert(k.clone(), v.clone());
                    }
                }
                nodes.push(NodeSpec {
                    name: name.clone(),
                    kind,
                    inputs,
                    params: serde_json::Value::Object(params),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(PipelineSpec {
            run,
            nodes,
            config_hash,
            path: path.to_string(),
        })
    } else {
        Err(problems)
    }
}

fn parse_input(s: &str) -> InputRef {
    match s.split_once('.') {
        Some((n, p)) => InputRef {
            node: n.to_string(),
            port: p.to_string(),
        },
        None => InputRef {
            node: s.to_string(),
            port: "out".to_string(),
        },
    }
}

/// The property names of a JSON schema, in declaration order.
pub fn schema_fields(schema: &schemars::Schema) -> Vec<String> {
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nodes_in_order_with_ports() {
        let s = parse(
            "nodes:\n  b:\n    kind: ingest_jsonl\n    paths: [x]\n  a:\n    kind: length_filter\n    inputs: [b.rejected, b]\n",
            "t",
        )
        .unwrap();
        assert_eq!(s.nodes[0].name, "b");
        assert_eq!(
            s.nodes[1].inputs[0],
            InputRef {
                node: "b".into(),
                port: "rejected".into()
            }
        );
        assert_eq!(s.nodes[1].inputs[1].port, "out");
        assert_eq!(s.nodes[0].params["paths"][0], "x");
    }

    #[test]
    fn reports_all_top_level_problems() {
        let e = parse("run:\n  batch_sise: 3\nnodez: {}\n", "t").unwrap_err();
        assert!(
            e.iter()
                .any(|p| p.contains("batch_sise") && p.contains("batch_size")),
            "{e:?}"
        );
        assert!(e.iter().any(|p| p.contains("nodez")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("`nodes:`")), "{e:?}");
    }
}
