//! Scale-out: the local launcher (`sluice run --local-tasks N`) and a real Slurm cluster.
//!
//! Both run the same sample pipeline over 8 input files as several ranks and compare the
//! documents in the shards with a single-process run. The Slurm test needs a controller
//! (`.ci/slurm-setup.sh` starts one; CI runs it) and is skipped with a message otherwise.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{bin, split_inputs};

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

fn slurm_up() -> bool {
    Command::new("scontrol")
        .arg("ping")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("UP"))
        .unwrap_or(false)
}

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

#[test]
fn slurm_array_with_a_cancelled_rank_resumes_to_the_single_run_result() {
    if !slurm_up() {
        eprintln!("SKIP slurm test: no Slurm controller (run .ci/slurm-setup.sh; CI does)");
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
