//! Scale-out: the local launcher (`sluice run --local-tasks N`) and a real Slurm cluster.
//!
//! Both run the same sample pipeline over 8 input files as several ranks and compare the
//! documents in the shards with a single-process run. The Slurm test needs a controller
//! (`.ci/slurm-setup.sh` starts one; CI runs it) and is skipped with a message otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{bin, reject_rows, split_inputs};

/// A small pipeline: JSONL → length filter → Parquet shards (no tokenizer: keeps debug
/// runs quick; the tokenizer is tested elsewhere).
pub fn pipeline_yaml(paths: &str) -> String {
    format!(
        "run:\n  batch_size: 64\nnodes:\n  src:\n    kind: ingest_jsonl\n    paths: [{paths}]\n  long_enough:\n    kind: length_filter\n    inputs: [src]\n    min_chars: 200\n  shards:\n    kind: parquet_shards\n    inputs: [long_enough]\n    shard_rows: 150\n"
    )
}

/// Every (id, text) row of the Parquet files in a directory, sorted.
pub fn rows_in(dir: &Path) -> Vec<(String, String)> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut rows = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
    {
        let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in r {
            let b = b.unwrap();
            let ids = sluice::arrow_io::string_column(&b, "id").unwrap().unwrap();
            let texts = sluice::arrow_io::string_column(&b, "text")
                .unwrap()
                .unwrap();
            for (i, t) in ids.into_iter().zip(texts) {
                rows.push((i.unwrap(), t.unwrap_or_default()));
            }
        }
    }
    rows.sort();
    rows
}

