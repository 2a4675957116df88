//! Engine tests: config validation, determinism across thread counts, rank partitioning,
//! crash and resume, bad input, tokenizer parity and Parquet readability.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::Value;
use sluice::config;
use sluice::runtime::{self, RunOptions};
use sluice::stage::BuildCtx;

use crate::common::*;

/// The quickstart pipeline over given inputs, tokenized with Qwen2.
fn pipeline(paths: &str, batch: usize, shard_rows: usize) -> String {
    format!(
        r#"
run:
  batch_size: {batch}
nodes:
  docs:
    kind: ingest_jsonl
    paths: [{paths}]
  keep:
    kind: length_filter
    inputs: [docs]
    min_chars: 300
  tok:
    kind: tokenize
    inputs: [keep]
    tokenizer: samples/tokenizers/qwen2/tokenizer.json
  shards:
    kind: parquet_shards
    inputs: [tok]
    shard_rows: {shard_rows}
"#
    )
}

#[test]
fn validate_reports_every_problem_at_once() {
    let yaml = r#"
nodes:
  src:
    kind: ingest_jsonl
    paths: [samples/text/cmrc2018_zh.jsonl]
    text_feild: text
  f1:
    kind: length_filtr
    inputs: [src]
  f2:
    kind: length_filter
    inputs: [srcc]
    min_chars: 10
  f3:
    kind: length_filter
    inputs: [src.nope]
    min_chars: 50
    max_chars: 10
  a:
    kind: length_filter
    inputs: [b]
  b:
    kind: length_filter
    inputs: [a]
  tok:
    kind: tokenize
    inputs: [f2]
    tokenizer: samples/tokenizers/missing/tokenizer.json
  out:
    kind: parquet_shards
    inputs: [f3, tok, f1]
"#;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(&p, yaml).unwrap();
    let o = bin()
        .args(["validate", p.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{err}");
    for needle in [
        r#"node "f1": unknown kind "length_filtr" (did you mean "length_filter"?)"#,
        r#"node "f2" (length_filter): field "inputs": unknown node "srcc" (did you mean "src"?)"#,
        r#"node "f3" (length_filter): field "inputs": "src.nope": node "src" has no port "nope""#,
        "cycle: a -> b -> a",
        // Structural problems hide no field problem.
        r#"node "src" (ingest_jsonl): unknown field "text_feild" (did you mean "text_field"?)"#,
        r#"node "f3" (length_filter): field "min_chars": expected at most "max_chars" (10), got 50"#,
        r#"node "tok" (tokenize): field "tokenizer": file not found"#,
        "7 problems",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }
    // With the structure fixed, the builder problems are all reported together.
    let yaml2 = r#"
nodes:
  src:
    kind: ingest_jsonl
    paths: [samples/text/cmrc2018_zh.jsonl]
    text_feild: text
  f3:
    kind: length_filter
    inputs: [src]
    min_chars: 50
    max_chars: 10
  tok:
    kind: tokenize
    inputs: [f3]
    tokenizer: samples/tokenizers/missing/tokenizer.json
  out:
    kind: parquet_shards
    inputs: [tok]
    zstd_level: "high"
"#;
    std::fs::write(&p, yaml2).unwrap();
    let o = bin()
        .args(["validate", p.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{err}");
    for needle in [
        r#"node "src" (ingest_jsonl): unknown field "text_feild" (did you mean "text_field"?)"#,
        r#"node "f3" (length_filter): field "min_chars": expected at most "max_chars" (10), got 50"#,
        r#"node "tok" (tokenize): field "tokenizer": file not found"#,
        r#"node "out" (parquet_shards): field "zstd_level": invalid type: string "high", expected an integer"#,
        "4 problems",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }
}

#[test]
fn every_shipped_config_validates() {
    let base = BuildCtx::for_tests("", "out");
    let mut n = 0;
    for e in std::fs::read_dir(root().join("configs")).unwrap().flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let spec = config::load(&p).unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
        if let Err(problems) = runtime::validate(spec, &base) {
            panic!("{} does not validate: {problems:#?}", p.display());
        }
        n += 1;
    }
    assert!(n >= 2);
}

#[test]
fn quickstart_corpus_is_valid_and_manifest_matches_shards() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(root().join("configs/quickstart.yaml")).unwrap();
    let s = run_yaml(&yaml, dir.path(), 2);
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m, s.manifest);
    let rows = read_doc_rows(dir.path());
    let stats: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("stats.json")).unwrap()).unwrap();
    // Every document is accounted for: read = kept + rejected.
    let read = stats["nodes"]["zh_wiki"]["ports"]["out"]["docs"]
        .as_u64()
        .unwrap()
        + stats["nodes"]["en_news"]["ports"]["out"]["docs"]
            .as_u64()
            .unwrap();
    assert_eq!(read, 948);
    let kept = stats["nodes"]["long_enough"]["ports"]["out"]["docs"]
        .as_u64()
        .unwrap();
    let rejected = stats["nodes"]["long_enough"]["ports"]["rejected"]["docs"]
        .as_u64()
        .unwrap();
    assert_eq!(kept + rejected, read);
    assert!(
        rejected > 0 && kept > 800,
        "kept {kept} rejected {rejected}"
    );
    assert_eq!(rows.len() as u64, kept);
    assert_eq!(m["totals"]["rows"].as_u64().unwrap(), kept);
    let tokens: u64 = rows.iter().map(|r| r.1.len() as u64).sum();
    assert_eq!(m["totals"]["tokens"].as_u64().unwrap(), tokens);
    // Each shard's sha256 and size are right.
    for sh in m["shards"].as_array().unwrap() {
        let p = dir.path().join(sh["path"].as_str().unwrap());
        assert_eq!(
            sluice::io::sha256_file(&p).unwrap(),
            sh["sha256"].as_str().unwrap()
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            sh["bytes"].as_u64().unwrap()
        );
    }
    assert_eq!(
        m["shards"].as_array().unwrap().len(),
        kept.div_ceil(400) as usize
    );
    // Every doc ends in the Qwen2 EOS and the tokenizer hash is recorded.
    assert!(rows.iter().all(|r| r.1.last() == Some(&151643)));
    assert_eq!(
        m["nodes"]["tok"]["sha256"],
        "f7c9b2dba4a296b1aa76c16a34b8225c0c118978400d4bb66bff0902d702f5b8"
    );
    // Rejects carry stage, reason and score.
    assert_eq!(
        stats["nodes"]["long_enough"]["rejects"]["too_short"]
            .as_u64()
            .unwrap(),
        rejected
    );
    assert_eq!(m["totals"]["reject_rows"].as_u64().unwrap(), rejected);
    // Chinese text survives intact.
    assert!(rows.iter().any(|r| r.2.contains("战国无双")));

    // pyarrow reads every shard and agrees with the manifest.
    match python_with(&["pyarrow"]) {
        None => skip(
            "pyarrow",
            "python3 with pyarrow not found (.ci/run installs it)",
        ),
        Some(py) => {
            let script = r#"
import json, sys, glob, pyarrow.parquet as pq
d = sys.argv[1]
m = json.load(open(d + "/manifest.json"))
rows = toks = 0
for s in m["shards"]:
    t = pq.read_table(d + "/" + s["path"])
    assert t.schema.field("tokens").type.value_type == "uint32", t.schema
    assert t.num_rows == s["rows"]
    rows += t.num_rows
    n = t.column("n_tokens").to_pylist()
    assert n == [len(x) for x in t.column("tokens").to_pylist()]
    toks += sum(n)
rj = pq.read_table(glob.glob(d + "/rejects/*.parquet")[0])
assert set(rj.column_names) >= {"id", "source", "stage", "reason", "score", "text_prefix"}, rj.column_names
assert set(rj.column("stage").to_pylist()) == {"long_enough"}
assert rows == m["totals"]["rows"] and toks == m["totals"]["tokens"], (rows, toks, m["totals"])
print("pyarrow ok", rows, toks)
"#;
            run_python(&py, script, &[dir.path().as_os_str()]);
        }
    }
}

