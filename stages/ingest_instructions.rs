//! `ingest_instructions`: a source for instruction and chat data (synthetic Q&A,
//! distilled answers, rewrites), rendered to plain training text through a template.
//!
//! Labs blend such data into web corpora at a chosen token ratio (see the `mix` stage).
//! Two record shapes are read from JSONL (plain, `.gz` or `.zst`):
//!
//! * **Field records** such as Alpaca's `{"instruction", "input", "output"}` or GSM8K's
//!   `{"question", "answer"}`. `template` names record fields in braces:
//!   `问题：{instruction}\n{input}\n回答：{output}`. A template line that holds only one
//!   placeholder whose value is empty is dropped (so an empty `input` leaves no blank
//!   line). `{{` and `}}` are literal braces. A field listed in `optional_fields` may be
//!   missing (it renders empty); any other missing field makes the record bad.
//! * **Chat records** with a `messages` list of `{"role", "content"}`. Each turn renders
//!   through `turn_template` (`{role}` is mapped through `role_names`), turns joined by
//!   `turn_separator`. With `format: auto` (default) a record is chat when it has the
//!   messages field.
//!
//! * Writes: `id` = `<source>:<file name>:<line>`, `source`, `text`,
//!   `meta["synthetic"]` (`"true"`/`"false"` per `synthetic`), `meta["instructions.format"]`
//!   (`template` or `chat`), plus `meta_fields` copied as strings.
//! * Bad records (invalid JSON, missing fields, not an object, empty text) are skipped and
//!   counted through `SourceSink::bad_record` with `file:line` and the reason.
//! * Memory: one line at a time.
//!
//! ```yaml
//! synthetic:
//!   kind: ingest_instructions
//!   paths: [samples/synthetic/alpaca_cot_zh.jsonl]
//!   template: "问题：{instruction}\n{input}\n回答：{output}"
//! gsm8k_qa:
//!   kind: ingest_instructions
//!   paths: [samples/benchmarks/gsm8k_test.jsonl]
//!   template: "Question: {question}\nAnswer: {answer}"
//! chat:
//!   kind: ingest_instructions
//!   paths: [data/chat/*.jsonl.zst]
//!   turn_template: "<|{role}|>\n{content}"
//!   role_names: {user: user, assistant: assistant}
//! ```

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::document::Document;
use crate::error::{Error, Result};
use crate::io::{check_paths, expand_paths, file_name, open_input};
use crate::stage::{
    field_problem, parse_config, BuildCtx, Kind, Node, Role, Source, SourceSink, StageConfig,
    OUT_REJECTED,
};

/// How each record is read.
#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Chat when the record has `messages_field`, otherwise the field template.
    #[default]
    Auto,
    /// Always the field template.
    Template,
    /// Always chat; records without the messages list are bad.
    Chat,
}

/// Config for `ingest_instructions`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Input JSONL files (globs allowed; `.gz`/`.zst` decompressed). Required.
    pub paths: Vec<String>,
    /// Value of `Document.source`. Default: the node name.
    #[serde(default)]
    pub source: String,
    /// Licence of this source's documents: an SPDX id (`CC-BY-SA-4.0`) or free text
    /// ("Common Crawl terms of use; page copyright with its owner"). Written to each
    /// document's `meta.license`, to the packed rows' `source_mix` and, as token totals per
    /// licence, to the manifest; checked against `run.allowed_licenses`. Default: none
    /// (counted as `unknown`).
    #[serde(default)]
    pub license: Option<String>,
    /// URL of the terms the licence refers to, written to `meta.terms_url`. Default: none.
    #[serde(default)]
    pub terms_url: Option<String>,
    /// Record shape: `auto` (default), `template` or `chat`.
    #[serde(default)]
    pub format: Format,
    /// Template for field records; `{field}` is a top-level record field.
    /// Default `问题：{instruction}\n{input}\n回答：{output}`.
    #[serde(default = "default_template")]
    pub template: String,
    /// Fields that may be missing (rendered empty). Default `[input, system]`.
    #[serde(default = "default_optional")]
    pub optional_fields: Vec<String>,
    /// Field holding the chat turns. Default `messages`.
    #[serde(default = "default_messages")]
    pub messages_field: String,
    /// Template of one chat turn, with `{role}` and `{content}`. Default `{role}：{content}`.
    #[serde(default = "default_turn")]
    pub turn_template: String,
    /// Display names for roles in `turn_template`. Default `{system: 系统, user: 用户, assistant: 助手}`;
    /// a role not listed is shown as is.
    #[serde(default = "default_roles")]
    pub role_names: BTreeMap<String, String>,
    /// Joins rendered turns. Default `"\n"`.
    #[serde(default = "default_sep")]
    pub turn_separator: String,
    /// Value of `meta["synthetic"]`. Default true (this source is meant for generated data).
    #[serde(default = "default_true")]
    pub synthetic: bool,
    /// Top-level record fields copied into `meta` (non-strings as JSON). Default none.
    #[serde(default)]
    pub meta_fields: Vec<String>,
}

