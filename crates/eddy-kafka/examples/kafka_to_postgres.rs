//! Kafka → Eddy → Postgres, exactly once: JSON events from a topic, reduced to
//! `event_id, user_name, location`, written to a Postgres table in which each event_id appears
//! once, across crashes and restarts.
//!
//! ```text
//! # write 50,000 JSON events to the topic (created if missing)
//! cargo run --release -p eddy-kafka --example kafka_to_postgres -- produce \
//!     --bootstrap-servers 127.0.0.1:9092 --topic events --count 50000
//! # run the job (it streams until stopped); after a crash, --resume goes on from the newest
//! # checkpoint under --checkpoint-dir
//! cargo run --release -p eddy-kafka --example kafka_to_postgres -- run \
//!     --bootstrap-servers 127.0.0.1:9092 --topic events --group-id events-to-postgres \
//!     --postgres-url postgres://postgres@127.0.0.1:5432/postgres --table events \
//!     --checkpoint-interval 1000 --checkpoint-dir /tmp/eddy-k2p --resume
//! ```
//!
//! Two ways to exactly once (`--delivery`):
//! - `upsert` (the default, for any server): at-least-once delivery into a table with a unique
//!   index on `event_id`, written with `INSERT … ON CONFLICT (event_id) DO UPDATE`;
//! - `two-phase`: each checkpoint's rows are one transaction, prepared at the barrier and
//!   committed when the checkpoint completes (needs `max_prepared_transactions` > 0).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use eddy::prelude::*;
use eddy_kafka::{JsonDeserializer, KafkaSource, OffsetsInitializer};
use eddy_postgres::{DeliveryGuarantee, PostgresSink, WriteMode};
use rand::Rng;
use rand::seq::IndexedRandom;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "Kafka → Eddy → Postgres, exactly once")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes JSON events to the topic.
    Produce {
        /// Kafka brokers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap_servers: String,
        /// The topic (created with `--partitions` partitions if missing).
        #[arg(long, default_value = "events")]
        topic: String,
        /// How many events.
        #[arg(long, default_value_t = 50_000)]
        count: u64,
        /// The first event's number (event ids are `evt-<number>`).
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Partitions of a topic created here.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// A librdkafka producer property, `KEY=VALUE` (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
    /// Runs the job.
    Run(RunArgs),
}

#[derive(Parser)]
struct RunArgs {
    /// Kafka brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
    /// The topic to read.
    #[arg(long, default_value = "events")]
    topic: String,
    /// The consumer group offsets are committed to on checkpoints.
    #[arg(long, default_value = "events-to-postgres")]
    group_id: String,
    /// The Postgres server.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// The table (created if missing).
    #[arg(long, default_value = "events")]
    table: String,
    /// Checkpoint interval in ms.
    #[arg(long, default_value_t = 1000)]
    checkpoint_interval: u64,
    /// Where checkpoints go.
    #[arg(long, default_value = "/tmp/eddy-kafka-to-postgres")]
    checkpoint_dir: PathBuf,
    /// Go on from the newest checkpoint under `--checkpoint-dir`, if there is one.
    #[arg(long)]
    resume: bool,
    /// How exactly-once is reached.
    #[arg(long, value_enum, default_value_t = Delivery::Upsert)]
    delivery: Delivery,
    /// Read the topic up to its end at start, then stop (instead of streaming).
    #[arg(long)]
    bounded: bool,
    /// Parallelism of the job.
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum Delivery {
    /// At-least-once into a unique index on event_id.
    Upsert,
    /// Prepared transactions committed with checkpoints.
    TwoPhase,
}

/// An event as the producer writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Event {
    event_id: String,
    user_name: String,
    location: String,
    event_type: String,
    amount: f64,
    timestamp: i64,
}

/// What the table keeps.
type Row = (String, String, String);

/// The producer's arguments.
struct Produce<'a> {
    brokers: &'a str,
    topic: &'a str,
    count: u64,
    first: u64,
    partitions: i32,
    properties: &'a [String],
}

