//! Nothing vanishes: the runtime's document accounting on every shipped config, and the
//! `mix` stage's rejects and mixture audit on the flagship recipe.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::*;

fn json(dir: &Path, f: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap()
}

/// Pipeline configs (not the training configs) shipped under `configs/`.
fn shipped_pipeline_configs() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root().join("configs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("yaml"))
        .collect();
    v.sort();
    v
}

/// Every shipped config, run by the real binary: the runtime's own check passed (exit 0),
/// `stats.json` holds an `ok` accounting entry for every node, and the reject rows on disk
/// agree with it per node (an independent count, read back from the Parquet).
#[test]
fn every_shipped_config_accounts_for_every_document() {
    let configs = shipped_pipeline_configs();
    assert!(configs.len() >= 10, "{configs:?}");
    for cfg in configs {
        let out = tempfile::tempdir().unwrap();
        let o = bin()
            .arg("run")
            .arg(&cfg)
            .arg("--out")
            .arg(out.path())
            .arg("--no-progress")
            .arg("-q")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}: {}",
            cfg.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let stats = json(out.path(), "stats.json");
        let acc = stats["accounting"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: no accounting in stats.json", cfg.display()));
        let nodes = stats["nodes"].as_object().unwrap();
        for name in nodes.keys() {
            let e = &acc[name];
            assert_eq!(e["ok"], true, "{}: node {name}: {e}", cfg.display());
        }
        assert_eq!(acc["_rejects"]["ok"], true, "{}", cfg.display());
        // Independent: reject rows per stage on disk = the node's rejected port (when it
        // goes to rejects/).
        let mut on_disk: BTreeMap<String, u64> = BTreeMap::new();
        for (_, stage, _, _, _) in reject_rows(out.path()) {
            *on_disk.entry(stage).or_default() += 1;
        }
        for (stage, n) in &on_disk {
            let port = nodes[stage]["ports"]["rejected"]["docs"].as_u64().unwrap();
            assert_eq!(*n, port, "{}: rejects of {stage}", cfg.display());
        }
    }
}

/// The flagship recipe: `mix` sends what it does not select to `rejected` as
/// `mix_not_selected` (with what capped the mixture), uses most of its web text, and the
/// audit's mixture table and the report's mixture section show the achieved mixture.
#[cfg(feature = "audit")]
#[test]
fn flagship_mix_rejects_what_it_does_not_use_and_reports_the_mixture() {
    let out = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["run", "configs/zh_pretrain.yaml", "--no-progress", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // The done line names what capped the mixture and how much of each source was used.
    assert!(err.contains("mixture capped by"), "{err}");
    let stats = json(out.path(), "stats.json");
    let mix = &stats["nodes"]["mixture"];
    let din = mix["docs_in"].as_u64().unwrap();
    let dout = mix["ports"]["out"]["docs"].as_u64().unwrap();
    let drej = mix["ports"]["rejected"]["docs"].as_u64().unwrap();
    let copies = mix["extra"]["extra_copies"].as_u64().unwrap();
    assert_eq!(din + copies, dout + drej, "{mix:#}");
    let web = &mix["extra"]["sources"]["web"];
    let used = web["used_docs_share"].as_f64().unwrap();
    assert!(
        used >= 0.9,
        "the flagship must use most of its web text: {web:#}"
    );
    let ach = web["achieved_share"].as_f64().unwrap();
    let tgt = web["target_share"].as_f64().unwrap();
    assert!((ach - tgt).abs() < 0.005, "{web:#}");

    // Rejected rows carry the reason and the capping source.
    let rej: Vec<_> = reject_rows(out.path())
        .into_iter()
        .filter(|r| r.1 == "mixture")
        .collect();
    assert_eq!(rej.len() as u64, drej);
    for r in &rej {
        assert!(
            r.2 == "mix_not_selected" || r.2 == "empty",
            "unexpected reason {r:?}"
        );
        if r.2 == "mix_not_selected" {
            assert!(r.3.contains("capped by"), "{r:?}");
        }
    }

    // The audit's mixture table reads what the stage writes.
    let a = bin()
        .args(["audit", "--preset", "mixture", "--format", "json"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let text = String::from_utf8_lossy(&a.stdout);
    let rows: Vec<Value> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect::<Vec<_>>();
    let rows: Vec<Value> = if rows.is_empty() {
        serde_json::from_str::<Vec<Value>>(&text).unwrap()
    } else {
        rows
    };
    assert_eq!(rows.len(), 2, "{text}");
    for r in &rows {
        assert!(r["target_pct"].as_f64().is_some(), "{r}");
        assert!(r["achieved_pct"].as_f64().is_some(), "{r}");
        assert!(r["diff_pp"].as_f64().unwrap().abs() < 0.5, "{r}");
        assert!(r["tokens"].as_u64().unwrap() > 0, "{r}");
    }

    // The report's mixture section has data.
    let html = out.path().join("report.html");
    let r = bin()
        .arg("report")
        .arg(out.path())
        .arg("-o")
        .arg(&html)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    let start = page.find("id=\"mixture\"").expect("mixture section");
    let end = page[start..].find("</section>").unwrap() + start;
    let sec = &page[start..end];
    assert!(!sec.contains("No data in this run"), "{sec}");
    assert!(sec.contains("web") && sec.contains("synthetic"), "{sec}");
}

/// A panicking stage ends the run with an error naming the node and the batch; nothing
/// is left under a final name and no marker is written, so the same command then runs
/// cleanly to the same output as an undisturbed run. Panics are injected with the
/// runtime's `SLUICE_FAILPOINT` in a transform, a sink and a source.
#[test]
fn a_panicking_stage_is_an_error_naming_node_and_batch() {
    let clean = tempfile::tempdir().unwrap();
    let ok = quiet_run("configs/quickstart.yaml", clean.path())
        .status()
        .unwrap();
    assert!(ok.success());
    for (fp, node, batch) in [
        ("panic@long_enough#1", "long_enough", 1),
        ("panic@shards#2", "shards", 2),
        ("panic@zh_wiki#0", "zh_wiki", 0),
    ] {
        let out = tempfile::tempdir().unwrap();
        let o = bin()
            .args(["run", "configs/quickstart.yaml", "--no-progress", "--out"])
            .arg(out.path())
            .env("SLUICE_FAILPOINT", fp)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{fp}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("error: node `{node}` panicked on batch {batch}")),
            "{fp}: {err}"
        );
        let left: Vec<_> = walk(out.path());
        assert!(
            left.iter()
                .all(|p| !p.ends_with(".done") && !p.ends_with(".tmp") && !p.ends_with(".parquet")),
            "{fp}: {left:?}"
        );
        assert!(!out.path().join("manifest.json").exists());
        let again = quiet_run("configs/quickstart.yaml", out.path())
            .status()
            .unwrap();
        assert!(again.success(), "{fp}");
        assert_eq!(
            files(out.path(), "shards"),
            files(clean.path(), "shards"),
            "{fp}"
        );
    }
}

/// `sluice run CONFIG --no-progress -q --out OUT`, ready to run.
fn quiet_run(config: &str, out: &Path) -> std::process::Command {
    let mut c = bin();
    c.args(["run", config, "--no-progress", "-q", "--out"])
        .arg(out);
    c
}

fn walk(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p.display().to_string());
        }
    }
    v
}

