//! The Kafka sink: at-least-once (flush at every checkpoint) or exactly-once (a transaction
//! per checkpoint).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use eddy::runtime::config::options::{
    CHECKPOINTING_INTERVAL, EXP_DELAY_MAX, FAILURE_RATE_DELAY, FIXED_DELAY_DELAY, RESTART_STRATEGY,
};
use eddy::runtime::config::{Configuration, RestartStrategyType};
use eddy::runtime::sink::{
    Committer, CommittingSinkWriter, SinkWriter, SinkWriterContext, TwoPhaseCommittingSink,
};
use eddy::runtime::{Result, RuntimeError};
use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::{Deserialize, Serialize};

use crate::error::KafkaConnectorError;
use crate::record::KafkaRecordSerializer;

/// How long a flush, or a transaction step, may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Transactional ids per subtask, used in turn (`{prefix}-{subtask}-{0..POOL}`): a bounded set,
/// so that a new attempt can abort whatever an earlier one left open in any of them.
const TRANSACTIONAL_ID_POOL: u32 = 8;

/// librdkafka's default `transaction.timeout.ms`.
const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// What the sink promises (Flink's `DeliveryGuarantee`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Records may be lost on failure: nothing is flushed at checkpoints.
    None,
    /// Every record is written at least once: the producer is flushed at every checkpoint, and
    /// a failed delivery fails the checkpoint.
    AtLeastOnce,
    /// Every record is visible exactly once to `read_committed` consumers: one transaction per
    /// checkpoint, committed when the checkpoint completes.
    ExactlyOnce,
}

/// Writes a stream to Kafka (Flink's `KafkaSink`). Build one with [`KafkaSink::builder`].
pub struct KafkaSink<T> {
    inner: Arc<SinkInner<T>>,
}

struct SinkInner<T> {
    brokers: String,
    serializer: KafkaRecordSerializer<T>,
    guarantee: DeliveryGuarantee,
    transactional_id_prefix: Option<String>,
    properties: Vec<(String, String)>,
    /// Producers whose transaction is prepared and not yet committed, by transactional id, so
    /// that the committer (after the checkpoint completes, or after an in-process restart)
    /// can commit them.
    prepared: Mutex<HashMap<String, Producer_>>,
}

type Producer_ = ThreadedProducer<DeliveryErrors>;

/// Builds a [`KafkaSink`].
pub struct KafkaSinkBuilder<T> {
    brokers: Option<String>,
    serializer: Option<KafkaRecordSerializer<T>>,
    guarantee: DeliveryGuarantee,
    transactional_id_prefix: Option<String>,
    properties: Vec<(String, String)>,
}

impl<T: 'static> KafkaSink<T> {
    /// A builder; the default guarantee is at-least-once.
    pub fn builder() -> KafkaSinkBuilder<T> {
        KafkaSinkBuilder {
            brokers: None,
            serializer: None,
            guarantee: DeliveryGuarantee::AtLeastOnce,
            transactional_id_prefix: None,
            properties: Vec::new(),
        }
    }
}

impl<T: 'static> KafkaSinkBuilder<T> {
    /// The brokers to bootstrap from.
    pub fn set_bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.brokers = Some(servers.into());
        self
    }

    /// How values become records.
    pub fn set_record_serializer(mut self, serializer: KafkaRecordSerializer<T>) -> Self {
        self.serializer = Some(serializer);
        self
    }

    /// The delivery guarantee.
    pub fn set_delivery_guarantee(mut self, guarantee: DeliveryGuarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// The prefix of the sink's transactional ids (exactly-once only); unique per sink and job.
    pub fn set_transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.transactional_id_prefix = Some(prefix.into());
        self
    }

    /// Any librdkafka producer property (`transaction.timeout.ms`, `linger.ms`, ...).
    pub fn set_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The sink, or what is missing.
    pub fn build(self) -> Result<KafkaSink<T>, KafkaConnectorError> {
        let missing = |what: &str| KafkaConnectorError::Config(format!("the sink needs {what}"));
        let brokers = self.brokers.ok_or_else(|| missing("bootstrap servers"))?;
        let serializer = self
            .serializer
            .ok_or_else(|| missing("a record serializer"))?;
        if self.guarantee == DeliveryGuarantee::ExactlyOnce
            && self.transactional_id_prefix.is_none()
        {
            return Err(missing(
                "a transactional id prefix for exactly-once delivery",
            ));
        }
        Ok(KafkaSink {
            inner: Arc::new(SinkInner {
                brokers,
                serializer,
                guarantee: self.guarantee,
                transactional_id_prefix: self.transactional_id_prefix,
                properties: self.properties,
                prepared: Mutex::default(),
            }),
        })
    }
}