fn sluice_ok(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "sluice {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn local_tasks_equal_single_run_and_resume_only_missing_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    split_inputs(&input, 8, 1);
    let cfg = tmp.path().join("p.yaml");
    std::fs::write(
        &cfg,
        pipeline_yaml(&format!("\"{}/*.jsonl\"", input.display())),
    )
    .unwrap();
    let (single, multi) = (tmp.path().join("single"), tmp.path().join("multi"));
    let cfg_s = cfg.to_str().unwrap();
    sluice_ok(&[
        "run",
        cfg_s,
        "--out",
        single.to_str().unwrap(),
        "--no-progress",
    ]);
    sluice_ok(&[
        "run",
        cfg_s,
        "--out",
        multi.to_str().unwrap(),
        "--local-tasks",
        "4",
    ]);

    let want = rows_in(&single.join("shards"));
    assert!(want.len() > 300, "sample too small: {}", want.len());
    assert_eq!(
        rows_in(&multi.join("shards")),
        want,
        "4 local ranks differ from one process"
    );
    for r in 0..4 {
        assert!(multi.join(format!("ranks/r{r:04}-of-0004.done")).exists());
        assert!(multi.join(format!("logs/run-r{r:04}.log")).exists());
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(multi.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["totals"]["rows"].as_u64(), Some(want.len() as u64));

    // Lose rank 2 (marker and shards), as if it had died: a re-run redoes rank 2 only.
    let marker0 = multi.join("ranks/r0000-of-0004.done");
    let t0 = mtime(&marker0);
    std::fs::remove_file(multi.join("ranks/r0002-of-0004.done")).unwrap();
    for e in std::fs::read_dir(multi.join("shards")).unwrap().flatten() {
        if e.file_name().to_string_lossy().contains("-r0002-") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    assert_ne!(rows_in(&multi.join("shards")), want);
    let log2_before = std::fs::metadata(multi.join("logs/run-r0002.log"))
        .unwrap()
        .len();
    let log0_before = std::fs::metadata(multi.join("logs/run-r0000.log"))
        .unwrap()
        .len();
    sluice_ok(&[
        "run",
        cfg_s,
        "--out",
        multi.to_str().unwrap(),
        "--local-tasks",
        "4",
    ]);
    assert_eq!(rows_in(&multi.join("shards")), want);
    assert_eq!(mtime(&marker0), t0, "finished rank 0 was redone");
    assert!(
        std::fs::metadata(multi.join("logs/run-r0002.log"))
            .unwrap()
            .len()
            > log2_before
    );
    assert_eq!(
        std::fs::metadata(multi.join("logs/run-r0000.log"))
            .unwrap()
            .len(),
        log0_before
    );
}

#[cfg(feature = "cloud")]
fn slurm_up() -> bool {
    Command::new("scontrol")
        .arg("ping")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("UP"))
        .unwrap_or(false)
}

#[cfg(feature = "cloud")]
fn squeue_states(job: &str) -> Vec<(usize, String)> {
    let o = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i|%T"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    sluice::launch::slurm::parse_squeue(&text)
        .into_iter()
        .filter(|((j, _), _)| j == job)
        .map(|((_, t), (s, _))| (t, s))
        .collect()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(feature = "cloud")]
#[test]
fn slurm_array_with_a_cancelled_rank_resumes_to_the_single_run_result() {
    if !slurm_up() {
        crate::common::skip(
            "slurm",
            "no Slurm controller (run .ci/slurm-setup.sh; CI does)",
        );
        return;
    }
    // Slurm runs the jobs as this user on this machine, so a temp dir is "shared".
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // Enough data that a rank runs for a few seconds in a debug build.
    split_inputs(&input, 8, 12);
    let cfg = tmp.path().join("p.yaml");
    std::fs::write(
        &cfg,
        pipeline_yaml(&format!("\"{}/*.jsonl\"", input.display())),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let (single, run) = (tmp.path().join("single"), tmp.path().join("run"));
    let run_s = run.to_str().unwrap();

    // --dry-run prints the script and submits nothing.
    let dry = sluice_ok(&[
        "slurm",
        "submit",
        cfg_s,
        "--tasks",
        "4",
        "--out",
        run_s,
        "--max-running",
        "2",
        "--dry-run",
    ]);
    assert!(dry.contains("#SBATCH --array=0-3%2"), "{dry}");
    assert!(!run.join("slurm/jobs.json").exists());

    let sub = sluice_ok(&[
        "slurm",
        "submit",
        cfg_s,
        "--tasks",
        "4",
        "--out",
        run_s,
        "--max-running",
        "2",
        "--cpus-per-task",
        "1",
        "--time",
        "00:10:00",
        "--mem",
        "500M",
    ]);
    let jobs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("slurm/jobs.json")).unwrap()).unwrap();
    let job = jobs["submissions"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sub.contains(&job), "{sub}");

    // Cancel rank 1 while it runs (or, if the scheduler has not reached it yet, while queued).
    wait_until("rank 1 to start", 120, || {
        squeue_states(&job)
            .iter()
            .any(|(t, s)| *t == 1 && s == "RUNNING")
            || run.join("ranks/r0001-of-0004.done").exists()
    });
    let c = Command::new("scancel")
        .arg(format!("{job}_1"))
        .status()
        .unwrap();
    assert!(c.success());
    wait_until("the array to leave the queue", 300, || {
        squeue_states(&job).is_empty()
    });
    let cancelled_done = run.join("ranks/r0001-of-0004.done").exists();
    assert!(
        !cancelled_done,
        "rank 1 finished before it could be cancelled; enlarge the input"
    );

    let st = sluice_ok(&["slurm", "status", run_s, "--json"]);
    let st: Vec<serde_json::Value> = serde_json::from_str(&st).unwrap();
    let states: Vec<&str> = st.iter().map(|u| u["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["done", "failed", "done", "done"], "{st:?}");
    let human = sluice_ok(&["slurm", "status", run_s]);
    assert!(
        human.contains("3 done, 0 running, 0 pending, 1 failed"),
        "{human}"
    );

    let res = sluice_ok(&["slurm", "resume", run_s]);
    assert!(res.contains("resubmitted 1"), "{res}");
    let jobs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("slurm/jobs.json")).unwrap()).unwrap();
    assert_eq!(jobs["submissions"][1]["units"], serde_json::json!([1]));
    let script =
        std::fs::read_to_string(jobs["submissions"][1]["script"].as_str().unwrap()).unwrap();
    assert!(script.contains("#SBATCH --array=1%2"), "{script}");
    wait_until("rank 1 to finish after resume", 300, || {
        run.join("ranks/r0001-of-0004.done").exists()
    });
    wait_until("merged manifest", 60, || run.join("manifest.json").exists());
    assert!(run.join("slurm/logs/run-r0001.log").exists());

    sluice_ok(&[
        "run",
        cfg_s,
        "--out",
        single.to_str().unwrap(),
        "--no-progress",
    ]);
    let want = rows_in(&single.join("shards"));
    assert_eq!(
        rows_in(&run.join("shards")),
        want,
        "Slurm run differs from one process"
    );
    let st = sluice_ok(&["slurm", "status", run_s]);
    assert!(st.contains("4 done"), "{st}");
}

