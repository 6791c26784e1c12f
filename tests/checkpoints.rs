//! Exactly-once after failures: failures are injected in a user function, during a snapshot,
//! during a restore, and in `close`, at parallelism 1, 2 and 4 and on both state backends; the
//! output (through the exactly-once collect sink) must equal the oracle every time.

mod common;

use common::{CountSum, FormatWindow};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy::prelude::*;
use eddy::windowing::TumblingEventTimeWindows;
use eddy::{FunctionResult, KeyedContext, KeyedProcessFunction, ValueState, ValueStateDescriptor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize, Serializer};

/// One input event: key, timestamp, value.
type Event = (u32, i64, i64);

/// Events with timestamps out of order by at most `MAX_DISORDER`.
fn events(seed: u64, n: usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 0i64;
    (0..n)
        .map(|_| {
            t += rng.random_range(0..4);
            let ts = (t - rng.random_range(0..MAX_DISORDER)).max(0);
            (rng.random_range(0..13), ts, rng.random_range(1..100))
        })
        .collect()
}

const MAX_DISORDER: i64 = 20;
const WINDOW: i64 = 50;
const TIMER_DELAY: i64 = 30;
const EVERY: u64 = 5;

/// The expected output: window results, running counts every `EVERY` events per key, and one
/// timer firing per key and distinct `timestamp + TIMER_DELAY`.
fn oracle(events: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    let mut windows: BTreeMap<(u32, i64), (u64, i64)> = BTreeMap::new();
    let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
    let mut timers = std::collections::BTreeSet::new();
    for &(k, ts, v) in events {
        let w = windows.entry((k, ts - ts.rem_euclid(WINDOW))).or_default();
        w.0 += 1;
        w.1 += v;
        let c = counts.entry(k).or_default();
        *c += 1;
        if c.is_multiple_of(EVERY) {
            out.push(format!("count {k} {c}"));
        }
        timers.insert((k, ts + TIMER_DELAY));
    }
    for ((k, start), (c, s)) in windows {
        out.push(format!("window {k} {start} {c} {s}"));
    }
    for (k, t) in timers {
        out.push(format!("timer {k} {t}"));
    }
    out.sort();
    out
}

/// Where and when to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A map function panics.
    UserFunction,
    /// Serializing keyed state fails while a snapshot is taken.
    Snapshot,
    /// A map function panics, and then `open` fails once in the restored attempt.
    Restore,
    /// `close` fails at the end of the job.
    Close,
}

/// The run of the snapshot test in progress. Values remember the run that made them, so that
/// a snapshot of an earlier run still being written cannot take the fault meant for this one.
static RUN: AtomicU64 = AtomicU64::new(1);
/// Set to the current run once the job has completed two checkpoints in the snapshot test: the
/// next serialization of one of that run's [`PoisonCount`]s fails. Only that test uses the type.
static SNAPSHOT_FAULT: AtomicU64 = AtomicU64::new(0);

/// A per-key count.
trait Counter:
    Clone + Default + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    fn get(&self) -> u64;
    fn of(n: u64) -> Self;
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Count(u64);

impl Counter for Count {
    fn get(&self) -> u64 {
        self.0
    }
    fn of(n: u64) -> Self {
        Count(n)
    }
}

/// A count whose serialization fails once when [`SNAPSHOT_FAULT`] names its run.
#[derive(Clone, Debug)]
struct PoisonCount {
    count: u64,
    run: u64,
}

impl Default for PoisonCount {
    fn default() -> Self {
        PoisonCount::of(0)
    }
}

impl Serialize for PoisonCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if SNAPSHOT_FAULT
            .compare_exchange(self.run, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Err(serde::ser::Error::custom("injected serialization failure"));
        }
        s.serialize_u64(self.count)
    }
}

impl<'de> Deserialize<'de> for PoisonCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PoisonCount::of(u64::deserialize(d)?))
    }
}