/// Collects the first delivery failure of a producer.
#[derive(Clone, Default)]
pub struct DeliveryErrors(Arc<Mutex<Option<String>>>);

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, msg)) = result {
            use rdkafka::Message;
            let mut first = self.0.lock();
            if first.is_none() {
                *first = Some(format!(
                    "delivery to topic '{}' partition {} failed: {e}",
                    msg.topic(),
                    msg.partition()
                ));
            }
        }
    }
}

/// A transaction step's error; a broker without transactions is named as such. (Some
/// Kafka-compatible brokers grant transactional producer ids but have no `EndTxn`: the first
/// commit tells.)
fn transaction_error(brokers: &str, context: &str, e: KafkaError) -> RuntimeError {
    let unsupported = matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnsupportedVersion | RDKafkaErrorCode::UnsupportedFeature)
    ) || e.to_string().contains("not supported by broker");
    if unsupported {
        KafkaConnectorError::TransactionsUnsupported {
            brokers: brokers.to_owned(),
            reason: e.to_string(),
        }
        .into()
    } else {
        KafkaConnectorError::client(context, e).into()
    }
}

/// A prepared transaction: what the committer commits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KafkaCommittable {
    /// The transaction's transactional id.
    pub transactional_id: String,
}

impl<T: 'static> SinkInner<T> {
    fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        if self.guarantee != DeliveryGuarantee::None {
            c.set("enable.idempotence", "true");
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    fn producer(&self, config: &ClientConfig, errors: &DeliveryErrors) -> Result<Producer_> {
        Ok(config.create_with_context(errors.clone()).map_err(|e| {
            KafkaConnectorError::client(format!("creating a producer for {}", self.brokers), e)
        })?)
    }

    /// A transactional producer with a fresh transaction open. Initializing a transactional id
    /// aborts whatever transaction an earlier producer with the same id left open.
    fn transactional_producer(&self, id: &str, errors: &DeliveryErrors) -> Result<Producer_> {
        let mut config = self.producer_config();
        config.set("transactional.id", id);
        let producer = self.producer(&config, errors)?;
        producer
            .init_transactions(FLUSH_TIMEOUT)
            .map_err(|e| self.transaction_error(e))?;
        producer
            .begin_transaction()
            .map_err(|e| self.transaction_error(e))?;
        Ok(producer)
    }

    fn transaction_error(&self, e: KafkaError) -> RuntimeError {
        transaction_error(&self.brokers, "running a transaction", e)
    }

    fn pool_exhausted(&self, prefix: &str) -> RuntimeError {
        KafkaConnectorError::Config(format!(
            "all {TRANSACTIONAL_ID_POOL} transactional ids of '{prefix}' hold transactions waiting for their checkpoints to complete; checkpoints are failing or completing too slowly"
        ))
        .into()
    }

    /// Checks that a transaction can outlive a checkpoint interval plus a restart: otherwise
    /// the broker would abort transactions that a completed checkpoint still has to commit.
    fn check_transaction_timeout(&self, config: &Configuration) -> Result<()> {
        let timeout = match self
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "transaction.timeout.ms")
        {
            Some((_, v)) => Duration::from_millis(v.trim().parse().map_err(|_| {
                KafkaConnectorError::Config(format!("transaction.timeout.ms '{v}' is not a number"))
            })?),
            None => DEFAULT_TRANSACTION_TIMEOUT,
        };
        let interval = config
            .get_optional(&CHECKPOINTING_INTERVAL)?
            .unwrap_or_default();
        let restart = match config.get_optional(&RESTART_STRATEGY)? {
            Some(RestartStrategyType::None) => Duration::ZERO,
            Some(RestartStrategyType::FixedDelay) => config.get(&FIXED_DELAY_DELAY)?,
            Some(RestartStrategyType::FailureRate) => config.get(&FAILURE_RATE_DELAY)?,
            Some(RestartStrategyType::ExponentialDelay) | None => config.get(&EXP_DELAY_MAX)?,
        };
        if timeout < interval + restart {
            return Err(KafkaConnectorError::Config(format!(
                "transaction.timeout.ms ({} ms) is shorter than the checkpoint interval ({} ms) plus the restart delay ({} ms): the broker could abort a transaction before its checkpoint commits it",
                timeout.as_millis(),
                interval.as_millis(),
                restart.as_millis()
            ))
            .into());
        }
        Ok(())
    }
}

