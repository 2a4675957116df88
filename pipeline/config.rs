//! The YAML pipeline config: a `run:` section and a `nodes:` mapping of named nodes,
//! each with a `kind`, optional `inputs` (`node` or `node.port`) and typed parameters.
//!
//! YAML is parsed with `serde_norway`, a maintained fork of the deprecated `serde_yaml`
//! with the same API, into a value that keeps every mapping entry in order (so a node
//! name or a key written twice is seen, not silently replaced by the last), then
//! converted to `serde_json::Value` so every stage deserializes its typed `Config` the
//! same way.
//!
//! Validation reports every problem at once, each naming its node and field: parsing
//! goes on past a bad `run:` field or a bad node, [`crate::graph`] adds the structural
//! checks (an unknown kind hides no other node's problems), and each node's builder adds
//! its field problems ([`crate::stage::parse_config`]). A message reads
//! `node "dedup" (minhash_dedup): field "threshold": expected a number in (0, 1], got 1.5`.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::stage::{
    describe_value, deserialize_fields, field_problem, unknown_field_message, BuildCtx, RunSettings,
};

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

/// Every problem found in a config, grouped so the report reads like the file: the top
/// level and `run:` first, then each node in file order, then whole-graph problems
/// (cycles, no sink). Node problems get their `node "name" (kind): ` prefix when the
/// report is turned into messages.
#[derive(Debug, Default)]
pub struct Report {
    /// Top level and `run:`.
    pub head: Vec<String>,
    /// Per node, same index as `PipelineSpec::nodes`.
    pub nodes: Vec<Vec<String>>,
    /// The graph as a whole.
    pub tail: Vec<String>,
}

impl Report {
    /// The problem list of node `i`.
    pub fn node(&mut self, i: usize) -> &mut Vec<String> {
        if self.nodes.len() <= i {
            self.nodes.resize_with(i + 1, Vec::new);
        }
        &mut self.nodes[i]
    }
    /// Whether nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty() && self.tail.is_empty() && self.nodes.iter().all(|n| n.is_empty())
    }
    /// The messages, each node problem prefixed with its node's label (see [`node_label`]).
    pub fn into_messages(self, spec: &PipelineSpec) -> Vec<String> {
        let mut out = self.head;
        for (i, ps) in self.nodes.into_iter().enumerate() {
            let label = node_label(spec, i);
            out.extend(ps.into_iter().map(|p| format!("{label}: {p}")));
        }
        out.extend(self.tail);
        out
    }
}

/// `node "name" (kind)`: the kind only when it is known, and the node's position
/// (`node "name" #4 (kind)`, counting from 1) when another node has the same name.
pub fn node_label(spec: &PipelineSpec, i: usize) -> String {
    let Some(n) = spec.nodes.get(i) else {
        return format!("node #{}", i + 1);
    };
    let mut label = format!("node \"{}\"", n.name);
    if spec.nodes.iter().filter(|m| m.name == n.name).count() > 1 {
        label.push_str(&format!(" #{}", i + 1));
    }
    if crate::registry::get(&n.kind).is_some() {
        label.push_str(&format!(" ({})", n.kind));
    }
    label
}

/// Read and parse a config file.
///
/// On any problem, the error lists every problem in the file: besides what parsing finds,
/// the graph is checked and every node of a known kind is built in validate-only mode,
/// so one run of `sluice validate` or `sluice run` shows everything to fix.
pub fn load(path: &Path) -> Result<PipelineSpec, Vec<String>> {
    let bytes = std::fs::read(path)
        .map_err(|e| vec![format!("cannot read config {}: {e}", path.display())])?;
    let text = String::from_utf8(bytes)
        .map_err(|_| vec![format!("{}: config is not UTF-8", path.display())])?;
    parse(&text, &path.display().to_string())
}