#[test]
fn one_and_two_threads_give_byte_identical_shards() {
    let yaml = pipeline(
        "samples/text/cmrc2018_zh.jsonl, samples/text/articles_en.jsonl",
        7,
        150,
    );
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    run_yaml(&yaml, a.path(), 1);
    run_yaml(&yaml, b.path(), 2);
    let (fa, fb) = (files(a.path(), "shards"), files(b.path(), "shards"));
    assert!(fa.len() >= 5);
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(fa == fb, "shard bytes differ between 1 and 2 threads");
    assert!(files(a.path(), "rejects") == files(b.path(), "rejects"));
    let ma = std::fs::read(a.path().join("manifest.json")).unwrap();
    assert_eq!(ma, std::fs::read(b.path().join("manifest.json")).unwrap());
}

#[test]
fn every_codec_writes_the_same_rows_and_pyarrow_reads_it() {
    let base = pipeline("samples/text/articles_en.jsonl", 64, 1_000_000);
    let zstd_dir = tempfile::tempdir().unwrap();
    run_yaml(&base, zstd_dir.path(), 2);
    let want = read_doc_rows(zstd_dir.path());
    assert!(want.len() > 30, "{} rows", want.len());
    let zstd_bytes: u64 = files(zstd_dir.path(), "shards")
        .iter()
        .map(|f| f.1.len() as u64)
        .sum();
    for (codec, parquet_name) in [("snappy", "SNAPPY"), ("none", "UNCOMPRESSED")] {
        let d = tempfile::tempdir().unwrap();
        run_yaml(&format!("{base}    compression: {codec}\n"), d.path(), 2);
        assert_eq!(read_doc_rows(d.path()), want, "{codec}");
        let bytes: u64 = files(d.path(), "shards")
            .iter()
            .map(|f| f.1.len() as u64)
            .sum();
        assert!(bytes > zstd_bytes, "{codec}: {bytes} vs zstd {zstd_bytes}");
        let Some(py) = python_with(&["pyarrow"]) else {
            skip(
                "pyarrow",
                "python3 with pyarrow not found (.ci/run installs it)",
            );
            continue;
        };
        let script = r#"
import glob, sys, pyarrow.parquet as pq
d, codec = sys.argv[1], sys.argv[2]
for p in glob.glob(d + "/shards/*.parquet"):
    f = pq.ParquetFile(p)
    md = f.metadata
    for g in range(md.num_row_groups):
        for c in range(md.num_columns):
            assert md.row_group(g).column(c).compression == codec, (p, g, c)
    t = f.read()
    assert t.num_rows == md.num_rows and "text" in t.column_names
print("ok")
"#;
        run_python(&py, script, &[d.path().as_os_str(), parquet_name.as_ref()]);
    }
}

