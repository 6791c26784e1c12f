//! Checkpoints, failures and recovery: output equals the oracle after injected failures.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use eddy::prelude::*;

fn env(
    parallelism: u32,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> StreamExecutionEnvironment {
    let mut conf = Configuration::new();
    conf.set_string("execution.checkpointing.interval", "20 ms");
    conf.set_string("execution.checkpointing.dir", dir.display().to_string());
    conf.set_string("restart-strategy.type", "fixed-delay");
    conf.set_string("restart-strategy.fixed-delay.attempts", "5");
    conf.set_string("restart-strategy.fixed-delay.delay", "10 ms");
    for (k, v) in extra {
        conf.set_string(*k, *v);
    }
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(parallelism);
    env
}

/// Fails once, the first time the shared counter reaches `at`.
#[derive(Clone)]
struct FailOnce {
    seen: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    at: u64,
}

impl FailOnce {
    fn new(at: u64) -> Self {
        FailOnce {
            seen: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicBool::new(false)),
            at,
        }
    }

    fn check(&self) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.at
            && !self.failed.swap(true, Ordering::SeqCst)
        {
            panic!("injected failure");
        }
    }
}

fn handle_failed(f: &FailOnce) -> bool {
    f.failed.load(Ordering::SeqCst)
}

#[test]
fn keyed_sums_are_exactly_once_after_a_failure() {
    for p in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let env = env(p, dir.path(), &[]);
        let fail = FailOnce::new(3_000);
        let n: i64 = 6_000;
        let handle = env
            .from_sequence(1, n)
            .map(|x| {
                if x % 64 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                (x % 7, x)
            })
            .key_by(|t: &(i64, i64)| t.0)
            .reduce(|a, b| (a.0, a.1 + b.1))
            .map({
                let fail = fail.clone();
                move |x| {
                    fail.check();
                    x
                }
            })
            .collect_async();
        let client = env.execute_async("exactly once sums").unwrap();
        client.get_job_execution_result().unwrap();
        assert!(handle_failed(&fail), "p={p}: the failure was injected");
        let stats = client.checkpoint_statistics();
        eprintln!(
            "p={p}: {} checkpoints completed, {} failed, restored {:?}",
            stats.completed, stats.failed, stats.latest_restored
        );
        assert!(stats.completed >= 1, "p={p}: {stats:?}");
        // Exactly one output per input, per key; the largest is the key's total.
        let mut got: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (k, sum) in handle.take() {
            let e = got.entry(k).or_default();
            e.0 += 1;
            e.1 = e.1.max(sum);
        }
        let mut want: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for x in 1..=n {
            let e = want.entry(x % 7).or_default();
            e.0 += 1;
            e.1 += x;
        }
        assert_eq!(got, want, "p={p}");
    }
}
