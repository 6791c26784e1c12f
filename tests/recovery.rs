//! Recovery paths: a corrupt latest checkpoint, checkpoints under back pressure, savepoint
//! errors, retention, incremental checkpoints, and at-least-once mode.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{expected_sums, running_sums};
use eddy::JobClient;
use eddy::prelude::*;

fn conf(pairs: &[(&str, &str)]) -> Configuration {
    let mut c = Configuration::new();
    for (k, v) in pairs {
        c.set_string(*k, *v);
    }
    c
}

/// Keyed running sums over `0..n`, slowed down until `fast` is set, failing once when
/// `fail` is set. Returns the job's client and output handle.
fn sums_job(
    env: &StreamExecutionEnvironment,
    n: i64,
    keys: i64,
    fast: Arc<AtomicBool>,
    fail: Arc<AtomicBool>,
) -> (
    JobClient,
    eddy::connectors::collect::CollectHandle<(i64, i64)>,
) {
    let handle = env
        .from_sequence(0, n - 1)
        .map(move |x| {
            if !fast.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            (x % keys, x)
        })
        .key_by(|v: &(i64, i64)| v.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .map(move |v| {
            if fail.swap(false, Ordering::SeqCst) {
                panic!("injected failure");
            }
            v
        })
        .collect_async();
    (env.execute_async("sums").unwrap(), handle)
}

#[test]
fn a_corrupt_latest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_configuration(conf(&[
        ("execution.checkpointing.interval", "1 h"),
        ("execution.checkpointing.num-retained", "3"),
        ("execution.checkpointing.dir", dir.path().to_str().unwrap()),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        ("taskmanager.memory.segment-size", "1kb"),
    ]));
    env.set_parallelism(2);
    let (fast, fail) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (client, handle) = sums_job(&env, 3_000, 5, fast.clone(), fail.clone());
    let paths: Vec<String> = (0..3)
        .map(|_| client.trigger_checkpoint().expect("checkpoint"))
        .collect();
    // Corrupt a state file of the latest checkpoint.
    let latest = std::path::Path::new(&paths[2]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(latest.join("_metadata")).unwrap()).unwrap();
    let mut files = Vec::new();
    collect_paths(&meta, &mut files);
    assert!(!files.is_empty(), "the checkpoint has state files");
    for f in &files {
        std::fs::write(latest.join(f), b"EDDYST01 garbage").unwrap();
    }
    fail.store(true, Ordering::SeqCst);
    fast.store(true, Ordering::SeqCst);
    client.get_job_execution_result().unwrap();
    let stats = client.checkpoint_statistics();
    let (restored_id, restored_path) = stats.latest_restored.clone().expect("restored");
    assert_eq!(
        restored_path, paths[1],
        "fell back to the previous checkpoint"
    );
    assert!(restored_id < 3, "{stats:?}");
    // Falling back to an older checkpoint replays what the newer one had already committed:
    // every record is counted at least once, and the final sums are right.
    let got = running_sums(handle.take());
    let want = expected_sums(3_000, 5);
    for (k, (count, total)) in &want {
        let (c, t) = got[k];
        assert!(c >= *count, "key {k}: {c} < {count}");
        assert_eq!(t, *total, "key {k}");
    }
}

fn collect_paths(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(serde_json::Value::String(p)), Some(_)) =
                (m.get("path"), m.get("checksum"))
            {
                out.push(p.clone());
            }
            m.values().for_each(|x| collect_paths(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_paths(x, out)),
        _ => {}
    }
}

#[test]
fn checkpoints_complete_under_back_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(5);
    let env = StreamExecutionEnvironment::with_configuration(conf(&[
        ("execution.checkpointing.interval", "100 ms"),
        ("execution.checkpointing.timeout", "5 s"),
        ("execution.checkpointing.dir", dir.path().to_str().unwrap()),
        ("taskmanager.memory.segment-size", "4kb"),
    ]));
    env.set_parallelism(2);
    let n = 12_000;
    let handle = env
        .from_sequence(0, n - 1)
        .map(|x| (x % 7, x))
        .key_by(|v: &(i64, i64)| v.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .map(|v| {
            // A slow sink: the job is back-pressured from here to the source.
            let until = Instant::now() + Duration::from_micros(200);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            v
        })
        .set_parallelism(1)
        .collect_async();
    let client = env.execute_async("back pressure").unwrap();
    let mut back_pressured = 0.0f64;
    while client.wait_timeout(Duration::from_millis(200)).is_none() {
        for m in client.metrics() {
            if m.name == "backPressuredTimeMsPerSecond" {
                back_pressured = back_pressured.max(m.value.as_f64());
            }
        }
    }
    client.get_job_execution_result().unwrap();
    let stats = client.checkpoint_statistics();
    assert!(
        back_pressured > 500.0,
        "the source was back-pressured: {back_pressured}"
    );
    assert!(stats.completed >= 3, "{stats:?}");
    assert_eq!(
        stats.failed,
        0,
        "{:?}; failures: {:?}",
        stats.latest_failed,
        client.exceptions()
    );
    for c in &stats.history {
        assert!(
            Duration::from_millis(c.end_to_end_duration_ms) < timeout,
            "checkpoint {} took {} ms",
            c.id,
            c.end_to_end_duration_ms
        );
    }
    assert_eq!(running_sums(handle.take()), expected_sums(n, 7));
}

/// A file source at parallelism 2 whose first subtask finishes its (small) file early: after a
/// failure, the other subtask must take back its own split. Restored as finished, the first
/// subtask does not run again, so a split dealt to it would never be read.
#[test]
fn a_subtask_that_finished_keeps_its_splits_apart_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    let small: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    let large: Vec<String> = (0..2_000).map(|i| format!("b{i}")).collect();
    std::fs::write(input.join("a.txt"), small.join("\n") + "\n").unwrap();
    std::fs::write(input.join("b.txt"), large.join("\n") + "\n").unwrap();
    let env = StreamExecutionEnvironment::with_configuration(conf(&[
        ("execution.checkpointing.interval", "20 ms"),
        (
            "execution.checkpointing.dir",
            dir.path().join("ck").to_str().unwrap(),
        ),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        ("taskmanager.memory.segment-size", "1kb"),
    ]));
    env.set_parallelism(2);
    let armed = Arc::new(AtomicBool::new(false));
    let fired = Arc::new(AtomicBool::new(false));
    let handle = env
        .read_text_file(input.to_str().unwrap())
        .map({
            let (armed, fired) = (armed.clone(), fired.clone());
            move |line: String| {
                if line.starts_with('b') {
                    if !armed.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_micros(500));
                    } else if !fired.swap(true, Ordering::SeqCst) {
                        panic!("injected failure");
                    }
                }
                line
            }
        })
        .collect_async();
    let client = env.execute_async("finished subtask").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.checkpoint_statistics().completed < 3 && Instant::now() < deadline {
        if client.wait_timeout(Duration::from_millis(2)).is_some() {
            break;
        }
    }
    armed.store(true, Ordering::SeqCst);
    client.get_job_execution_result().unwrap();
    assert!(client.checkpoint_statistics().restored >= 1, "no restore");
    let mut got = handle.take();
    got.sort();
    let mut expected = [small, large].concat();
    expected.sort();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "lines lost or repeated");
}