#[test]
fn ranks_partition_inputs_and_union_equals_single_run() {
    let input = tempfile::tempdir().unwrap();
    split_inputs(input.path(), 7, 1);
    let yaml = pipeline(&format!("\"{}/*.jsonl\"", input.path().display()), 64, 200);
    let single = tempfile::tempdir().unwrap();
    run_yaml(&yaml, single.path(), 2);
    let multi = tempfile::tempdir().unwrap();
    let world = 3;
    for r in 0..world {
        let s = run_yaml_rank(&yaml, multi.path(), 1, r, world);
        assert_eq!(s.merged, r == world - 1, "merged only after the last rank");
        assert!(multi
            .path()
            .join(format!("ranks/r{r:04}-of-{world:04}.done"))
            .exists());
    }
    // Re-running a finished rank is a no-op.
    let again = run_yaml_rank(&yaml, multi.path(), 1, 1, world);
    assert!(again.skipped);
    let mut a = read_doc_rows(single.path());
    let mut b = read_doc_rows(multi.path());
    a.sort();
    b.sort();
    assert_eq!(a.len(), b.len());
    assert!(a == b, "union of ranks differs from the single run");
    let ids: std::collections::BTreeSet<_> = b.iter().map(|r| &r.0).collect();
    assert_eq!(ids.len(), b.len(), "a document appears twice");
    let m: Value =
        serde_json::from_slice(&std::fs::read(multi.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["totals"]["rows"].as_u64().unwrap() as usize, b.len());
    let st: Value =
        serde_json::from_slice(&std::fs::read(multi.path().join("stats.json")).unwrap()).unwrap();
    let st1: Value =
        serde_json::from_slice(&std::fs::read(single.path().join("stats.json")).unwrap()).unwrap();
    assert_eq!(
        st["nodes"]["keep"]["rejects"],
        st1["nodes"]["keep"]["rejects"]
    );
    // A different world size in the same directory is refused.
    let spec = config::parse(&yaml, "t").unwrap();
    let mut o = RunOptions::new(multi.path(), 1);
    o.world_size = 2;
    let e = runtime::run(spec, &o).unwrap_err().to_string();
    assert!(e.contains("world size 3"), "{e}");
}

#[test]
fn killed_run_resumes_to_identical_output() {
    let input = tempfile::tempdir().unwrap();
    split_inputs(input.path(), 4, 6);
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("p.yaml");
    std::fs::write(
        &cfg,
        pipeline(&format!("\"{}/*.jsonl\"", input.path().display()), 64, 300),
    )
    .unwrap();
    let clean = tempfile::tempdir().unwrap();
    let st = bin()
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--threads",
            "2",
            "-q",
            "--out",
        ])
        .arg(clean.path())
        .status()
        .unwrap();
    assert!(st.success());
    let crashed = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--threads",
            "2",
            "-q",
            "--out",
        ])
        .arg(crashed.path())
        .spawn()
        .unwrap();
    // Kill it once it has committed at least one shard but before it finishes.
    let t0 = std::time::Instant::now();
    let mut killed_mid_way = false;
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if !files(crashed.path(), "shards").is_empty() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            child.wait().unwrap();
            killed_mid_way = true;
            break;
        }
        assert!(t0.elapsed().as_secs() < 300, "run did not progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        killed_mid_way,
        "the run finished before it could be killed; make the input larger"
    );
    assert!(!crashed.path().join("manifest.json").exists());
    assert!(!crashed.path().join("ranks/r0000-of-0001.done").exists());
    let st = bin()
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--threads",
            "1",
            "-q",
            "--out",
        ])
        .arg(crashed.path())
        .status()
        .unwrap();
    assert!(st.success());
    let (a, b) = (
        files(clean.path(), "shards"),
        files(crashed.path(), "shards"),
    );
    assert!(a.len() > 3);
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(a == b, "resumed shards differ from a clean run");
    assert!(files(clean.path(), "rejects") == files(crashed.path(), "rejects"));
    // No temp file is left anywhere.
    for sub in ["shards", "rejects"] {
        assert!(files(crashed.path(), sub)
            .iter()
            .all(|f| !f.0.ends_with(".tmp")));
    }
}

