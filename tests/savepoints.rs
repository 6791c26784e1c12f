//! Savepoints and checkpoint configuration: what users see when restoring goes wrong, drain,
//! retention, incremental checkpoints, at-least-once mode.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use eddy::JobClient;
use eddy::prelude::*;

fn conf(pairs: &[(&str, &str)]) -> Configuration {
    let mut c = Configuration::new();
    for (k, v) in pairs {
        c.set_string(*k, *v);
    }
    c
}

/// Running sums per key over `0..n`; the map after the source is slowed by `pace` (in
/// microseconds per record) until `fast` is set. With `with_uid`, the reduce has a uid.
fn job(
    env: &StreamExecutionEnvironment,
    n: i64,
    pace: u64,
    fast: Arc<AtomicBool>,
    read: Arc<AtomicU64>,
    reduce_uid: &str,
) -> (
    JobClient,
    eddy::connectors::collect::CollectHandle<(i64, i64)>,
) {
    let handle = env
        .from_sequence(0, n - 1)
        .uid("source")
        .map(move |x| {
            read.fetch_add(1, Ordering::SeqCst);
            if !fast.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_micros(pace));
            }
            (x % 5, x)
        })
        .uid("pairs")
        .key_by(|v: &(i64, i64)| v.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .uid(reduce_uid)
        .collect_async();
    (env.execute_async("sums").unwrap(), handle)
}

fn totals(out: Vec<(i64, i64)>) -> BTreeMap<i64, (usize, i64)> {
    let mut m: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    for (k, s) in out {
        let e = m.entry(k).or_default();
        e.0 += 1;
        e.1 = e.1.max(s);
    }
    m
}

fn expected(n: i64) -> BTreeMap<i64, (usize, i64)> {
    let mut m: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    for x in 0..n {
        let e = m.entry(x % 5).or_default();
        e.0 += 1;
        e.1 += x;
    }
    m
}

/// Runs the sums job until 300 records were read, then stops it with a savepoint.
fn stopped_savepoint(dir: &Path, drain: bool) -> (String, Vec<(i64, i64)>) {
    stopped_savepoint_with(dir, drain, &[])
}

/// [`stopped_savepoint`] with more configuration.
fn stopped_savepoint_with(
    dir: &Path,
    drain: bool,
    extra: &[(&str, &str)],
) -> (String, Vec<(i64, i64)>) {
    let mut pairs = vec![("taskmanager.memory.segment-size", "1kb")];
    pairs.extend_from_slice(extra);
    let env = StreamExecutionEnvironment::with_configuration(conf(&pairs));
    env.set_parallelism(2);
    let (fast, read) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let (client, handle) = job(&env, 2_000, 500, fast, read.clone(), "sums");
    while read.load(Ordering::SeqCst) < 300 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let path = client
        .stop_with_savepoint(drain, Some(dir.to_str().unwrap()))
        .unwrap();
    client.get_job_execution_result().unwrap();
    (path, handle.take())
}

fn resume(path: &str, extra: &[(&str, &str)], reduce_uid: &str) -> Result<Vec<(i64, i64)>, String> {
    let mut pairs = vec![("execution.savepoint.path", path)];
    pairs.extend_from_slice(extra);
    let env = StreamExecutionEnvironment::with_configuration(conf(&pairs));
    env.set_parallelism(3);
    let fast = Arc::new(AtomicBool::new(true));
    let read = Arc::new(AtomicU64::new(0));
    let handle = env
        .from_sequence(0, 1_999)
        .uid("source")
        .map(move |x| {
            read.fetch_add(1, Ordering::SeqCst);
            let _ = fast.load(Ordering::SeqCst);
            (x % 5, x)
        })
        .uid("pairs")
        .key_by(|v: &(i64, i64)| v.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .uid(reduce_uid)
        .collect_async();
    match env.execute("resumed") {
        Ok(_) => Ok(handle.take()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn a_savepoint_resumes_and_the_runs_add_up_even_after_it_moved() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut first) = stopped_savepoint(dir.path(), false);
    // Savepoints are self-contained: move the directory, and resume from its new place.
    let moved = dir.path().join("elsewhere").join("my-savepoint");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&path, &moved).unwrap();
    first.extend(resume(moved.to_str().unwrap(), &[], "sums").unwrap());
    assert_eq!(totals(first), expected(2_000));
}

#[test]
fn state_without_an_operator_is_an_error_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = stopped_savepoint(dir.path(), false);
    let err = resume(&path, &[], "renamed sums").unwrap_err();
    assert!(
        err.contains("uid 'sums'") && err.contains("execution.savepoint.ignore-unclaimed-state"),
        "{err}"
    );
    // Allowed: the renamed reduce starts empty; the sources still resume where they stopped.
    let out = resume(
        &path,
        &[("execution.savepoint.ignore-unclaimed-state", "true")],
        "renamed sums",
    )
    .unwrap();
    assert!(!out.is_empty() && out.len() < 2_000, "{}", out.len());
}

