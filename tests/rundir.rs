//! Run-directory truthfulness, through the real binary on the text samples: a damaged
//! finished rank is redone, changed inputs are refused until `--overwrite`, and two
//! attempts of the same rank never destroy each other's files.

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// ingest → length filter (some rejects) → small shards, no tokenizer: fast in debug builds.
fn write_config(dir: &Path, inputs: &Path) -> PathBuf {
    let cfg = dir.join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"run:
  batch_size: 32
nodes:
  docs:
    kind: ingest_jsonl
    paths: ["{}/*.jsonl"]
  keep:
    kind: length_filter
    inputs: [docs]
    min_chars: 300
  shards:
    kind: parquet_shards
    inputs: [keep]
    shard_rows: 100
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
/// shards/ or rejects/, no temp file is anywhere; returns the manifest's row total.
fn assert_manifest_true(out: &Path, manifest: &str) -> u64 {
    let m = json(&out.join(manifest));
    let mut listed = Vec::new();
    for key in ["shards", "rejects"] {
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
    let mut present: Vec<String> = ["shards", "rejects"]
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
    for sub in ["", "shards", "rejects", "ranks"] {
        for e in std::fs::read_dir(out.join(sub)).unwrap().flatten() {
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
