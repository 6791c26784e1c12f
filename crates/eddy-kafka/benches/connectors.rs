//! Connector throughput against real servers: an Apache Kafka broker started here on a free
//! port (from the jars `scripts/services.sh kafka` fetches) and the machine's Postgres
//! (`EDDY_POSTGRES_URL`, default 127.0.0.1:5432, which `scripts/services.sh postgres` starts).
//!
//! ```text
//! cargo bench -p eddy-kafka --bench connectors [-- --records 200000]
//! ```
//!
//! Prints records/s (and per subtask) for Kafka → map → Kafka at-least-once and exactly-once
//! (checkpoints every second), and rows/s for
//! Kafka → Postgres with COPY, multi-row INSERT and upsert. Broker, database and job share
//! the machine's cores.

use std::time::{Duration, Instant};

use anyhow::Result;
use eddy::prelude::*;
use eddy_kafka::{
    DeliveryGuarantee as KafkaGuarantee, JsonDeserializer, KafkaRecordSerializer, KafkaSink,
    KafkaSource, OffsetsInitializer,
};
use eddy_postgres::{DeliveryGuarantee, PostgresSink, WriteMode};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Event {
    event_id: String,
    user_name: String,
    location: String,
    amount: f64,
}

fn produce(brokers: &str, topic: &str, n: u64) -> Result<()> {
    eddy_kafka::admin::create_topics(brokers, &[(topic, 2)])?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for i in 0..n {
        let e = Event {
            event_id: format!("evt-{i:09}"),
            user_name: format!("user-{}", i % 1000),
            location: ["Berlin", "Lisbon", "Oslo", "Osaka"][(i % 4) as usize].into(),
            amount: (i % 10_000) as f64 / 100.0,
        };
        let payload = serde_json::to_vec(&e)?;
        let rec = BaseRecord::to(topic).key(&e.event_id).payload(&payload);
        eddy_kafka::producer::send(&producer, rec)?;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

fn source(brokers: &str, topic: &str) -> Result<KafkaSource<Event>> {
    Ok(KafkaSource::builder()
        .set_bootstrap_servers(brokers)
        .set_topics([topic])
        .set_bounded(OffsetsInitializer::Latest)
        .set_deserializer(JsonDeserializer::<Event>::new())
        .build()?)
}

fn env(parallelism: u32) -> StreamExecutionEnvironment {
    let mut conf = Configuration::new();
    conf.set_string("execution.checkpointing.interval", "1 s");
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(parallelism);
    env
}

fn kafka_to_kafka(
    brokers: &str,
    n: u64,
    parallelism: u32,
    guarantee: KafkaGuarantee,
) -> Result<f64> {
    let out = format!("bench-out-{parallelism}-{guarantee:?}");
    eddy_kafka::admin::create_topics(brokers, &[(&out, 2)])?;
    let env = env(parallelism);
    env.from_source(
        source(brokers, "bench-in")?,
        WatermarkStrategy::no_watermarks(),
        "kafka",
    )
    .map(|e: Event| format!("{},{},{}", e.event_id, e.user_name, e.location))
    .sink_to(
        KafkaSink::builder()
            .set_bootstrap_servers(brokers)
            .set_record_serializer(KafkaRecordSerializer::string(&out))
            .set_delivery_guarantee(guarantee)
            .set_transactional_id_prefix(out.clone())
            .build()?,
    );
    let start = Instant::now();
    env.execute("kafka to kafka")?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn kafka_to_postgres(brokers: &str, n: u64, mode: WriteMode) -> Result<f64> {
    let url = std::env::var("EDDY_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let table = format!("eddy_bench_{}", std::process::id());
    let mut c = eddy_postgres::connect(&url)?;
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (event_id VARCHAR(50) PRIMARY KEY, user_name VARCHAR(50) NOT NULL, location VARCHAR(100) NOT NULL)"
    ))?;
    let env = env(2);
    env.from_source(
        source(brokers, "bench-in")?,
        WatermarkStrategy::no_watermarks(),
        "kafka",
    )
    .sink_to(
        PostgresSink::builder(&url, &table)
            .set_row(["event_id", "user_name", "location"], |e: &Event| {
                vec![
                    e.event_id.as_str().into(),
                    e.user_name.as_str().into(),
                    e.location.as_str().into(),
                ]
            })
            .set_write_mode(mode)
            .set_delivery_guarantee(DeliveryGuarantee::AtLeastOnce)
            .set_batch_size(5000)
            .build()?,
    );
    let start = Instant::now();
    env.execute("kafka to postgres")?;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let rows: i64 = c
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
        .get(0);
    c.batch_execute(&format!("DROP TABLE {table}"))?;
    anyhow::ensure!(rows == n as i64, "{rows} rows written, {n} expected");
    Ok(rate)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(200_000), |v| v.parse())?;
    let broker = eddy_kafka::testing::KafkaCluster::start(1)?;
    let brokers = broker.bootstrap_servers().to_owned();
    let start = Instant::now();
    produce(&brokers, "bench-in", n)?;
    println!(
        "produced {n} JSON events (~90 bytes) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    println!("| pipeline | parallelism | records/s | records/s per subtask |");
    println!("|---|---|---|---|");
    for (name, guarantee) in [
        ("at-least-once", KafkaGuarantee::AtLeastOnce),
        ("exactly-once", KafkaGuarantee::ExactlyOnce),
    ] {
        for p in [1, 2] {
            let rate = kafka_to_kafka(&brokers, n, p, guarantee)?;
            println!(
                "| Kafka → map → Kafka, {name} | {p} | {rate:.0} | {:.0} |",
                rate / f64::from(p)
            );
        }
    }
    for (name, mode) in [
        ("COPY", WriteMode::Copy),
        ("multi-row INSERT", WriteMode::Insert),
        (
            "upsert",
            WriteMode::Upsert {
                key_columns: vec!["event_id".into()],
            },
        ),
    ] {
        let rate = kafka_to_postgres(&brokers, n, mode)?;
        println!(
            "| Kafka → Postgres, {name} | 2 | {rate:.0} | {:.0} |",
            rate / 2.0
        );
    }
    Ok(())
}
