//! Object storage against a real S3-compatible server on loopback.
//!
//! Each test starts its own `moto_server` (pip `moto[server]`, installed by `.ci/run`) on a
//! free 127.0.0.1 port and stops it when done. Without `moto_server` on PATH the tests print
//! why and return.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use sluice::storage;

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Raw HTTP request to the server (moto does not check signatures).
fn http(endpoint: &str, method: &str, path: &str) -> String {
    let hostport = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(hostport).expect("connect moto");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

impl Moto {
    /// Start moto, or `None` (with a message) when it is not installed.
    pub fn start(test: &str) -> Option<Moto> {
        let ok = Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            crate::common::skip(
                "moto",
                &format!("{test}: moto_server not installed (pip install 'moto[server]')"),
            );
            return None;
        }
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let m = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(m)
    }

    /// Create a bucket and register a client for `s3://bucket` in this process.
    pub fn bucket(&self, name: &str) -> Arc<dyn ObjectStore> {
        let resp = http(&self.endpoint, "PUT", &format!("/{name}"));
        assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
        let store: Arc<dyn ObjectStore> = Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_bucket_name(name)
                .with_region("us-east-1")
                .with_access_key_id("testing")
                .with_secret_access_key("testing")
                .build()
                .expect("s3 client"),
        );
        storage::register_store(&format!("s3://{name}"), store.clone());
        store
    }

    /// Environment for a child `sluice` process to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// In-progress multipart uploads in a bucket (raw `?uploads` listing).
    pub fn open_uploads(&self, bucket: &str) -> usize {
        http(&self.endpoint, "GET", &format!("/{bucket}?uploads"))
            .matches("<UploadId>")
            .count()
    }
}

/// Deterministic pseudo-random bytes (incompressible, so sizes are real).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn s3_multipart_round_trip_and_streaming_read() {
    let Some(moto) = Moto::start("s3_multipart_round_trip_and_streaming_read") else {
        return;
    };
    moto.bucket("roundtrip");
    // 21 MiB: two full 8 MiB parts and a 5 MiB tail, written in odd-sized pieces.
    let data = noise(21 << 20, 7);
    let uri = "s3://roundtrip/run/shards/big.bin";
    let mut w = storage::create(uri).unwrap();
    for piece in data.chunks(777_777) {
        w.write_all(piece).unwrap();
    }
    // Parts are uploaded, but nothing is visible until commit.
    assert!(!storage::exists(uri).unwrap());
    assert_eq!(moto.open_uploads("roundtrip"), 1);
    assert_eq!(w.commit().unwrap(), data.len() as u64);
    assert_eq!(moto.open_uploads("roundtrip"), 0);
    assert_eq!(storage::size(uri).unwrap(), data.len() as u64);

    // Streaming read, in small reads, equals the input.
    let mut r = storage::open(uri).unwrap();
    let mut back = Vec::with_capacity(data.len());
    let mut buf = [0u8; 4096];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    assert!(back == data, "round trip differs");

    // Small objects go through one PUT; glob listing is sorted and filtered.
    storage::put(
        "s3://roundtrip/in/b.jsonl",
        "{\"text\":\"乙\"}\n".as_bytes(),
    )
    .unwrap();
    storage::put(
        "s3://roundtrip/in/a.jsonl",
        "{\"text\":\"甲\"}\n".as_bytes(),
    )
    .unwrap();
    storage::put("s3://roundtrip/in/c.txt", b"x").unwrap();
    storage::put("s3://roundtrip/in/sub/d.jsonl", b"x").unwrap();
    assert_eq!(
        storage::expand("s3://roundtrip/in/*.jsonl").unwrap(),
        vec!["s3://roundtrip/in/a.jsonl", "s3://roundtrip/in/b.jsonl"]
    );
    assert_eq!(storage::expand("s3://roundtrip/in/").unwrap().len(), 4);
    assert_eq!(
        storage::read_all("s3://roundtrip/in/a.jsonl").unwrap(),
        "{\"text\":\"甲\"}\n".as_bytes()
    );
    // A missing object fails at open, naming the URL.
    let e = storage::open("s3://roundtrip/in/missing.jsonl")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("s3://roundtrip/in/missing.jsonl"), "{e}");

    // Compressed inputs stream through the same decoders as local files.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all("{\"text\":\"压缩的行\"}\n".repeat(50_000).as_bytes())
        .unwrap();
    storage::put("s3://roundtrip/gz/z.jsonl.gz", &gz.finish().unwrap()).unwrap();
    let mut text = String::new();
    sluice::io::open_input("s3://roundtrip/gz/z.jsonl.gz")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text.lines().count(), 50_000);
}

