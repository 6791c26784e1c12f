//! Region failover (`jobmanager.execution.failover-strategy: region`, the default): a failed
//! task restarts with its pipelined region — the tasks it exchanges data with — while the
//! job's other regions keep running, and the output stays exactly once.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{expected_sums, running_sums};
use eddy::FunctionResult;
use eddy::prelude::*;

/// Who opened: `(subtask, attempt)`, in order.
type Opens = Arc<Mutex<Vec<(u32, u32)>>>;

/// A map that records each open, slows its input down, and fails once at `fail_at`.
#[derive(Clone)]
struct Probe {
    opens: Opens,
    fail_at: Option<i64>,
    fired: Arc<AtomicBool>,
}

impl Probe {
    fn new(fail_at: Option<i64>) -> Self {
        Probe {
            opens: Opens::default(),
            fail_at,
            fired: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl RichMapFunction<i64, i64> for Probe {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.opens
            .lock()
            .unwrap()
            .push((ctx.get_index_of_this_subtask(), ctx.get_attempt_number()));
        Ok(())
    }

    fn map(&mut self, x: i64) -> FunctionResult<i64> {
        if x % 8 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        if self.fail_at == Some(x) && !self.fired.swap(true, Ordering::SeqCst) {
            return Err("injected failure".into());
        }
        Ok(x)
    }
}

fn config(dir: &Path, parallelism: u32, strategy: &str) -> Configuration {
    let mut conf = Configuration::new();
    for (k, v) in [
        ("execution.checkpointing.interval", "20 ms"),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "3"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        ("jobmanager.execution.failover-strategy", strategy),
        // Small batches: sources see checkpoint triggers often.
        ("taskmanager.memory.segment-size", "1kb"),
    ] {
        conf.set_string(k, v);
    }
    conf.set_string("parallelism.default", parallelism.to_string());
    conf.set_string(
        "execution.checkpointing.dir",
        dir.join("checkpoints").display().to_string(),
    );
    conf
}

/// Every line of the finished part files in `dir`, as numbers, sorted.
fn committed_numbers(dir: &Path) -> Vec<i64> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        out.extend(text.lines().map(|l| l.parse::<i64>().unwrap()));
    }
    out.sort_unstable();
    out
}

struct Run {
    /// Opens of the failing pipeline's map and of the other pipeline's.
    failing: Vec<(u32, u32)>,
    steady: Vec<(u32, u32)>,
}

/// One job of two independent pipelines at `parallelism`: `0..n` through a map that fails
/// once at `fail_at` into an exactly-once file sink (forward edges only: a region per
/// subtask), and keyed running sums of `0..m` (one region). Checks both outputs against
/// the brute-force results and returns who opened.
fn run(parallelism: u32, strategy: &str, n: i64, m: i64, fail_at: i64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let env =
        StreamExecutionEnvironment::with_configuration(config(dir.path(), parallelism, strategy));
    let failing = Probe::new(Some(fail_at));
    let steady = Probe::new(None);
    {
        let probe = failing.clone();
        env.from_sequence(0, n - 1)
            .rich_map(move || probe.clone())
            .sink_to(FileSink::for_row_format(
                &out,
                SimpleStringEncoder::default(),
            ));
    }
    let sums = {
        let probe = steady.clone();
        env.from_sequence(0, m - 1)
            .rich_map(move || probe.clone())
            .map(|x| (x % 5, x))
            .key_by(|v: &(i64, i64)| v.0)
            .reduce(|a, b| (a.0, a.1 + b.1))
            .collect_async()
    };
    let client = env.execute_async("two pipelines").unwrap();
    client
        .wait_timeout(Duration::from_secs(120))
        .expect("the job ends")
        .expect("the job finishes");

    assert_eq!(
        committed_numbers(&out),
        (0..n).collect::<Vec<_>>(),
        "{strategy} failover at parallelism {parallelism}: every number committed exactly once"
    );
    assert_eq!(
        running_sums(sums.take()),
        expected_sums(m, 5),
        "{strategy} failover at parallelism {parallelism}: the other pipeline's running sums"
    );
    assert!(
        failing.fired.load(Ordering::SeqCst),
        "the failure was injected"
    );
    let (failing, steady) = (
        failing.opens.lock().unwrap().clone(),
        steady.opens.lock().unwrap().clone(),
    );
    Run { failing, steady }
}

/// The subtask of `from_sequence(0, n - 1)` at `parallelism` that reads `x`.
fn reader_of(x: i64, n: i64, parallelism: u32) -> u32 {
    let p = i64::from(parallelism);
    (0..p)
        .find(|i| x < (i + 1) * n / p)
        .map_or(parallelism - 1, |i| i as u32)
}

#[test]
fn a_failure_in_one_of_two_independent_pipelines_leaves_the_other_running() {
    let (n, m) = (3_000, 6_000);
    for parallelism in [1u32, 2, 4] {
        // The failure hits subtask 0 of the failing pipeline: its restart must leave the
        // part files its running neighbours are writing alone.
        let fail_at = n / i64::from(parallelism) / 2;
        let failed = reader_of(fail_at, n, parallelism);
        let r = run(parallelism, "region", n, m, fail_at);
        let first: Vec<(u32, u32)> = (0..parallelism).map(|s| (s, 0)).collect();
        let mut steady = r.steady.clone();
        steady.sort_unstable();
        assert_eq!(
            steady, first,
            "parallelism {parallelism}: the other pipeline's tasks were never restarted"
        );
        assert_eq!(
            r.failing.len(),
            parallelism as usize + 1,
            "parallelism {parallelism}: only the failed subtask restarted: {:?}",
            r.failing
        );
        let restarted = r.failing.last().copied().unwrap();
        assert_eq!(restarted.0, failed, "the failed subtask restarted");
        assert!(
            restarted.1 >= 1,
            "under a new attempt number: {restarted:?}"
        );
        let mut before: Vec<(u32, u32)> = r.failing[..parallelism as usize].to_vec();
        before.sort_unstable();
        assert_eq!(before, first);
    }
}

#[test]
fn full_failover_restarts_every_task() {
    let (n, m) = (3_000, 6_000);
    let parallelism = 2;
    let r = run(parallelism, "full", n, m, n / 4);
    for (who, opens) in [("failing", &r.failing), ("steady", &r.steady)] {
        let restarted: Vec<u32> = opens
            .iter()
            .filter(|(_, attempt)| *attempt >= 1)
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(
            restarted.len(),
            parallelism as usize,
            "every subtask of the {who} pipeline restarted: {opens:?}"
        );
    }
}

#[test]
fn an_unknown_failover_strategy_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_configuration(config(dir.path(), 1, "regional"));
    env.from_sequence(0, 9).collect_async();
    let err = env
        .execute_async("bad strategy")
        .map(|c| c.get_job_execution_result());
    let text = match err {
        Err(e) => e.to_string(),
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => panic!("a job with an unknown failover strategy ran"),
    };
    assert!(
        text.contains("jobmanager.execution.failover-strategy") && text.contains("regional"),
        "{text}"
    );
}