/// JSONL → length filter → MinHash → shards, in single-process or distributed mode.
fn dedup_yaml(paths: &str, distributed: bool) -> String {
    let mode = if distributed {
        // A small sort buffer, so every rank writes several sorted runs per bucket.
        "\n    mode: distributed\n    run_entries: 700"
    } else {
        ""
    };
    format!(
        "run:\n  batch_size: 64\nnodes:\n  src:\n    kind: ingest_jsonl\n    paths: [{paths}]\n  long_enough:\n    kind: length_filter\n    inputs: [src]\n    min_chars: 50\n  near_dups:\n    kind: minhash_dedup\n    inputs: [long_enough]\n    threshold: 0.7\n    num_perm: 128\n    seed: 7{mode}\n  shards:\n    kind: parquet_shards\n    inputs: [near_dups]\n    shard_rows: 400\n"
    )
}

/// Split the samples into `files` JSONL files (`copies` times over) under `tmp/in`, and write
/// the single-process and distributed dedup configs over them: (single.yaml, dist.yaml).
fn dedup_configs(tmp: &Path, files: usize, copies: usize) -> (PathBuf, PathBuf) {
    let input = tmp.join("in");
    std::fs::create_dir_all(&input).unwrap();
    split_inputs(&input, files, copies);
    let glob = format!("\"{}/*.jsonl\"", input.display());
    let (single_cfg, dist_cfg) = (tmp.join("single.yaml"), tmp.join("dist.yaml"));
    std::fs::write(&single_cfg, dedup_yaml(&glob, false)).unwrap();
    std::fs::write(&dist_cfg, dedup_yaml(&glob, true)).unwrap();
    (single_cfg, dist_cfg)
}

/// Kept documents with their cluster attributes: (id, text, attrs), sorted.
fn kept_rows(dir: &Path) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for b in crate::common::record_batches(dir, "shards") {
        let col = |c: &str| sluice::arrow_io::string_column(&b, c).unwrap().unwrap();
        let (ids, texts) = (col("id"), col("text"));
        let attrs = sluice::arrow_io::attrs_column(&b).unwrap().unwrap();
        for i in 0..ids.len() {
            v.push((
                ids[i].clone().unwrap(),
                texts[i].clone().unwrap_or_default(),
                format!("{:?}", attrs[i]),
            ));
        }
    }
    v.sort();
    v
}

/// Assert equal lists, reporting sizes and the first differences (not the whole lists).
fn same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    if got == want {
        return;
    }
    let missing: Vec<&T> = want.iter().filter(|w| !got.contains(w)).take(3).collect();
    let extra: Vec<&T> = got.iter().filter(|g| !want.contains(g)).take(3).collect();
    let short = |v: Vec<&T>| {
        v.iter()
            .map(|x| format!("{x:?}").chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
    };
    panic!(
        "{what} differ from the single-process run: {} vs {} rows; missing {:?}; unexpected {:?}",
        got.len(),
        want.len(),
        short(missing),
        short(extra)
    );
}

