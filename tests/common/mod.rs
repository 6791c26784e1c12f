//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod window_oracle;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eddy::prelude::Collector;
use eddy::windowing::{ProcessWindowContext, ProcessWindowFunction, TimeWindow};
use eddy::{AggregateFunction, FunctionResult};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The path of a built example binary (cargo builds examples before it runs tests).
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    dir.join("examples").join(name)
}

/// Runs an example with arguments and returns its output; panics with its stderr if it fails.
pub fn run_example(name: &str, args: &[&str]) -> Output {
    let out = Command::new(example_bin(name))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run example {name}: {e}"));
    assert!(
        out.status.success(),
        "example {name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Random text: words from a small vocabulary, mixed case, punctuation, digits and some
/// non-ASCII letters.
pub fn random_text(seed: u64, lines: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "Stream",
        "flink",
        "EDDY",
        "rust",
        "window",
        "state",
        "key",
        "über",
        "naïve",
        "x1",
        "42",
        "a",
        "B",
        "time",
        "watermark",
    ];
    const SEPARATORS: &[&str] = &[" ", "  ", ", ", ". ", "--", "\t", "!", "'", "-", "_", ";"];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut text = String::new();
    for _ in 0..lines {
        let n = rng.random_range(0..12);
        for _ in 0..n {
            text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            text.push_str(SEPARATORS[rng.random_range(0..SEPARATORS.len())]);
        }
        text.push('\n');
    }
    text
}

/// The brute-force word count: lowercase, split on every non-alphanumeric character.
pub fn brute_force_counts(text: &str) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for w in text.to_lowercase().split(|c: char| !c.is_alphanumeric()) {
        if !w.is_empty() {
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Reads every `word,count` line of the part files in `dir`.
pub fn read_counts(dir: &Path) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            !name.starts_with('.'),
            "in-progress file left behind: {name}"
        );
        for line in std::fs::read_to_string(&path).expect("part file").lines() {
            let (w, c) = line.rsplit_once(',').expect("word,count");
            let prev = counts.insert(w.to_string(), c.parse::<i64>().expect("count"));
            assert!(prev.is_none(), "word {w} appears twice in the output");
        }
    }
    counts
}

/// Every line of the committed part files in `dir` (in-progress files, whose names start with
/// `.`, are left out); nothing if `dir` does not exist.
pub fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.expect("entry").path();
        if !in_progress(&path) {
            let text = std::fs::read_to_string(&path).expect("part file");
            lines.extend(text.lines().map(String::from));
        }
    }
    lines
}

/// The in-progress part files in `dir`.
pub fn in_progress_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.expect("entry").path())
        .filter(|p| in_progress(p))
        .map(|p| p.display().to_string())
        .collect()
}

fn in_progress(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Resident memory of this process in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS")
}

/// An event of the checkpoint tests: key, timestamp, value.
pub type KeyedEvent = (u32, i64, i64);

/// Counts and sums a window's values (of [`KeyedEvent`]s).
pub struct CountSum;

