//! Process functions, keyed state, timers, side outputs and connected streams.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eddy::connectors::datagen::DataGeneratorSource;
use eddy::prelude::*;
use eddy::process::{Context, KeyedContext, KeyedProcessFunction, ProcessFunction};
use eddy::{
    BroadcastContext, BroadcastProcessFunction, CoProcessFunction, FunctionResult,
    KeyedCoProcessFunction, ListStateDescriptor, MapStateDescriptor, OutputTag, ReadOnlyContext,
    StateTtlConfig, ValueState, ValueStateDescriptor,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Registers timers at `ts + delay` for every element (duplicates included) and deletes the
/// timer at `ts + delay` when `delete` is set; reports each firing with the watermark then.
#[derive(Clone)]
struct TimerRecorder;

type TimerEvent = (u32, i64, i64, bool);

impl KeyedProcessFunction<u32, TimerEvent, (u32, i64, i64)> for TimerRecorder {
    fn process_element(
        &mut self,
        (_, ts, delay, delete): TimerEvent,
        ctx: &mut KeyedContext<'_, u32>,
        _: &mut Collector<'_, (u32, i64, i64)>,
    ) -> FunctionResult<()> {
        if delete {
            ctx.timer_service().delete_event_time_timer(ts + delay)?;
        } else {
            ctx.timer_service().register_event_time_timer(ts + delay)?;
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, (u32, i64, i64)>,
    ) -> FunctionResult<()> {
        out.collect((
            *ctx.get_current_key(),
            timestamp,
            ctx.timer_service().current_watermark(),
        ));
        Ok(())
    }
}

#[test]
fn timers_fire_once_in_timestamp_order_after_the_watermark() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut t = 0i64;
    let events: Vec<TimerEvent> = (0..3000)
        .map(|_| {
            t += rng.random_range(0..5);
            (
                rng.random_range(0..30),
                t,
                rng.random_range(1..50) * 2,
                rng.random_range(0..10) == 0,
            )
        })
        .collect();
    // Brute force: the last register/delete of each (key, time) decides; deletes of timers that
    // already fired (watermark passed) have no effect, but here timers are deleted right after
    // registration in event order, so replaying the operations in order is the model.
    let mut live: BTreeSet<(u32, i64)> = BTreeSet::new();
    let mut fired: Vec<(u32, i64)> = Vec::new();
    let mut max_ts = i64::MIN;
    for &(k, ts, d, del) in &events {
        if del {
            live.remove(&(k, ts + d));
        } else {
            live.insert((k, ts + d));
        }
        max_ts = max_ts.max(ts);
        let wm = max_ts - 1;
        let due: Vec<_> = live.iter().filter(|(_, t)| *t <= wm).copied().collect();
        for d in due {
            live.remove(&d);
            fired.push(d);
        }
    }
    fired.extend(live.iter().copied());

    for p in [1u32, 2, 4] {
        let env = StreamExecutionEnvironment::create_local_environment(p);
        // Per-record watermarks: a monotonous strategy with a 0 ms interval would be periodic;
        // emit them with a generator after every event instead.
        let strategy = WatermarkStrategy::for_generator(|| PerRecord(i64::MIN))
            .with_timestamp_assigner(|e: &TimerEvent, _| e.1);
        let got = env
            .from_collection(events.clone())
            .assign_timestamps_and_watermarks(strategy)
            .set_parallelism(1)
            .key_by(|e: &TimerEvent| e.0)
            .process(|| TimerRecorder)
            .execute_and_collect("timers")
            .unwrap();
        let mut per_key: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        for (k, ts, wm) in &got {
            assert!(*wm >= *ts, "timer {ts} of key {k} fired at watermark {wm}");
            per_key.entry(*k).or_default().push(*ts);
        }
        for (k, times) in &per_key {
            assert!(
                times.windows(2).all(|w| w[0] < w[1]),
                "key {k}: {times:?} not in order or repeated"
            );
        }
        let got: Vec<(u32, i64)> = got.into_iter().map(|(k, t, _)| (k, t)).collect();
        assert_eq!(sorted(got), sorted(fired.clone()), "p={p}");
    }
}

struct PerRecord(i64);

impl eddy::watermark::WatermarkGenerator<TimerEvent> for PerRecord {
    fn on_event(&mut self, _: &TimerEvent, ts: i64, out: &mut eddy::watermark::WatermarkOutput) {
        self.0 = self.0.max(ts);
        out.emit_watermark(eddy::runtime::element::Watermark(self.0 - 1));
    }
    fn on_periodic_emit(&mut self, _: &mut eddy::watermark::WatermarkOutput) {}
}

/// Reports, for every element, the age of the value it found in TTL state (or none).
#[derive(Clone)]
struct TtlProbe {
    ttl: Duration,
    state: Option<ValueState<i64>>,
}

impl KeyedProcessFunction<u8, i64, Option<i64>> for TtlProbe {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        let d = ValueStateDescriptor::new("written-at")
            .enable_time_to_live(StateTtlConfig::new_builder(self.ttl).build());
        self.state = Some(ctx.get_state(&d)?);
        Ok(())
    }

    fn process_element(
        &mut self,
        _: i64,
        ctx: &mut KeyedContext<'_, u8>,
        out: &mut Collector<'_, Option<i64>>,
    ) -> FunctionResult<()> {
        let state = self.state.as_ref().ok_or("not open")?;
        let now = ctx.timer_service().current_processing_time();
        out.collect(state.value()?.map(|written| now - written));
        state.update(now)?;
        Ok(())
    }
}