/// Every file the config's multi-phase stage declares for its phases (and for the `run`
/// phase to read) exists after a run at `world` ranks: unit 0 of each phase, rank and
/// bucket 0 (the contract of `sluice::phases`, so the declarations cannot drift).
fn check_declared_files(cfg: &Path, out: &Path, world: usize) {
    use sluice::phases::Units;
    let spec = sluice::config::load(cfg).unwrap();
    let plan = sluice::phases::plan(&spec, world).unwrap().unwrap();
    let state = plan.stage().state_dir(out);
    let nb = plan
        .phases()
        .iter()
        .find_map(|p| match p.units {
            Units::Fixed(n) => Some(n),
            _ => None,
        })
        .unwrap_or(world);
    let declared = plan
        .phases()
        .iter()
        .flat_map(|p| p.reads.iter().chain(p.writes).map(move |f| (p.name, *f)))
        .chain(plan.stage().run_reads().iter().map(|f| ("run", *f)));
    let mut n = 0;
    for (phase, pattern) in declared {
        let rel = ["<U>", "<R>", "<B>"]
            .iter()
            .fold(pattern.to_string(), |s, p| s.replace(p, "0000"))
            .replace("<NB>", &format!("{nb:04}"))
            .replace("<N>", &format!("{world:04}"));
        let found = match rel.split_once("<run>") {
            None => state.join(&rel).is_file(),
            Some((pre, post)) => {
                let pre = state.join(pre);
                let (dir, stem) = (pre.parent().unwrap(), pre.file_name().unwrap());
                std::fs::read_dir(dir).unwrap().flatten().any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with(&*stem.to_string_lossy()) && name.ends_with(post)
                })
            }
        };
        assert!(
            found,
            "phase {phase}: declared file {pattern} ({rel}) missing under {}",
            state.display()
        );
        n += 1;
    }
    assert!(n >= 10, "only {n} declared files");
}