fn default_template() -> String {
    "问题：{instruction}\n{input}\n回答：{output}".into()
}
fn default_optional() -> Vec<String> {
    vec!["input".into(), "system".into()]
}
fn default_messages() -> String {
    "messages".into()
}
fn default_turn() -> String {
    "{role}：{content}".into()
}
fn default_roles() -> BTreeMap<String, String> {
    [("system", "系统"), ("user", "用户"), ("assistant", "助手")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}
fn default_sep() -> String {
    "\n".into()
}
fn default_true() -> bool {
    true
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut p = check_paths("paths", &self.paths);
        if let Err(e) = Template::parse(&self.template) {
            p.push(field_problem("template", e));
        }
        match Template::parse(&self.turn_template) {
            Err(e) => p.push(field_problem("turn_template", e)),
            Ok(t) => {
                for f in t.fields() {
                    if f != "role" && f != "content" {
                        p.push(field_problem(
                            "turn_template",
                            format!("unknown placeholder `{{{f}}}` (use {{role}} and {{content}})"),
                        ));
                    }
                }
            }
        }
        p
    }
}

// ---------------------------------------------------------------- templates

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    Field(String),
}

/// A parsed `{field}` template, kept as lines so empty-placeholder lines can be dropped.
#[derive(Debug, Clone)]
pub struct Template {
    lines: Vec<Vec<Seg>>,
}

impl Template {
    /// Parse; `{{`/`}}` are literal braces.
    pub fn parse(t: &str) -> std::result::Result<Template, String> {
        let mut lines = Vec::new();
        for line in t.split('\n') {
            let mut segs = Vec::new();
            let mut lit = String::new();
            let mut it = line.chars().peekable();
            while let Some(c) = it.next() {
                match c {
                    '{' if it.peek() == Some(&'{') => {
                        it.next();
                        lit.push('{');
                    }
                    '}' if it.peek() == Some(&'}') => {
                        it.next();
                        lit.push('}');
                    }
                    '{' => {
                        let mut name = String::new();
                        loop {
                            match it.next() {
                                Some('}') => break,
                                Some(ch) => name.push(ch),
                                None => return Err(format!("unclosed `{{` in `{line}`")),
                            }
                        }
                        if name.is_empty() {
                            return Err("empty placeholder `{}`".into());
                        }
                        if !lit.is_empty() {
                            segs.push(Seg::Lit(std::mem::take(&mut lit)));
                        }
                        segs.push(Seg::Field(name));
                    }
                    '}' => {
                        return Err(format!(
                            "unmatched `}}` in `{line}` (write `}}}}` for a literal brace)"
                        ))
                    }
                    c => lit.push(c),
                }
            }
            if !lit.is_empty() {
                segs.push(Seg::Lit(lit));
            }
            lines.push(segs);
        }
        Ok(Template { lines })
    }

