//! The examples, run as programs on random input, against brute-force models.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::window_oracle::{self, Assigner, sorted};
use common::{example_bin, run_example};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn read_lines(dir: &Path) -> Vec<String> {
    let left = common::in_progress_files(dir);
    assert!(left.is_empty(), "in-progress files left behind: {left:?}");
    common::committed_lines(dir)
}

#[test]
fn event_time_windows_matches_the_model_for_every_assigner() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (assigner, ooo, lateness)) in [
        (Assigner::Tumbling(100), 20, 50),
        (Assigner::Sliding(120, 40), 0, 30),
        (Assigner::Session(25), 15, 40),
    ]
    .into_iter()
    .enumerate()
    {
        let events = window_oracle::random_events(100 + i as u64, 600, 4, 30);
        let input = dir.path().join(format!("events-{i}.csv"));
        let text: String = events
            .iter()
            .map(|e| format!("{},{},{}\n", e.key, e.ts, e.value))
            .collect();
        std::fs::write(&input, text).unwrap();
        let (fired, late) = window_oracle::run(&events, assigner, ooo, lateness);
        let expected: Vec<String> = sorted(
            fired
                .iter()
                .map(|(k, s, e, c, sum)| format!("{k},{s},{e},{c},{sum}"))
                .collect(),
        );
        let expected_late: Vec<String> = sorted(
            late.iter()
                .map(|e| format!("{},{},{}", e.key, e.ts, e.value))
                .collect(),
        );
        assert!(
            !expected_late.is_empty(),
            "the input should have late records"
        );
        for p in [1, 2, 4] {
            let out = dir.path().join(format!("out-{i}-{p}"));
            let late_out = dir.path().join(format!("late-{i}-{p}"));
            run_example(
                "event_time_windows",
                &[
                    "--input",
                    input.to_str().unwrap(),
                    "--output",
                    out.to_str().unwrap(),
                    "--late-output",
                    late_out.to_str().unwrap(),
                    "--parallelism",
                    &p.to_string(),
                    "--window",
                    &assigner.spec(),
                    "--out-of-orderness",
                    &ooo.to_string(),
                    "--allowed-lateness",
                    &lateness.to_string(),
                    "--watermarks",
                    "per-record",
                ],
            );
            assert_eq!(
                sorted(read_lines(&out)),
                expected,
                "{} p={p}",
                assigner.spec()
            );
            assert_eq!(
                sorted(read_lines(&late_out)),
                expected_late,
                "late {} p={p}",
                assigner.spec()
            );
        }
    }
}

/// Runs `event_time_windows` on `input` with the common window arguments plus `extra`.
fn windows_run(input: &Path, out: &Path, late: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--late-output",
        late.to_str().unwrap(),
        "--window",
        "sliding:200:50",
        "--out-of-orderness",
        "20",
        "--allowed-lateness",
        "10",
        "--watermarks",
        "per-record",
    ];
    args.extend_from_slice(extra);
    run_example("event_time_windows", &args)
}

fn write_events(path: &Path, seed: u64, n: usize) {
    let events = window_oracle::random_events(seed, n, 6, 40);
    let text: String = events
        .iter()
        .map(|e| format!("{},{},{}\n", e.key, e.ts, e.value))
        .collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn event_time_windows_recovers_from_a_failure_with_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("events.csv");
    write_events(&input, 77, 6_000);
    windows_run(
        &input,
        &d.join("plain"),
        &d.join("plain-late"),
        &["--parallelism", "2"],
    );
    let expected = sorted(read_lines(&d.join("plain")));
    let expected_late = sorted(read_lines(&d.join("plain-late")));
    assert!(!expected.is_empty() && !expected_late.is_empty());
    for p in ["1", "2", "4"] {
        let out = d.join(format!("failed-{p}"));
        let late = d.join(format!("failed-late-{p}"));
        let ckpt = d.join(format!("checkpoints-{p}"));
        let run = windows_run(
            &input,
            &out,
            &late,
            &[
                "--parallelism",
                p,
                "--checkpoint-interval",
                "50",
                "--checkpoint-dir",
                ckpt.to_str().unwrap(),
                "--source-rate",
                "20000",
                "--inject-failure-after",
                "3000",
                "-D",
                "restart-strategy.type=fixed-delay",
                "-D",
                "restart-strategy.fixed-delay.delay=20 ms",
                // Rarely, under a loaded machine, a task of the restored attempt has stopped
                // with only a secondary error ("a connected task has terminated"); spare
                // attempts keep that from failing the run, and the output below must still be
                // exactly that of the undisturbed run.
                "-D",
                "restart-strategy.fixed-delay.attempts=3",
            ],
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains("injected failure after 3000 records"),
            "{stderr}"
        );
        assert_eq!(sorted(read_lines(&out)), expected, "p={p}");
        assert_eq!(sorted(read_lines(&late)), expected_late, "late p={p}");
    }
}

