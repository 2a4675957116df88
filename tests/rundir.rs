//! Run-directory truthfulness, through the real binary on the text samples: a damaged
//! finished rank is redone, changed inputs are refused until `--overwrite`, two
//! attempts of the same rank never destroy each other's files, and a packed run killed
//! mid-way resumes with a document index (`docs_index/`) holding every packed document once.

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// ingest → length filter (some rejects) → small shards, no tokenizer: fast in debug builds.
fn write_config(dir: &Path, inputs: &Path) -> PathBuf {
    write_yaml(dir, "p.yaml", inputs, 32, "", "keep", 100)
}

/// A config `docs` (JSONL under `inputs`) → `keep` (length filter) → `middle` (more nodes,
/// YAML) → `shards` reading `last`.
fn write_yaml(
    dir: &Path,
    name: &str,
    inputs: &Path,
    batch_size: usize,
    middle: &str,
    last: &str,
    shard_rows: usize,
) -> PathBuf {
    let cfg = dir.join(name);
    std::fs::write(
        &cfg,
        format!(
            r#"run:
  batch_size: {batch_size}
nodes:
  docs:
    kind: ingest_jsonl
    paths: ["{}/*.jsonl"]
  keep:
    kind: length_filter
    inputs: [docs]
    min_chars: 300
{middle}  shards:
    kind: parquet_shards
    inputs: [{last}]
    shard_rows: {shard_rows}
"#,
            inputs.display()
        ),
    )
    .unwrap();
    cfg
}

fn run_args(cfg: &Path, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.env("NO_COLOR", "1")
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--threads",
            "1",
            "--no-progress",
        ])
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

/// Run `sluice run` to completion; (exit code, stderr).
fn sluice_run(cfg: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let o: Output = run_args(cfg, out, extra).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok_run(cfg: &Path, out: &Path, extra: &[&str]) -> String {
    let (code, err) = sluice_run(cfg, out, extra);
    assert_eq!(code, 0, "sluice run {extra:?} failed:\n{err}");
    err
}

fn json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Every file the manifest lists exists with its size and sha256, no other file is in
/// shards/, rejects/ or docs_index/, no temp file is anywhere; returns the manifest's row
/// total.
fn assert_manifest_true(out: &Path, manifest: &str) -> u64 {
    let m = json(&out.join(manifest));
    let mut listed = Vec::new();
    for key in ["shards", "rejects", "docs_index"] {
        for e in m[key].as_array().unwrap() {
            let rel = e["path"].as_str().unwrap();
            let p = out.join(rel);
            let bytes = std::fs::read(&p).unwrap_or_else(|_| panic!("{rel} is listed but missing"));
            assert_eq!(
                bytes.len() as u64,
                e["bytes"].as_u64().unwrap(),
                "{rel}: size"
            );
            assert_eq!(
                sluice::io::sha256_file(&p).unwrap(),
                e["sha256"].as_str().unwrap(),
                "{rel}: sha256"
            );
            listed.push(rel.to_string());
        }
    }
    let mut present: Vec<String> = ["shards", "rejects", "docs_index"]
        .iter()
        .flat_map(|s| {
            files(out, s)
                .into_iter()
                .map(move |f| format!("{s}/{}", f.0))
        })
        .collect();
    listed.sort();
    present.sort();
    assert_eq!(present, listed, "files on disk differ from the manifest");
    for sub in ["", "shards", "rejects", "ranks", "docs_index"] {
        let Ok(rd) = std::fs::read_dir(out.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".tmp"), "temp file left: {sub}/{name}");
        }
    }
    m["totals"]["rows"].as_u64().unwrap()
}

