//! Pipelines shared by the benchmark programs.

use std::time::Duration;

use anyhow::Result;
use eddy::connectors::datagen::DataGeneratorSource;
use eddy::connectors::discard::DiscardingSink;
use eddy::prelude::*;

/// Keys in the window benchmarks.
pub const WINDOW_KEYS: u64 = 100_000;
/// Events per second of event time.
pub const EVENTS_PER_SECOND: u64 = 1_000_000;

/// Sums values per key and window.
pub struct Sum;

impl eddy::AggregateFunction<(u64, i64, i64), i64, i64> for Sum {
    fn create_accumulator(&self) -> i64 {
        0
    }
    fn add(&self, v: (u64, i64, i64), acc: &mut i64) {
        *acc += v.2;
    }
    fn get_result(&self, acc: &i64) -> i64 {
        *acc
    }
    fn merge(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

/// A cheap, well-mixed hash.
pub fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Event-time windows summing a value over [`WINDOW_KEYS`] keys, [`EVENTS_PER_SECOND`] events
/// per second of event time: `window-tumbling` (1 s), `window-sliding` (10 s every 1 s) or
/// `window-session` (500 ms gap), into a discarding sink.
pub fn windows(
    env: &StreamExecutionEnvironment,
    case: &str,
    parallelism: u32,
    records: u64,
) -> Result<()> {
    use eddy::windowing::{
        EventTimeSessionWindows, SlidingEventTimeWindows, TumblingEventTimeWindows,
    };
    // Every source subtask reads a contiguous range of indices; give each the same event-time
    // progress so that watermarks advance together.
    let per_split = records / u64::from(parallelism);
    let per_split_rate = EVENTS_PER_SECOND / u64::from(parallelism);
    let session = case == "window-session";
    let events = env
        .from_source(
            DataGeneratorSource::new(
                move |i| {
                    let local = i % per_split.max(1);
                    let ts = (local * 1000 / per_split_rate) as i64;
                    // Sessions: bursts of 16 events per key, so that keys go quiet between bursts.
                    let key = if session {
                        mix(i / 16) % WINDOW_KEYS
                    } else {
                        mix(i) % WINDOW_KEYS
                    };
                    (key, ts, (i % 100) as i64)
                },
                records,
            ),
            WatermarkStrategy::no_watermarks(),
            "events",
        )
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(100))
                .with_timestamp_assigner(|e: &(u64, i64, i64), _| e.1),
        )
        .key_by(|e: &(u64, i64, i64)| e.0);
    let sums = match case {
        "window-tumbling" => events
            .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
            .aggregate(Sum),
        "window-sliding" => events
            .window(SlidingEventTimeWindows::of(
                Duration::from_secs(10),
                Duration::from_secs(1),
            ))
            .aggregate(Sum),
        "window-session" => events
            .window(EventTimeSessionWindows::with_gap(Duration::from_millis(
                500,
            )))
            .aggregate(Sum),
        other => anyhow::bail!("unknown window case {other}"),
    };
    sums.sink_to(DiscardingSink);
    Ok(())
}
