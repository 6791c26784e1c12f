//! Watermark idleness, processing-time windows, and records without timestamps.

use std::time::{Duration, Instant};

use eddy::JobStatus;
use eddy::connectors::datagen::DataGeneratorSource;
use eddy::prelude::*;
use eddy::windowing::{TumblingEventTimeWindows, TumblingProcessingTimeWindows};

type Ev = (u32, i64, i64);

fn job(
    idleness: bool,
) -> (
    eddy::JobClient,
    eddy::connectors::collect::CollectHandle<Ev>,
) {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    let events: Vec<Ev> = (0..100).map(|i| (i % 3, i as i64 * 7, 1)).collect();
    let active = env
        .from_collection(events)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &Ev, _| e.1),
        );
    let strategy =
        WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &Ev, _| e.1);
    let strategy = if idleness {
        strategy.with_idleness(Duration::from_millis(100))
    } else {
        strategy
    };
    // A source that never emits: one record every 1000 s.
    let silent = env.from_source(
        DataGeneratorSource::new(|i| (0u32, i as i64, 0i64), u64::MAX).with_rate_limit(0.001),
        strategy,
        "silent",
    );
    let handle = active
        .union([silent])
        .key_by(|e: &Ev| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(100)))
        .sum(|e: &mut Ev| &mut e.2)
        .collect_async();
    (env.execute_async("idleness").unwrap(), handle)
}

#[test]
fn an_idle_source_does_not_hold_back_event_time() {
    // 100 events 7 ms apart fill windows [0,100) .. [600,700): 7 windows for each of 3 keys.
    let expected_windows = 3 * 7;
    let (client, handle) = job(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.len() < expected_windows && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        client.job_status(),
        JobStatus::Running,
        "the silent source keeps the job running"
    );
    client.cancel();
    assert!(
        client.wait_timeout(Duration::from_secs(30)).is_some(),
        "cancel hung"
    );
    let fired = handle.take();
    assert_eq!(
        fired.len(),
        expected_windows,
        "every window fired although one source is silent"
    );
    assert_eq!(fired.iter().map(|e| e.2).sum::<i64>(), 100);

    // Without idleness the silent source holds event time back: nothing fires.
    let (client, handle) = job(false);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(handle.len(), 0);
    client.cancel();
    assert!(
        client.wait_timeout(Duration::from_secs(30)).is_some(),
        "cancel hung"
    );
}

#[test]
fn processing_time_windows_fire_on_the_wall_clock() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    let size = 300i64;
    let fired = env
        .from_source(
            DataGeneratorSource::new(|i| (i % 2) as u32, 150).with_rate_limit(100.0),
            WatermarkStrategy::no_watermarks(),
            "slow",
        )
        .key_by(|k: &u32| *k)
        .window(TumblingProcessingTimeWindows::of(Duration::from_millis(
            size as u64,
        )))
        .apply(|k: &u32, w, els: Vec<u32>, out| out.collect((*k, w.start, w.end, els.len())))
        .execute_and_collect("processing time")
        .unwrap();
    assert!(
        fired.len() >= 4,
        "windows fired while the job ran: {fired:?}"
    );
    for (_, start, end, n) in &fired {
        assert_eq!(end - start, size);
        assert_eq!(
            start.rem_euclid(size),
            0,
            "windows are aligned to the epoch"
        );
        assert!(*n > 0);
    }
    // Windows still open when the input ends do not fire (as in Flink): at most all records.
    assert!(fired.iter().map(|f| f.3).sum::<usize>() <= 150);
}

#[test]
fn a_record_without_timestamp_in_an_event_time_window_names_the_record() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    env.from_collection(vec![("sensor-7".to_string(), 42i64)])
        .key_by(|e: &(String, i64)| e.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .sum(|e: &mut (String, i64)| &mut e.1)
        .print();
    let err = env.execute("no timestamps").unwrap_err().to_string();
    assert!(err.contains("(sensor-7,42)"), "{err}");
    assert!(err.contains("no timestamp"), "{err}");
}

#[test]
fn watermarks_are_reported_per_operator_subtask() {
    let env = StreamExecutionEnvironment::create_local_environment(2);
    env.from_collection((0..100i64).map(|i| (i % 4, i * 10)).collect::<Vec<_>>())
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|e: &(i64, i64), _| e.1),
        )
        .key_by(|e: &(i64, i64)| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(50)))
        .sum(|e: &mut (i64, i64)| &mut e.1)
        .name("Windowed Sum")
        .sink_to(eddy::connectors::discard::DiscardingSink);
    let client = env.execute_async("watermark metrics").unwrap();
    client.get_job_execution_result().unwrap();
    let metrics = client.metrics();
    let gauges: Vec<_> = metrics
        .iter()
        .filter(|m| m.variables.get("operator_name").map(String::as_str) == Some("Windowed Sum"))
        .filter(|m| m.name == "currentInputWatermark" || m.name == "currentOutputWatermark")
        .collect();
    assert_eq!(gauges.len(), 4, "two gauges for each of two subtasks");
    for g in gauges {
        assert_eq!(
            g.value.as_f64(),
            i64::MAX as f64,
            "{} of subtask {}",
            g.name,
            g.variables["subtask_index"]
        );
    }
}