#[test]
fn bad_jsonl_lines_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let good = std::fs::read_to_string(root().join("samples/text/cmrc2018_zh.jsonl")).unwrap();
    let good: Vec<&str> = good.lines().take(20).collect();
    let mut f = std::fs::File::create(&input).unwrap();
    for (i, l) in good.iter().enumerate() {
        writeln!(f, "{l}").unwrap();
        match i {
            2 => writeln!(f, "{{\"text\": \"unterminated").unwrap(),
            5 => writeln!(f, "[1, 2, 3]").unwrap(),
            8 => writeln!(f, "{{\"title\": \"no text field\"}}").unwrap(),
            11 => writeln!(f, "{{\"text\": 42}}").unwrap(),
            14 => {
                f.write_all(b"{\"text\": \"\xff\xfe bad utf8\"}\n").unwrap();
            }
            17 => writeln!(f, "{{\"text\": \"   \"}}").unwrap(),
            _ => {}
        }
    }
    drop(f);
    // Truncated gzip: the good lines before the cut are kept, the cut is one bad record.
    let gz = dir.path().join("cut.jsonl.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for l in &good {
        writeln!(e, "{l}").unwrap();
    }
    let bytes = e.finish().unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let yaml = format!(
        r#"
nodes:
  docs:
    kind: ingest_jsonl
    paths: ["{}", "{}"]
  shards:
    kind: parquet_shards
    inputs: [docs]
"#,
        input.display(),
        gz.display()
    );
    let out = tempfile::tempdir().unwrap();
    let s = run_yaml(&yaml, out.path(), 2);
    let bad = &s.stats["nodes"]["docs"]["bad_records"];
    assert_eq!(bad["count"], 6, "{bad}");
    let by: BTreeMap<String, u64> = serde_json::from_value(bad["by_reason"].clone()).unwrap();
    assert_eq!(by["invalid JSON"], 2, "{by:?}"); // unterminated string + invalid UTF-8
    assert_eq!(by["line is not a JSON object"], 1);
    assert_eq!(by["missing field `text`"], 1);
    assert_eq!(by["field `text` is not a string"], 1);
    assert_eq!(by["read error, rest of file skipped"], 1);
    let ex: Vec<&str> = bad["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        ex.iter().any(|x| x.contains("mixed.jsonl:4: invalid JSON")),
        "{bad}"
    );
    assert!(
        ex.iter()
            .any(|x| x.contains("cut.jsonl.gz:") && x.contains("read error")),
        "{bad}"
    );
    // The whitespace-only document is rejected as empty, visibly.
    assert_eq!(s.stats["nodes"]["docs"]["rejects"]["empty"], 1);
    let rows = read_doc_rows(out.path());
    assert!(rows.len() >= 20 + 5, "{}", rows.len());

    // Past the budget the run fails clearly, naming the node.
    let strict = yaml.replace("nodes:", "run:\n  max_bad_records: 3\nnodes:");
    let spec = config::parse(&strict, "t").unwrap();
    let out2 = tempfile::tempdir().unwrap();
    let e = runtime::run(spec, &RunOptions::new(out2.path(), 1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node `docs`") && e.contains("bad-record budget exceeded"),
        "{e}"
    );
    assert!(!out2.path().join("manifest.json").exists());
    assert!(files(out2.path(), "shards").is_empty());
}