#[test]
fn event_time_windows_stopped_and_resumed_at_another_parallelism_writes_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("events.csv");
    write_events(&input, 78, 6_000);
    windows_run(
        &input,
        &d.join("plain"),
        &d.join("plain-late"),
        &["--parallelism", "2"],
    );
    let expected = sorted(read_lines(&d.join("plain")));
    let expected_late = sorted(read_lines(&d.join("plain-late")));
    for (from, to) in [("2", "4"), ("4", "2")] {
        let out = d.join(format!("stopped-{from}-{to}"));
        let late = d.join(format!("stopped-late-{from}-{to}"));
        let savepoints = d.join(format!("savepoints-{from}-{to}"));
        let stopped = windows_run(
            &input,
            &out,
            &late,
            &[
                "--parallelism",
                from,
                "--source-rate",
                "20000",
                "--savepoint-after-records",
                "2500",
                "--savepoint-dir",
                savepoints.to_str().unwrap(),
            ],
        );
        let stdout = String::from_utf8_lossy(&stopped.stdout);
        let path = stdout
            .lines()
            .find_map(|l| l.strip_prefix("savepoint: "))
            .unwrap_or_else(|| panic!("no savepoint line in {stdout}"))
            .to_string();
        assert!(Path::new(&path).join("_metadata").is_file(), "{path}");
        let partial = read_lines(&out).len();
        assert!(partial < expected.len(), "the first run stopped early");
        windows_run(
            &input,
            &out,
            &late,
            &["--parallelism", to, "--from-savepoint", &path],
        );
        assert_eq!(sorted(read_lines(&out)), expected, "{from} -> {to}");
        assert_eq!(
            sorted(read_lines(&late)),
            expected_late,
            "late {from} -> {to}"
        );
    }
}

#[test]
fn event_time_windows_handles_malformed_lines_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.csv");
    std::fs::write(&input, "a,10,1\nthis is not a record\na,20,2\nb,x,3\n").unwrap();
    let args = |out: &str, policy: &str| {
        vec![
            "--input".to_string(),
            input.to_str().unwrap().to_string(),
            "--output".to_string(),
            dir.path().join(out).to_str().unwrap().to_string(),
            "--window".to_string(),
            "tumbling:100".to_string(),
            "--on-malformed".to_string(),
            policy.to_string(),
        ]
    };
    // Drop: the good lines are counted, the bad ones skipped.
    let a = args("dropped", "drop");
    run_example(
        "event_time_windows",
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(read_lines(&dir.path().join("dropped")), vec!["a,0,100,2,3"]);
    // Fail: the job fails with an error that names the line.
    let a = args("failed", "fail");
    let out = std::process::Command::new(example_bin("event_time_windows"))
        .args(&a)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("this is not a record"), "{stderr}");
    assert!(stderr.contains("'Parse'"), "{stderr}");
}

type Car = (i32, i32, f64, i64);

