//! Unaligned checkpoints: under back pressure, barriers overtake the records queued in the
//! channels, which go into the checkpoint as in-flight data and are read again on restore. A
//! failure injected once checkpoints hold in-flight data must leave the output (through the
//! exactly-once collect sink) equal to a brute-force oracle, at parallelism 1, 2 and 4, on one-
//! and two-input tasks; the same with an aligned-checkpoint timeout, after which tasks switch
//! from aligned to unaligned; and a checkpoint holding in-flight data cannot be restored at
//! another parallelism.

mod common;

use common::{CountSum, FormatWindow};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy::prelude::*;
use eddy::windowing::TumblingEventTimeWindows;
use eddy::{
    FunctionResult, KeyedCoProcessFunction, KeyedContext, ValueState, ValueStateDescriptor,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One input event: key, timestamp, value.
type Event = (u32, i64, i64);

const MAX_DISORDER: i64 = 20;
const WINDOW: i64 = 40;
const EVERY: u64 = 4;

/// Events with timestamps out of order by less than `MAX_DISORDER`.
fn events(seed: u64, n: usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 0i64;
    (0..n)
        .map(|_| {
            t += rng.random_range(0..3);
            let ts = (t - rng.random_range(0..MAX_DISORDER)).max(0);
            (rng.random_range(0..11), ts, rng.random_range(1..100))
        })
        .collect()
}

/// The expected output: every `EVERY`th count per key of even and of odd values (the two
/// inputs of the co-process function), and each tumbling window's count and sum per key.
fn oracle(events: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    let mut counts: BTreeMap<(bool, u32), u64> = BTreeMap::new();
    let mut windows: BTreeMap<(u32, i64), (u64, i64)> = BTreeMap::new();
    for &(k, ts, v) in events {
        let even = v % 2 == 0;
        let c = counts.entry((even, k)).or_default();
        *c += 1;
        if c.is_multiple_of(EVERY) {
            out.push(format!("{} {k} {c}", if even { "even" } else { "odd" }));
        }
        let w = windows.entry((k, ts - ts.rem_euclid(WINDOW))).or_default();
        w.0 += 1;
        w.1 += v;
    }
    for ((k, start), (c, s)) in windows {
        out.push(format!("window {k} {start} {c} {s}"));
    }
    out.sort();
    out
}

/// Counts even values (first input) and odd values (second input) per key, slowly, and fails
/// once when `armed`.
struct SlowCounts {
    even: Option<ValueState<u64>>,
    odd: Option<ValueState<u64>>,
    armed: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    /// Time per record: the parallelism's multiple of 100 µs, so that the job takes as long
    /// at every parallelism.
    pace: Duration,
}

impl SlowCounts {
    fn count(
        &mut self,
        even: bool,
        ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        // Slower than the source: the channels in front of this task fill up.
        std::thread::sleep(self.pace);
        if self.armed.load(Ordering::SeqCst) && !self.fired.swap(true, Ordering::SeqCst) {
            panic!("injected failure while checkpoints hold in-flight data");
        }
        let state = if even { &self.even } else { &self.odd };
        let state = state.as_ref().ok_or("not open")?;
        let c = state.value()?.unwrap_or_default() + 1;
        state.update(c)?;
        if c.is_multiple_of(EVERY) {
            let side = if even { "even" } else { "odd" };
            out.collect(format!("{side} {} {c}", ctx.get_current_key()));
        }
        Ok(())
    }
}

impl KeyedCoProcessFunction<u32, Event, Event, String> for SlowCounts {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.even = Some(ctx.get_state(&ValueStateDescriptor::<u64>::new("even"))?);
        self.odd = Some(ctx.get_state(&ValueStateDescriptor::<u64>::new("odd"))?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        _: Event,
        ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        self.count(true, ctx, out)
    }

    fn process_element2(
        &mut self,
        _: Event,
        ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        self.count(false, ctx, out)
    }
}

fn config(dir: &std::path::Path, extra: &[(&str, &str)]) -> Configuration {
    let mut conf = Configuration::new();
    for (k, v) in [
        ("execution.checkpointing.interval", "20 ms"),
        ("execution.checkpointing.unaligned.enabled", "true"),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "3"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        // Small buffers: a full channel holds a few hundred records.
        ("taskmanager.memory.segment-size", "1kb"),
    ] {
        conf.set_string(k, v);
    }
    for (k, v) in extra {
        conf.set_string(*k, *v);
    }
    conf.set_string(
        "execution.checkpointing.dir",
        dir.join("checkpoints").display().to_string(),
    );
    conf
}

/// The job: a source at parallelism 1, a slow keyed co-process function over even and odd
/// values, and tumbling windows, at `parallelism`, into the exactly-once collect sink.
fn job(
    env: &StreamExecutionEnvironment,
    events: &[Event],
    armed: &Arc<AtomicBool>,
) -> eddy::connectors::collect::CollectHandle<String> {
    job_with(env, events, armed, false)
}

/// [`job`]; with `slow_map`, the windows' input also passes a slow map, a one-input task
/// that takes barriers between the records of the batch it works on.
fn job_with(
    env: &StreamExecutionEnvironment,
    events: &[Event],
    armed: &Arc<AtomicBool>,
    slow_map: bool,
) -> eddy::connectors::collect::CollectHandle<String> {
    let strategy =
        WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(MAX_DISORDER as u64))
            .with_timestamp_assigner(|e: &Event, _| e.1);
    let input = env
        .from_collection(events.to_vec())
        .set_parallelism(1)
        .assign_timestamps_and_watermarks(strategy)
        .set_parallelism(1);
    let even = input.clone().filter(|e: &Event| e.2 % 2 == 0);
    let odd = input.clone().filter(|e: &Event| e.2 % 2 == 1);
    let fired = Arc::new(AtomicBool::new(false));
    let armed = armed.clone();
    let pace = Duration::from_micros(100 * u64::from(env.get_parallelism()));
    let counts = even
        .key_by(|e: &Event| e.0)
        .connect(odd.key_by(|e: &Event| e.0))
        .process(move || SlowCounts {
            even: None,
            odd: None,
            armed: armed.clone(),
            fired: fired.clone(),
            pace,
        });
    let window_input = if slow_map {
        input.rebalance().map(move |e: Event| {
            std::thread::sleep(pace);
            e
        })
    } else {
        input
    };
    let windows = window_input
        .key_by(|e: &Event| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(
            WINDOW as u64,
        )))
        .aggregate_with(CountSum, || FormatWindow);
    windows.union([counts]).collect_async()
}