/// Parse config text (see [`load`] for what the error holds).
pub fn parse(text: &str, path: &str) -> Result<PipelineSpec, Vec<String>> {
    let (spec, mut report) = parse_lenient(text, path)?;
    if report.is_empty() {
        return Ok(spec);
    }
    let kinds = crate::graph::check_into(&spec, &mut report).kinds;
    crate::graph::build_into(
        &spec,
        &kinds,
        &BuildCtx::for_validation(&spec.run),
        &mut report,
        |_, _| {},
    );
    Err(report.into_messages(&spec))
}

/// Parse config text as far as possible: a spec (bad `run:` fields at their defaults,
/// every node kept, duplicates included) and the problems found on the way. Fails only
/// when the text is not YAML or not a mapping.
pub fn parse_lenient(text: &str, path: &str) -> Result<(PipelineSpec, Report), Vec<String>> {
    let config_hash = hex::encode(Sha256::digest(text.as_bytes()));
    let raw: Raw = serde_norway::from_str(text).map_err(|e| vec![format!("YAML syntax: {e}")])?;
    let mut report = Report::default();
    let Raw::Map(top) = raw else {
        return Err(vec![
            "config must be a mapping with `nodes:` (and optionally `run:`)".into(),
        ]);
    };
    let mut run_value = None;
    let mut nodes_value = None;
    let top_fields = ["run".to_string(), "nodes".to_string()];
    for (key, value) in entries(top, &mut report.head, "top level: ", "") {
        match key.as_str() {
            "run" => run_value = Some(value),
            "nodes" => nodes_value = Some(value),
            _ => report.head.push(format!(
                "top level: {}",
                unknown_field_message(&key, &top_fields)
            )),
        }
    }
    let run = match run_value {
        None | Some(Raw::Null) => RunSettings::default(),
        Some(v) => {
            let v = v.into_json(&mut report.head, "run: ", "");
            let fields = deserialize_fields::<RunSettings>(&v);
            let run = fields.value.clone().unwrap_or_default();
            let problems = fields.with_checks(run.check(), &v);
            report
                .head
                .extend(problems.into_iter().map(|p| format!("run: {p}")));
            run
        }
    };
    let mut nodes = Vec::new();
    match nodes_value {
        None | Some(Raw::Null) => report
            .head
            .push("top level: field \"nodes\": missing (a mapping of named nodes)".into()),
        Some(Raw::Map(map)) => {
            if map.is_empty() {
                report
                    .head
                    .push("top level: field \"nodes\": must not be empty".into());
            }
            // Not `entries`: a repeated node name is kept, for the graph check to report
            // with both nodes' problems.
            for (k, body) in map {
                let Some(name) = k.scalar_string() else {
                    report.head.push(format!(
                        "top level: field \"nodes\": a node name must be a plain string, got {}",
                        k.describe()
                    ));
                    continue;
                };
                let i = nodes.len();
                let mut problems = Vec::new();
                let node = parse_node(name, body, &mut problems);
                nodes.push(node);
                report.node(i).extend(problems);
            }
        }
        Some(other) => report.head.push(format!(
            "top level: field \"nodes\": expected a mapping of named nodes, got {}",
            other.describe()
        )),
    }
    report.nodes.resize_with(nodes.len(), Vec::new);
    Ok((
        PipelineSpec {
            run,
            nodes,
            config_hash,
            path: path.to_string(),
        },
        report,
    ))
}