impl<T: Send + 'static> TwoPhaseCommittingSink<T> for KafkaSink<T> {
    type Writer = KafkaWriter<T>;
    type Committer = KafkaCommitter;

    fn create_writer(&self, ctx: &SinkWriterContext) -> Result<KafkaWriter<T>> {
        let sink = &self.inner;
        let errors = DeliveryErrors::default();
        let subtask = ctx.task_info.subtask_index;
        let (producer, transaction) = match (&sink.guarantee, &sink.transactional_id_prefix) {
            (DeliveryGuarantee::ExactlyOnce, Some(prefix)) => {
                sink.check_transaction_timeout(&ctx.config)?;
                let prefix = format!("{prefix}-{subtask}");
                // Initializing a transactional id aborts the transaction an earlier producer
                // left open under it: do so for the whole pool, except for transactions this
                // process prepared and still has to commit (an in-process restart).
                let held: Vec<String> = sink.prepared.lock().keys().cloned().collect();
                let mut free = Vec::new();
                for slot in 0..TRANSACTIONAL_ID_POOL {
                    let id = Transaction::id(&prefix, slot);
                    if !held.contains(&id) {
                        free.push((slot, id));
                    }
                }
                let Some(((slot, id), lingering)) = free.split_first() else {
                    return Err(sink.pool_exhausted(&prefix));
                };
                for (_, id) in lingering {
                    let aborter = sink.transactional_producer(id, &DeliveryErrors::default())?;
                    aborter
                        .abort_transaction(FLUSH_TIMEOUT)
                        .map_err(|e| sink.transaction_error(e))?;
                }
                let producer = sink.transactional_producer(id, &errors)?;
                (
                    producer,
                    Some(Transaction {
                        prefix,
                        id: id.clone(),
                        slot: *slot,
                    }),
                )
            }
            _ => (sink.producer(&sink.producer_config(), &errors)?, None),
        };
        let partitions = if sink.serializer.has_partitioner() {
            partition_count(&producer, sink.serializer.topic())?
        } else {
            1
        };
        Ok(KafkaWriter {
            sink: sink.clone(),
            producer,
            errors,
            transaction,
            partitions,
        })
    }

    fn create_committer(&self, _ctx: &SinkWriterContext) -> Result<KafkaCommitter> {
        Ok(KafkaCommitter {
            prepared: Box::new(self.inner.clone()),
            brokers: self.inner.brokers.clone(),
        })
    }

    fn abort_leftovers(
        &self,
        _ctx: &SinkWriterContext,
        restored: &[KafkaCommittable],
    ) -> Result<()> {
        // Transactions an earlier attempt prepared that no restored checkpoint refers to.
        let leftovers: Vec<_> = {
            let mut prepared = self.inner.prepared.lock();
            let ids: Vec<_> = prepared
                .keys()
                .filter(|id| !restored.iter().any(|c| &c.transactional_id == *id))
                .cloned()
                .collect();
            ids.into_iter()
                .filter_map(|id| prepared.remove_entry(&id))
                .collect()
        };
        for (id, producer) in leftovers {
            producer.abort_transaction(FLUSH_TIMEOUT).map_err(|e| {
                KafkaConnectorError::client(format!("aborting transaction '{id}'"), e)
            })?;
        }
        Ok(())
    }
}

fn partition_count(producer: &Producer_, topic: &str) -> Result<i32> {
    let md = producer
        .client()
        .fetch_metadata(Some(topic), FLUSH_TIMEOUT)
        .map_err(|e| {
            KafkaConnectorError::client(format!("reading the metadata of '{topic}'"), e)
        })?;
    let n = md.topics().first().map_or(0, |t| t.partitions().len());
    if n == 0 {
        return Err(KafkaConnectorError::Config(format!("topic '{topic}' does not exist")).into());
    }
    Ok(n as i32)
}

struct Transaction {
    /// `{prefix}-{subtask}`.
    prefix: String,
    /// The open transaction's id.
    id: String,
    /// The pool slot of the open transaction.
    slot: u32,
}

impl Transaction {
    fn id(prefix: &str, slot: u32) -> String {
        format!("{prefix}-{slot}")
    }
}

/// Writes the records of one subtask.
pub struct KafkaWriter<T> {
    sink: Arc<SinkInner<T>>,
    producer: Producer_,
    errors: DeliveryErrors,
    transaction: Option<Transaction>,
    partitions: i32,
}

impl<T> KafkaWriter<T> {
    fn check_deliveries(&self) -> Result<()> {
        match self.errors.0.lock().take() {
            Some(e) => Err(KafkaConnectorError::Delivery(e).into()),
            None => Ok(()),
        }
    }

    fn flush_producer(&self) -> Result<()> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| KafkaConnectorError::client("flushing the producer", e))?;
        self.check_deliveries()
    }
}

