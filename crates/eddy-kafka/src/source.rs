//! The Kafka source: partitions as splits, positions in checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::runtime::element::NO_TIMESTAMP;
use eddy::runtime::metrics::Counter;
use eddy::runtime::source::{
    Boundedness, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext, SourceSplit,
};
use eddy::runtime::{Result, RuntimeError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{KafkaConnectorError, retrying};
use crate::record::{ConsumerRecord, KafkaRecordDeserializer};

/// How long a metadata or offset request to the broker may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where reading a partition starts (or, for a bounded source, stops).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetsInitializer {
    /// The earliest offset still in the partition.
    Earliest,
    /// The offset after the last record in the partition when the source starts.
    Latest,
    /// The first offset whose record's timestamp is at or after this one (ms); the latest
    /// offset when there is none.
    Timestamp(i64),
    /// The offset the consumer group committed; without one, `Earliest` (when `true`) or
    /// `Latest`.
    Committed {
        /// Start from the earliest offset when the group has committed nothing.
        or_earliest: bool,
    },
}

/// What happens to a record the deserializer rejects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadRecordPolicy {
    /// Fail the job, naming the topic, partition and offset. The restart strategy's limits
    /// apply, so a poison record can't keep a job restarting forever.
    Fail,
    /// Skip the record, log it, and count it in the `numRecordsInErrors` metric.
    Skip,
    /// Write the record as it is to this topic, with headers naming where it came from and why
    /// it was rejected, count it, and go on. Dead letters are flushed at every checkpoint.
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
    },
}

/// Which topics to read.
#[derive(Clone, Debug)]
enum Topics {
    List(Vec<String>),
    Pattern(Regex),
}

/// One partition of a topic, with the position reading goes on from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KafkaPartitionSplit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to read; `None` until the starting offset is resolved.
    pub next_offset: Option<i64>,
    /// For a bounded source, the offset reading stops before; `None` until resolved.
    pub stopping_offset: Option<i64>,
}