#[test]
fn ttl_expired_state_is_never_returned_in_a_running_job() {
    let ttl = Duration::from_millis(50);
    let env = StreamExecutionEnvironment::create_local_environment(1);
    let ages = env
        .from_source(
            DataGeneratorSource::new(|i| i as i64, 10).with_rate_limit(5.0),
            WatermarkStrategy::no_watermarks(),
            "slow",
        )
        .key_by(|_| 0u8)
        .process(move || TtlProbe { ttl, state: None })
        .execute_and_collect("ttl")
        .unwrap();
    assert_eq!(ages.len(), 10);
    for age in ages.iter().flatten() {
        assert!(
            *age < 50 + 20,
            "a value {age} ms old was returned with a 50 ms TTL"
        );
    }
    let expired = ages.iter().filter(|a| a.is_none()).count();
    assert!(
        expired >= 3,
        "records 200 ms apart should mostly find expired state: {ages:?}"
    );
}

/// Splits numbers: evens to the main output, odds to a side output.
#[derive(Clone)]
struct SplitOdd(OutputTag<String>);

impl ProcessFunction<i64, i64> for SplitOdd {
    fn process_element(
        &mut self,
        v: i64,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, i64>,
    ) -> FunctionResult<()> {
        if v % 2 == 0 {
            out.collect(v);
        } else {
            ctx.output(&self.0, format!("odd {v}"));
        }
        Ok(())
    }
}

#[test]
fn side_outputs_carry_their_own_type() {
    for p in [1u32, 3] {
        let env = StreamExecutionEnvironment::create_local_environment(p);
        let tag = OutputTag::<String>::new("odds");
        let split_tag = tag.clone();
        let main = env
            .from_sequence(1, 1000)
            .process(move || SplitOdd(split_tag.clone()));
        let odds = main.get_side_output(&tag).rebalance().collect_async();
        let evens = main.collect_async();
        env.execute("side outputs").unwrap();
        assert_eq!(
            sorted(evens.take()),
            (1..=500).map(|i| i * 2).collect::<Vec<i64>>()
        );
        let mut expected: Vec<String> = (0..500).map(|i| format!("odd {}", i * 2 + 1)).collect();
        expected.sort();
        assert_eq!(sorted(odds.take()), expected, "p={p}");
    }
}

#[test]
fn count_windows_group_each_keys_elements_in_arrival_order() {
    let input: Vec<(u32, i64)> = (0..600).map(|i| ((i * 7 % 5) as u32, i as i64)).collect();
    for p in [1u32, 2, 4] {
        let env = StreamExecutionEnvironment::create_local_environment(p);
        let got = env
            .from_collection(input.clone())
            .key_by(|t: &(u32, i64)| t.0)
            .count_window(3)
            .apply(|k: &u32, _, els: Vec<(u32, i64)>, out| {
                out.collect((*k, els.iter().map(|e| e.1).collect::<Vec<_>>()))
            })
            .execute_and_collect("count windows")
            .unwrap();
        let mut expected = Vec::new();
        for k in 0..5u32 {
            let values: Vec<i64> = input.iter().filter(|t| t.0 == k).map(|t| t.1).collect();
            for chunk in values.chunks(3).filter(|c| c.len() == 3) {
                expected.push((k, chunk.to_vec()));
            }
        }
        assert_eq!(sorted(got), sorted(expected), "p={p}");

        // Sliding count windows: every 2 elements, the last 4.
        let env = StreamExecutionEnvironment::create_local_environment(p);
        let got = env
            .from_collection(input.clone())
            .key_by(|t: &(u32, i64)| t.0)
            .count_window_slide(4, 2)
            .apply(|k: &u32, _, els: Vec<(u32, i64)>, out| {
                out.collect((*k, els.iter().map(|e| e.1).collect::<Vec<_>>()))
            })
            .execute_and_collect("sliding count windows")
            .unwrap();
        let mut expected = Vec::new();
        for k in 0..5u32 {
            let values: Vec<i64> = input.iter().filter(|t| t.0 == k).map(|t| t.1).collect();
            for end in (2..=values.len()).step_by(2) {
                expected.push((k, values[end.saturating_sub(4)..end].to_vec()));
            }
        }
        assert_eq!(sorted(got), sorted(expected), "sliding p={p}");
    }
}