#[test]
fn tokenizer_ids_match_python_tokenizers() {
    use sluice::stages::tokenize::{Config, Engine, Tokenize};
    for (name, engine) in [
        ("qwen2", Engine::Hf),
        ("deepseek-v3", Engine::Hf),
        ("qwen2", Engine::Fast),
        ("deepseek-v3", Engine::Fast),
    ] {
        let t = Tokenize::new(Config {
            tokenizer: root().join(format!("samples/tokenizers/{name}/tokenizer.json")),
            add_special_tokens: false,
            append_eos: true,
            eos_token: None,
            max_unsplit_bytes: 1 << 20,
            engine,
        })
        .unwrap();
        let mut cases: Vec<(String, Vec<u32>)> = Vec::new();
        let shared: Value = serde_json::from_slice(
            &std::fs::read(
                root().join(format!("tests/golden/tokenizer_parity/{name}_shared.json")),
            )
            .unwrap(),
        )
        .unwrap();
        for c in shared.as_array().unwrap() {
            cases.push((
                c["text"].as_str().unwrap().into(),
                serde_json::from_value(c["ids"].clone()).unwrap(),
            ));
        }
        let ours: Value = serde_json::from_slice(
            &std::fs::read(root().join(format!("tests/golden/tokenizer_parity/{name}.json")))
                .unwrap(),
        )
        .unwrap();
        for c in ours["cases"].as_array().unwrap() {
            cases.push((
                c["text"].as_str().unwrap().into(),
                serde_json::from_value(c["ids"].clone()).unwrap(),
            ));
        }
        assert!(cases.len() >= 20);
        let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
        let got = t.encode_any(&texts).unwrap();
        for ((text, want), got) in cases.iter().zip(got) {
            assert_eq!(&got, want, "{name} {engine:?}: ids differ for {text:?}");
        }
    }
}

#[test]
fn parquet_input_reads_any_parquet_with_a_text_column() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = std::fs::read_to_string(root().join("configs/parquet_in.yaml")).unwrap();
    let s = run_yaml(&yaml, dir.path(), 2);
    let rows = read_doc_rows(dir.path());
    assert_eq!(rows.len(), 200);
    assert_eq!(rows[0].0, "wiki_parquet:cmrc2018_dev_0");
    assert!(rows[0].2.starts_with("《战国无双3》"));
    // DeepSeek-V3 EOS is <｜end▁of▁sentence｜> = 1.
    assert!(rows.iter().all(|r| r.1.last() == Some(&1)));
    assert_eq!(s.manifest["nodes"]["tok"]["eos_id"], 1);
}

/// `docs/stages.md` holds the stage reference: `sluice stages` output between two markers.
/// Regenerate with `UPDATE_GOLDEN=1 cargo test --test integration readme_stage_reference`.
#[test]
fn readme_stage_reference_is_current() {
    let o = bin().arg("stages").output().unwrap();
    assert!(o.status.success());
    let listing = String::from_utf8(o.stdout).unwrap();
    let block = format!(
        "<!-- stage-reference:start -->\n```text\n{}```\n<!-- stage-reference:end -->",
        listing
    );
    let page_path = root().join("docs/stages.md");
    let page = std::fs::read_to_string(&page_path).unwrap();
    let start = page
        .find("<!-- stage-reference:start -->")
        .expect("start marker in docs/stages.md");
    let end = page
        .find("<!-- stage-reference:end -->")
        .expect("end marker in docs/stages.md")
        + "<!-- stage-reference:end -->".len();
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        let new = format!("{}{}{}", &page[..start], block, &page[end..]);
        std::fs::write(&page_path, new).unwrap();
        return;
    }
    assert_eq!(
        &page[start..end],
        block,
        "docs/stages.md is stale: UPDATE_GOLDEN=1 cargo test --test integration readme_stage_reference"
    );
    for k in sluice::registry::all() {
        assert!(listing.contains(k.name));
        let has_example = std::fs::read_dir(root().join("configs"))
            .unwrap()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .contains(&format!("kind: {}", k.name))
            });
        assert!(has_example, "no configs/ example uses kind `{}`", k.name);
    }
}

