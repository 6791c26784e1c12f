//! Joins against brute force: interval joins, window joins and co-groups, and non-keyed
//! windows, at parallelism 1, 2 and 4.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy::FunctionResult;
use eddy::joins::{JoinContext, ProcessJoinFunction};
use eddy::prelude::*;
use eddy::watermark::{WatermarkGenerator, WatermarkOutput};
use eddy::windowing::{SlidingEventTimeWindows, TumblingEventTimeWindows};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Ev = (u32, i64, i64); // key, timestamp, value

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Events with non-decreasing timestamps, so that no element is ever late.
fn events(seed: u64, n: usize, keys: u32) -> Vec<Ev> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 0;
    (0..n)
        .map(|i| {
            t += rng.random_range(0..4);
            (rng.random_range(0..keys), t, i as i64)
        })
        .collect()
}

struct PerRecord(i64);

impl WatermarkGenerator<Ev> for PerRecord {
    fn on_event(&mut self, _: &Ev, ts: i64, out: &mut WatermarkOutput) {
        self.0 = self.0.max(ts);
        out.emit_watermark(eddy::runtime::element::Watermark(self.0 - 1));
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

fn source(env: &StreamExecutionEnvironment, evs: Vec<Ev>) -> DataStream<Ev> {
    env.from_collection(evs)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_generator(|| PerRecord(i64::MIN))
                .with_timestamp_assigner(|e: &Ev, _| e.1),
        )
        .set_parallelism(1)
}

#[derive(Clone)]
struct Pair;

impl ProcessJoinFunction<Ev, Ev, (i64, i64, i64)> for Pair {
    fn process_element(
        &mut self,
        l: Ev,
        r: Ev,
        ctx: &mut JoinContext<'_>,
        out: &mut Collector<'_, (i64, i64, i64)>,
    ) -> FunctionResult<()> {
        assert_eq!(ctx.timestamp(), l.1.max(r.1));
        out.collect((l.2, r.2, ctx.timestamp()));
        Ok(())
    }
}

#[test]
fn interval_join_matches_brute_force() {
    let left = events(1, 800, 6);
    let right = events(2, 800, 6);
    for (lower, upper) in [(-5, 5), (0, 20), (-30, -10), (3, 3)] {
        let mut expected = Vec::new();
        for l in &left {
            for r in &right {
                if l.0 == r.0 && r.1 >= l.1 + lower && r.1 <= l.1 + upper {
                    expected.push((l.2, r.2, l.1.max(r.1)));
                }
            }
        }
        assert!(!expected.is_empty());
        for p in [1u32, 2, 4] {
            let env = StreamExecutionEnvironment::create_local_environment(p);
            let got = source(&env, left.clone())
                .key_by(|e: &Ev| e.0)
                .interval_join(source(&env, right.clone()).key_by(|e: &Ev| e.0))
                .between(lower, upper)
                .process(|| Pair)
                .execute_and_collect("interval join")
                .unwrap();
            assert_eq!(
                sorted(got),
                sorted(expected.clone()),
                "bounds [{lower}, {upper}] p={p}"
            );
        }
    }
}

#[test]
fn window_join_and_co_group_match_brute_force() {
    let left = events(3, 600, 5);
    let right = events(4, 600, 5);
    let size = 25i64;
    let window_of = |ts: i64| ts - ts.rem_euclid(size);
    let mut expected_join = Vec::new();
    let mut groups: BTreeMap<(u32, i64), (usize, usize)> = BTreeMap::new();
    for l in &left {
        groups.entry((l.0, window_of(l.1))).or_default().0 += 1;
        for r in &right {
            if l.0 == r.0 && window_of(l.1) == window_of(r.1) {
                expected_join.push((l.2, r.2));
            }
        }
    }
    for r in &right {
        groups.entry((r.0, window_of(r.1))).or_default().1 += 1;
    }
    let expected_groups: Vec<(u32, usize, usize)> = groups
        .into_iter()
        .map(|((k, _), (a, b))| (k, a, b))
        .collect();
    for p in [1u32, 2, 4] {
        let env = StreamExecutionEnvironment::create_local_environment(p);
        let got = source(&env, left.clone())
            .join(source(&env, right.clone()))
            .where_(|e: &Ev| e.0)
            .equal_to(|e: &Ev| e.0)
            .window(TumblingEventTimeWindows::of(Duration::from_millis(
                size as u64,
            )))
            .apply(|l: Ev, r: Ev| (l.2, r.2))
            .execute_and_collect("window join")
            .unwrap();
        assert_eq!(sorted(got), sorted(expected_join.clone()), "join p={p}");

        let env = StreamExecutionEnvironment::create_local_environment(p);
        let got = source(&env, left.clone())
            .co_group(source(&env, right.clone()))
            .where_(|e: &Ev| e.0)
            .equal_to(|e: &Ev| e.0)
            .window(TumblingEventTimeWindows::of(Duration::from_millis(
                size as u64,
            )))
            .apply(|ls: Vec<Ev>, rs: Vec<Ev>, out| {
                let k = ls.first().or(rs.first()).map(|e| e.0).unwrap_or(u32::MAX);
                out.collect((k, ls.len(), rs.len()))
            })
            .execute_and_collect("co-group")
            .unwrap();
        assert_eq!(
            sorted(got),
            sorted(expected_groups.clone()),
            "co-group p={p}"
        );
    }
}

#[test]
fn window_all_runs_one_window_over_all_keys() {
    let evs = events(5, 2000, 9);
    let (size, slide) = (40i64, 10i64);
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    for e in &evs {
        let mut start = e.1 - e.1.rem_euclid(slide);
        while start > e.1 - size {
            *expected.entry(start).or_default() += e.2;
            start -= slide;
        }
    }
    let env = StreamExecutionEnvironment::create_local_environment(4);
    let got = source(&env, evs)
        .window_all(SlidingEventTimeWindows::of(
            Duration::from_millis(size as u64),
            Duration::from_millis(slide as u64),
        ))
        .apply(|w, els: Vec<Ev>, out| out.collect((w.start, els.iter().map(|e| e.2).sum::<i64>())))
        .execute_and_collect("window all")
        .unwrap();
    assert_eq!(sorted(got), expected.into_iter().collect::<Vec<_>>());
}