#[test]
fn s3_failed_upload_leaves_no_object() {
    let Some(moto) = Moto::start("s3_failed_upload_leaves_no_object") else {
        return;
    };
    moto.bucket("fail");
    let uri = "s3://fail/shards/part-00000.parquet";
    // A writer that fails half-way (its producer errors, the writer is dropped): 17 MiB
    // written, so two parts were already uploaded to the server.
    let res: Result<(), String> = (|| {
        let mut w = storage::create(uri).map_err(|e| e.to_string())?;
        w.write_all(&noise(17 << 20, 3))
            .map_err(|e| e.to_string())?;
        assert_eq!(moto.open_uploads("fail"), 1);
        Err("producer failed mid-way".to_string())
    })();
    assert!(res.is_err());
    assert!(!storage::exists(uri).unwrap(), "partial object visible");
    assert!(storage::expand("s3://fail/").unwrap().is_empty());
    // The upload was aborted, so its parts are gone too.
    assert_eq!(moto.open_uploads("fail"), 0);

    // A small object that is never committed never appears either.
    {
        let mut w = storage::create("s3://fail/marker.done").unwrap();
        w.write_all(b"{}").unwrap();
    }
    assert!(!storage::exists("s3://fail/marker.done").unwrap());
}

#[test]
fn s3_jsonl_inputs_to_s3_shards_equal_a_local_run() {
    let Some(moto) = Moto::start("s3_jsonl_inputs_to_s3_shards_equal_a_local_run") else {
        return;
    };
    moto.bucket("iotest");
    let tmp = tempfile::tempdir().unwrap();
    let local_in = tmp.path().join("in");
    std::fs::create_dir_all(&local_in).unwrap();
    crate::common::split_inputs(&local_in, 4, 1);
    for e in std::fs::read_dir(&local_in).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        storage::put(
            &format!("s3://iotest/in/{name}"),
            &std::fs::read(e.path()).unwrap(),
        )
        .unwrap();
    }
    let run = |cfg_yaml: String, out: &str, extra: &[&str]| {
        let cfg = tmp.path().join(format!(
            "c{}.yaml",
            xxhash_rust::xxh3::xxh3_64(out.as_bytes())
        ));
        std::fs::write(&cfg, cfg_yaml).unwrap();
        let mut c = crate::common::bin();
        c.args(["run", cfg.to_str().unwrap(), "--out", out, "--no-progress"])
            .args(extra);
        for (k, v) in moto.env() {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // Reference: the same files read locally, written locally.
    let local_out = tmp.path().join("local");
    let o = run(
        crate::scale::pipeline_yaml(&format!("\"{}/*.jsonl\"", local_in.display())),
        local_out.to_str().unwrap(),
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = crate::scale::rows_in(&local_out.join("shards"));

    // From S3 to S3, as two local ranks.
    let yaml = crate::scale::pipeline_yaml("\"s3://iotest/in/*.jsonl\"");
    let o = run(yaml.clone(), "s3://iotest/run", &["--local-tasks", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let objs = storage::expand("s3://iotest/run/").unwrap();
    for want_obj in [
        "s3://iotest/run/manifest.json",
        "s3://iotest/run/stats.json",
        "s3://iotest/run/ranks/r0001-of-0002.done",
    ] {
        assert!(
            objs.iter().any(|o| o == want_obj),
            "{want_obj} missing in {objs:?}"
        );
    }
    assert!(!objs.iter().any(|o| o.ends_with(".tmp")), "{objs:?}");
    let dl = tmp.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    for o in storage::expand("s3://iotest/run/shards/*.parquet").unwrap() {
        let name = o.rsplit('/').next().unwrap();
        std::fs::write(dl.join(name), storage::read_all(&o).unwrap()).unwrap();
    }
    assert_eq!(
        crate::scale::rows_in(&dl),
        want,
        "S3 round trip changed the documents"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&storage::read_all("s3://iotest/run/manifest.json").unwrap())
            .unwrap();
    assert_eq!(manifest["totals"]["rows"].as_u64(), Some(want.len() as u64));

    // A re-run skips both finished ranks.
    let o = run(yaml, "s3://iotest/run", &["--local-tasks", "2"]);
    assert!(o.status.success());

    // A run that fails (bad-record budget 0, one broken line) publishes nothing.
    storage::put(
        "s3://iotest/bad/in.jsonl",
        b"{\"text\":\"fine line that is long enough\"}\nnot json\n",
    )
    .unwrap();
    let bad_yaml = crate::scale::pipeline_yaml("\"s3://iotest/bad/in.jsonl\"")
        .replace("run:\n", "run:\n  max_bad_records: 0\n");
    let o = run(bad_yaml, "s3://iotest/badrun", &[]);
    assert!(
        !o.status.success(),
        "a run over its bad-record budget must fail"
    );
    assert!(
        storage::expand("s3://iotest/badrun/").unwrap().is_empty(),
        "failed run left objects"
    );
}

#[test]
fn s3_warc_inputs_equal_a_local_run() {
    let Some(moto) = Moto::start("s3_warc_inputs_equal_a_local_run") else {
        return;
    };
    moto.bucket("warcs");
    let files = [
        "samples/warc/dolma-wget-sample-0000.warc.gz",
        "samples/warc/warcfile.warc.gz",
        "samples/warc/clipped.warc.gz",
    ];
    for f in files {
        let name = f.rsplit('/').next().unwrap();
        storage::put(
            &format!("s3://warcs/cc/{name}"),
            &std::fs::read(crate::common::root().join(f)).unwrap(),
        )
        .unwrap();
    }
    let yaml = |paths: &str| {
        format!(
            "nodes:\n  src:\n    kind: ingest_warc\n    paths: [{paths}]\n  shards:\n    kind: parquet_shards\n    inputs: [src]\n"
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |cfg_yaml: String, out: &Path| {
        let cfg = tmp.path().join(format!(
            "{}.yaml",
            out.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&cfg, cfg_yaml).unwrap();
        let mut c = crate::common::bin();
        c.args([
            "run",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
        ]);
        for (k, v) in moto.env() {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let local = tmp.path().join("local");
    let local_paths: Vec<String> = files
        .iter()
        .map(|f| format!("\"{}\"", crate::common::root().join(f).display()))
        .collect();
    run(yaml(&local_paths.join(", ")), &local);
    let remote = tmp.path().join("remote");
    run(yaml("\"s3://warcs/cc/*.warc.gz\""), &remote);
    let want = crate::scale::rows_in(&local.join("shards"));
    assert!(want.len() > 5, "too few WARC records: {}", want.len());
    assert_eq!(
        crate::scale::rows_in(&remote.join("shards")),
        want,
        "WARC records read from S3 differ from the local files"
    );
    // The same bad-record accounting (the clipped file ends mid-record).
    let bad = |d: &Path| {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("stats.json")).unwrap()).unwrap();
        v["nodes"]["src"]["bad_records"].clone()
    };
    assert_eq!(bad(&local), bad(&remote));
}