/// Every relative link in `README.md` and `docs/*.md` points at a file or folder of the
/// repository, and a `#fragment` into a Markdown file names one of its headings (GitHub's
/// anchor rule). Links inside code blocks and code spans are not links and are skipped.
#[test]
fn readme_and_docs_links_resolve() {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let dir = page.parent().unwrap();
        for target in markdown_links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            let name = page.strip_prefix(root()).unwrap().display().to_string();
            if !file.exists() {
                broken.push(format!("{name}: ({target}): no such file"));
                continue;
            }
            if let Some(f) = fragment {
                if file.extension().is_some_and(|x| x == "md") {
                    let body = std::fs::read_to_string(&file).unwrap();
                    if !heading_anchors(&body).iter().any(|a| a == f) {
                        broken.push(format!("{name}: ({target}): no heading with anchor #{f}"));
                    }
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} relative links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Lines outside fenced code blocks, with code spans blanked out.
fn prose_lines(md: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut kept = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                kept.push(' ');
            } else {
                kept.push(if in_code { ' ' } else { c });
            }
        }
        out.push(kept);
    }
    out
}

/// Targets of inline links `[text](target)` outside code.
fn markdown_links(md: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(md) {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            match after.find(')') {
                Some(j) => {
                    targets.push(after[..j].trim().to_string());
                    rest = &after[j + 1..];
                }
                None => break,
            }
        }
    }
    targets
}

/// GitHub's heading anchors: lower-case, punctuation dropped, spaces to `-`, repeats
/// numbered `-1`, `-2`, ...
fn heading_anchors(md: &str) -> Vec<String> {
    let mut fenced = false;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.push(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

#[test]
fn fan_out_and_a_consumed_rejected_port() {
    // One port feeds two nodes; the filter's rejected port feeds its own sink instead of rejects/.
    let yaml = r#"
run:
  batch_size: 50
nodes:
  docs:
    kind: ingest_jsonl
    paths: [samples/text/articles_en.jsonl, samples/text/cmrc2018_zh.jsonl]
  keep:
    kind: length_filter
    inputs: [docs]
    min_chars: 400
  short_docs:
    kind: parquet_shards
    inputs: [keep.rejected]
  qwen:
    kind: tokenize
    inputs: [keep]
    tokenizer: samples/tokenizers/qwen2/tokenizer.json
  deepseek:
    kind: tokenize
    inputs: [keep]
    tokenizer: samples/tokenizers/deepseek-v3/tokenizer.json
  qwen_shards:
    kind: parquet_shards
    inputs: [qwen]
  deepseek_shards:
    kind: parquet_shards
    inputs: [deepseek]
"#;
    let dir = tempfile::tempdir().unwrap();
    let s = run_yaml(yaml, dir.path(), 2);
    let by_node = |node: &str| -> (u64, u64) {
        s.manifest["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["node"] == node)
            .fold((0, 0), |a, x| {
                (
                    a.0 + x["rows"].as_u64().unwrap(),
                    a.1 + x["tokens"].as_u64().unwrap(),
                )
            })
    };
    let kept = s.stats["nodes"]["keep"]["ports"]["out"]["docs"]
        .as_u64()
        .unwrap();
    let rejected = s.stats["nodes"]["keep"]["ports"]["rejected"]["docs"]
        .as_u64()
        .unwrap();
    assert_eq!(kept + rejected, 948);
    assert_eq!(by_node("qwen_shards").0, kept);
    assert_eq!(by_node("deepseek_shards").0, kept);
    assert_eq!(by_node("short_docs"), (rejected, 0));
    // The two tokenizers really differ: DeepSeek isolates CJK runs before BPE.
    assert_ne!(by_node("qwen_shards").1, by_node("deepseek_shards").1);
    // A consumed rejected port does not also go to rejects/.
    assert!(files(dir.path(), "rejects").is_empty());
}