#[test]
fn top_speed_windowing_matches_the_model() {
    let mut rng = StdRng::seed_from_u64(21);
    let cars = 3;
    let mut speed = vec![50i32; cars];
    let mut distance = vec![0f64; cars];
    let mut events: Vec<Car> = Vec::new();
    for tick in 0..400i64 {
        for c in 0..cars {
            speed[c] = (speed[c] + rng.random_range(-5..=5)).clamp(0, 100);
            distance[c] += f64::from(speed[c]) / 3.6;
            events.push((c as i32, speed[c], distance[c], tick * 100));
        }
    }
    // The model: per car, a delta trigger on distance (> 50 m since the last firing) and a
    // 10 s time evictor, then the record with the highest speed (the first on ties).
    let mut expected = Vec::new();
    let mut contents: BTreeMap<i32, Vec<Car>> = BTreeMap::new();
    let mut last: BTreeMap<i32, Car> = BTreeMap::new();
    for e in &events {
        let fire = match last.get(&e.0) {
            None => {
                last.insert(e.0, *e);
                false
            }
            Some(l) if e.2 - l.2 > 50.0 => {
                last.insert(e.0, *e);
                true
            }
            Some(_) => false,
        };
        let c = contents.entry(e.0).or_default();
        c.push(*e);
        if fire {
            let newest = c.iter().map(|x| x.3).max().unwrap();
            c.retain(|x| x.3 > newest - 10_000);
            let mut best = c[0];
            for x in c.iter() {
                if x.1 > best.1 {
                    best = *x;
                }
            }
            expected.push(format!("{},{},{},{}", best.0, best.1, best.2, best.3));
        }
    }
    assert!(expected.len() > 100);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cars.csv");
    std::fs::write(
        &input,
        events
            .iter()
            .map(|e| format!("{},{},{},{}\n", e.0, e.1, e.2, e.3))
            .collect::<String>(),
    )
    .unwrap();
    for p in [1, 2] {
        let out = dir.path().join(format!("out-{p}"));
        run_example(
            "top_speed_windowing",
            &[
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "-D",
                &format!("parallelism.default={p}"),
            ],
        );
        assert_eq!(sorted(read_lines(&out)), sorted(expected.clone()), "p={p}");
    }
    // The simulated variant runs too.
    let out = run_example("top_speed_windowing", &["--records-per-car", "200"]);
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() > 10);
}

#[test]
fn fraud_detection_matches_the_model() {
    let mut rng = StdRng::seed_from_u64(8);
    let mut t = 0i64;
    let txs: Vec<(u64, i64, f64)> = (0..3000)
        .map(|_| {
            t += rng.random_range(0..20_000);
            let amount = match rng.random_range(0..100) {
                0..=14 => rng.random_range(0..100) as f64 / 100.0,
                15..=29 => 500.5 + rng.random_range(0..1000) as f64,
                _ => 1.0 + rng.random_range(0..400) as f64,
            };
            (rng.random_range(1..=6), t, amount)
        })
        .collect();
    // The model: a small transaction sets a flag; the next transaction of the account clears
    // it and alerts if it is large and within a minute; the watermark (max timestamp - 1)
    // clears flags a minute after they were set.
    let mut flags: BTreeMap<u64, i64> = BTreeMap::new();
    let mut expected = Vec::new();
    let mut max_ts = i64::MIN;
    for &(acc, ts, amount) in &txs {
        if let Some(small_at) = flags.remove(&acc)
            && amount > 500.0
            && ts - small_at <= 60_000
        {
            expected.push(acc.to_string());
        }
        if amount < 1.0 {
            flags.insert(acc, ts);
        }
        max_ts = max_ts.max(ts);
        flags.retain(|_, f| *f + 60_000 > max_ts - 1);
    }
    assert!(expected.len() > 10);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tx.csv");
    std::fs::write(
        &input,
        txs.iter()
            .map(|(a, t, m)| format!("{a},{t},{m}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = dir.path().join("alerts");
    run_example(
        "fraud_detection",
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "-D",
            "parallelism.default=3",
        ],
    );
    assert_eq!(sorted(read_lines(&out)), sorted(expected));
    // The generated variant runs too.
    run_example("fraud_detection", &["--transactions", "3000"]);
}

#[test]
fn region_failover_restarts_only_the_failed_subtask_at_any_parallelism() {
    let (records, keys) = (6_000i64, 7i64);
    for parallelism in [1u32, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        // In the last subtask's range: the others keep running when it fails.
        let fail_at = records - records / i64::from(parallelism) / 2;
        let out = run_example(
            "region_failover",
            &[
                "--output",
                dir.path().to_str().unwrap(),
                "--records",
                &records.to_string(),
                "--keys",
                &keys.to_string(),
                "--fail-at",
                &fail_at.to_string(),
                "-p",
                &parallelism.to_string(),
            ],
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("subtasks opened"));
        common::check_region_failover(dir.path(), records, keys, parallelism, parallelism - 1);
    }
}