/// `sluice stages | head -1` ends quietly; log lines carry no colour codes when stderr is
/// not a terminal (and with `--color never`), and do with `--color always`.
#[test]
fn closed_pipe_is_quiet_and_colour_only_on_a_terminal() {
    use std::io::Read;
    let mut child = bin()
        .arg("stages")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    let mut so = child.stdout.take().unwrap();
    so.read_exact(&mut first).unwrap();
    drop(so);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{:?} {err}", o.status);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );

    let out = tempfile::tempdir().unwrap();
    let run = |color: Option<&str>| {
        let mut c = bin();
        c.args([
            "run",
            "configs/quickstart.yaml",
            "--no-progress",
            "--overwrite",
            "--out",
        ])
        .arg(out.path());
        if let Some(c2) = color {
            c.args(["--color", c2]);
        }
        String::from_utf8_lossy(&c.output().unwrap().stderr).into_owned()
    };
    let plain = run(None);
    assert!(
        plain.contains("done in") && !plain.contains('\u{1b}'),
        "{plain}"
    );
    assert!(!run(Some("never")).contains('\u{1b}'));
    assert!(run(Some("always")).contains('\u{1b}'));
}

/// I/O errors say what was attempted, on what, once.
#[test]
fn io_errors_say_what_was_attempted_once() {
    let o = bin()
        .args([
            "run",
            "configs/quickstart.yaml",
            "--no-progress",
            "--out",
            "/proc/sluice_out",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot create run directory /proc/sluice_out: No such file or directory"),
        "{err}"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// A run that keeps no documents still writes `shards/` (empty) and a manifest, and
/// pyarrow reads the empty dataset.
#[test]
fn a_run_that_keeps_nothing_has_an_empty_shards_folder() {
    let out = tempfile::tempdir().unwrap();
    let yaml = "nodes:
  docs: {kind: ingest_jsonl, paths: [samples/text/articles_en.jsonl]}
  keep: {kind: length_filter, inputs: [docs], min_chars: 100000000}
  shards: {kind: parquet_shards, inputs: [keep]}
";
    let cfg = out.path().join("none.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let o = bin()
        .args(["run", "--no-progress", "--out"])
        .arg(out.path().join("run"))
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = out.path().join("run");
    assert!(run.join("shards").is_dir());
    assert!(run.join("manifest.json").is_file());
    let m = json(&run, "manifest.json");
    assert_eq!(m["totals"]["rows"], 0);
    match python_with(&["pyarrow"]) {
        None => skip("pyarrow", "python3 with pyarrow not found"),
        Some(py) => {
            let n = run_python(
                &py,
                "import sys, pyarrow.dataset as ds; print(ds.dataset(sys.argv[1], format='parquet').count_rows())",
                &[run.join("shards").as_os_str()],
            );
            assert_eq!(String::from_utf8_lossy(&n).trim(), "0");
        }
    }
}

/// Ctrl-C (SIGINT) during a run: a message saying how to resume, exit 130, and the same
/// command then finishes the run.
#[test]
fn ctrl_c_says_how_to_resume() {
    let out = tempfile::tempdir().unwrap();
    let child = quiet_run("configs/zh_pretrain.yaml", out.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted; rerun the same command to resume"),
        "{err}"
    );
    let again = quiet_run("configs/zh_pretrain.yaml", out.path())
        .status()
        .unwrap();
    assert!(again.success());
    assert!(out.path().join("manifest.json").exists());
}