/// One node from its mapping; problems go to `problems` (unprefixed).
fn parse_node(name: String, body: Raw, problems: &mut Vec<String>) -> NodeSpec {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        problems.push("bad name: names may contain only letters, digits, `_` and `-`".into());
    }
    let mut node = NodeSpec {
        name,
        kind: String::new(),
        inputs: Vec::new(),
        params: serde_json::Value::Object(Default::default()),
    };
    let body = match body {
        Raw::Map(m) => m,
        other => {
            problems.push(format!(
                "expected a mapping with `kind:`, got {}",
                other.describe()
            ));
            return node;
        }
    };
    let mut params = serde_json::Map::new();
    let mut has_kind = false;
    for (k, v) in entries(body, problems, "", "") {
        match k.as_str() {
            "kind" => {
                has_kind = true;
                match v.scalar_string() {
                    Some(s) => node.kind = s,
                    None => problems.push(field_problem(
                        "kind",
                        format!("expected a kind name, got {}", v.describe()),
                    )),
                }
            }
            "inputs" => match v.into_json(problems, "", "inputs") {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => node.inputs.push(parse_input(&s)),
                serde_json::Value::Array(a) => {
                    for (j, item) in a.iter().enumerate() {
                        match item.as_str() {
                            Some(s) => node.inputs.push(parse_input(s)),
                            None => problems.push(field_problem(
                                &format!("inputs[{j}]"),
                                format!(
                                    "expected a string like `node` or `node.port`, got {}",
                                    describe_value(item)
                                ),
                            )),
                        }
                    }
                }
                other => problems.push(field_problem(
                    "inputs",
                    format!(
                        "expected a list of `node` or `node.port`, got {}",
                        describe_value(&other)
                    ),
                )),
            },
            _ => {
                let v = v.into_json(problems, "", &k);
                params.insert(k, v);
            }
        }
    }
    if !has_kind {
        problems.push(field_problem(
            "kind",
            "missing (`sluice stages` lists the kinds)",
        ));
    }
    node.params = serde_json::Value::Object(params);
    node
}

/// A YAML value with its mappings kept as written: in order, repeated keys included.
/// `serde_json::Value` (like most YAML readers) keeps only the last of repeated keys,
/// which would hide a node or field written twice.
#[derive(Debug)]
enum Raw {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Raw>),
    Map(Vec<(Raw, Raw)>),
}