/// Counts elements of both inputs per key; reports at the end of input (a timer at the end of
/// time).
#[derive(Clone, Default)]
struct CountBoth {
    state: Option<ValueState<(u64, u64)>>,
}

impl KeyedCoProcessFunction<u32, (u32, i64), (u32, String), (u32, u64, u64)> for CountBoth {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.state = Some(ctx.get_state(&ValueStateDescriptor::with_default("counts", (0, 0)))?);
        Ok(())
    }
    fn process_element1(
        &mut self,
        _: (u32, i64),
        ctx: &mut KeyedContext<'_, u32>,
        _: &mut Collector<'_, (u32, u64, u64)>,
    ) -> FunctionResult<()> {
        let s = self.state.as_ref().ok_or("not open")?;
        let (a, b) = s.value()?.unwrap_or_default();
        s.update((a + 1, b))?;
        ctx.timer_service().register_event_time_timer(i64::MAX)?;
        Ok(())
    }
    fn process_element2(
        &mut self,
        _: (u32, String),
        ctx: &mut KeyedContext<'_, u32>,
        _: &mut Collector<'_, (u32, u64, u64)>,
    ) -> FunctionResult<()> {
        let s = self.state.as_ref().ok_or("not open")?;
        let (a, b) = s.value()?.unwrap_or_default();
        s.update((a, b + 1))?;
        ctx.timer_service().register_event_time_timer(i64::MAX)?;
        Ok(())
    }
    fn on_timer(
        &mut self,
        _: i64,
        ctx: &mut KeyedContext<'_, u32>,
        out: &mut Collector<'_, (u32, u64, u64)>,
    ) -> FunctionResult<()> {
        let (a, b) = self
            .state
            .as_ref()
            .ok_or("not open")?
            .value()?
            .unwrap_or_default();
        out.collect((*ctx.get_current_key(), a, b));
        Ok(())
    }
}

#[test]
fn keyed_co_process_sees_both_inputs_per_key() {
    let left: Vec<(u32, i64)> = (0..1000).map(|i| ((i % 13) as u32, i)).collect();
    let right: Vec<(u32, String)> = (0..700).map(|i| ((i % 17) as u32, i.to_string())).collect();
    let mut expected = BTreeMap::new();
    for (k, _) in &left {
        expected.entry(*k).or_insert((0u64, 0u64)).0 += 1;
    }
    for (k, _) in &right {
        expected.entry(*k).or_insert((0, 0)).1 += 1;
    }
    let expected: Vec<(u32, u64, u64)> =
        expected.into_iter().map(|(k, (a, b))| (k, a, b)).collect();
    for p in [1u32, 2, 4] {
        let env = StreamExecutionEnvironment::create_local_environment(p);
        let got = env
            .from_collection(left.clone())
            .connect(env.from_collection(right.clone()))
            .key_by(|l: &(u32, i64)| l.0, |r: &(u32, String)| r.0)
            .process(CountBoth::default)
            .execute_and_collect("keyed co-process")
            .unwrap();
        assert_eq!(sorted(got), expected, "p={p}");
    }
}

#[derive(Clone)]
struct Tag;

impl CoProcessFunction<i64, String, String> for Tag {
    fn process_element1(
        &mut self,
        v: i64,
        _: &mut Context<'_>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        out.collect(format!("n{v}"));
        Ok(())
    }
    fn process_element2(
        &mut self,
        v: String,
        _: &mut Context<'_>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        out.collect(format!("s{v}"));
        Ok(())
    }
}

