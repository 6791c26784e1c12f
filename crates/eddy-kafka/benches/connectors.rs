//! Connector throughput against real servers: an Apache Kafka broker (started here on a free
//! port from the jars `scripts/services.sh kafka` fetches, or the one `--bootstrap-servers`
//! names) and the machine's Postgres (`EDDY_POSTGRES_URL`, default 127.0.0.1:5432, which
//! `scripts/services.sh postgres` starts).
//!
//! ```text
//! cargo bench -p eddy-kafka --bench connectors [-- --records 200000]
//! ```
//!
//! Prints records/s (and per subtask) for Kafka → map → Kafka at-least-once and exactly-once
//! (checkpoints every second), and for Kafka → Postgres with COPY, multi-row INSERT, upsert
//! and two-phase commit. Broker, database and job share the machine's cores.
//!
//! `--produce` only writes the input; `--pipeline NAME` runs one pipeline over input already
//! there and prints `{"seconds": ...}`, which is how `bench/kafka.py` runs it beside Flink.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, ValueEnum};
use eddy::prelude::*;
use eddy_kafka::{
    DeliveryGuarantee as KafkaGuarantee, JsonDeserializer, KafkaRecordSerializer, KafkaSink,
    KafkaSource, OffsetsInitializer,
};
use eddy_postgres::{DeliveryGuarantee, PostgresSink, WriteMode};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    /// Input records.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// A broker to use instead of starting one.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Only write the input topic `bench-in`.
    #[arg(long)]
    produce: bool,
    /// Run this pipeline alone, over the input already in `bench-in`.
    #[arg(long, value_enum)]
    pipeline: Option<Pipeline>,
    /// Only create this topic (2 partitions).
    #[arg(long)]
    create_topic: Option<String>,
    /// Only count the committed records of this topic and print `{"records": N}`.
    #[arg(long)]
    count: Option<String>,
    /// The parallelism of `--pipeline`.
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Pipeline {
    KafkaAtLeastOnce,
    KafkaExactlyOnce,
    PostgresCopy,
    PostgresInsert,
    PostgresUpsert,
    PostgresTwoPhase,
}

impl Pipeline {
    fn run(self, brokers: &str, n: u64, parallelism: u32) -> Result<f64> {
        let upsert = || WriteMode::Upsert {
            key_columns: vec!["event_id".into()],
        };
        let alo = DeliveryGuarantee::AtLeastOnce;
        match self {
            Pipeline::KafkaAtLeastOnce => {
                kafka_to_kafka(brokers, n, parallelism, KafkaGuarantee::AtLeastOnce)
            }
            Pipeline::KafkaExactlyOnce => {
                kafka_to_kafka(brokers, n, parallelism, KafkaGuarantee::ExactlyOnce)
            }
            Pipeline::PostgresCopy => {
                kafka_to_postgres(brokers, n, parallelism, WriteMode::Copy, alo)
            }
            Pipeline::PostgresInsert => {
                kafka_to_postgres(brokers, n, parallelism, WriteMode::Insert, alo)
            }
            Pipeline::PostgresUpsert => kafka_to_postgres(brokers, n, parallelism, upsert(), alo),
            Pipeline::PostgresTwoPhase => kafka_to_postgres(
                brokers,
                n,
                parallelism,
                WriteMode::Insert,
                DeliveryGuarantee::ExactlyOnce,
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Pipeline::KafkaAtLeastOnce => "Kafka → map → Kafka, at-least-once",
            Pipeline::KafkaExactlyOnce => "Kafka → map → Kafka, exactly-once",
            Pipeline::PostgresCopy => "Kafka → Postgres, binary COPY",
            Pipeline::PostgresInsert => "Kafka → Postgres, multi-row INSERT",
            Pipeline::PostgresUpsert => "Kafka → Postgres, upsert",
            Pipeline::PostgresTwoPhase => "Kafka → Postgres, two-phase commit",
        }
    }
}

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
    // A failure ends the run: a benchmark does not retry.
    conf.set_string("restart-strategy.type", "none");
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
    let out = format!(
        "bench-out-{parallelism}-{guarantee:?}-{}",
        std::process::id()
    );
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

fn kafka_to_postgres(
    brokers: &str,
    n: u64,
    parallelism: u32,
    mode: WriteMode,
    guarantee: DeliveryGuarantee,
) -> Result<f64> {
    let url = std::env::var("EDDY_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let table = format!("eddy_bench_{}", std::process::id());
    let mut c = eddy_postgres::connect(&url)?;
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (event_id VARCHAR(50) PRIMARY KEY, user_name VARCHAR(50) NOT NULL, location VARCHAR(100) NOT NULL)"
    ))?;
    let env = env(parallelism);
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
            .set_delivery_guarantee(guarantee)
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

/// The records of `topic` a `read_committed` consumer sees (reads until 5 s pass without any).
fn count(brokers: &str, topic: &str) -> Result<u64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "eddy-bench-count")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let (mut n, mut last) = (0, Instant::now());
    while last.elapsed() < Duration::from_secs(5) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m?;
            n += 1;
            last = Instant::now();
        }
    }
    Ok(n)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let n = args.records;
    let own = match args.bootstrap_servers {
        Some(_) => None,
        None => Some(eddy_kafka::testing::KafkaCluster::start(1)?),
    };
    let brokers = match &own {
        Some(cluster) => cluster.bootstrap_servers().to_owned(),
        None => args.bootstrap_servers.clone().unwrap_or_default(),
    };
    if let Some(topic) = &args.create_topic {
        eddy_kafka::admin::create_topics(&brokers, &[(topic, 2)])?;
        return Ok(());
    }
    if let Some(topic) = &args.count {
        println!("{{\"records\": {}}}", count(&brokers, topic)?);
        return Ok(());
    }
    if let Some(pipeline) = args.pipeline {
        let rate = pipeline.run(&brokers, n, args.parallelism)?;
        println!("{{\"seconds\": {}}}", n as f64 / rate);
        return Ok(());
    }
    let start = Instant::now();
    produce(&brokers, "bench-in", n)?;
    println!(
        "produced {n} JSON events (~90 bytes) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    if args.produce {
        return Ok(());
    }
    println!("| pipeline | parallelism | records/s | records/s per subtask |");
    println!("|---|---|---|---|");
    for (pipeline, parallelisms) in [
        (Pipeline::KafkaAtLeastOnce, &[1, 2][..]),
        (Pipeline::KafkaExactlyOnce, &[1, 2]),
        (Pipeline::PostgresCopy, &[2]),
        (Pipeline::PostgresInsert, &[2]),
        (Pipeline::PostgresUpsert, &[2]),
        (Pipeline::PostgresTwoPhase, &[2]),
    ] {
        for &p in parallelisms {
            let rate = pipeline.run(&brokers, n, p)?;
            println!(
                "| {} | {p} | {rate:.0} | {:.0} |",
                pipeline.name(),
                rate / f64::from(p)
            );
        }
    }
    Ok(())
}