/// `SELECT COUNT(*) FROM docs` through `sluice audit`.
fn audit_docs(out: &Path) -> u64 {
    let o = bin()
        .arg("audit")
        .arg(out)
        .args(["--sql", "SELECT COUNT(*) AS n FROM docs", "--format", "csv"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("audit output: {text}"))
}

fn shard_names(out: &Path, sub: &str) -> Vec<String> {
    files(out, sub).into_iter().map(|f| f.0).collect()
}

/// Three input files from the samples, the config, and a finished single-rank run.
fn finished_run() -> (tempfile::TempDir, PathBuf, tempfile::TempDir) {
    let input = tempfile::tempdir().unwrap();
    split_inputs(input.path(), 3, 1);
    let cfg = write_config(input.path(), input.path());
    let out = tempfile::tempdir().unwrap();
    ok_run(&cfg, out.path(), &[]);
    (input, cfg, out)
}

#[test]
fn damaged_finished_rank_is_redone() {
    let (_input, cfg, out) = finished_run();
    let out = out.path();
    let clean_shards = files(out, "shards");
    let clean_rejects = files(out, "rejects");
    assert!(clean_shards.len() >= 5 && !clean_rejects.is_empty());
    let rows = assert_manifest_true(out, "manifest.json");
    assert_eq!(audit_docs(out), rows);
    let names = shard_names(out, "shards");
    let expect_clean = |why: &str| {
        assert!(files(out, "shards") == clean_shards, "{why}: shards differ");
        assert!(
            files(out, "rejects") == clean_rejects,
            "{why}: rejects differ"
        );
        assert_eq!(assert_manifest_true(out, "manifest.json"), rows);
        assert_eq!(
            audit_docs(out),
            rows,
            "{why}: audit disagrees with the manifest"
        );
    };

    // A finished, intact rank is checked, then skipped.
    let err = ok_run(&cfg, out, &[]);
    assert!(err.contains("output files checked (size)"), "{err}");
    assert!(err.contains("nothing to do"), "{err}");

    // Deleted shard.
    std::fs::remove_file(out.join("shards").join(&names[2])).unwrap();
    let err = ok_run(&cfg, out, &[]);
    assert!(
        err.contains(&format!("shards/{}: missing", names[2])),
        "{err}"
    );
    assert!(err.contains("redoing rank 0 of 1"), "{err}");
    expect_clean("deleted");

    // Truncated shard.
    let p = out.join("shards").join(&names[1]);
    let full = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let err = ok_run(&cfg, out, &[]);
    assert!(
        err.contains(&format!(
            "shards/{}: size 1000 bytes, expected {full}",
            names[1]
        )),
        "{err}"
    );
    expect_clean("truncated");

    // Bit-flipped shard: same size, so only --verify sees it.
    let p = out.join("shards").join(&names[0]);
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    std::fs::write(&p, &b).unwrap();
    let err = ok_run(&cfg, out, &[]);
    assert!(err.contains("nothing to do"), "size-only check: {err}");
    let err = ok_run(&cfg, out, &["--verify"]);
    assert!(
        err.contains(&format!("shards/{}: sha256 mismatch", names[0])),
        "{err}"
    );
    expect_clean("bit-flipped");

    // Deleted rejects file.
    let rej = shard_names(out, "rejects");
    std::fs::remove_file(out.join("rejects").join(&rej[0])).unwrap();
    let err = ok_run(&cfg, out, &["--verify"]);
    assert!(
        err.contains(&format!("rejects/{}: missing", rej[0])),
        "{err}"
    );
    expect_clean("deleted rejects");

    // Deleted rank manifest: the marker alone is not trusted.
    std::fs::remove_file(out.join("ranks/r0000-of-0001.manifest.json")).unwrap();
    let err = ok_run(&cfg, out, &[]);
    assert!(
        err.contains("ranks/r0000-of-0001.manifest.json: missing"),
        "{err}"
    );
    expect_clean("deleted rank manifest");

    // Unknown files: this rank's stray is removed, a foreign file is warned about.
    std::fs::copy(
        out.join("shards").join(&names[0]),
        out.join("shards/shards-r0000-00077.parquet"),
    )
    .unwrap();
    std::fs::write(out.join("shards/notes.parquet"), b"x").unwrap();
    let err = ok_run(&cfg, out, &[]);
    assert!(
        err.contains("removing shards/shards-r0000-00077.parquet"),
        "{err}"
    );
    assert!(err.contains("shards/notes.parquet"), "{err}");
    assert!(!out.join("shards/shards-r0000-00077.parquet").exists());
    std::fs::remove_file(out.join("shards/notes.parquet")).unwrap();
    expect_clean("strays");
}

#[test]
fn changed_inputs_are_refused_until_overwrite() {
    let (input, cfg, out) = finished_run();
    let out = out.path();
    let before = files(out, "shards");

    // The manifest lists every input with size and sha256, and embeds the config.
    let m = json(&out.join("manifest.json"));
    let ins = m["inputs"].as_array().unwrap();
    assert_eq!(ins.len(), 3);
    for i in ins {
        let p = i["path"].as_str().unwrap();
        assert_eq!(i["node"], "docs");
        assert_eq!(
            i["size"].as_u64().unwrap(),
            std::fs::metadata(p).unwrap().len()
        );
        assert_eq!(
            i["sha256"].as_str().unwrap(),
            sluice::io::sha256_file(p).unwrap()
        );
    }
    assert_eq!(
        m["config_yaml"].as_str().unwrap(),
        std::fs::read_to_string(&cfg).unwrap()
    );
    assert_eq!(m["config"]["nodes"][2]["params"]["shard_rows"], 100);
    assert_eq!(m["config"]["run"]["batch_size"], 32);

    // A touched input (same bytes, new mtime): refused by default, accepted by --verify,
    // which records the new mtime so a plain rerun accepts it too.
    let p1 = input.path().join("part-001.jsonl");
    let f = std::fs::OpenOptions::new().write(true).open(&p1).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    let (code, err) = sluice_run(&cfg, out, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "docs: {}: modified since the rank ran",
            p1.display()
        )),
        "{err}"
    );
    let err = ok_run(&cfg, out, &["--verify"]);
    assert!(err.contains("nothing to do"), "{err}");
    let err = ok_run(&cfg, out, &[]);
    assert!(err.contains("nothing to do"), "{err}");

    // An edited input: refused, naming it; nothing is deleted.
    let p2 = input.path().join("part-002.jsonl");
    let old_len = std::fs::metadata(&p2).unwrap().len();
    let extra: String = std::fs::read_to_string(input.path().join("part-000.jsonl"))
        .unwrap()
        .lines()
        .take(4)
        .map(|l| format!("{l}\n"))
        .collect();
    let mut text = std::fs::read_to_string(&p2).unwrap();
    text.push_str(&extra);
    std::fs::write(&p2, &text).unwrap();
    let (code, err) = sluice_run(&cfg, out, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the inputs of rank 0 of 1 changed since it finished"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "docs: {}: size {} bytes, was {old_len}",
            p2.display(),
            text.len()
        )),
        "{err}"
    );
    assert!(err.contains("rerun with --overwrite"), "{err}");
    assert!(
        files(out, "shards") == before,
        "a refused run changed the shards"
    );

    // A new input file: refused too.
    let p3 = input.path().join("part-003.jsonl");
    std::fs::write(&p3, &extra).unwrap();
    let (code, err) = sluice_run(&cfg, out, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("docs: {}: new input of this rank", p3.display())),
        "{err}"
    );

    // --overwrite redoes it: the same as a clean run over the new inputs.
    let err = ok_run(&cfg, out, &["--overwrite"]);
    assert!(err.contains("removed the previous run"), "{err}");
    let fresh = tempfile::tempdir().unwrap();
    ok_run(&cfg, fresh.path(), &[]);
    assert!(files(out, "shards") == files(fresh.path(), "shards"));
    assert!(files(out, "shards") != before);
    let rows = assert_manifest_true(out, "manifest.json");
    assert_eq!(audit_docs(out), rows);
    assert_eq!(
        json(&out.join("manifest.json"))["inputs"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let err = ok_run(&cfg, out, &[]);
    assert!(err.contains("nothing to do"), "{err}");
}

/// A tiny xorshift: the delays only need to be spread, and a failing seed is printed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn wait_code(mut c: Child) -> (i32, String) {
    use std::io::Read;
    let mut err = String::new();
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let st = c.wait().unwrap();
    (st.code().unwrap_or(-1), err)
}