impl SourceSplit for KafkaPartitionSplit {
    fn split_id(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

struct SourceConfig<T> {
    brokers: String,
    topics: Topics,
    group_id: Option<String>,
    properties: Vec<(String, String)>,
    starting: OffsetsInitializer,
    stopping: Option<OffsetsInitializer>,
    deserializer: Arc<dyn KafkaRecordDeserializer<T>>,
    bad_records: BadRecordPolicy,
    discovery_interval: Option<Duration>,
}

/// Reads Kafka topics in parallel (Flink's `KafkaSource`). Build one with
/// [`KafkaSource::builder`].
pub struct KafkaSource<T> {
    config: Arc<SourceConfig<T>>,
}

/// Builds a [`KafkaSource`].
pub struct KafkaSourceBuilder<T> {
    brokers: Option<String>,
    topics: Option<Topics>,
    group_id: Option<String>,
    properties: Vec<(String, String)>,
    starting: OffsetsInitializer,
    stopping: Option<OffsetsInitializer>,
    deserializer: Option<Arc<dyn KafkaRecordDeserializer<T>>>,
    bad_records: BadRecordPolicy,
    discovery_interval: Option<Duration>,
    pattern_error: Option<String>,
}

impl<T: Send + 'static> KafkaSource<T> {
    /// A builder with Flink's defaults: earliest offsets, unbounded, partition discovery every
    /// 5 minutes, failing on bad records.
    pub fn builder() -> KafkaSourceBuilder<T> {
        KafkaSourceBuilder {
            brokers: None,
            topics: None,
            group_id: None,
            properties: Vec::new(),
            starting: OffsetsInitializer::Earliest,
            stopping: None,
            deserializer: None,
            bad_records: BadRecordPolicy::Fail,
            discovery_interval: Some(Duration::from_secs(300)),
            pattern_error: None,
        }
    }
}

impl<T: Send + 'static> KafkaSourceBuilder<T> {
    /// The brokers to bootstrap from, `host:port[,host:port...]`.
    pub fn set_bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.brokers = Some(servers.into());
        self
    }

    /// Reads these topics.
    pub fn set_topics<S: Into<String>>(mut self, topics: impl IntoIterator<Item = S>) -> Self {
        self.topics = Some(Topics::List(topics.into_iter().map(Into::into).collect()));
        self
    }

    /// Reads every topic whose whole name matches this regular expression, including topics
    /// created while the job runs (found by partition discovery).
    pub fn set_topic_pattern(mut self, pattern: &str) -> Self {
        match Regex::new(&format!("^(?:{pattern})$")) {
            Ok(re) => self.topics = Some(Topics::Pattern(re)),
            Err(e) => self.pattern_error = Some(format!("topic pattern '{pattern}': {e}")),
        }
        self
    }

    /// The consumer group offsets are committed to when checkpoints complete.
    pub fn set_group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Where reading starts in partitions the job has no checkpointed position for.
    pub fn set_starting_offsets(mut self, offsets: OffsetsInitializer) -> Self {
        self.starting = offsets;
        self
    }

    /// Makes the source bounded: each partition is read up to these offsets (resolved when the
    /// source starts), and then the source ends.
    pub fn set_bounded(mut self, stopping: OffsetsInitializer) -> Self {
        self.stopping = Some(stopping);
        self
    }

    /// How records become values.
    pub fn set_deserializer(mut self, deserializer: impl KafkaRecordDeserializer<T>) -> Self {
        self.deserializer = Some(Arc::new(deserializer));
        self
    }

    /// What happens to records the deserializer rejects.
    pub fn set_bad_record_policy(mut self, policy: BadRecordPolicy) -> Self {
        self.bad_records = policy;
        self
    }

    /// How often to look for new partitions and topics; `None` turns discovery off. Bounded
    /// sources never discover.
    pub fn set_partition_discovery_interval(mut self, interval: Option<Duration>) -> Self {
        self.discovery_interval = interval;
        self
    }

    /// Any librdkafka consumer property (`security.protocol`, `fetch.min.bytes`, ...).
    pub fn set_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The source, or what is missing.
    pub fn build(self) -> Result<KafkaSource<T>, KafkaConnectorError> {
        if let Some(e) = self.pattern_error {
            return Err(KafkaConnectorError::Config(e));
        }
        let missing = |what: &str| KafkaConnectorError::Config(format!("the source needs {what}"));
        let brokers = self.brokers.ok_or_else(|| missing("bootstrap servers"))?;
        let topics = self
            .topics
            .ok_or_else(|| missing("topics or a topic pattern"))?;
        if matches!(&topics, Topics::List(t) if t.is_empty()) {
            return Err(missing("at least one topic"));
        }
        let deserializer = self.deserializer.ok_or_else(|| missing("a deserializer"))?;
        let uses_group = matches!(self.starting, OffsetsInitializer::Committed { .. })
            || matches!(self.stopping, Some(OffsetsInitializer::Committed { .. }));
        if uses_group && self.group_id.is_none() {
            return Err(missing("a group id to read committed offsets"));
        }
        Ok(KafkaSource {
            config: Arc::new(SourceConfig {
                brokers,
                topics,
                group_id: self.group_id,
                properties: self.properties,
                starting: self.starting,
                stopping: self.stopping,
                deserializer,
                bad_records: self.bad_records,
                discovery_interval: self.discovery_interval,
            }),
        })
    }
}

/// The subtask that reads a partition, as Flink's Kafka enumerator assigns it: topics start at
/// a subtask chosen by the topic's (Java) string hash, and their partitions go round-robin from
/// there. A function of the partition alone, so every subtask agrees without talking.
pub(crate) fn owner(topic: &str, partition: i32, parallelism: u32) -> u32 {
    let p = i64::from(parallelism.max(1));
    let hash = topic
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let start = i64::from(hash.wrapping_mul(31) & 0x7fff_ffff) % p;
    ((start + i64::from(partition)) % p) as u32
}

impl<T> SourceConfig<T> {
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false")
            // Records of open or aborted transactions are never read (as in Flink); a
            // `set_property("isolation.level", "read_uncommitted")` reads them.
            .set("isolation.level", "read_committed");
        // librdkafka wants a group even for assigned partitions; offsets are committed only
        // to a group the user named.
        c.set(
            "group.id",
            self.group_id.as_deref().unwrap_or("eddy-kafka-source"),
        );
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    fn consumer(&self) -> Result<BaseConsumer, KafkaConnectorError> {
        self.client_config().create().map_err(|e| {
            KafkaConnectorError::client(format!("creating a consumer for {}", self.brokers), e)
        })
    }