impl<T: 'static> SinkWriter<T> for KafkaWriter<T> {
    fn write(&mut self, value: T, timestamp: Option<i64>) -> Result<()> {
        let serializer = &self.sink.serializer;
        let rec = serializer
            .serialize(&value, self.partitions)
            .map_err(|e| RuntimeError::Serialization(format!("kafka record: {e}")))?;
        let mut out = BaseRecord::<[u8], [u8]>::to(serializer.topic()).payload(&rec.payload);
        if let Some(p) = rec.partition {
            out = out.partition(p);
        }
        if let Some(k) = &rec.key {
            out = out.key(k);
        }
        if let Some(ts) = timestamp {
            out = out.timestamp(ts);
        }
        loop {
            match self.producer.send(out) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Back pressure: wait for the queue to drain, failing on a lost delivery.
                    out = back;
                    std::thread::sleep(Duration::from_millis(1));
                    self.check_deliveries()?;
                }
                Err((e, _)) => {
                    let context = format!("writing to topic '{}'", serializer.topic());
                    return Err(KafkaConnectorError::client(context, e).into());
                }
            }
        }
    }

    fn flush(&mut self, _end_of_input: bool) -> Result<()> {
        if self.sink.guarantee == DeliveryGuarantee::None {
            return Ok(());
        }
        self.flush_producer()
    }

    fn close(&mut self) -> Result<()> {
        if self.transaction.is_some() {
            // What was written since the last checkpoint is never committed: abort it now so
            // that `read_committed` consumers don't wait for the broker's timeout.
            if let Err(e) = self.producer.abort_transaction(FLUSH_TIMEOUT) {
                tracing::warn!("aborting the open kafka transaction: {e}");
            }
        }
        Ok(())
    }
}

impl<T: 'static> CommittingSinkWriter<T> for KafkaWriter<T> {
    type Committable = KafkaCommittable;

    fn prepare_commit(&mut self) -> Result<Vec<KafkaCommittable>> {
        if self.sink.guarantee == DeliveryGuarantee::None {
            return Ok(Vec::new());
        }
        self.flush_producer()?;
        let Some(txn) = self.transaction.as_mut() else {
            return Ok(Vec::new());
        };
        // The open transaction is prepared; the next records go into a new one, on a producer
        // of its own under the next free id of the pool, while the committer waits for the
        // checkpoint to complete.
        let (slot, id) = {
            let prepared = self.sink.prepared.lock();
            (1..=TRANSACTIONAL_ID_POOL)
                .map(|i| (txn.slot + i) % TRANSACTIONAL_ID_POOL)
                .map(|slot| (slot, Transaction::id(&txn.prefix, slot)))
                .find(|(_, id)| !prepared.contains_key(id))
                .ok_or_else(|| self.sink.pool_exhausted(&txn.prefix))?
        };
        txn.slot = slot;
        let errors = DeliveryErrors::default();
        let next = self.sink.transactional_producer(&id, &errors)?;
        let prepared_id = std::mem::replace(&mut txn.id, id);
        let prepared = std::mem::replace(&mut self.producer, next);
        self.errors = errors;
        self.sink
            .prepared
            .lock()
            .insert(prepared_id.clone(), prepared);
        Ok(vec![KafkaCommittable {
            transactional_id: prepared_id,
        }])
    }
}

/// Commits prepared transactions when their checkpoint completes.
pub struct KafkaCommitter {
    prepared: Box<dyn PreparedTransactions>,
    brokers: String,
}

/// The prepared transactions of a sink, whatever its record type.
trait PreparedTransactions: Send {
    fn take(&self, id: &str) -> Option<Producer_>;
}

impl<T: 'static> PreparedTransactions for Arc<SinkInner<T>> {
    fn take(&self, id: &str) -> Option<Producer_> {
        self.prepared.lock().remove(id)
    }
}

impl Committer<KafkaCommittable> for KafkaCommitter {
    fn commit(&mut self, committables: Vec<KafkaCommittable>) -> Result<()> {
        for c in committables {
            let Some(producer) = self.prepared.take(&c.transactional_id) else {
                // Committed before, or its producer died with the process: librdkafka can't
                // resume a transaction of another producer (see ARCHITECTURE.md).
                tracing::warn!(
                    "kafka transaction '{}' of a restored checkpoint is not open in this process: if the process that prepared it ended before committing it, its records are lost (librdkafka cannot resume another producer's transaction)",
                    c.transactional_id
                );
                continue;
            };
            producer.commit_transaction(FLUSH_TIMEOUT).map_err(|e| {
                let context = format!("committing transaction '{}'", c.transactional_id);
                transaction_error(&self.brokers, &context, e)
            })?;
        }
        Ok(())
    }
}