#[test]
fn a_changed_max_parallelism_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = stopped_savepoint(dir.path(), false);
    let err = resume(&path, &[("pipeline.max-parallelism", "64")], "sums").unwrap_err();
    assert!(
        err.contains("max parallelism 128") && err.contains("64"),
        "{err}"
    );
}

#[test]
fn a_missing_or_corrupt_savepoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let err = resume(missing.to_str().unwrap(), &[], "sums").unwrap_err();
    assert!(
        err.contains("nothing-here") && err.contains("_metadata"),
        "{err}"
    );

    let (path, _) = stopped_savepoint(dir.path(), false);
    let state_file = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap() != "_metadata")
        .unwrap();
    std::fs::write(&state_file, b"garbage").unwrap();
    let err = resume(&path, &[], "sums").unwrap_err();
    let name = state_file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(err.contains(&name) && err.contains("corrupt"), "{err}");
}

#[test]
fn stop_with_drain_finishes_everything_and_leaves_nothing_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = stopped_savepoint(dir.path(), true);
    // Every operator had finished: the resumed job ends at once, emitting nothing.
    let out = resume(&path, &[], "sums").unwrap();
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_savepoint_can_be_taken_while_the_job_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_configuration(conf(&[
        ("taskmanager.memory.segment-size", "1kb"),
        (
            "execution.checkpointing.savepoint-dir",
            dir.path().to_str().unwrap(),
        ),
    ]));
    env.set_parallelism(2);
    let (fast, read) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let (client, handle) = job(&env, 2_000, 1_000, fast.clone(), read.clone(), "sums");
    while read.load(Ordering::SeqCst) < 200 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let path = client.trigger_savepoint(None).unwrap();
    assert!(path.starts_with(dir.path().to_str().unwrap()), "{path}");
    fast.store(true, Ordering::SeqCst);
    client.get_job_execution_result().unwrap();
    assert_eq!(totals(handle.take()), expected(2_000));
    // Resuming from it replays what followed it.
    let resumed = resume(&path, &[], "sums").unwrap();
    assert!(
        !resumed.is_empty() && resumed.len() < 2_000,
        "{}",
        resumed.len()
    );
    let stats = client.checkpoint_statistics();
    assert_eq!(stats.completed, 1);
    assert!(stats.history[0].is_savepoint);
}

#[test]
fn with_unaligned_checkpoints_a_savepoint_is_aligned_and_resumes_at_another_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let unaligned = [
        ("execution.checkpointing.interval", "20 ms"),
        ("execution.checkpointing.unaligned.enabled", "true"),
        ("execution.checkpointing.dir", checkpoints.to_str().unwrap()),
    ];
    let (path, first) = stopped_savepoint_with(&dir.path().join("sp"), false, &unaligned);
    // A savepoint holds no in-flight data, so it restores at parallelism 3 (it was taken at 2).
    let second = resume(&path, &[], "sums").unwrap();
    // The resumed job commits the savepoint's pre-committed batch again, into its own collect
    // handle (a collect sink deduplicates commits per handle), so compare distinct outputs.
    let all: std::collections::BTreeSet<(i64, i64)> = first.into_iter().chain(second).collect();
    let sums: BTreeMap<i64, i64> = totals(all.iter().copied().collect())
        .into_iter()
        .map(|(k, (_, s))| (k, s))
        .collect();
    let want: BTreeMap<i64, i64> = expected(2_000)
        .into_iter()
        .map(|(k, (_, s))| (k, s))
        .collect();
    assert_eq!(sums, want);
    // One output per record; two may be equal where 0 is added to key 0's sum.
    assert!(all.len() >= 1_999, "{} distinct outputs", all.len());
}

/// Runs an endless-ish job with checkpoints, cancels it, and returns whether its checkpoint
/// directory is still there.
fn checkpoints_left_after_cancel(retention: Option<&str>) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = vec![
        ("execution.checkpointing.interval", "20 ms"),
        ("execution.checkpointing.dir", dir.path().to_str().unwrap()),
    ];
    if let Some(r) = retention {
        pairs.push((
            "execution.checkpointing.externalized-checkpoint-retention",
            r,
        ));
    }
    let env = StreamExecutionEnvironment::with_configuration(conf(&pairs));
    let (fast, read) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let (client, _handle) = job(&env, 1_000_000, 100, fast, read, "sums");
    while client.checkpoint_statistics().completed < 2 {
        assert!(client.wait_timeout(Duration::from_millis(5)).is_none());
    }
    client.cancel();
    assert!(client.get_job_execution_result().is_err());
    let job_dir = dir.path().join(client.job_id().to_string());
    job_dir.exists()
        && std::fs::read_dir(&job_dir)
            .unwrap()
            .any(|e| e.unwrap().path().join("_metadata").is_file())
}