impl Counter for PoisonCount {
    fn get(&self) -> u64 {
        self.count
    }
    fn of(n: u64) -> Self {
        PoisonCount {
            count: n,
            run: RUN.load(Ordering::SeqCst),
        }
    }
}

/// Counts per key, emits every `EVERY`th count, and registers a timer per event.
struct CountAndTime<C: Counter> {
    count: Option<ValueState<C>>,
}

impl<C: Counter> KeyedProcessFunction<u32, Event, String> for CountAndTime<C> {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.count = Some(ctx.get_state(&ValueStateDescriptor::<C>::new("count"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        e: Event,
        ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        let state = self.count.as_ref().ok_or("not open")?;
        let c = state.value()?.unwrap_or_default().get() + 1;
        state.update(C::of(c))?;
        if c.is_multiple_of(EVERY) {
            out.collect(format!("count {} {c}", e.0));
        }
        ctx.timer_service()
            .register_event_time_timer(e.1 + TIMER_DELAY)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        out.collect(format!("timer {} {timestamp}", ctx.get_current_key()));
        Ok(())
    }
}

/// A map that fails once in `open` of a restored attempt, or once in `close`.
#[derive(Clone)]
struct Faulty {
    fault: Fault,
    fired: Arc<AtomicBool>,
}

impl RichMapFunction<String, String> for Faulty {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        if self.fault == Fault::Restore
            && ctx.is_restored()
            && !self.fired.swap(true, Ordering::SeqCst)
        {
            return Err("injected failure while restoring".into());
        }
        Ok(())
    }

    fn map(&mut self, value: String) -> FunctionResult<String> {
        Ok(value)
    }

    fn close(&mut self) -> FunctionResult<()> {
        if self.fault == Fault::Close && !self.fired.swap(true, Ordering::SeqCst) {
            return Err("injected failure in close".into());
        }
        Ok(())
    }
}

fn config(dir: &std::path::Path, backend: &str) -> Configuration {
    let mut conf = Configuration::new();
    for (k, v) in [
        ("execution.checkpointing.interval", "25 ms"),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "5"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        ("state.backend.type", backend),
        ("execution.checkpointing.incremental", "true"),
        // Small batches: sources see checkpoint triggers often.
        ("taskmanager.memory.segment-size", "1kb"),
    ] {
        conf.set_string(k, v);
    }
    conf.set_string(
        "execution.checkpointing.dir",
        dir.join("checkpoints").display().to_string(),
    );
    conf.set_string("io.tmp.dirs", dir.join("tmp").display().to_string());
    conf
}

/// Runs the job at `parallelism` on `backend` with `fault`; returns its output and how many
/// times it restored.
fn run(events: &[Event], parallelism: u32, backend: &str, fault: Fault) -> (Vec<String>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_configuration(config(dir.path(), backend));
    env.set_parallelism(parallelism);
    let armed = Arc::new(AtomicBool::new(false));
    let user_fault = Arc::new(AtomicBool::new(false));
    let strategy =
        WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(MAX_DISORDER as u64))
            .with_timestamp_assigner(|e: &Event, _| e.1);
    let midpoint = events[events.len() / 2].1;
    let three_quarters = events[events.len() * 3 / 4].1;
    let snapshot_fault = fault == Fault::Snapshot;
    let input = env
        .from_collection(events.to_vec())
        .map({
            let armed = armed.clone();
            move |e: Event| {
                // Slow enough for several checkpoints while the job runs; the second half waits
                // for the fault to be armed, so that it always strikes while records flow.
                if e.1 >= midpoint && !armed.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                } else if snapshot_fault && e.1 >= three_quarters {
                    // The last quarter crawls until a snapshot has struck the armed fault, so the
                    // job cannot end first however slowly checkpoints run on a loaded machine.
                    // Each record waits a little only: this map is chained to the source, and
                    // barriers enter between the source's batches.
                    let deadline = Instant::now() + Duration::from_millis(20);
                    while SNAPSHOT_FAULT.load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                } else if e.1 % 8 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                e
            }
        })
        .set_parallelism(1)
        .assign_timestamps_and_watermarks(strategy)
        .set_parallelism(1);
    let fails_in_user_code = matches!(fault, Fault::UserFunction | Fault::Restore);
    let checked = input.map({
        let (armed, fired) = (armed.clone(), user_fault.clone());
        move |e: Event| {
            if fails_in_user_code
                && armed.load(Ordering::SeqCst)
                && !fired.swap(true, Ordering::SeqCst)
            {
                panic!("injected failure in a user function");
            }
            e
        }
    });
    let windows = checked
        .clone()
        .key_by(|e: &Event| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(
            WINDOW as u64,
        )))
        .aggregate_with(CountSum, || FormatWindow);
    let keyed = checked.key_by(|e: &Event| e.0);
    let counts = if fault == Fault::Snapshot {
        keyed.process(|| CountAndTime::<PoisonCount> { count: None })
    } else {
        keyed.process(|| CountAndTime::<Count> { count: None })
    };
    let fired = Arc::new(AtomicBool::new(false));
    let handle = windows
        .union([counts])
        .rich_map(move || Faulty {
            fault,
            fired: fired.clone(),
        })
        .collect_async();
    let client = env.execute_async("faults").unwrap();
    // Arm the fault once two checkpoints have completed.
    loop {
        if client.checkpoint_statistics().completed >= 2 {
            armed.store(true, Ordering::SeqCst);
            if fault == Fault::Snapshot {
                SNAPSHOT_FAULT.store(RUN.load(Ordering::SeqCst), Ordering::SeqCst);
            }
            break;
        }
        if client.wait_timeout(Duration::from_millis(2)).is_some() {
            break;
        }
    }
    let result = client.get_job_execution_result();
    // Only the snapshot-fault test touches the shared fault flag and run counter: the tests of
    // this file run concurrently.
    let fault_left = snapshot_fault && SNAPSHOT_FAULT.swap(0, Ordering::SeqCst) != 0;
    assert!(
        !fault_left,
        "{fault:?} p={parallelism} {backend}: no snapshot struck the armed fault"
    );
    if snapshot_fault {
        RUN.fetch_add(1, Ordering::SeqCst);
    }
    result.unwrap_or_else(|e| panic!("{fault:?} p={parallelism} {backend}: {e}"));
    let stats = client.checkpoint_statistics();
    eprintln!(
        "{fault:?} p={parallelism} {backend}: completed {} failed {} restored {} last failure {:?}",
        stats.completed,
        stats.failed,
        stats.restored,
        stats
            .latest_failed
            .as_ref()
            .and_then(|f| f.failure_message.clone())
    );
    let mut out = handle.take();
    out.sort();
    (out, client.checkpoint_statistics().restored)
}

fn check(fault: Fault) {
    let events = events(fault as u64 + 1, 1500);
    let expected = oracle(&events);
    for backend in ["hashmap", "lsm"] {
        for p in [1, 2, 4] {
            let (out, restored) = run(&events, p, backend, fault);
            let want_restores = if fault == Fault::Restore { 2 } else { 1 };
            assert!(
                restored >= want_restores,
                "{fault:?} p={p} {backend}: restored {restored} times"
            );
            assert_eq!(out.len(), expected.len(), "{fault:?} p={p} {backend}");
            assert!(out == expected, "{fault:?} p={p} {backend}: output differs");
        }
    }
}

#[test]
fn exactly_once_after_a_failure_in_a_user_function() {
    check(Fault::UserFunction);
}

#[test]
fn exactly_once_after_a_failure_during_a_snapshot() {
    check(Fault::Snapshot);
}

#[test]
fn exactly_once_after_a_restore_that_fails_once() {
    check(Fault::Restore);
}

#[test]
fn exactly_once_after_a_failure_in_close() {
    check(Fault::Close);
}