#[test]
fn connected_streams_map_and_process_both_inputs() {
    let env = StreamExecutionEnvironment::create_local_environment(2);
    let got = env
        .from_sequence(1, 50)
        .connect(env.from_collection((1..=30).map(|i| i.to_string()).collect()))
        .map(|n| n * 10, |s: String| s.parse::<i64>().unwrap_or(0))
        .execute_and_collect("co-map")
        .unwrap();
    let mut expected: Vec<i64> = (1..=50).map(|n| n * 10).chain(1..=30).collect();
    expected.sort();
    assert_eq!(sorted(got), expected);

    let env = StreamExecutionEnvironment::create_local_environment(3);
    let got = env
        .from_sequence(1, 20)
        .connect(env.from_collection(vec!["a".to_string(), "b".into()]))
        .process(|| Tag)
        .execute_and_collect("co-process")
        .unwrap();
    assert_eq!(got.len(), 22);
    assert!(got.contains(&"sa".to_string()) && got.contains(&"n20".to_string()));
}

/// Remembers broadcast thresholds; reports each broadcast element once per subtask, and each
/// main element with the thresholds it could see.
#[derive(Clone)]
struct Thresholds(MapStateDescriptor<String, i64>, u32);

impl BroadcastProcessFunction<u32, (u32, i64), (String, i64), String> for Thresholds {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.1 = ctx.get_index_of_this_subtask();
        Ok(())
    }
    fn process_element(
        &mut self,
        v: (u32, i64),
        ctx: &mut ReadOnlyContext<'_, u32>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        let state = ctx.get_broadcast_state(&self.0)?;
        assert_eq!(ctx.get_current_key(), Some(&v.0));
        if let Some(limit) = state.get(&"limit".to_string())
            && v.1 > limit
        {
            out.collect(format!("over {}", v.1));
        }
        Ok(())
    }
    fn process_broadcast_element(
        &mut self,
        v: (String, i64),
        ctx: &mut BroadcastContext<'_>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        ctx.get_broadcast_state(&self.0)?.put(v.0.clone(), v.1);
        out.collect(format!("subtask {} got {}", self.1, v.1));
        Ok(())
    }
}

#[test]
fn broadcast_elements_reach_every_subtask_and_update_state() {
    let p = 3;
    let env = StreamExecutionEnvironment::create_local_environment(p);
    let desc = MapStateDescriptor::<String, i64>::new("thresholds");
    let rules = env
        .from_collection(vec![
            ("limit".to_string(), 90i64),
            ("limit".to_string(), 95),
        ])
        .broadcast_with(&desc);
    let got = env
        .from_collection((0..100u32).map(|i| (i % 7, i as i64)).collect::<Vec<_>>())
        .key_by(|t: &(u32, i64)| t.0)
        .connect_broadcast(rules)
        .process(move || Thresholds(desc.clone(), 0))
        .execute_and_collect("broadcast")
        .unwrap();
    for s in 0..p {
        for limit in [90, 95] {
            let line = format!("subtask {s} got {limit}");
            assert_eq!(got.iter().filter(|g| **g == line).count(), 1, "{line}");
        }
    }
    // Whatever the interleaving, an element reported over the limit is over the smallest one.
    for g in got.iter().filter_map(|g| g.strip_prefix("over ")) {
        assert!(g.parse::<i64>().unwrap() > 90, "{g}");
    }
}

#[test]
fn list_state_keeps_per_key_history() {
    #[derive(Clone, Default)]
    struct History(Option<eddy::ListState<i64>>);
    impl KeyedProcessFunction<u32, (u32, i64), (u32, Vec<i64>)> for History {
        fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
            self.0 = Some(ctx.get_list_state(&ListStateDescriptor::new("history"))?);
            Ok(())
        }
        fn process_element(
            &mut self,
            v: (u32, i64),
            ctx: &mut KeyedContext<'_, u32>,
            out: &mut Collector<'_, (u32, Vec<i64>)>,
        ) -> FunctionResult<()> {
            let h = self.0.as_ref().ok_or("not open")?;
            h.add(v.1)?;
            if v.1 >= 90 {
                out.collect((*ctx.get_current_key(), h.get()?));
            }
            Ok(())
        }
    }
    let input: Vec<(u32, i64)> = (0..100).map(|i| ((i % 3) as u32, i as i64)).collect();
    let env = StreamExecutionEnvironment::create_local_environment(2);
    let got = env
        .from_collection(input.clone())
        .key_by(|t: &(u32, i64)| t.0)
        .process(History::default)
        .execute_and_collect("list state")
        .unwrap();
    for (k, history) in got {
        let expected: Vec<i64> = input
            .iter()
            .filter(|t| t.0 == k && t.1 <= *history.last().unwrap())
            .map(|t| t.1)
            .collect();
        assert_eq!(history, expected);
    }
}
