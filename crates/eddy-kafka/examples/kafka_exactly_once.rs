//! Kafka → keyed running count → Kafka, exactly once: each input record `id,key` becomes one
//! output record `id,key,n` (the record is the key's n-th), visible once to `read_committed`
//! consumers however often the job is killed and resumed from its newest checkpoint.
//!
//! ```text
//! scripts/services.sh kafka-broker &
//! cargo run --release -p eddy-kafka --example kafka_exactly_once -- produce --count 100000
//! cargo run --release -p eddy-kafka --example kafka_exactly_once -- run \
//!     --checkpoint-dir /tmp/eddy-k2k --resume
//! # kill -9 it at any moment and run the same command again: nothing is lost or doubled
//! ```
//!
//! The sink writes one Kafka transaction per checkpoint and commits it when the checkpoint
//! completes; a transaction whose checkpoint completed but whose process died first is
//! committed by the restored job. `--kill-during-checkpoint N` and `--kill-before-commit N`
//! make the process SIGKILL itself at those two moments of its N-th checkpoint (for the tests).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use eddy::prelude::*;
use eddy::runtime::Result as RuntimeResult;
use eddy::runtime::sink::{
    Committer, CommittingSinkWriter, SinkWriter, SinkWriterContext, TwoPhaseCommittingSink,
};
use eddy_kafka::{
    DeliveryGuarantee, KafkaCommittable, KafkaCommitter, KafkaRecordSerializer, KafkaSink,
    KafkaSource, KafkaWriter, OffsetsInitializer, string_deserializer,
};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[derive(Parser)]
#[command(about = "Kafka → keyed running count → Kafka, exactly once")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes `id,key` records, keyed by `key`, to the input topic (created if missing).
    Produce {
        /// Kafka brokers.
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap_servers: String,
        /// The topic.
        #[arg(long, default_value = "k2k-input")]
        topic: String,
        /// How many records.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// How many distinct keys.
        #[arg(long, default_value_t = 100)]
        keys: u64,
        /// Partitions of a topic created here.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Runs the job until it is stopped.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kafka brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
    /// The input topic.
    #[arg(long, default_value = "k2k-input")]
    input: String,
    /// The output topic (created with as many partitions as the input if missing).
    #[arg(long, default_value = "k2k-output")]
    output: String,
    /// The consumer group offsets are committed to, and the transactional id prefix.
    #[arg(long, default_value = "k2k")]
    group_id: String,
    /// Parallelism.
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
    /// Checkpoint interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    checkpoint_interval: u64,
    /// Where checkpoints go.
    #[arg(long)]
    checkpoint_dir: PathBuf,
    /// Resume from the newest checkpoint under `--checkpoint-dir`, if there is one.
    #[arg(long)]
    resume: bool,
    /// The sink's `transaction.timeout.ms`: how long the broker keeps a transaction open.
    #[arg(long, default_value_t = 60_000)]
    transaction_timeout_ms: u64,
    /// Restarts of the job inside this process after a failure (fixed delay of 1 s); 0 lets
    /// a failure end the process.
    #[arg(long, default_value_t = 0)]
    restart_attempts: u32,
    /// SIGKILL this process at the barrier of its N-th checkpoint that holds records, once the
    /// sink has prepared its transaction.
    #[arg(long, value_name = "N")]
    kill_during_checkpoint: Option<u64>,
    /// SIGKILL this process when its N-th checkpoint that holds records has completed, before
    /// the sink commits.
    #[arg(long, value_name = "N")]
    kill_before_commit: Option<u64>,
    /// Configuration overrides, `-D key=value` (e.g. `-D
    /// execution.checkpointing.unaligned.enabled=true`).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic_properties: Vec<String>,
}

fn produce(brokers: &str, topic: &str, count: u64, keys: u64, partitions: i32) -> Result<()> {
    eddy_kafka::admin::create_topics(brokers, &[(topic, partitions)])?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    for id in 0..count {
        let key = format!("key-{}", id % keys.max(1));
        let value = format!("{id},{key}");
        eddy_kafka::producer::send(&producer, BaseRecord::to(topic).key(&key).payload(&value))?;
    }
    producer.flush(std::time::Duration::from_secs(60))?;
    println!("produced {count} records to {topic}");
    Ok(())
}

/// The newest completed checkpoint under `dir`: the highest `chk-N` with metadata of the job
/// that wrote last.
fn newest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let mut newest: Option<(std::time::SystemTime, u64, PathBuf)> = None;
    for job in std::fs::read_dir(dir).ok()?.flatten() {
        for chk in std::fs::read_dir(job.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = chk.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if let Ok(modified) = chk
                .path()
                .join("_metadata")
                .metadata()
                .and_then(|m| m.modified())
                && newest
                    .as_ref()
                    .is_none_or(|(t, m, _)| (modified, n) > (*t, *m))
            {
                newest = Some((modified, n, chk.path()));
            }
        }
    }
    newest.map(|(_, _, p)| p)
}

/// Makes the process SIGKILL itself, as a crash would end it.
fn kill_self(moment: &str) -> ! {
    eprintln!("killing myself {moment}");
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    std::process::abort()
}

/// The Kafka sink, with the two kill points of `--kill-during-checkpoint` and
/// `--kill-before-commit`.
struct Crashing {
    sink: KafkaSink<String>,
    during_checkpoint: Option<u64>,
    before_commit: Option<u64>,
}

struct CrashingWriter {
    writer: KafkaWriter<String>,
    kill_at: Option<u64>,
    checkpoints: u64,
}

struct CrashingCommitter {
    committer: KafkaCommitter,
    kill_at: Option<u64>,
    commits: u64,
}

