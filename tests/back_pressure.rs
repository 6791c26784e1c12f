//! Back pressure: a fast source feeding a slow sink is slowed down to the sink's pace, and
//! memory stays flat. (This file holds a single test, so the process's memory is its own.)

mod common;

use std::time::Duration;

use eddy::connectors::datagen::DataGeneratorSource;
use eddy::prelude::*;
use eddy::runtime::sink::{Sink, SinkWriter, SinkWriterContext};

/// A sink that takes 1 ms per record.
struct SlowSink;

struct SlowWriter;

impl Sink<Vec<u8>> for SlowSink {
    type Writer = SlowWriter;
    fn create_writer(&self, _: &SinkWriterContext) -> eddy::runtime::Result<SlowWriter> {
        Ok(SlowWriter)
    }
}

impl SinkWriter<Vec<u8>> for SlowWriter {
    fn write(&mut self, _: Vec<u8>, _: Option<i64>) -> eddy::runtime::Result<()> {
        std::thread::sleep(Duration::from_millis(1));
        Ok(())
    }
    fn flush(&mut self, _: bool) -> eddy::runtime::Result<()> {
        Ok(())
    }
}

fn metric(client: &eddy::JobClient, operator_prefix: &str, name: &str) -> f64 {
    client
        .metrics()
        .iter()
        .filter(|m| {
            m.name == name
                && m.variables
                    .get("operator_name")
                    .is_some_and(|o| o.starts_with(operator_prefix))
        })
        .map(|m| m.value.as_f64())
        .sum()
}

#[test]
fn a_slow_sink_slows_the_source_and_memory_stays_flat() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    // 1 KiB records: without back pressure the source would fill gigabytes within seconds.
    env.from_source(
        DataGeneratorSource::new(|i| vec![(i % 251) as u8; 1024], u64::MAX),
        WatermarkStrategy::no_watermarks(),
        "fast",
    )
    .rebalance()
    .sink_to(SlowSink)
    .name("Slow Sink");
    let client = env.execute_async("back pressure").unwrap();

    std::thread::sleep(Duration::from_secs(2));
    let rss_early = common::rss_bytes();
    let emitted_early = metric(&client, "Source: fast", "numRecordsOut");
    std::thread::sleep(Duration::from_secs(4));
    let rss_late = common::rss_bytes();
    let emitted = metric(&client, "Source: fast", "numRecordsOut");
    let consumed = metric(&client, "Slow Sink", "numRecordsIn");

    client.cancel();
    assert!(
        client.wait_timeout(Duration::from_secs(60)).is_some(),
        "cancel hung"
    );

    // The sink consumes at most ~1000 records/s. The source may only run ahead by what fits
    // between them: the channel (2 exclusive + 8 floating buffers), the writer's open buffer and
    // the batch the sink is working on, each one segment's worth of records (1024 here).
    let batch = eddy::runtime::exchange::batch_size_for::<Vec<u8>>(32 * 1024) as f64;
    let bound = 12.0 * batch;
    let in_flight = emitted - consumed;
    assert!(consumed > 500.0, "the sink made progress: {consumed}");
    assert!(
        in_flight <= bound,
        "source ran {in_flight} records ahead of the sink, more than {bound} \
         (emitted {emitted}, consumed {consumed})"
    );
    assert!(emitted_early > 0.0 && emitted_early <= emitted);
    let growth = rss_late as i64 - rss_early as i64;
    assert!(
        growth < 16 << 20,
        "memory grew by {} MiB while back-pressured",
        growth >> 20
    );
}