#[test]
fn checkpoints_are_kept_on_cancel_only_when_configured() {
    assert!(!checkpoints_left_after_cancel(None));
    assert!(!checkpoints_left_after_cancel(Some(
        "DELETE_ON_CANCELLATION"
    )));
    assert!(checkpoints_left_after_cancel(Some(
        "RETAIN_ON_CANCELLATION"
    )));
}

#[test]
fn incremental_checkpoints_upload_only_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_configuration(conf(&[
        ("execution.checkpointing.interval", "1 h"),
        ("execution.checkpointing.dir", dir.path().to_str().unwrap()),
        ("execution.checkpointing.num-retained", "5"),
        ("execution.checkpointing.incremental", "true"),
        ("state.backend.type", "lsm"),
        ("io.tmp.dirs", dir.path().join("tmp").to_str().unwrap()),
        ("taskmanager.memory.segment-size", "1kb"),
    ]));
    let (fast, read) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let handle = env
        .from_sequence(0, 999_999)
        .map({
            let (fast, read) = (fast.clone(), read.clone());
            move |x| {
                read.fetch_add(1, Ordering::SeqCst);
                if !fast.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(100));
                }
                (x % 1_000, x)
            }
        })
        .key_by(|v: &(i64, i64)| v.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .filter(|_| false)
        .collect_async();
    let client = env.execute_async("incremental").unwrap();
    let mut checkpoints = Vec::new();
    for _ in 0..3 {
        let before = read.load(Ordering::SeqCst);
        while read.load(Ordering::SeqCst) < before + 300 {
            std::thread::sleep(Duration::from_millis(1));
        }
        checkpoints.push(client.trigger_checkpoint().unwrap());
    }
    let files = |chk: &str| -> Vec<String> {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(Path::new(chk).join("_metadata")).unwrap())
                .unwrap();
        let mut keyed = Vec::new();
        for op in meta["operators"].as_array().unwrap() {
            for s in op["subtasks"].as_array().unwrap() {
                if let Some(files) = s["keyed"]["files"].as_array() {
                    for f in files {
                        keyed.push(f["file"]["path"].as_str().unwrap().to_string());
                    }
                }
            }
        }
        keyed
    };
    let (first, second, third) = (
        files(&checkpoints[0]),
        files(&checkpoints[1]),
        files(&checkpoints[2]),
    );
    assert_eq!(first.len(), 1, "the first checkpoint is a full snapshot");
    assert_eq!(second.len(), 2, "the second adds one new file: {second:?}");
    assert_eq!(second[0], first[0], "and refers to the first one's");
    assert_eq!(third.len(), 3);
    assert_eq!(&third[..2], &second[..]);
    // The new files hold only the keys that changed: at most a thousand, so they stay small.
    fast.store(true, Ordering::SeqCst);
    client.cancel();
    let _ = client.get_job_execution_result();
    drop(handle);
}

#[test]
fn at_least_once_mode_recovers_without_losing_records() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_configuration(conf(&[
        ("execution.checkpointing.interval", "20 ms"),
        ("execution.checkpointing.mode", "AT_LEAST_ONCE"),
        ("execution.checkpointing.dir", dir.path().to_str().unwrap()),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        ("taskmanager.memory.segment-size", "1kb"),
    ]));
    env.set_parallelism(2);
    let fail = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let handle = env
        .from_sequence(0, 2_999)
        .map({
            let read = read.clone();
            move |x| {
                read.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(500));
                (x % 5, x)
            }
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
    let client = env.execute_async("at least once").unwrap();
    while client.checkpoint_statistics().completed < 2 {
        assert!(
            client.wait_timeout(Duration::from_millis(2)).is_none(),
            "the job ended before two checkpoints"
        );
    }
    fail.store(true, Ordering::SeqCst);
    client.get_job_execution_result().unwrap();
    assert!(client.checkpoint_statistics().restored >= 1);
    let got = totals(handle.take());
    for (k, (count, total)) in expected(3_000) {
        let (c, t) = got[&k];
        assert!(c >= count, "key {k}: {c} < {count}");
        assert_eq!(t, total, "key {k}");
    }
}
