//! Window results against a brute-force model of Flink's semantics, on random out-of-order
//! input: every assigner, with and without allowed lateness, both window operators (shared
//! panes for incremental aggregation, the general operator for process functions), at
//! parallelism 1, 2 and 4.

mod common;

use std::time::Duration;

use common::window_oracle::{self, Assigner, Event, Firing, sorted};
use eddy::prelude::*;
use eddy::watermark::{WatermarkGenerator, WatermarkOutput};
use eddy::windowing::{
    EventTimeSessionWindows, ProcessWindowContext, ProcessWindowFunction, SlidingEventTimeWindows,
    TimeWindow, TumblingEventTimeWindows, WindowedStream,
};
use eddy::{AggregateFunction, FunctionResult, OutputTag};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Ev {
    key: String,
    ts: i64,
    value: i64,
}

struct PerRecord(i64, i64);

impl WatermarkGenerator<Ev> for PerRecord {
    fn on_event(&mut self, _: &Ev, ts: i64, out: &mut WatermarkOutput) {
        self.0 = self.0.max(ts);
        out.emit_watermark(eddy::runtime::element::Watermark(self.0 - self.1 - 1));
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

struct CountSum;

impl AggregateFunction<Ev, (u64, i64), (u64, i64)> for CountSum {
    fn create_accumulator(&self) -> (u64, i64) {
        (0, 0)
    }
    fn add(&self, e: Ev, acc: &mut (u64, i64)) {
        acc.0 += 1;
        acc.1 += e.value;
    }
    fn get_result(&self, acc: &(u64, i64)) -> (u64, i64) {
        *acc
    }
    fn merge(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

#[derive(Clone)]
struct Label;

impl ProcessWindowFunction<(u64, i64), Firing, String, TimeWindow> for Label {
    fn process(
        &mut self,
        key: &String,
        ctx: &mut ProcessWindowContext<'_, TimeWindow>,
        elements: Vec<(u64, i64)>,
        out: &mut Collector<'_, Firing>,
    ) -> FunctionResult<()> {
        for (c, s) in elements {
            out.collect((key.clone(), ctx.window().start, ctx.window().end, c, s));
        }
        Ok(())
    }
}

#[derive(Clone)]
struct CountAll;

impl ProcessWindowFunction<Ev, Firing, String, TimeWindow> for CountAll {
    fn process(
        &mut self,
        key: &String,
        ctx: &mut ProcessWindowContext<'_, TimeWindow>,
        elements: Vec<Ev>,
        out: &mut Collector<'_, Firing>,
    ) -> FunctionResult<()> {
        let w = ctx.window();
        out.collect((
            key.clone(),
            w.start,
            w.end,
            elements.len() as u64,
            elements.iter().map(|e| e.value).sum(),
        ));
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Path {
    /// `aggregate_with`: shared panes for tumbling and sliding windows.
    Incremental,
    /// `process`: the general operator with every element kept.
    AllElements,
}

fn run_eddy(
    events: &[Event],
    assigner: Assigner,
    ooo: i64,
    lateness: i64,
    parallelism: u32,
    path: Path,
) -> (Vec<Firing>, Vec<Event>) {
    let env = StreamExecutionEnvironment::create_local_environment(parallelism);
    let input: Vec<Ev> = events
        .iter()
        .map(|e| Ev {
            key: e.key.clone(),
            ts: e.ts,
            value: e.value,
        })
        .collect();
    let strategy = WatermarkStrategy::for_generator(move || PerRecord(i64::MIN + ooo + 1, ooo))
        .with_timestamp_assigner(|e: &Ev, _| e.ts);
    let keyed = env
        .from_collection(input)
        .assign_timestamps_and_watermarks(strategy)
        .set_parallelism(1)
        .key_by(|e: &Ev| e.key.clone());
    let late_tag = OutputTag::<Ev>::new("late");
    let finish = |w: WindowedStream<Ev, String, TimeWindow>| {
        let w = w
            .allowed_lateness(Duration::from_millis(lateness as u64))
            .side_output_late_data(&late_tag);
        match path {
            Path::Incremental => w.aggregate_with(CountSum, || Label),
            Path::AllElements => w.process(|| CountAll),
        }
    };
    let ms = |v: i64| Duration::from_millis(v as u64);
    let results = match assigner {
        Assigner::Tumbling(s) => finish(keyed.window(TumblingEventTimeWindows::of(ms(s)))),
        Assigner::Sliding(s, d) => finish(keyed.window(SlidingEventTimeWindows::of(ms(s), ms(d)))),
        Assigner::Session(g) => finish(keyed.window(EventTimeSessionWindows::with_gap(ms(g)))),
    };
    let late = results.get_side_output(&late_tag).collect_async();
    let fired = results.collect_async();
    env.execute("windows").unwrap();
    let late = late
        .take()
        .into_iter()
        .map(|e| Event {
            key: e.key,
            ts: e.ts,
            value: e.value,
        })
        .collect();
    (fired.take(), late)
}

#[test]
fn windows_match_the_model_of_flinks_semantics() {
    let assigners = [
        Assigner::Tumbling(100),
        Assigner::Sliding(100, 20),
        Assigner::Sliding(90, 40),
        Assigner::Session(30),
    ];
    let mut checked = 0;
    for (seed, assigner) in assigners.into_iter().enumerate() {
        let events = window_oracle::random_events(seed as u64 + 11, 700, 5, 40);
        for (ooo, lateness) in [(0, 0), (25, 0), (10, 60)] {
            let (expected, expected_late) = window_oracle::run(&events, assigner, ooo, lateness);
            assert!(!expected.is_empty());
            for parallelism in [1, 2, 4] {
                for path in [Path::Incremental, Path::AllElements] {
                    let (fired, late) =
                        run_eddy(&events, assigner, ooo, lateness, parallelism, path);
                    let ctx = format!(
                        "{} ooo={ooo} lateness={lateness} p={parallelism} {path:?}",
                        assigner.spec()
                    );
                    assert_eq!(sorted(fired), sorted(expected.clone()), "firings: {ctx}");
                    assert_eq!(
                        sorted(late),
                        sorted(expected_late.clone()),
                        "late records: {ctx}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 72);
}

#[test]
fn the_model_produces_late_data_and_late_firings() {
    // Guards the test above against vacuous inputs: late records and repeated firings of one
    // window (allowed lateness) must both occur.
    let events = window_oracle::random_events(11, 700, 5, 40);
    let (fired, late) = window_oracle::run(&events, Assigner::Tumbling(100), 10, 60);
    assert!(!late.is_empty());
    let mut windows: Vec<_> = fired.iter().map(|(k, s, e, _, _)| (k, s, e)).collect();
    let n = windows.len();
    windows.sort();
    windows.dedup();
    assert!(windows.len() < n, "some window fired more than once");
}