/// Waits until a checkpoint holding in-flight data has completed, then arms the fault (if
/// `fail`); returns that checkpoint's id, or `None` if the job ended first.
fn wait_for_in_flight_data(
    client: &eddy::JobClient,
    armed: &AtomicBool,
    fail: bool,
) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let stats = client.checkpoint_statistics();
        if let Some(c) = stats.history.iter().find(|c| {
            c.status == eddy::runtime::checkpoint::coordinator::CheckpointStatus::Completed
                && c.persisted_data > 0
        }) {
            armed.store(fail, Ordering::SeqCst);
            return Some(c.id);
        }
        if client.wait_timeout(Duration::from_millis(2)).is_some() {
            return None;
        }
    }
    None
}

/// Runs the job at `parallelism` with a failure once a checkpoint holds in-flight data;
/// returns the sorted output.
fn run_with_failure(
    events: &[Event],
    parallelism: u32,
    extra: &[(&str, &str)],
    slow_map: bool,
) -> Vec<String> {
    let what = format!("p={parallelism} {extra:?}");
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::with_configuration(config(dir.path(), extra));
    env.set_parallelism(parallelism);
    let armed = Arc::new(AtomicBool::new(false));
    let handle = job_with(&env, events, &armed, slow_map);
    let client = env.execute_async("unaligned").unwrap();
    let with_data = wait_for_in_flight_data(&client, &armed, true);
    let result = client.get_job_execution_result();
    result.unwrap_or_else(|e| panic!("{what}: {e}"));
    let stats = client.checkpoint_statistics();
    eprintln!(
        "{what}: checkpoint with in-flight data {with_data:?}; completed {} failed {} restored \
         {:?}; persisted per checkpoint {:?}",
        stats.completed,
        stats.failed,
        stats.latest_restored,
        stats
            .history
            .iter()
            .map(|c| (c.id, c.unaligned, c.persisted_data))
            .collect::<Vec<_>>()
    );
    assert!(
        with_data.is_some(),
        "{what}: no checkpoint held in-flight data"
    );
    assert!(stats.restored >= 1, "{what}: the job did not restore");
    let mut out = handle.take();
    out.sort();
    out
}

#[test]
fn recovery_from_unaligned_checkpoints_gives_the_oracles_output() {
    let events = events(7, 6000);
    let expected = oracle(&events);
    for p in [1, 2, 4] {
        let out = run_with_failure(&events, p, &[], false);
        assert_eq!(out.len(), expected.len(), "p={p}");
        assert!(out == expected, "p={p}: output differs");
    }
}

#[test]
fn a_one_input_task_takes_barriers_between_the_records_of_a_batch() {
    let events = events(10, 6000);
    let expected = oracle(&events);
    for p in [1, 2] {
        let out = run_with_failure(&events, p, &[], true);
        assert!(out == expected, "p={p}: output differs");
    }
}

#[test]
fn an_alignment_that_times_out_switches_to_unaligned() {
    let events = events(8, 6000);
    let expected = oracle(&events);
    let timeout = [("execution.checkpointing.aligned-checkpoint-timeout", "5 ms")];
    let out = run_with_failure(&events, 2, &timeout, false);
    assert!(out == expected, "output differs");
}

#[test]
fn a_checkpoint_with_in_flight_data_restores_only_at_its_parallelism() {
    let events = events(9, 6000);
    let dir = tempfile::tempdir().unwrap();
    let retain = [(
        "execution.checkpointing.externalized-checkpoint-retention",
        "RETAIN_ON_CANCELLATION",
    )];
    let env = StreamExecutionEnvironment::with_configuration(config(dir.path(), &retain));
    env.set_parallelism(2);
    let armed = Arc::new(AtomicBool::new(false));
    let _handle = job(&env, &events, &armed);
    let client = env.execute_async("unaligned").unwrap();
    let id = wait_for_in_flight_data(&client, &armed, false).expect("in-flight data");
    client.cancel();
    let _ = client.get_job_execution_result();
    let path = client
        .checkpoint_statistics()
        .history
        .iter()
        .find(|c| c.id == id)
        .and_then(|c| c.external_path.clone())
        .expect("the checkpoint's path");

    let mut conf = config(dir.path(), &[]);
    conf.set_string("execution.savepoint.path", &path);
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(3);
    let _handle = job(&env, &events, &armed);
    let err = env
        .execute("rescaled")
        .expect_err("restoring in-flight data at another parallelism must fail")
        .to_string();
    assert!(
        err.contains("in-flight data") && err.contains("parallelism 2"),
        "the error says why: {err}"
    );
}