#[test]
fn concurrent_attempts_of_one_rank_never_lose_files() {
    let input = tempfile::tempdir().unwrap();
    split_inputs(input.path(), 6, 1);
    let cfg = write_config(input.path(), input.path());
    let rank0 = ["--rank", "0", "--world-size", "2"];
    let clean = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    ok_run(&cfg, clean.path(), &rank0);
    let span = (t0.elapsed().as_millis() as u64).max(50);
    let clean_rows = assert_manifest_true(clean.path(), "ranks/r0000-of-0002.manifest.json");
    let clean_shards = files(clean.path(), "shards");
    assert!(clean_shards.len() >= 3);

    let seed = std::env::var("SLUICE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| t0.elapsed().as_nanos() as u64 | 1);
    eprintln!("concurrent attempts: seed {seed}, a clean attempt takes {span} ms");
    let mut rng = Rng(seed);
    let parent = tempfile::tempdir().unwrap();
    let (mut busy, mut killed) = (0, 0);
    for round in 0..20 {
        let out = parent.path().join(format!("round-{round:02}"));
        let spawn = || {
            run_args(&cfg, &out, &rank0)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let a = spawn();
        std::thread::sleep(Duration::from_millis(rng.below(span)));
        if round % 4 == 3 {
            // A requeue after the old attempt died mid-way: its lock dies with it.
            let mut a = a;
            unsafe {
                libc::kill(a.id() as i32, libc::SIGKILL);
            }
            let st = a.wait().unwrap();
            killed += usize::from(st.code().is_none());
            let (code, err) = wait_code(spawn());
            assert_eq!(
                code, 0,
                "round {round} (seed {seed}): requeued attempt failed:\n{err}"
            );
        } else {
            let b = spawn();
            let (ca, ea) = wait_code(a);
            let (cb, eb) = wait_code(b);
            for (code, err) in [(ca, &ea), (cb, &eb)] {
                assert!(
                    code == 0 || code == 75,
                    "round {round} (seed {seed}): exit {code}:\n{err}"
                );
                if code == 75 {
                    busy += 1;
                    assert!(
                        err.contains("rank 0 is being run by another attempt (pid "),
                        "{err}"
                    );
                }
            }
            assert!(
                ca == 0 || cb == 0,
                "round {round} (seed {seed}): no attempt finished\n{ea}\n{eb}"
            );
        }
        let check = |when: &str| {
            let rows = assert_manifest_true(&out, "ranks/r0000-of-0002.manifest.json");
            assert_eq!(rows, clean_rows, "round {round} {when} (seed {seed})");
            assert!(
                files(&out, "shards") == clean_shards,
                "round {round} {when} (seed {seed}): shards differ from a clean run"
            );
            assert_eq!(read_doc_rows(&out).len() as u64, clean_rows);
        };
        check("after both attempts");
        let err = ok_run(&cfg, &out, &[&rank0[..], &["--verify"]].concat());
        assert!(err.contains("nothing to do"), "round {round}: {err}");
        check("after a rerun");
    }
    eprintln!("concurrent attempts: {busy} refused as busy, {killed} killed mid-way");
    assert!(
        busy > 0,
        "no two attempts overlapped in 20 rounds (seed {seed})"
    );
}

#[test]
fn overwrite_waits_for_no_one_and_deletes_nothing_running() {
    let input = tempfile::tempdir().unwrap();
    split_inputs(input.path(), 4, 1);
    let cfg = write_config(input.path(), input.path());
    let out = tempfile::tempdir().unwrap();
    let out = out.path();
    ok_run(&cfg, out, &["--rank", "1", "--world-size", "2"]);
    // Hold rank 1's lock as a running attempt would.
    let _held = sluice::rundir::RankLock::acquire(out, 1).unwrap();
    let (code, err) = sluice_run(
        &cfg,
        out,
        &["--rank", "0", "--world-size", "2", "--overwrite"],
    );
    assert_eq!(code, 75, "{err}");
    assert!(
        err.contains("rank 1 is being run by another attempt (pid ")
            && err.contains("--overwrite would delete its files"),
        "{err}"
    );
    assert!(out.join("ranks/r0001-of-0002.done").exists());
    assert_manifest_true(out, "ranks/r0001-of-0002.manifest.json");
    // The same rank: refused with the distinct exit code, nothing touched.
    let (code, err) = sluice_run(&cfg, out, &["--rank", "1", "--world-size", "2"]);
    assert_eq!(code, 75, "{err}");
    drop(_held);
    let err = ok_run(&cfg, out, &["--rank", "0", "--world-size", "2"]);
    assert!(err.contains("done in"), "{err}");
    assert!(
        out.join("manifest.json").exists(),
        "merged after both ranks"
    );
    let rows = assert_manifest_true(out, "manifest.json");
    assert_eq!(audit_docs(out), rows);
    let m = json(&out.join("manifest.json"));
    assert_eq!(
        m["inputs"].as_array().unwrap().len(),
        4,
        "inputs of both ranks"
    );
}

#[cfg(feature = "cloud")]
#[test]
fn object_store_run_is_checked_the_same_way() {
    use sha2::Digest;
    let Some(moto) = crate::s3::Moto::start("object_store_run_is_checked_the_same_way") else {
        return;
    };
    moto.bucket("rundir");
    let input = tempfile::tempdir().unwrap();
    split_inputs(input.path(), 3, 1);
    let cfg = write_config(input.path(), input.path());
    let url = "s3://rundir/run";
    let go = |extra: &[&str]| {
        let mut c = run_args(&cfg, Path::new(url), extra);
        for (k, v) in moto.env() {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let obj = |rel: &str| sluice::storage::join(url, rel);
    let listed = || -> Vec<(String, u64, String)> {
        let m: Value =
            serde_json::from_slice(&sluice::storage::read_all(&obj("manifest.json")).unwrap())
                .unwrap();
        ["shards", "rejects"]
            .iter()
            .flat_map(|k| m[*k].as_array().unwrap().clone())
            .map(|e| {
                (
                    e["path"].as_str().unwrap().to_string(),
                    e["bytes"].as_u64().unwrap(),
                    e["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let assert_true = || {
        for (rel, bytes, sha) in listed() {
            let b = sluice::storage::read_all(&obj(&rel)).unwrap();
            assert_eq!(b.len() as u64, bytes, "{rel}");
            assert_eq!(hex::encode(sha2::Sha256::digest(&b)), sha, "{rel}");
        }
    };
    let (code, err) = go(&[]);
    assert_eq!(code, 0, "{err}");
    let files = listed();
    assert!(files.len() >= 3);
    let (code, err) = go(&[]);
    assert!(code == 0 && err.contains("nothing to do"), "{err}");

    // A deleted object is noticed and the rank redone.
    let (victim, _, _) = &files[1];
    sluice::storage::delete(&obj(victim)).unwrap();
    let (code, err) = go(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("{victim}: missing")), "{err}");
    assert!(err.contains("redoing rank 0 of 1"), "{err}");
    assert_true();

    // A bit-flipped object (same size): only --verify streams and hashes it.
    let (victim, _, _) = &files[0];
    let mut b = sluice::storage::read_all(&obj(victim)).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    sluice::storage::put(&obj(victim), &b).unwrap();
    let (code, err) = go(&[]);
    assert!(code == 0 && err.contains("nothing to do"), "{err}");
    let (code, err) = go(&["--verify"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("{victim}: sha256 mismatch")), "{err}");
    assert_true();
    assert_eq!(listed(), files, "the redone rank equals the first run");

    // An edited input is refused.
    let p = input.path().join("part-000.jsonl");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(text.clone().lines().next().unwrap());
    text.push('\n');
    std::fs::write(&p, &text).unwrap();
    let (code, err) = go(&[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the inputs of rank 0 of 1 changed since it finished in s3://rundir/run"),
        "{err}"
    );
    assert!(
        err.contains(&format!("docs: {}: size", p.display())),
        "{err}"
    );
}

/// ingest → length filter → tokenize → pack → small shards: the pack stage writes
/// `docs_index/` (several files: `docs_index` rotates only at 256 MiB, so one per rank).
fn write_packed_config(dir: &Path, inputs: &Path) -> PathBuf {
    let middle = "  tok:
    kind: tokenize
    inputs: [keep]
    tokenizer: samples/tokenizers/qwen2/tokenizer.json
    append_eos: true
  pack:
    kind: pack
    inputs: [tok]
    seq_len: 1024
    eos_id: 151643
    seed: 3
";
    write_yaml(dir, "packed.yaml", inputs, 16, middle, "pack", 16)
}

/// The document index of a finished run is true: the files in `docs_index/` are the ones
/// the manifest lists (checked by [`assert_manifest_true`]), every packed document has
/// exactly one row, no other document has one, and the pack node's row count and
/// `sluice audit` agree. Returns the index's (id, n_tokens) rows.
fn assert_index_true(out: &Path) -> Vec<(String, u32)> {
    use sluice::provenance::parse_entry;
    assert_manifest_true(out, "manifest.json");
    let mut rows = Vec::new();
    for b in record_batches(out, "docs_index") {
        let ids = sluice::arrow_io::string_column(&b, "id").unwrap().unwrap();
        let nt = b.column_by_name("n_tokens").unwrap();
        let nt = nt
            .as_any()
            .downcast_ref::<arrow::array::UInt32Array>()
            .unwrap();
        for (i, id) in ids.into_iter().enumerate() {
            rows.push((id.unwrap(), nt.value(i)));
        }
    }
    rows.sort();
    let ids: std::collections::BTreeSet<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(ids.len(), rows.len(), "a document twice in docs_index");
    let mut packed = std::collections::BTreeSet::new();
    for b in record_batches(out, "shards") {
        for row in sluice::cli_trace::list_strings(&b, "doc_ids").unwrap() {
            packed.extend(row.iter().map(|e| parse_entry(e).unwrap().doc_id));
        }
    }
    assert!(!packed.is_empty());
    assert_eq!(ids, packed, "docs_index ≠ the packed documents");
    let m = json(&out.join("manifest.json"));
    let pack = &m["nodes"]["pack"];
    let node_rows: u64 = match pack["per_rank"].as_array() {
        Some(ranks) => ranks
            .iter()
            .map(|r| r["docs_index"]["rows"].as_u64().unwrap())
            .sum(),
        None => pack["docs_index"]["rows"].as_u64().unwrap(),
    };
    assert_eq!(node_rows, rows.len() as u64);
    let o = bin()
        .arg("audit")
        .arg(out)
        .args([
            "--sql",
            "SELECT COUNT(*) - COUNT(DISTINCT id) FROM docs_index",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().last(),
        Some("0"),
        "audit sees duplicates"
    );
    rows
}

#[test]
fn a_killed_packed_run_resumes_with_every_document_once_in_its_index() {
    let input = tempfile::tempdir().unwrap();
    split_inputs(input.path(), 3, 2);
    let cfg = write_packed_config(input.path(), input.path());
    let clean = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    ok_run(&cfg, clean.path(), &[]);
    let span = (t0.elapsed().as_millis() as u64).max(50);
    let clean_index = assert_index_true(clean.path());
    assert!(clean_index.len() > 64, "{} indexed", clean_index.len());

    // Killed mid-way, then resumed: the index is the clean run's. Some kills at fixed
    // points of a run; the others the moment `docs_index/` holds a file (the index is
    // written as pack finishes: a temp file, then the committed file, before the shards
    // are done and the rank's marker written), so the crash leaves index files of an
    // unfinished rank.
    let parent = tempfile::tempdir().unwrap();
    let mut partial_seen = 0;
    let kills: Vec<Option<u64>> = vec![Some(200), Some(500), None, None, None, None];
    for (k, kill_at) in kills.into_iter().enumerate() {
        if kill_at.is_none() && partial_seen > 0 && k > 3 {
            break;
        }
        let out = parent.path().join(format!("kill-{k}"));
        let mut c = run_args(&cfg, &out, &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        match kill_at {
            Some(permille) => std::thread::sleep(Duration::from_millis(span * permille / 1000)),
            None => {
                let t = Instant::now();
                while c.try_wait().unwrap().is_none()
                    && std::fs::read_dir(out.join("docs_index"))
                        .map_or(true, |mut d| d.next().is_none())
                    && t.elapsed() < Duration::from_secs(120)
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        unsafe {
            libc::kill(c.id() as i32, libc::SIGKILL);
        }
        c.wait().unwrap();
        let left: Vec<String> = std::fs::read_dir(out.join("docs_index"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let done = out.join("ranks/r0000-of-0001.done").exists();
        partial_seen += usize::from(!left.is_empty() && !done);
        eprintln!("kill {k} ({kill_at:?}‰): docs_index/ holds {left:?}, rank finished: {done}");
        ok_run(&cfg, &out, &[]);
        assert_eq!(assert_index_true(&out), clean_index, "kill {k}");
    }
    assert!(
        partial_seen > 0,
        "no kill left index files of an unfinished rank"
    );

    // Deterministic leftovers of a crashed attempt: the marker never written, a partial
    // index file under a later number and a temp file of a dead writer. The redo removes
    // them; the index holds each packed document once.
    let out = clean.path();
    let ix = files(out, "docs_index");
    assert_eq!(
        ix.len(),
        1,
        "{:?}",
        ix.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    std::fs::remove_file(out.join("ranks/r0000-of-0001.done")).unwrap();
    std::fs::write(out.join("docs_index/pack-r0000-00001.parquet"), &ix[0].1).unwrap();
    std::fs::write(
        out.join("docs_index/pack-r0000-00002.parquet.999999999.tmp"),
        &ix[0].1[..ix[0].1.len() / 2],
    )
    .unwrap();
    ok_run(&cfg, out, &[]);
    assert_eq!(
        assert_index_true(out),
        clean_index,
        "after a crashed attempt"
    );

    // A finished rank whose index file is damaged is redone, like a damaged shard.
    let p = out.join("docs_index").join(&ix[0].0);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(100)
        .unwrap();
    let err = ok_run(&cfg, out, &[]);
    assert!(
        err.contains(&format!("docs_index/{}: size 100 bytes", ix[0].0)),
        "{err}"
    );
    assert!(err.contains("redoing rank 0 of 1"), "{err}");
    assert_eq!(assert_index_true(out), clean_index, "after a damaged index");

    // A finished rank: this rank's unlisted index file is removed as a stray.
    std::fs::write(out.join("docs_index/pack-r0000-00005.parquet"), &ix[0].1).unwrap();
    let err = ok_run(&cfg, out, &[]);
    assert!(
        err.contains("removing docs_index/pack-r0000-00005.parquet"),
        "{err}"
    );
    assert!(err.contains("nothing to do"), "{err}");
    assert_eq!(assert_index_true(out), clean_index, "after a stray");

    // --overwrite removes every index file, a foreign one included.
    std::fs::write(out.join("docs_index/pack-r0003-00000.parquet"), &ix[0].1).unwrap();
    ok_run(&cfg, out, &["--overwrite"]);
    assert_eq!(assert_index_true(out), clean_index, "after --overwrite");
}

#[test]
fn ranks_merge_their_document_indexes() {
    let input = tempfile::tempdir().unwrap();
    split_inputs(input.path(), 4, 1);
    let cfg = write_packed_config(input.path(), input.path());
    let out = tempfile::tempdir().unwrap();
    let out = out.path();
    for r in ["1", "0"] {
        ok_run(&cfg, out, &["--rank", r, "--world-size", "2"]);
    }
    let rows = assert_index_true(out);
    let m = json(&out.join("manifest.json"));
    let listed: Vec<&str> = m["docs_index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "docs_index/pack-r0000-00000.parquet",
            "docs_index/pack-r0001-00000.parquet"
        ]
    );
    let per_rank: u64 = m["docs_index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(per_rank, rows.len() as u64);
}