    /// Every partition of the topics read, sorted.
    fn partitions(
        &self,
        consumer: &BaseConsumer,
    ) -> Result<Vec<(String, i32)>, KafkaConnectorError> {
        let context = || {
            format!(
                "listing the partitions of {:?} at {}",
                self.topics, self.brokers
            )
        };
        let mut out = Vec::new();
        match &self.topics {
            Topics::List(topics) => {
                for topic in topics {
                    let md = consumer
                        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                        .map_err(|e| KafkaConnectorError::client(context(), e))?;
                    for t in md.topics() {
                        if t.error().is_some() || t.partitions().is_empty() {
                            return Err(KafkaConnectorError::Config(format!(
                                "topic '{}' does not exist at {}",
                                t.name(),
                                self.brokers
                            )));
                        }
                        out.extend(t.partitions().iter().map(|p| (t.name().to_owned(), p.id())));
                    }
                }
            }
            Topics::Pattern(re) => {
                let md = consumer
                    .fetch_metadata(None, REQUEST_TIMEOUT)
                    .map_err(|e| KafkaConnectorError::client(context(), e))?;
                for t in md.topics().iter().filter(|t| re.is_match(t.name())) {
                    out.extend(t.partitions().iter().map(|p| (t.name().to_owned(), p.id())));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The offset `init` names in a partition.
    fn resolve(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        partition: i32,
        init: &OffsetsInitializer,
    ) -> Result<i64, KafkaConnectorError> {
        let context = |what: &str| format!("{what} of topic '{topic}' partition {partition}");
        let watermarks = || {
            retrying(|| consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT))
                .map_err(|e| KafkaConnectorError::client(context("fetching the offsets"), e))
        };
        match init {
            OffsetsInitializer::Earliest => Ok(watermarks()?.0),
            OffsetsInitializer::Latest => Ok(watermarks()?.1),
            OffsetsInitializer::Timestamp(ts) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, partition, Offset::Offset(*ts))
                    .map_err(|e| KafkaConnectorError::client(context("looking up a time"), e))?;
                let found = retrying(|| consumer.offsets_for_times(tpl.clone(), REQUEST_TIMEOUT))
                    .map_err(|e| {
                    KafkaConnectorError::client(context("looking up a time"), e)
                })?;
                match found.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Ok(o),
                    _ => Ok(watermarks()?.1),
                }
            }
            OffsetsInitializer::Committed { or_earliest } => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, partition);
                let committed =
                    retrying(|| consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT)).map_err(
                        |e| {
                            KafkaConnectorError::client(context("fetching the committed offset"), e)
                        },
                    )?;
                match committed
                    .find_partition(topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) if o >= 0 => Ok(o),
                    _ if *or_earliest => Ok(watermarks()?.0),
                    _ => Ok(watermarks()?.1),
                }
            }
        }
    }
}

impl<T: Send + 'static> Source<T> for KafkaSource<T> {
    type Split = KafkaPartitionSplit;
    type Reader = KafkaSourceReader<T>;

    fn boundedness(&self) -> Boundedness {
        if self.config.stopping.is_some() {
            Boundedness::Bounded
        } else {
            Boundedness::ContinuousUnbounded
        }
    }

    fn enumerate_splits(&self, _parallelism: u32) -> Result<Vec<KafkaPartitionSplit>> {
        let consumer = self.config.consumer()?;
        Ok(self
            .config
            .partitions(&consumer)?
            .into_iter()
            .map(|(topic, partition)| KafkaPartitionSplit {
                topic,
                partition,
                next_offset: None,
                stopping_offset: None,
            })
            .collect())
    }

    fn assign_splits(
        &self,
        splits: Vec<KafkaPartitionSplit>,
        index: u32,
        parallelism: u32,
    ) -> Vec<KafkaPartitionSplit> {
        splits
            .into_iter()
            .filter(|s| owner(&s.topic, s.partition, parallelism) == index)
            .collect()
    }

    fn create_reader(&self, ctx: &SourceReaderContext) -> Result<KafkaSourceReader<T>> {
        let consumer = self.config.consumer()?;
        let dead_letters = match &self.config.bad_records {
            BadRecordPolicy::DeadLetter { .. } => {
                let mut c = ClientConfig::new();
                c.set("bootstrap.servers", &self.config.brokers);
                Some(c.create::<DeadLetters>().map_err(|e| {
                    KafkaConnectorError::client("creating the dead-letter producer", e)
                })?)
            }
            _ => None,
        };
        Ok(KafkaSourceReader {
            config: self.config.clone(),
            consumer,
            dead_letters,
            splits: BTreeMap::new(),
            unannounced: Vec::new(),
            index: ctx.task_info.subtask_index,
            parallelism: ctx.task_info.parallelism,
            no_more_splits: false,
            next_discovery: None,
            pending_commits: BTreeMap::new(),
            bad_records: ctx.metrics.counter("numRecordsInErrors"),
            headers: Vec::new(),
            finished: Vec::new(),
        })
    }
}

