//! Checkpoints and savepoints on S3 (`s3://`), against a real S3-compatible server: `s3s-fs`,
//! started on a free port. Built only with the `s3` feature; `scripts/test.sh` installs the
//! server if it is missing and runs this test.
#![cfg(feature = "s3")]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy::prelude::*;

/// The `s3s-fs` binary: `$EDDY_S3S_FS`, or where `scripts/test.sh` installs it.
fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("EDDY_S3S_FS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME");
    PathBuf::from(home).join(".cache/eddy-tools/bin/s3s-fs")
}

struct Server {
    child: Child,
    endpoint: String,
    _root: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(bucket: &str) -> Server {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(bucket)).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = server_binary();
    let child = Command::new(&binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", "eddy", "--secret-key", "eddy-secret"])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (install it with `cargo install s3s-fs@0.14.1 --features binary`)",
                binary.display()
            )
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _root: root,
    }
}

#[test]
fn checkpoints_and_savepoints_on_s3() {
    let server = start_server("eddy");
    // object_store's S3 client reads its settings from the environment (AWS_*). This test
    // binary has only this test, so nothing else reads the environment while it is set.
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "eddy"),
        ("AWS_SECRET_ACCESS_KEY", "eddy-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ENDPOINT", server.endpoint.as_str()),
    ] {
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(k, v)
        };
    }
    let n = 3_000i64;
    let expected: std::collections::BTreeMap<i64, (usize, i64)> =
        (0..n).fold(Default::default(), |mut m, x| {
            let e: &mut (usize, i64) = m.entry(x % 5).or_default();
            e.0 += 1;
            e.1 += x;
            m
        });
    let summarize = |out: Vec<(i64, i64)>| {
        let mut m: std::collections::BTreeMap<i64, (usize, i64)> = Default::default();
        for (k, s) in out {
            let e = m.entry(k).or_default();
            e.0 += 1;
            e.1 = e.1.max(s);
        }
        m
    };

    // A failure, recovered from a checkpoint on S3.
    let mut conf = Configuration::new();
    conf.set_string("execution.checkpointing.interval", "30 ms");
    conf.set_string("execution.checkpointing.dir", "s3://eddy/checkpoints");
    conf.set_string("restart-strategy.type", "fixed-delay");
    conf.set_string("restart-strategy.fixed-delay.delay", "10 ms");
    conf.set_string("taskmanager.memory.segment-size", "1kb");
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(2);
    let fail = Arc::new(AtomicBool::new(false));
    let handle = env
        .from_sequence(0, n - 1)
        .map(|x| {
            std::thread::sleep(Duration::from_micros(300));
            (x % 5, x)
        })
        .key_by(|v: &(i64, i64)| v.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .map({
            let fail = fail.clone();
            move |v| {
                if fail.swap(false, Ordering::SeqCst) {
                    panic!("injected failure");
                }
                v
            }
        })
        .collect_async();
    let client = env.execute_async("s3").unwrap();
    while client.checkpoint_statistics().completed < 2 {
        assert!(client.wait_timeout(Duration::from_millis(5)).is_none());
    }
    fail.store(true, Ordering::SeqCst);
    client.get_job_execution_result().unwrap();
    let stats = client.checkpoint_statistics();
    let (_, path) = stats.latest_restored.expect("restored");
    assert!(path.starts_with("s3://eddy/checkpoints/"), "{path}");
    assert_eq!(summarize(handle.take()), expected);

    // A savepoint on S3, resumed.
    let env = StreamExecutionEnvironment::with_configuration({
        let mut c = Configuration::new();
        c.set_string("taskmanager.memory.segment-size", "1kb");
        c
    });
    env.set_parallelism(2);
    let read = Arc::new(AtomicU64::new(0));
    let pace = Arc::new(AtomicBool::new(true));
    let build = |env: &StreamExecutionEnvironment, read: Arc<AtomicU64>, pace: Arc<AtomicBool>| {
        env.from_sequence(0, n - 1)
            .uid("numbers")
            .map(move |x| {
                read.fetch_add(1, Ordering::SeqCst);
                if pace.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(500));
                }
                (x % 5, x)
            })
            .uid("pairs")
            .key_by(|v: &(i64, i64)| v.0)
            .reduce(|a, b| (a.0, a.1 + b.1))
            .uid("sums")
            .collect_async()
    };
    let first = build(&env, read.clone(), pace.clone());
    let client = env.execute_async("s3 savepoint").unwrap();
    while read.load(Ordering::SeqCst) < 500 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let savepoint = client
        .stop_with_savepoint(false, Some("s3://eddy/savepoints"))
        .unwrap();
    client.get_job_execution_result().unwrap();
    assert!(
        savepoint.starts_with("s3://eddy/savepoints/savepoint-"),
        "{savepoint}"
    );
    let mut conf = Configuration::new();
    conf.set_string("execution.savepoint.path", savepoint);
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(3);
    let second = build(
        &env,
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    env.execute("s3 resumed").unwrap();
    let mut all = first.take();
    all.extend(second.take());
    assert_eq!(summarize(all), expected);
}
