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
use crate::transactions::{CommitOutcome, ProducerIdentity, TransactionClient};

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
    /// Producers whose transaction was committed, by transactional id: the next transaction
    /// under the same id begins on the same producer, without initializing the id again.
    idle: Mutex<HashMap<String, Producer_>>,
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
                idle: Mutex::default(),
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

/// A prepared transaction: what the committer commits, kept in the checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KafkaCommittable {
    /// The transaction's transactional id.
    pub transactional_id: String,
    /// Its producer's id and epoch, with which a restored job commits it when the producer
    /// died with its process; `None` when the transaction holds no records (nothing to commit:
    /// the committable only records which subtask of how many wrote it).
    pub producer: Option<ProducerIdentity>,
    /// The subtask that wrote it.
    pub subtask: u32,
    /// The sink's parallelism then: a restore at a lower parallelism aborts what the subtasks
    /// that are gone left open.
    pub parallelism: u32,
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

    /// The transactional ids a new writer must not initialize: those of `restored` that hold
    /// records, and those this process prepared and has not committed yet.
    fn held_ids(&self, restored: &[KafkaCommittable]) -> Vec<String> {
        let mut held: Vec<String> = self.prepared.lock().keys().cloned().collect();
        held.extend(
            restored
                .iter()
                .filter(|c| c.producer.is_some())
                .map(|c| c.transactional_id.clone()),
        );
        held
    }

    /// Aborts whatever transaction is open under each of `ids`, by initializing them.
    fn abort_lingering<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Result<()> {
        for id in ids {
            let aborter = self.transactional_producer(id, &DeliveryErrors::default())?;
            aborter
                .abort_transaction(FLUSH_TIMEOUT)
                .map_err(|e| self.transaction_error(e))?;
        }
        Ok(())
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

    fn create_writer(
        &self,
        ctx: &SinkWriterContext,
        restored: &[KafkaCommittable],
    ) -> Result<KafkaWriter<T>> {
        let sink = &self.inner;
        let errors = DeliveryErrors::default();
        let subtask = ctx.task_info.subtask_index;
        let parallelism = ctx.task_info.parallelism;
        let (producer, transaction) = match (&sink.guarantee, &sink.transactional_id_prefix) {
            (DeliveryGuarantee::ExactlyOnce, Some(prefix)) => {
                sink.check_transaction_timeout(&ctx.config)?;
                let prefix = format!("{prefix}-{subtask}");
                // Transactions of the restored checkpoint (their committers commit them) and those
                // this process prepared and still has to commit (an in-process restart) are
                // held; every other id of the pool may hold a transaction an earlier attempt
                // left open, which initializing the id aborts.
                // A new attempt initializes its ids again, which fences committed producers
                // an earlier attempt in this process left for reuse.
                sink.idle
                    .lock()
                    .retain(|id, _| !id.starts_with(&format!("{prefix}-")));
                let held = sink.held_ids(restored);
                let free: Vec<(u32, String)> = (0..TRANSACTIONAL_ID_POOL)
                    .map(|slot| (slot, Transaction::id(&prefix, slot)))
                    .filter(|(_, id)| !held.contains(id))
                    .collect();
                let Some(((slot, id), lingering)) = free.split_first() else {
                    return Err(sink.pool_exhausted(&prefix));
                };
                sink.abort_lingering(lingering.iter().map(|(_, id)| id.as_str()))?;
                let producer = sink.transactional_producer(id, &errors)?;
                (
                    producer,
                    Some(Transaction {
                        prefix,
                        id: id.clone(),
                        slot: *slot,
                        records: 0,
                        held,
                        client: TransactionClient::new(&sink.brokers),
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
            subtask,
            parallelism,
        })
    }

    fn create_committer(&self, _ctx: &SinkWriterContext) -> Result<KafkaCommitter> {
        Ok(KafkaCommitter {
            prepared: Box::new(self.inner.clone()),
            brokers: self.inner.brokers.clone(),
            client: TransactionClient::new(&self.inner.brokers),
        })
    }

    fn abort_leftovers(
        &self,
        ctx: &SinkWriterContext,
        restored: &[KafkaCommittable],
    ) -> Result<()> {
        let sink = &self.inner;
        let Some(prefix) = &sink.transactional_id_prefix else {
            return Ok(());
        };
        // Transactions an earlier attempt of this subtask in this process prepared that no
        // restored checkpoint refers to; ids are `{prefix}-{subtask}-{slot}`.
        let subtask_of = |id: &str| -> Option<u32> {
            id.strip_prefix(&format!("{prefix}-"))?
                .split('-')
                .next()?
                .parse()
                .ok()
        };
        let leftovers: Vec<_> = {
            let mut prepared = sink.prepared.lock();
            let ids: Vec<_> = prepared
                .keys()
                .filter(|id| subtask_of(id).is_some_and(|s| ctx.cleans_up_after(s)))
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
        // Subtasks that a restore at a lower parallelism removed have no writer to abort what
        // they left open: subtask 0 aborts their whole pools (it committed their restored
        // transactions just before).
        if ctx.task_info.subtask_index == 0 {
            let before = restored.iter().map(|c| c.parallelism).max().unwrap_or(0);
            let held = sink.held_ids(restored);
            let gone: Vec<String> = (ctx.task_info.parallelism..before)
                .flat_map(|s| {
                    (0..TRANSACTIONAL_ID_POOL)
                        .map(move |slot| Transaction::id(&format!("{prefix}-{s}"), slot))
                })
                .filter(|id| !held.contains(id))
                .collect();
            sink.abort_lingering(gone.iter().map(String::as_str))?;
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
    /// Records written into the open transaction.
    records: u64,
    /// Ids of the restored checkpoint this writer must not initialize (committers commit them).
    held: Vec<String>,
    /// Asks the coordinator for a prepared transaction's producer id and epoch.
    client: TransactionClient,
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
    subtask: u32,
    parallelism: u32,
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
        if let Some(txn) = self.transaction.as_mut() {
            txn.records += 1;
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
        let (subtask, parallelism) = (self.subtask, self.parallelism);
        let Some(txn) = self.transaction.as_mut() else {
            return Ok(Vec::new());
        };
        let committable = |transactional_id: String, producer| KafkaCommittable {
            transactional_id,
            producer,
            subtask,
            parallelism,
        };
        if txn.records == 0 {
            // Nothing to commit: the transaction stays open for the next checkpoint.
            return Ok(vec![committable(txn.id.clone(), None)]);
        }
        // The producer's id and epoch go into the checkpoint, so that a restored job can
        // commit the transaction if this process dies before it does.
        let described = txn.client.describe(&txn.id)?;
        if described.state != "Ongoing" {
            return Err(KafkaConnectorError::Protocol {
                context: format!("preparing transaction '{}'", txn.id),
                reason: format!(
                    "the coordinator reports it {} after {} records were flushed",
                    described.state, txn.records
                ),
            }
            .into());
        }
        // The open transaction is prepared; the next records go into a new one, on a producer
        // of its own under the next free id of the pool, while the committer waits for the
        // checkpoint to complete.
        let (slot, id) = {
            let prepared = self.sink.prepared.lock();
            (1..=TRANSACTIONAL_ID_POOL)
                .map(|i| (txn.slot + i) % TRANSACTIONAL_ID_POOL)
                .map(|slot| (slot, Transaction::id(&txn.prefix, slot)))
                .find(|(_, id)| !prepared.contains_key(id) && !txn.held.contains(id))
                .ok_or_else(|| self.sink.pool_exhausted(&txn.prefix))?
        };
        txn.slot = slot;
        txn.records = 0;
        let reused = self.sink.idle.lock().remove(&id);
        let next = match reused {
            Some(producer) => {
                producer
                    .begin_transaction()
                    .map_err(|e| self.sink.transaction_error(e))?;
                producer
            }
            None => self
                .sink
                .transactional_producer(&id, &DeliveryErrors::default())?,
        };
        self.errors = next.context().as_ref().clone();
        let prepared_id = std::mem::replace(&mut txn.id, id);
        let prepared = std::mem::replace(&mut self.producer, next);
        self.sink
            .prepared
            .lock()
            .insert(prepared_id.clone(), prepared);
        Ok(vec![committable(prepared_id, Some(described.producer))])
    }
}

/// Commits prepared transactions when their checkpoint completes.
pub struct KafkaCommitter {
    prepared: Box<dyn PreparedTransactions>,
    brokers: String,
    client: TransactionClient,
}

/// The prepared transactions of a sink, whatever its record type.
trait PreparedTransactions: Send {
    fn take(&self, id: &str) -> Option<Producer_>;
    /// Keeps a producer whose transaction was committed for the next transaction of its id.
    fn release(&self, id: String, producer: Producer_);
}

impl<T: 'static> PreparedTransactions for Arc<SinkInner<T>> {
    fn take(&self, id: &str) -> Option<Producer_> {
        self.prepared.lock().remove(id)
    }

    fn release(&self, id: String, producer: Producer_) {
        self.idle.lock().insert(id, producer);
    }
}

impl Committer<KafkaCommittable> for KafkaCommitter {
    fn commit(&mut self, committables: Vec<KafkaCommittable>) -> Result<()> {
        for c in committables {
            let Some(identity) = c.producer else {
                continue;
            };
            let id = &c.transactional_id;
            if let Some(producer) = self.prepared.take(id) {
                producer.commit_transaction(FLUSH_TIMEOUT).map_err(|e| {
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
                    ) {
                        // The coordinator aborted it first: its timeout passed.
                        return KafkaConnectorError::TransactionLost {
                            transactional_id: id.clone(),
                            reason: e.to_string(),
                        }
                        .into();
                    }
                    let context = format!("committing transaction '{id}'");
                    transaction_error(&self.brokers, &context, e)
                })?;
                self.prepared.release(id.clone(), producer);
                continue;
            }
            // Its producer died with the process that prepared it: finish the transaction
            // over the protocol under the producer's id and epoch.
            match self.client.commit(id, identity)? {
                CommitOutcome::Committed => {}
                CommitOutcome::Fenced(reason) => tracing::warn!(
                    "kafka transaction '{id}' (producer {} epoch {}) was committed or aborted before: its transactional id has been initialized again since ({reason})",
                    identity.producer_id,
                    identity.producer_epoch
                ),
                CommitOutcome::Lost(reason) => {
                    return Err(KafkaConnectorError::TransactionLost {
                        transactional_id: id.clone(),
                        reason,
                    }
                    .into());
                }
            }
        }
        Ok(())
    }
}