impl<'de> serde::Deserialize<'de> for Raw {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Raw, E> {
                Ok(Raw::I64(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Raw, E> {
                Ok(Raw::U64(n))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Raw, E> {
                Ok(Raw::F64(n))
            }
            fn visit_str<E>(self, s: &str) -> Result<Raw, E> {
                Ok(Raw::Str(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Raw, E> {
                Ok(Raw::Str(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Raw::Seq(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = a.next_entry()? {
                    v.push(kv);
                }
                Ok(Raw::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Raw {
    /// A scalar as a string (mapping keys and kind names); `None` for lists and mappings.
    fn scalar_string(&self) -> Option<String> {
        match self {
            Raw::Str(s) => Some(s.clone()),
            Raw::Bool(b) => Some(b.to_string()),
            Raw::I64(n) => Some(n.to_string()),
            Raw::U64(n) => Some(n.to_string()),
            Raw::F64(n) => Some(n.to_string()),
            Raw::Null | Raw::Seq(_) | Raw::Map(_) => None,
        }
    }
    fn describe(&self) -> String {
        match self {
            Raw::Null => "nothing (null)".into(),
            Raw::Bool(b) => format!("the boolean {b}"),
            Raw::I64(n) => format!("the number {n}"),
            Raw::U64(n) => format!("the number {n}"),
            Raw::F64(n) => format!("the number {n}"),
            Raw::Str(s) => format!("the string {s:?}"),
            Raw::Seq(_) => "a list".into(),
            Raw::Map(_) => "a mapping".into(),
        }
    }
    /// Convert to JSON, reporting every repeated mapping key (and keeping the first, so
    /// the rest of the file is still checked) as `{prefix}field "path": ...`.
    fn into_json(self, problems: &mut Vec<String>, prefix: &str, path: &str) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Raw::Null => Value::Null,
            Raw::Bool(b) => Value::Bool(b),
            Raw::I64(n) => Value::from(n),
            Raw::U64(n) => Value::from(n),
            // NaN and infinities have no JSON form; they become null and fail as a type error.
            Raw::F64(n) => Value::from(n),
            Raw::Str(s) => Value::String(s),
            Raw::Seq(v) => Value::Array(
                v.into_iter()
                    .enumerate()
                    .map(|(i, x)| x.into_json(problems, prefix, &format!("{path}[{i}]")))
                    .collect(),
            ),
            Raw::Map(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in entries(m, problems, prefix, path) {
                    let v = v.into_json(problems, prefix, &join_path(path, &k));
                    out.insert(k, v);
                }
                Value::Object(out)
            }
        }
    }
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A mapping's entries with string keys, in order. A repeated key is reported once
/// (`{prefix}field "path.key": given N times ...`) and only its first entry kept.
fn entries(
    map: Vec<(Raw, Raw)>,
    problems: &mut Vec<String>,
    prefix: &str,
    path: &str,
) -> Vec<(String, Raw)> {
    let mut out: Vec<(String, Raw)> = Vec::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for (k, v) in map {
        let Some(k) = k.scalar_string() else {
            let msg = format!("a key must be a plain string, got {}", k.describe());
            problems.push(match path {
                "" => format!("{prefix}{msg}"),
                _ => format!("{prefix}{}", field_problem(path, msg)),
            });
            continue;
        };
        match counts.iter_mut().find(|(c, _)| *c == k) {
            Some((_, n)) => *n += 1,
            None => {
                counts.push((k.clone(), 1));
                out.push((k, v));
            }
        }
    }
    for (k, n) in counts {
        if n > 1 {
            problems.push(format!(
                "{prefix}{}",
                field_problem(
                    &join_path(path, &k),
                    format!("given {n} times; a key may appear once (the first is used)")
                )
            ));
        }
    }
    out
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
        assert!(
            e.contains(&r#"top level: field "nodes": missing (a mapping of named nodes)"#.into()),
            "{e:?}"
        );
    }

    #[test]
    fn repeated_keys_are_reported_and_repeated_nodes_kept() {
        let yaml = "run:\n  batch_size: 2\n  batch_size: 3\nnodes:\n  a:\n    kind: ingest_jsonl\n    paths: [x]\n    source: s\n    source: t\n    meta_fields: [u]\n  a:\n    kind: parquet_shards\n    inputs: [a]\n    compression: {x: 1, x: 2}\n";
        let (spec, report) = parse_lenient(yaml, "t").unwrap();
        assert_eq!(
            spec.run.batch_size, 2,
            "the first of a repeated key is used"
        );
        assert_eq!(spec.nodes.len(), 2);
        assert_eq!(spec.nodes[0].params["source"], "s");
        assert_eq!(
            report.into_messages(&spec),
            [
                r#"run: field "batch_size": given 2 times; a key may appear once (the first is used)"#,
                r#"node "a" #1 (ingest_jsonl): field "source": given 2 times; a key may appear once (the first is used)"#,
                r#"node "a" #2 (parquet_shards): field "compression.x": given 2 times; a key may appear once (the first is used)"#,
            ]
        );
    }

    #[test]
    fn node_shape_problems_are_all_reported() {
        let yaml = "nodes:\n  bad name:\n    inputs: 3\n  b: [1]\n  c:\n    kind: [x]\n    inputs: [a, 1]\n";
        let (spec, report) = parse_lenient(yaml, "t").unwrap();
        assert_eq!(
            report.into_messages(&spec),
            [
                "node \"bad name\": bad name: names may contain only letters, digits, `_` and `-`",
                "node \"bad name\": field \"inputs\": expected a list of `node` or `node.port`, got the number 3",
                "node \"bad name\": field \"kind\": missing (`sluice stages` lists the kinds)",
                "node \"b\": expected a mapping with `kind:`, got a list",
                "node \"c\": field \"kind\": expected a kind name, got a list",
                "node \"c\": field \"inputs[1]\": expected a string like `node` or `node.port`, got the number 1",
            ]
        );
        assert!(parse("- a\n", "t").is_err());
        assert!(parse("nodes: [\n", "t").unwrap_err()[0].starts_with("YAML syntax"));
    }
}