/// The producer of dead letters.
type DeadLetters = ThreadedProducer<DefaultProducerContext>;

/// Reads the partitions assigned to one subtask.
pub struct KafkaSourceReader<T> {
    config: Arc<SourceConfig<T>>,
    consumer: BaseConsumer,
    dead_letters: Option<DeadLetters>,
    /// The partitions read, by (topic, partition).
    splits: BTreeMap<(String, i32), KafkaPartitionSplit>,
    index: u32,
    parallelism: u32,
    no_more_splits: bool,
    next_discovery: Option<Instant>,
    /// Positions per checkpoint, committed to the group when the checkpoint completes.
    pending_commits: BTreeMap<u64, Vec<(String, i32, i64)>>,
    bad_records: Arc<Counter>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    /// Final positions of partitions read to their stopping offsets (bounded mode).
    finished: Vec<(String, i32, i64)>,
    /// Partitions taken since the last poll, whose watermark generators are not created yet.
    unannounced: Vec<(String, i32)>,
}

impl<T: Send + 'static> KafkaSourceReader<T> {
    /// Hands the consumer the current positions of every split.
    fn reassign(&mut self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for s in self.splits.values() {
            let offset = s.next_offset.map_or(Offset::Beginning, Offset::Offset);
            tpl.add_partition_offset(&s.topic, s.partition, offset)
                .map_err(|e| KafkaConnectorError::client("assigning partitions", e))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| KafkaConnectorError::client("assigning partitions", e))?;
        Ok(())
    }

    /// Resolves the positions of new splits and takes them.
    fn add(
        &mut self,
        splits: Vec<KafkaPartitionSplit>,
        starting: &OffsetsInitializer,
    ) -> Result<()> {
        for mut s in splits {
            if s.next_offset.is_none() {
                s.next_offset =
                    Some(
                        self.config
                            .resolve(&self.consumer, &s.topic, s.partition, starting)?,
                    );
            }
            if s.stopping_offset.is_none()
                && let Some(stop) = &self.config.stopping
            {
                s.stopping_offset =
                    Some(
                        self.config
                            .resolve(&self.consumer, &s.topic, s.partition, stop)?,
                    );
            }
            if s.stopping_offset
                .is_some_and(|stop| s.next_offset >= Some(stop))
            {
                continue; // nothing to read
            }
            self.unannounced.push((s.topic.clone(), s.partition));
            self.splits.insert((s.topic.clone(), s.partition), s);
        }
        self.reassign()
    }

    /// Takes the partitions this subtask owns that it doesn't read yet: new partitions and
    /// topics, read from their earliest offset so nothing written to them is missed.
    fn discover(&mut self) -> Result<()> {
        let found = self.config.partitions(&self.consumer);
        let found = match found {
            Ok(f) => f,
            // A topic list that vanished is an error at start; while running, keep reading.
            Err(e) => {
                tracing::warn!("kafka partition discovery failed: {e}");
                return Ok(());
            }
        };
        let new: Vec<_> = found
            .into_iter()
            .filter(|(t, p)| {
                owner(t, *p, self.parallelism) == self.index
                    && !self.splits.contains_key(&(t.clone(), *p))
            })
            .map(|(topic, partition)| KafkaPartitionSplit {
                topic,
                partition,
                next_offset: None,
                stopping_offset: None,
            })
            .collect();
        if !new.is_empty() {
            tracing::info!(
                "kafka source subtask {}: new partitions {:?}",
                self.index,
                new.iter().map(SourceSplit::split_id).collect::<Vec<_>>()
            );
            self.add(new, &OffsetsInitializer::Earliest)?;
        }
        Ok(())
    }

    /// Commits `positions` to the consumer group, if the source has one. A failed commit only
    /// delays the group's view: the positions are in the checkpoint, as in Flink.
    fn commit(&self, positions: Vec<(String, i32, i64)>, mode: CommitMode) {
        if self.config.group_id.is_none() || positions.is_empty() {
            return;
        }
        let offsets: HashMap<(String, i32), Offset> = positions
            .into_iter()
            .map(|(t, p, o)| ((t, p), Offset::Offset(o)))
            .collect();
        let result = TopicPartitionList::from_topic_map(&offsets)
            .and_then(|tpl| self.consumer.commit(&tpl, mode));
        if let Err(e) = result {
            tracing::warn!("committing kafka offsets: {e}");
        }
    }

    /// Handles a record the deserializer rejected, by the policy.
    fn bad_record(&self, record: &ConsumerRecord<'_>, reason: String) -> Result<()> {
        let bad = || KafkaConnectorError::BadRecord {
            topic: record.topic.to_owned(),
            partition: record.partition,
            offset: record.offset,
            reason: reason.clone(),
        };
        match &self.config.bad_records {
            BadRecordPolicy::Fail => Err(bad().into()),
            BadRecordPolicy::Skip => {
                tracing::warn!("skipped: {}", bad());
                self.bad_records.inc();
                Ok(())
            }
            BadRecordPolicy::DeadLetter { topic } => {
                let producer = self
                    .dead_letters
                    .as_ref()
                    .ok_or_else(|| RuntimeError::Internal("dead-letter producer missing".into()))?;
                let (partition, offset) = (record.partition.to_string(), record.offset.to_string());
                let mut headers = OwnedHeaders::new();
                for (k, v) in record.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: v.as_deref(),
                    });
                }
                headers = headers
                    .insert(Header {
                        key: "eddy.dlq.topic",
                        value: Some(record.topic),
                    })
                    .insert(Header {
                        key: "eddy.dlq.partition",
                        value: Some(&partition),
                    })
                    .insert(Header {
                        key: "eddy.dlq.offset",
                        value: Some(&offset),
                    })
                    .insert(Header {
                        key: "eddy.dlq.error",
                        value: Some(&reason),
                    });
                let mut out = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
                if let Some(k) = record.key {
                    out = out.key(k);
                }
                if let Some(p) = record.payload {
                    out = out.payload(p);
                }
                crate::producer::send(producer, out).map_err(|e| {
                    KafkaConnectorError::client(format!("writing a dead letter to '{topic}'"), e)
                })?;
                self.bad_records.inc();
                Ok(())
            }
        }
    }
}