    /// Placeholder names in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().flatten().filter_map(|s| match s {
            Seg::Field(f) => Some(f.as_str()),
            Seg::Lit(_) => None,
        })
    }

    /// Render with `get(field)`; `Err(field)` names a missing required field.
    pub fn render<'a>(
        &self,
        mut get: impl FnMut(&str) -> Option<&'a str>,
        optional: &[String],
    ) -> std::result::Result<String, String> {
        let mut out = String::new();
        let mut first = true;
        for line in &self.lines {
            let mut l = String::new();
            for s in line {
                match s {
                    Seg::Lit(t) => l.push_str(t),
                    Seg::Field(f) => match get(f) {
                        Some(v) => l.push_str(v),
                        None if optional.iter().any(|o| o == f) => {}
                        None => return Err(f.clone()),
                    },
                }
            }
            let lone_empty = matches!(line.as_slice(), [Seg::Field(_)]) && l.trim().is_empty();
            if lone_empty {
                continue;
            }
            if !first {
                out.push('\n');
            }
            first = false;
            out.push_str(&l);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------- the source

/// The `ingest_instructions` source.
pub struct IngestInstructions {
    cfg: Config,
    source: String,
    template: Template,
    turn: Template,
}

impl IngestInstructions {
    /// Build from a config; `node` is the default source name.
    pub fn new(cfg: Config, node: &str) -> Result<Self> {
        let template =
            Template::parse(&cfg.template).map_err(|e| Error::msg(format!("template: {e}")))?;
        let turn = Template::parse(&cfg.turn_template)
            .map_err(|e| Error::msg(format!("turn_template: {e}")))?;
        let source = if cfg.source.is_empty() {
            node.to_string()
        } else {
            cfg.source.clone()
        };
        Ok(IngestInstructions {
            cfg,
            source,
            template,
            turn,
        })
    }

    /// Render one parsed record to (text, format), or a bad-record reason.
    pub fn render(
        &self,
        rec: &serde_json::Value,
    ) -> std::result::Result<(String, &'static str), String> {
        let obj = rec.as_object().ok_or("record is not a JSON object")?;
        let msgs = obj.get(&self.cfg.messages_field);
        let chat = match self.cfg.format {
            Format::Chat => true,
            Format::Template => false,
            Format::Auto => msgs.is_some(),
        };
        if chat {
            let list = msgs
                .and_then(|m| m.as_array())
                .ok_or_else(|| format!("`{}` is missing or not a list", self.cfg.messages_field))?;
            let mut turns = Vec::with_capacity(list.len());
            for (i, m) in list.iter().enumerate() {
                let role = m
                    .get("role")
                    .and_then(|r| r.as_str())
                    .ok_or(format!("turn {i}: no string `role`"))?;
                let content = m
                    .get("content")
                    .and_then(|r| r.as_str())
                    .ok_or(format!("turn {i}: no string `content`"))?;
                let shown = self
                    .cfg
                    .role_names
                    .get(role)
                    .map(|s| s.as_str())
                    .unwrap_or(role);
                let t = self
                    .turn
                    .render(
                        |f| match f {
                            "role" => Some(shown),
                            "content" => Some(content),
                            _ => None,
                        },
                        &[],
                    )
                    .map_err(|f| format!("turn_template: unknown placeholder `{f}`"))?;
                turns.push(t);
            }
            Ok((turns.join(&self.cfg.turn_separator), "chat"))
        } else {
            let mut bad_type = None;
            let text = self
                .template
                .render(
                    |f| match obj.get(f) {
                        Some(serde_json::Value::String(s)) => Some(s.as_str()),
                        Some(serde_json::Value::Null) | None => None,
                        Some(_) => {
                            bad_type = Some(f.to_string());
                            Some("")
                        }
                    },
                    &self.cfg.optional_fields,
                )
                .map_err(|f| format!("missing field `{f}`"))?;
            if let Some(f) = bad_type {
                return Err(format!("field `{f}` is not a string"));
            }
            Ok((text, "template"))
        }
    }
}

impl Source for IngestInstructions {
    fn splits(&self) -> Result<Vec<String>> {
        expand_paths(&self.cfg.paths)
    }

    fn read(&mut self, split: &str, ctx: &mut dyn SourceSink) -> Result<()> {
        let mut r = open_input(split)?;
        let fname = file_name(split).to_string();
        let mut buf = Vec::new();
        let mut lineno = 0u64;
        loop {
            buf.clear();
            let n = r
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::io(split, e))?;
            if n == 0 {
                break;
            }
            lineno += 1;
            ctx.bytes_read(n as u64);
            let Ok(line) = std::str::from_utf8(&buf) else {
                ctx.bad_record(&format!("{split}:{lineno}"), "invalid UTF-8")?;
                continue;
            };
            let l = line.trim();
            if l.is_empty() {
                continue;
            }
            let loc = format!("{split}:{lineno}");
            let rec: serde_json::Value = match serde_json::from_str(l) {
                Ok(v) => v,
                Err(e) => {
                    ctx.bad_record(&loc, &format!("invalid JSON: {e}"))?;
                    continue;
                }
            };
            let (text, format) = match self.render(&rec) {
                Ok(x) => x,
                Err(reason) => {
                    ctx.bad_record(&loc, &reason)?;
                    continue;
                }
            };
            if text.trim().is_empty() {
                ctx.bad_record(&loc, "empty text after rendering")?;
                continue;
            }
            let mut doc = Document::new(
                crate::provenance::file_id(&self.source, &fname, lineno),
                self.source.clone(),
                text,
            );
            doc.meta.insert("line".into(), lineno.to_string());
            doc.meta
                .insert("synthetic".into(), self.cfg.synthetic.to_string());
            doc.meta.insert("instructions.format".into(), format.into());
            for f in &self.cfg.meta_fields {
                match rec.get(f) {
                    Some(serde_json::Value::String(s)) => {
                        doc.meta.insert(f.clone(), s.clone());
                    }
                    Some(serde_json::Value::Null) | None => {}
                    Some(v) => {
                        doc.meta.insert(f.clone(), v.to_string());
                    }
                }
            }
            ctx.emit(doc)?;
        }
        Ok(())
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "ingest_instructions",
        doc: "Read instruction (field) and chat (messages) JSONL records, rendered to text through a template; marks meta.synthetic.",
        role: Role::Source,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Source(Box::new(IngestInstructions::new(cfg, &ctx.node)?)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal SourceSink for tests.
    #[derive(Default)]
    struct Collect {
        docs: Vec<Document>,
        bad: Vec<(String, String)>,
    }
    impl SourceSink for Collect {
        fn emit(&mut self, doc: Document) -> Result<()> {
            self.docs.push(doc);
            Ok(())
        }
        fn reject(&mut self, _doc: Document, _r: &str, _s: Option<f64>, _d: String) -> Result<()> {
            Ok(())
        }
        fn bad_record(&mut self, location: &str, reason: &str) -> Result<()> {
            self.bad.push((location.into(), reason.into()));
            Ok(())
        }
        fn bytes_read(&mut self, _n: u64) {}
    }

    fn build(params: serde_json::Value) -> IngestInstructions {
        let ctx = BuildCtx::for_tests("synth", "/tmp");
        let cfg: Config = parse_config(&params, &ctx).expect("config");
        IngestInstructions::new(cfg, "synth").unwrap()
    }

    #[test]
    fn alpaca_sample_renders_with_template_and_flags_synthetic() {
        let mut s = build(
            serde_json::json!({"paths": ["samples/synthetic/alpaca_cot_zh.jsonl"], "meta_fields": ["meta"]}),
        );
        let mut c = Collect::default();
        for sp in s.splits().unwrap() {
            s.read(&sp, &mut c).unwrap();
        }
        assert_eq!(c.docs.len(), 11, "bad: {:?}", c.bad);
        let d = &c.docs[0];
        assert!(d.text.starts_with("问题：2017年5月24日"), "{}", d.text);
        // Empty `input` leaves no blank line.
        assert!(d.text.ends_with("True or False?\n回答：True"), "{}", d.text);
        assert_eq!(d.id, "synth:alpaca_cot_zh.jsonl:1");
        assert_eq!(d.source, "synth");
        assert_eq!(d.meta["synthetic"], "true");
        assert_eq!(d.meta["instructions.format"], "template");
        assert!(d.meta["meta"].contains("xP3"));
    }

    #[test]
    fn gsm8k_as_english_qa_source() {
        let mut s = build(serde_json::json!({
            "paths": ["samples/benchmarks/gsm8k_test.jsonl"],
            "template": "Question: {question}\nAnswer: {answer}",
            "source": "gsm8k_qa", "synthetic": false
        }));
        let mut c = Collect::default();
        s.read("samples/benchmarks/gsm8k_test.jsonl", &mut c)
            .unwrap();
        assert_eq!(c.docs.len(), 1319);
        assert!(c.bad.is_empty());
        assert!(c.docs[0]
            .text
            .starts_with("Question: Janet’s ducks lay 16 eggs"));
        assert!(c.docs[0].text.contains("\nAnswer: Janet sells"));
        assert_eq!(c.docs[0].meta["synthetic"], "false");
        assert_eq!(c.docs[0].source, "gsm8k_qa");
    }

    #[test]
    fn chat_records_and_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("chat.jsonl");
        std::fs::write(
            &p,
            concat!(
                r#"{"messages":[{"role":"user","content":"北京是哪个国家的首都？"},{"role":"assistant","content":"中国。"}]}"#,
                "\n",
                "not json\n",
                r#"{"instruction":"写一首诗"}"#,
                "\n",
                r#"{"messages":[{"role":"user"}]}"#,
                "\n\n",
                r#"{"instruction":"你好","output":"你好！","input":null}"#,
                "\n",
                r#"[1,2]"#,
                "\n",
            ),
        )
        .unwrap();
        // Line 8: not UTF-8; line 9 must still be read.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(b"{\"instruction\":\"\xff\xfe\",\"output\":\"x\"}\n");
        bytes.extend_from_slice(r#"{"instruction":"一","output":"二"}"#.as_bytes());
        std::fs::write(&p, bytes).unwrap();
        let ps = p.to_string_lossy().to_string();
        let mut s = build(serde_json::json!({"paths": [ps]}));
        let mut c = Collect::default();
        s.read(&ps, &mut c).unwrap();
        let texts: Vec<_> = c.docs.iter().map(|d| d.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "用户：北京是哪个国家的首都？\n助手：中国。",
                "问题：你好\n回答：你好！",
                "问题：一\n回答：二"
            ]
        );
        assert_eq!(c.docs[0].meta["instructions.format"], "chat");
        assert_eq!(c.docs[1].id, "synth:chat.jsonl:6");
        let reasons: Vec<_> = c
            .bad
            .iter()
            .map(|(l, r)| format!("{}|{r}", file_name(l)))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].starts_with("chat.jsonl:2|invalid JSON"));
        assert_eq!(reasons[1], "chat.jsonl:3|missing field `output`");
        assert_eq!(reasons[2], "chat.jsonl:4|turn 0: no string `content`");
        assert_eq!(reasons[3], "chat.jsonl:7|record is not a JSON object");
        assert_eq!(reasons[4], "chat.jsonl:8|invalid UTF-8");
    }

    #[test]
    fn custom_chat_template_and_zst_input() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl.zst");
        let rec = r#"{"messages":[{"role":"system","content":"S"},{"role":"tool","content":"T"}]}"#;
        std::fs::write(&p, zstd::encode_all(rec.as_bytes(), 3).unwrap()).unwrap();
        let ps = p.to_string_lossy().to_string();
        let mut s = build(
            serde_json::json!({"paths": [ps], "turn_template": "<|{role}|>{content}", "role_names": {"system": "sys"}, "turn_separator": "|"}),
        );
        let mut c = Collect::default();
        s.read(&ps, &mut c).unwrap();
        assert_eq!(c.docs[0].text, "<|sys|>S|<|tool|>T");
    }

    #[test]
    fn config_problems_are_all_reported() {
        let ctx = BuildCtx::for_tests("x", "/tmp");
        let e = parse_config::<Config>(
            &serde_json::json!({"paths": ["nope/*.jsonl"], "template": "{a", "turn_template": "{who}: {content}"}),
            &ctx,
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        let e = parse_config::<Config>(&serde_json::json!({"paths": [], "templat": "x"}), &ctx)
            .unwrap_err();
        assert_eq!(
            e,
            [
                r#"field "paths": at least one path is required"#,
                r#"unknown field "templat" (did you mean "template"?)"#
            ]
        );
    }
}