impl AggregateFunction<KeyedEvent, (u64, i64), (u64, i64)> for CountSum {
    fn create_accumulator(&self) -> (u64, i64) {
        (0, 0)
    }
    fn add(&self, e: KeyedEvent, acc: &mut (u64, i64)) {
        acc.0 += 1;
        acc.1 += e.2;
    }
    fn get_result(&self, acc: &(u64, i64)) -> (u64, i64) {
        *acc
    }
    fn merge(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

/// Formats a window's count and sum.
pub struct FormatWindow;

impl ProcessWindowFunction<(u64, i64), String, u32, TimeWindow> for FormatWindow {
    fn process(
        &mut self,
        key: &u32,
        ctx: &mut ProcessWindowContext<'_, TimeWindow>,
        elements: Vec<(u64, i64)>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        for (c, s) in elements {
            out.collect(format!("window {key} {} {c} {s}", ctx.window().start));
        }
        Ok(())
    }
}

/// Per key, of keyed running sums `(key, sum)`: how many were emitted, and the largest.
pub fn running_sums(out: Vec<(i64, i64)>) -> BTreeMap<i64, (usize, i64)> {
    let mut m: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    for (k, s) in out {
        let e = m.entry(k).or_default();
        e.0 += 1;
        e.1 = e.1.max(s);
    }
    m
}

/// What [`running_sums`] gives for exact running sums of `0..n` keyed by `x % keys`.
pub fn expected_sums(n: i64, keys: i64) -> BTreeMap<i64, (usize, i64)> {
    let mut m: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    for x in 0..n {
        let e = m.entry(x % keys).or_default();
        e.0 += 1;
        e.1 += x;
    }
    m
}

/// Checks the output of the `region_failover` example in `dir` — `records` numbers, running
/// sums over `keys` keys, a failure injected in the numbers pipeline's subtask `failed` at
/// `parallelism` — against brute force, and that only that subtask restarted.
pub fn check_region_failover(dir: &Path, records: i64, keys: i64, parallelism: u32, failed: u32) {
    let mut numbers: Vec<i64> = committed_lines(&dir.join("numbers"))
        .iter()
        .map(|l| l.parse().expect("a number"))
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..records).collect::<Vec<_>>(),
        "parallelism {parallelism}: every number committed exactly once"
    );
    // Per key: how many running sums, and the last.
    let sums = running_sums(
        committed_lines(&dir.join("sums"))
            .iter()
            .map(|line| {
                let (k, s) = line.split_once(',').expect("key,sum");
                (k.parse().expect("key"), s.parse().expect("sum"))
            })
            .collect(),
    );
    assert_eq!(
        sums,
        expected_sums(records, keys),
        "parallelism {parallelism}: the running sums"
    );
    let mut opens: Vec<String> = std::fs::read_dir(dir.join("opens"))
        .expect("opens")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    opens.sort();
    let mut want: Vec<String> = (0..parallelism)
        .flat_map(|s| [format!("numbers-{s}-0"), format!("sums-{s}-0")])
        .collect();
    let restarted: Vec<&String> = opens
        .iter()
        .filter(|o| o.starts_with(&format!("numbers-{failed}-")) && !o.ends_with("-0"))
        .collect();
    assert_eq!(
        restarted.len(),
        1,
        "parallelism {parallelism}: the failed subtask restarted once: {opens:?}"
    );
    want.push(restarted[0].clone());
    want.sort();
    assert_eq!(
        opens, want,
        "parallelism {parallelism}: nothing but the failed subtask restarted"
    );
}

/// Events for the `event_time_windows` example in a CSV file in `dir`, and the windows a
/// brute-force model fires for them (sliding 200/50, out-of-orderness 20, lateness 10).
pub fn window_input(dir: &Path, seed: u64, n: usize) -> (PathBuf, Vec<String>) {
    let events = window_oracle::random_events(seed, n, 6, 40);
    let path = dir.join(format!("events-{seed}.csv"));
    let text: String = events
        .iter()
        .map(|e| format!("{},{},{}\n", e.key, e.ts, e.value))
        .collect();
    std::fs::write(&path, text).expect("write the events");
    let (fired, _) = window_oracle::run(&events, window_oracle::Assigner::Sliding(200, 50), 20, 10);
    let expected = window_oracle::sorted(
        fired
            .iter()
            .map(|(k, s, e, c, sum)| format!("{k},{s},{e},{c},{sum}"))
            .collect(),
    );
    (path, expected)
}

/// Arguments of an `event_time_windows` run named `run` over `input`, checkpointing every
/// 100 ms and reading `rate` records/s; returns its output directory and the arguments.
pub fn window_args(dir: &Path, input: &Path, run: &str, rate: u32) -> (PathBuf, Vec<String>) {
    let out = dir.join(run).join("out");
    let path = |p: &Path| p.display().to_string();
    let args = [
        "--input".into(),
        path(input),
        "--output".into(),
        path(&out),
        "--late-output".into(),
        path(&dir.join(run).join("late")),
        "--window".into(),
        "sliding:200:50".into(),
        "--out-of-orderness".into(),
        "20".into(),
        "--allowed-lateness".into(),
        "10".into(),
        "--watermarks".into(),
        "per-record".into(),
        "--checkpoint-interval".into(),
        "100".into(),
        "--checkpoint-dir".into(),
        path(&dir.join(run).join("checkpoints")),
        "--source-rate".into(),
        rate.to_string(),
    ];
    (out, args.to_vec())
}
