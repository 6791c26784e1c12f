//! The job the chaos suite (`examples/chaos.rs`) runs on a cluster while it kills, pauses and
//! starves its processes: JSON events `{"id", "key", "ts"}` from Kafka, counted and summed per
//! key in tumbling event-time windows, written exactly once to a Postgres table (a prepared
//! transaction per checkpoint) and to a Kafka topic (a Kafka transaction per checkpoint).
//!
//! ```text
//! eddy run -d -p 2 target/release/examples/chaos_pipeline -- \
//!     --bootstrap-servers 127.0.0.1:9092 --postgres-url postgres://postgres@127.0.0.1/postgres \
//!     --checkpoint-dir /shared/checkpoints
//! ```
//!
//! A window's row is `key,window_start,count,sum of ids`; the event with key `end` only moves
//! event time forward (the driver sends one per partition when it stops), so every window
//! fires.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use eddy::prelude::*;
use eddy::windowing::{TimeWindow, TumblingEventTimeWindows};
use eddy_kafka::{
    DeliveryGuarantee as KafkaDelivery, JsonDeserializer, KafkaRecordSerializer, KafkaSink,
    KafkaSource, OffsetsInitializer,
};
use eddy_postgres::{DeliveryGuarantee as PostgresDelivery, PostgresSink, WriteMode};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "Kafka → keyed event-time windows → Postgres and Kafka, exactly once")]
struct Args {
    /// Kafka brokers.
    #[arg(long)]
    bootstrap_servers: String,
    /// The input topic.
    #[arg(long, default_value = "chaos-input")]
    input: String,
    /// The output topic (created by the driver).
    #[arg(long, default_value = "chaos-output")]
    output: String,
    /// The Postgres server.
    #[arg(long)]
    postgres_url: String,
    /// The table the windows go to (created by the driver).
    #[arg(long, default_value = "chaos_windows")]
    table: String,
    /// Where checkpoints go (shared by every TaskManager).
    #[arg(long)]
    checkpoint_dir: PathBuf,
    /// Checkpoint interval in ms.
    #[arg(long, default_value_t = 500)]
    checkpoint_interval: u64,
    /// Window size in ms of event time.
    #[arg(long, default_value_t = 1000)]
    window_ms: u64,
}

/// An input event.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Event {
    id: u64,
    key: String,
    ts: i64,
}

/// A window's result: key, window start, count, sum of ids.
type Row = (String, i64, i64, i64);

fn main() -> Result<()> {
    let args = Args::parse();
    let mut conf = Configuration::from_environment()?;
    conf.set_string(
        "execution.checkpointing.interval",
        format!("{} ms", args.checkpoint_interval),
    );
    conf.set_string(
        "execution.checkpointing.dir",
        args.checkpoint_dir.display().to_string(),
    );
    // Checkpoints fail while the chaos makes the checkpoint directory unwritable: the job goes
    // on and commits with the next one that completes.
    conf.set_string(
        "execution.checkpointing.tolerable-failed-checkpoints",
        "1000",
    );
    conf.set_string("execution.checkpointing.timeout", "20 s");
    conf.set_string("execution.checkpointing.num-retained", "3");
    conf.set_string("restart-strategy.type", "fixed-delay");
    conf.set_string("restart-strategy.fixed-delay.attempts", "100000");
    conf.set_string("restart-strategy.fixed-delay.delay", "500 ms");
    let env = StreamExecutionEnvironment::with_configuration(conf);

    let source = KafkaSource::builder()
        .set_bootstrap_servers(&args.bootstrap_servers)
        .set_topics([args.input.as_str()])
        .set_group_id("chaos")
        .set_starting_offsets(OffsetsInitializer::Earliest)
        .set_deserializer(JsonDeserializer::<Event>::new())
        .build()?;
    // Within a partition the driver's timestamps only rise; a partition that gets nothing for
    // a while must not hold the others back.
    let strategy = WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|e: &Event, _| e.ts)
        .with_idleness(Duration::from_secs(2));
    let windows = env
        .from_source(source, strategy, "chaos-input")
        .uid("chaos-input")
        .filter(|e: &Event| e.key != "end")
        .uid("drop-end-markers")
        .key_by(|e: &Event| e.key.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_millis(
            args.window_ms,
        )))
        .apply(
            |key: &String, w: &TimeWindow, events: Vec<Event>, out: &mut Collector<'_, Row>| {
                let sum = events.iter().map(|e| e.id as i64).sum();
                out.collect((key.clone(), w.start, events.len() as i64, sum));
            },
        )
        .uid("windows");

    let postgres = PostgresSink::builder(&args.postgres_url, &args.table)
        .set_row(["key", "window_start", "cnt", "total"], |r: &Row| {
            vec![r.0.as_str().into(), r.1.into(), r.2.into(), r.3.into()]
        })
        .set_write_mode(WriteMode::Insert)
        .set_delivery_guarantee(PostgresDelivery::ExactlyOnce)
        .set_transaction_id_prefix("chaos")
        .build()?;
    windows.clone().sink_to(postgres).uid("postgres-windows");

    let kafka = KafkaSink::builder()
        .set_bootstrap_servers(&args.bootstrap_servers)
        .set_record_serializer(
            KafkaRecordSerializer::string(&args.output)
                .with_key(|s: &String| s.split(',').next().map(|k| k.as_bytes().to_vec())),
        )
        .set_delivery_guarantee(KafkaDelivery::ExactlyOnce)
        .set_transactional_id_prefix("chaos")
        .set_property("transaction.timeout.ms", "120000")
        .build()?;
    windows
        .map(|(key, start, count, sum): Row| format!("{key},{start},{count},{sum}"))
        .uid("format")
        .sink_to(kafka)
        .uid("kafka-windows");
    env.execute("chaos_pipeline")?;
    Ok(())
}