fn produce(args: Produce<'_>) -> Result<()> {
    let Produce {
        brokers,
        topic,
        count,
        first,
        partitions,
        properties,
    } = args;
    eddy_kafka::admin::create_topics(brokers, &[(topic, partitions)])?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    for p in properties {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--property '{p}' is not KEY=VALUE"))?;
        config.set(k, v);
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        config.create().context("creating the producer")?;
    let users = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let places = [
        "Berlin", "Lisbon", "Oslo", "Osaka", "Lima", "Nairobi", "Quebec",
    ];
    let kinds = ["click", "view", "purchase"];
    let mut rng = rand::rng();
    for i in first..first + count {
        let event = Event {
            event_id: format!("evt-{i:08}"),
            user_name: users.choose(&mut rng).copied().unwrap_or_default().into(),
            location: places.choose(&mut rng).copied().unwrap_or_default().into(),
            event_type: kinds.choose(&mut rng).copied().unwrap_or_default().into(),
            amount: f64::from(rng.random_range(0..100_000)) / 100.0,
            timestamp: 1_700_000_000_000 + i as i64,
        };
        let payload = serde_json::to_vec(&event)?;
        let record = BaseRecord::to(topic).key(&event.event_id).payload(&payload);
        eddy_kafka::producer::send(&producer, record)
            .with_context(|| format!("writing to topic '{topic}'"))?;
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the producer")?;
    println!("produced {count} events to {topic}");
    Ok(())
}

/// The newest completed checkpoint (`<dir>/<job>/chk-<n>`) under `dir`.
fn newest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for job in std::fs::read_dir(dir).ok()?.flatten() {
        for chk in std::fs::read_dir(job.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = chk.file_name();
            let metadata = chk.path().join("_metadata");
            if !name.to_string_lossy().starts_with("chk-") {
                continue;
            }
            if let Ok(modified) = metadata.metadata().and_then(|m| m.modified())
                && newest.as_ref().is_none_or(|(t, _)| modified > *t)
            {
                newest = Some((modified, chk.path()));
            }
        }
    }
    newest.map(|(_, p)| p)
}

fn create_table(url: &str, table: &str, unique: bool) -> Result<()> {
    let mut client = eddy_postgres::connect(url)?;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (id SERIAL PRIMARY KEY, event_id VARCHAR(50) NOT NULL, user_name VARCHAR(50) NOT NULL, location VARCHAR(100) NOT NULL)"
        ))
        .with_context(|| format!("creating table {table}"))?;
    if unique {
        client
            .batch_execute(&format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {table}_event_id_key ON {table} (event_id)"
            ))
            .with_context(|| format!("creating the unique index on {table}.event_id"))?;
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<()> {
    create_table(
        &args.postgres_url,
        &args.table,
        matches!(args.delivery, Delivery::Upsert),
    )?;
    let mut conf = Configuration::new();
    conf.set_string(
        "execution.checkpointing.interval",
        format!("{} ms", args.checkpoint_interval),
    );
    conf.set_string(
        "execution.checkpointing.dir",
        args.checkpoint_dir.display().to_string(),
    );
    conf.set_string(
        "execution.checkpointing.externalized-checkpoint-retention",
        "RETAIN_ON_CANCELLATION",
    );
    if args.resume
        && let Some(chk) = newest_checkpoint(&args.checkpoint_dir)
    {
        eprintln!("resuming from {}", chk.display());
        conf.set_string("execution.savepoint.path", chk.display().to_string());
    }
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(args.parallelism);
    let mut source = KafkaSource::builder()
        .set_bootstrap_servers(&args.bootstrap_servers)
        .set_topics([args.topic.as_str()])
        .set_group_id(&args.group_id)
        .set_starting_offsets(OffsetsInitializer::Committed { or_earliest: true })
        .set_deserializer(JsonDeserializer::<Event>::new());
    if args.bounded {
        source = source.set_bounded(OffsetsInitializer::Latest);
    }
    let (mode, guarantee) = match args.delivery {
        Delivery::Upsert => (
            WriteMode::Upsert {
                key_columns: vec!["event_id".into()],
            },
            DeliveryGuarantee::AtLeastOnce,
        ),
        Delivery::TwoPhase => (WriteMode::Insert, DeliveryGuarantee::ExactlyOnce),
    };
    let sink = PostgresSink::builder(&args.postgres_url, &args.table)
        .set_row(["event_id", "user_name", "location"], |r: &Row| {
            vec![
                r.0.as_str().into(),
                r.1.as_str().into(),
                r.2.as_str().into(),
            ]
        })
        .set_write_mode(mode)
        .set_delivery_guarantee(guarantee)
        .build()?;
    env.from_source(
        source.build()?,
        WatermarkStrategy::no_watermarks(),
        "events",
    )
    .uid("kafka-events")
    .map(|e: Event| (e.event_id, e.user_name, e.location))
    .uid("keep-columns")
    .sink_to(sink)
    .uid("postgres-events");
    env.execute("kafka_to_postgres")?;
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().command {
        Command::Produce {
            bootstrap_servers,
            topic,
            count,
            first,
            partitions,
            properties,
        } => produce(Produce {
            brokers: &bootstrap_servers,
            topic: &topic,
            count,
            first,
            partitions,
            properties: &properties,
        }),
        Command::Run(args) => run(args),
    }
}