/// `--phase` takes the names the config's stage declares, and only for a phased config.
fn phase_names_come_from_the_stage(single_cfg: &Path, dist_cfg: &Path, out: &Path) {
    let fails = |cfg: &Path, phase: &str| {
        let o = bin()
            .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(["--phase", phase, "--rank", "0", "--world-size", "2"])
            .output()
            .unwrap();
        assert!(!o.status.success(), "--phase {phase} ran");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = fails(dist_cfg, "minhash-bogus");
    assert!(
        e.contains("unknown phase `minhash-bogus`")
            && e.contains("minhash-sig, minhash-pairs, minhash-clusters"),
        "{e}"
    );
    let e = fails(dist_cfg, "minhash-clusters");
    assert!(e.contains("phase minhash-sig unit 0 is not done"), "{e}");
    let e = fails(single_cfg, "minhash-sig");
    assert!(e.contains("no multi-phase stage"), "{e}");
    assert!(!out.join("_minhash").exists());
}

#[test]
fn distributed_minhash_equals_single_process_at_1_4_7_ranks_and_resumes_after_a_phase3_crash() {
    let tmp = tempfile::tempdir().unwrap();
    // 14 files, the samples twice over: every document has an exact copy in another file
    // (so on another rank), and articles_en.jsonl holds 5 labelled near-duplicate pairs.
    let (single_cfg, dist_cfg) = dedup_configs(tmp.path(), 14, 2);
    let single = tmp.path().join("single");
    sluice_ok(&[
        "run",
        single_cfg.to_str().unwrap(),
        "--out",
        single.to_str().unwrap(),
        "--no-progress",
    ]);
    let want_kept = kept_rows(&single);
    let want_rej = reject_rows(&single);
    let dups = want_rej.iter().filter(|r| r.2 == "near_duplicate").count();
    assert!(
        dups > 900 && want_kept.len() > 800,
        "sample too small: {dups} duplicates, {} kept",
        want_kept.len()
    );
    // Near-duplicates that are not exact copies are among them.
    assert!(want_rej.iter().any(|r| r.3.contains("jaccard_est=0.")));

    let dist_cfg_s = dist_cfg.to_str().unwrap();
    phase_names_come_from_the_stage(&single_cfg, &dist_cfg, &tmp.path().join("bad"));
    for n in [1usize, 4, 7] {
        let out = tmp.path().join(format!("dist{n}"));
        let out_s = out.to_str().unwrap();
        let state = out.join("_minhash/near_dups");
        if n == 1 {
            // A plain `sluice run` of a phased config runs every phase as one rank.
            sluice_ok(&["run", dist_cfg_s, "--out", out_s, "--no-progress"]);
        } else if n == 4 {
            // Phase 3 crashes after writing part of a remove list: nothing of it is visible.
            let o = bin()
                .args(["run", dist_cfg_s, "--out", out_s, "--local-tasks", "4"])
                .env(
                    sluice::stages::minhash_dedup::dist::FAULT_ENV,
                    "minhash-clusters",
                )
                .output()
                .unwrap();
            assert!(
                !o.status.success(),
                "the injected fault did not fail the run"
            );
            assert!(String::from_utf8_lossy(&o.stderr).contains("minhash-clusters"));
            assert!(!state.join("remove/done").exists());
            let leftovers: Vec<_> = std::fs::read_dir(state.join("remove"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(
                leftovers.is_empty(),
                "a crashed phase 3 left files: {leftovers:?}"
            );
            assert!(
                !out.join("ranks").exists(),
                "phase 4 ran after a failed phase 3"
            );
            let sig0 = state.join("sig/ranks/r0000-of-0004.done");
            let pairs0 = state.join("pairs/b0000-of-0004.done");
            let (t_sig, t_pairs) = (mtime(&sig0), mtime(&pairs0));
            let log = out.join("logs/minhash-sig-r0000.log");
            let log_len = std::fs::metadata(&log).unwrap().len();
            // Resume: phases 1 and 2 are skipped, phase 3 and 4 run.
            sluice_ok(&["run", dist_cfg_s, "--out", out_s, "--local-tasks", "4"]);
            assert_eq!(mtime(&sig0), t_sig, "a finished phase-1 unit was redone");
            assert_eq!(
                mtime(&pairs0),
                t_pairs,
                "a finished phase-2 unit was redone"
            );
            assert_eq!(std::fs::metadata(&log).unwrap().len(), log_len);
            assert!(state.join("remove/done").exists());
        } else {
            sluice_ok(&[
                "run",
                dist_cfg_s,
                "--out",
                out_s,
                "--local-tasks",
                &n.to_string(),
            ]);
        }
        same(
            &kept_rows(&out),
            &want_kept,
            &format!("kept documents (with cluster attributes) at {n} ranks"),
        );
        same(
            &reject_rows(&out),
            &want_rej,
            &format!("reject rows at {n} ranks"),
        );
        for r in 0..n {
            assert!(out.join(format!("ranks/r{r:04}-of-{n:04}.done")).exists());
        }
        // Several sorted runs per rank and bucket were merged.
        let runs = std::fs::read_dir(state.join("sig/r0000"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("b0000-"))
            .count();
        assert!(runs >= 2, "only {runs} sorted run(s) in bucket 0 of rank 0");
        let done: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("remove/done")).unwrap()).unwrap();
        assert_eq!(done["stats"]["duplicates"].as_u64(), Some(dups as u64));
        check_declared_files(&dist_cfg, &out, n);
    }
}

#[cfg(feature = "cloud")]
#[test]
fn slurm_dry_run_chains_the_dedup_phases_with_afterok() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("d.yaml");
    std::fs::write(&cfg, dedup_yaml("samples/text/articles_en.jsonl", true)).unwrap();
    let out = tmp.path().join("run");
    let text = sluice_ok(&[
        "slurm",
        "submit",
        cfg.to_str().unwrap(),
        "--tasks",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--max-running",
        "2",
        "--dry-run",
    ]);
    let phases = ["minhash-sig", "minhash-pairs", "minhash-clusters", "run"];
    let arrays = [
        "--array=0-3%2",
        "--array=0-3%2",
        "--array=0%2",
        "--array=0-3%2",
    ];
    let mut pos = 0;
    for (i, (ph, arr)) in phases.iter().zip(arrays).enumerate() {
        let script = format!("{ph}-0.sbatch");
        let at = text[pos..]
            .find(&script)
            .unwrap_or_else(|| panic!("no script for {ph} after offset {pos}:\n{text}"))
            + pos;
        let next = text[at..].find("# submit:").unwrap() + at;
        let body = &text[at..next];
        assert!(body.contains(arr), "{ph}: no {arr}:\n{body}");
        assert!(
            body.contains(&format!("--phase {ph}")),
            "{ph}: no --phase:\n{body}"
        );
        let submit = text[next..].lines().next().unwrap();
        if i == 0 {
            assert!(!submit.contains("--dependency"), "{submit}");
        } else {
            assert!(
                submit.contains(&format!("--dependency=afterok:<{}-job>", phases[i - 1])),
                "{ph} is not chained after {}: {submit}",
                phases[i - 1]
            );
        }
        pos = next;
    }
    assert!(!out.join("slurm/jobs.json").exists(), "a dry run submitted");
}

#[cfg(feature = "cloud")]
#[test]
fn slurm_runs_the_dedup_phases_as_chained_arrays_and_resumes_a_failed_phase_3() {
    if !slurm_up() {
        crate::common::skip(
            "slurm",
            "no Slurm controller for the dedup test (run .ci/slurm-setup.sh; CI does)",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (single_cfg, dist_cfg) = dedup_configs(tmp.path(), 6, 2);
    let (single, run) = (tmp.path().join("single"), tmp.path().join("run"));
    let run_s = run.to_str().unwrap();
    // sbatch exports the submitting environment: the phase-3 unit fails (fault hook).
    let o = bin()
        .args([
            "slurm",
            "submit",
            dist_cfg.to_str().unwrap(),
            "--tasks",
            "3",
            "--out",
            run_s,
            "--max-running",
            "3",
            "--cpus-per-task",
            "1",
            "--time",
            "00:10:00",
            "--mem",
            "500M",
        ])
        .env(
            sluice::stages::minhash_dedup::dist::FAULT_ENV,
            "minhash-clusters",
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let jobs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("slurm/jobs.json")).unwrap()).unwrap();
    let subs = jobs["submissions"].as_array().unwrap();
    let phases: Vec<&str> = subs.iter().map(|s| s["phase"].as_str().unwrap()).collect();
    assert_eq!(
        phases,
        ["minhash-sig", "minhash-pairs", "minhash-clusters", "run"]
    );
    for i in 1..subs.len() {
        assert_eq!(subs[i]["after"], subs[i - 1]["job_id"], "{subs:?}");
    }
    let clusters_job = subs[2]["job_id"].as_str().unwrap().to_string();
    sluice_ok(&[
        "run",
        single_cfg.to_str().unwrap(),
        "--out",
        single.to_str().unwrap(),
        "--no-progress",
    ]);
    wait_until("the phase-3 array to leave the queue", 600, || {
        run.join("_minhash/near_dups/pairs/b0002-of-0003.done")
            .exists()
            && squeue_states(&clusters_job).is_empty()
    });
    let st = sluice_ok(&["slurm", "status", run_s, "--json"]);
    let st: Vec<serde_json::Value> = serde_json::from_str(&st).unwrap();
    let state = |ph: &str| -> Vec<String> {
        st.iter()
            .filter(|u| u["phase"] == ph)
            .map(|u| u["state"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(state("minhash-sig"), ["done"; 3], "{st:?}");
    assert_eq!(state("minhash-pairs"), ["done"; 3], "{st:?}");
    assert_eq!(state("minhash-clusters"), ["failed"], "{st:?}");
    assert!(!run.join("_minhash/near_dups/remove/done").exists());
    assert!(
        !run.join("ranks").exists(),
        "phase 4 ran after a failed phase 3"
    );

    // Resume (without the fault): phase 3 and phase 4 only.
    let res = sluice_ok(&["slurm", "resume", run_s]);
    assert!(res.contains("resubmitted"), "{res}");
    wait_until("the last phase", 240, || {
        (0..3).all(|r| run.join(format!("ranks/r{r:04}-of-0003.done")).exists())
    });
    let jobs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("slurm/jobs.json")).unwrap()).unwrap();
    let resubmitted: Vec<&str> = jobs["submissions"].as_array().unwrap()[4..]
        .iter()
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    assert_eq!(resubmitted, ["minhash-clusters", "run"]);
    let st = sluice_ok(&["slurm", "status", run_s, "--json"]);
    let st: Vec<serde_json::Value> = serde_json::from_str(&st).unwrap();
    assert_eq!(st.len(), 3 + 3 + 1 + 3, "{st:?}");
    assert!(st.iter().all(|u| u["state"] == "done"), "{st:?}");
    same(
        &kept_rows(&run),
        &kept_rows(&single),
        "kept rows under Slurm",
    );
    same(
        &reject_rows(&run),
        &reject_rows(&single),
        "reject rows under Slurm",
    );
    assert!(run.join("slurm/logs/minhash-clusters-r0000.log").exists());
}