impl TwoPhaseCommittingSink<String> for Crashing {
    type Writer = CrashingWriter;
    type Committer = CrashingCommitter;

    fn create_writer(
        &self,
        ctx: &SinkWriterContext,
        restored: &[KafkaCommittable],
    ) -> RuntimeResult<CrashingWriter> {
        Ok(CrashingWriter {
            writer: self.sink.create_writer(ctx, restored)?,
            kill_at: self.during_checkpoint,
            checkpoints: 0,
        })
    }

    fn create_committer(&self, ctx: &SinkWriterContext) -> RuntimeResult<CrashingCommitter> {
        Ok(CrashingCommitter {
            committer: self.sink.create_committer(ctx)?,
            kill_at: self.before_commit,
            commits: 0,
        })
    }

    fn abort_leftovers(
        &self,
        ctx: &SinkWriterContext,
        restored: &[KafkaCommittable],
    ) -> RuntimeResult<()> {
        self.sink.abort_leftovers(ctx, restored)
    }
}

impl SinkWriter<String> for CrashingWriter {
    fn write(&mut self, value: String, timestamp: Option<i64>) -> RuntimeResult<()> {
        self.writer.write(value, timestamp)
    }

    fn flush(&mut self, end_of_input: bool) -> RuntimeResult<()> {
        self.writer.flush(end_of_input)
    }

    fn close(&mut self) -> RuntimeResult<()> {
        self.writer.close()
    }
}

impl CommittingSinkWriter<String> for CrashingWriter {
    type Committable = KafkaCommittable;

    fn prepare_commit(&mut self) -> RuntimeResult<Vec<KafkaCommittable>> {
        let prepared = self.writer.prepare_commit()?;
        if prepared.iter().any(|c| c.producer.is_some()) {
            self.checkpoints += 1;
            if self.kill_at == Some(self.checkpoints) {
                kill_self("during a checkpoint, its transaction prepared");
            }
        }
        Ok(prepared)
    }
}

impl Committer<KafkaCommittable> for CrashingCommitter {
    fn commit(&mut self, committables: Vec<KafkaCommittable>) -> RuntimeResult<()> {
        if committables.iter().any(|c| c.producer.is_some()) {
            self.commits += 1;
            if self.kill_at == Some(self.commits) {
                kill_self("after a checkpoint completed, before committing its transaction");
            }
        }
        self.committer.commit(committables)
    }
}

fn run(args: RunArgs) -> Result<()> {
    let partitions = {
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &args.bootstrap_servers)
            .create()?;
        let md = rdkafka::consumer::Consumer::fetch_metadata(
            &consumer,
            Some(&args.input),
            std::time::Duration::from_secs(30),
        )?;
        md.topics().first().map_or(0, |t| t.partitions().len())
    };
    anyhow::ensure!(partitions > 0, "topic '{}' does not exist", args.input);
    eddy_kafka::admin::create_topics(
        &args.bootstrap_servers,
        &[(&args.output, partitions as i32)],
    )?;
    // `-D` arguments (and EDDY_CONF_DIR) first; the settings below are the example's own.
    let mut conf = Configuration::from_environment()?;
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
    if args.restart_attempts == 0 {
        conf.set_string("restart-strategy.type", "none");
    } else {
        conf.set_string("restart-strategy.type", "fixed-delay");
        conf.set_string(
            "restart-strategy.fixed-delay.attempts",
            args.restart_attempts.to_string(),
        );
        conf.set_string("restart-strategy.fixed-delay.delay", "1 s");
    }
    if args.resume
        && let Some(chk) = newest_checkpoint(&args.checkpoint_dir)
    {
        eprintln!("resuming from {}", chk.display());
        conf.set_string("execution.savepoint.path", chk.display().to_string());
    }
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(args.parallelism);
    let source = KafkaSource::builder()
        .set_bootstrap_servers(&args.bootstrap_servers)
        .set_topics([args.input.as_str()])
        .set_group_id(&args.group_id)
        .set_starting_offsets(OffsetsInitializer::Committed { or_earliest: true })
        .set_deserializer(string_deserializer())
        .build()?;
    let sink = KafkaSink::builder()
        .set_bootstrap_servers(&args.bootstrap_servers)
        .set_record_serializer(
            KafkaRecordSerializer::string(&args.output)
                .with_key(|s: &String| s.split(',').nth(1).map(|k| k.as_bytes().to_vec())),
        )
        .set_delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .set_transactional_id_prefix(&args.group_id)
        .set_property(
            "transaction.timeout.ms",
            args.transaction_timeout_ms.to_string(),
        )
        .build()?;
    env.from_source(source, WatermarkStrategy::no_watermarks(), "input")
        .uid("kafka-input")
        .try_map(|line: String| {
            let (id, key) = line
                .split_once(',')
                .ok_or_else(|| format!("'{line}' is not 'id,key'"))?;
            let id: u64 = id.parse().map_err(|e| format!("'{line}': {e}"))?;
            Ok((key.to_owned(), id, 1u64))
        })
        .uid("parse")
        .key_by(|r: &(String, u64, u64)| r.0.clone())
        .reduce(|count: (String, u64, u64), next: (String, u64, u64)| (next.0, next.1, count.2 + 1))
        .uid("count-per-key")
        .map(|(key, id, n): (String, u64, u64)| format!("{id},{key},{n}"))
        .uid("format")
        .sink_to(Crashing {
            sink,
            during_checkpoint: args.kill_during_checkpoint,
            before_commit: args.kill_before_commit,
        })
        .uid("kafka-output");
    env.execute("kafka_exactly_once")
        .context("the job failed")?;
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
            keys,
            partitions,
        } => produce(&bootstrap_servers, &topic, count, keys, partitions),
        Command::Run(args) => run(args),
    }
}