impl<T: Send + 'static> SourceReader<T> for KafkaSourceReader<T> {
    type Split = KafkaPartitionSplit;

    fn add_splits(&mut self, splits: Vec<KafkaPartitionSplit>) -> Result<()> {
        let starting = self.config.starting.clone();
        self.add(splits, &starting)
    }

    fn start(&mut self) -> Result<()> {
        if self.config.stopping.is_none() {
            // Partitions created since the job started (or since its checkpoint) are found at
            // once, not only after the first interval.
            self.next_discovery = Some(Instant::now());
        }
        Ok(())
    }

    fn notify_no_more_splits(&mut self) {
        self.no_more_splits = true;
    }

    fn poll_next(&mut self, output: &mut ReaderOutput<T>) -> Result<InputStatus> {
        if let (Some(at), Some(interval)) = (self.next_discovery, self.config.discovery_interval)
            && Instant::now() >= at
        {
            self.discover()?;
            self.next_discovery = Some(Instant::now() + interval);
        }
        // A partition holds the watermark back from the moment it is taken, not from its
        // first record: a partition fetched late must not find its records late (Flink's
        // per-split watermarks). One that stays empty needs `with_idleness`, as in Flink.
        for key in std::mem::take(&mut self.unannounced) {
            if let Some(split) = self.splits.get(&key) {
                output.set_current_split(&split.split_id());
            }
        }
        let mut read = 0usize;
        let mut finished = Vec::new();
        let mut current: Option<(String, i32)> = None;
        while output.remaining() > 0 {
            let msg = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    // librdkafka reports transient broker errors here and retries by itself.
                    tracing::warn!("kafka consumer: {e}");
                    break;
                }
                Some(Ok(m)) => m,
            };
            // Records come in runs per partition: the key is built only when the run changes.
            let same = current
                .as_ref()
                .is_some_and(|(t, p)| t == msg.topic() && *p == msg.partition());
            if !same {
                let key = (msg.topic().to_owned(), msg.partition());
                let Some(split) = self.splits.get(&key) else {
                    continue; // a partition given up since
                };
                output.set_current_split(&split.split_id());
                current = Some(key);
            }
            let Some(key) = current.as_ref() else {
                continue;
            };
            let Some(split) = self.splits.get_mut(key) else {
                continue;
            };
            let offset = msg.offset();
            if let Some(next) = split.next_offset {
                if offset < next {
                    continue; // delivered again: emitted before
                }
                if offset > next {
                    // Compaction and transaction markers leave gaps; a broker that skips
                    // records does too, and then the log is the only place that tells.
                    tracing::warn!(
                        "kafka topic '{}' partition {}: offset {offset} follows {}; offsets {next}..{offset} were not delivered",
                        key.0,
                        key.1,
                        next - 1
                    );
                }
            }
            if split.stopping_offset.is_some_and(|stop| offset >= stop) {
                finished.push(key.clone());
                continue;
            }
            split.next_offset = Some(offset + 1);
            if split.stopping_offset.is_some_and(|stop| offset + 1 >= stop) {
                finished.push(key.clone());
            }
            self.headers.clear();
            if let Some(h) = msg.headers() {
                for header in h.iter() {
                    self.headers
                        .push((header.key.to_owned(), header.value.map(<[u8]>::to_vec)));
                }
            }
            let timestamp = msg.timestamp().to_millis();
            let record = ConsumerRecord {
                topic: msg.topic(),
                partition: msg.partition(),
                offset,
                timestamp,
                key: msg.key(),
                payload: msg.payload(),
                headers: &self.headers,
            };
            match self.config.deserializer.deserialize(&record) {
                Ok(v) => output.collect_with_timestamp(v, timestamp.unwrap_or(NO_TIMESTAMP)),
                Err(e) => self.bad_record(&record, e.0)?,
            }
            read += 1;
        }
        if !finished.is_empty() {
            for key in finished {
                if let Some(s) = self.splits.remove(&key) {
                    output.release_split(&s.split_id());
                    if let Some(end) = s.stopping_offset {
                        self.finished.push((s.topic.clone(), s.partition, end));
                    }
                }
            }
            self.reassign()?;
        }
        if self.config.stopping.is_some() && self.splits.is_empty() {
            return Ok(if self.no_more_splits {
                InputStatus::EndOfInput
            } else {
                InputStatus::NothingAvailable
            });
        }
        Ok(if read > 0 {
            InputStatus::MoreAvailable
        } else {
            InputStatus::NothingAvailable
        })
    }

    fn wait_available(&mut self, timeout: Duration) {
        std::thread::sleep(timeout.min(Duration::from_millis(2)));
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<KafkaPartitionSplit>> {
        if let Some(p) = &self.dead_letters {
            p.flush(REQUEST_TIMEOUT)
                .map_err(|e| KafkaConnectorError::client("flushing dead letters", e))?;
        }
        // Partitions read to their end are committed with the next checkpoint, as Flink does
        // (a finished source still takes part in the checkpoints until the job ends).
        let mut positions = self.finished.clone();
        positions.extend(
            self.splits
                .values()
                .filter_map(|s| Some((s.topic.clone(), s.partition, s.next_offset?))),
        );
        self.pending_commits.insert(checkpoint_id, positions);
        Ok(self.splits.values().cloned().collect())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        // The newest completed checkpoint's positions subsume older ones.
        let later = self.pending_commits.split_off(&(checkpoint_id + 1));
        let done = std::mem::replace(&mut self.pending_commits, later);
        if let Some((_, positions)) = done.into_iter().next_back() {
            // Synchronously: an asynchronous commit still in flight when a bounded job ends is
            // lost with the consumer, and the group would resume from older offsets.
            self.commit(positions, CommitMode::Sync);
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(p) = &self.dead_letters {
            p.flush(REQUEST_TIMEOUT)
                .map_err(|e| KafkaConnectorError::client("flushing dead letters", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_go_round_robin_from_the_topic_start() {
        // Java's "orders".hashCode() is -1008770331.
        let start = owner("orders", 0, 4);
        assert_eq!(
            start,
            ((-1008770331i32).wrapping_mul(31) & 0x7fff_ffff) as u32 % 4
        );
        for p in 0..8 {
            assert_eq!(owner("orders", p, 4), (start + p as u32) % 4);
        }
        assert_eq!(owner("orders", 3, 1), 0);
    }
}
