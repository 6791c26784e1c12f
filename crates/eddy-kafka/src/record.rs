//! Turning Kafka records into values and back.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record read from Kafka, borrowed from the client's buffer.
#[derive(Clone, Copy, Debug)]
pub struct ConsumerRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The record's timestamp in ms, when it has one.
    pub timestamp: Option<i64>,
    /// The key.
    pub key: Option<&'a [u8]>,
    /// The value (`None` for a tombstone).
    pub payload: Option<&'a [u8]>,
    /// The headers, in order.
    pub headers: &'a [(String, Option<Vec<u8>>)],
}

/// Why a record could not be deserialized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeserializeError(pub String);

impl std::fmt::Display for DeserializeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for DeserializeError {
    fn from(e: E) -> Self {
        DeserializeError(e.to_string())
    }
}

/// Turns a Kafka record into a value (Flink's `KafkaRecordDeserializationSchema`). Any
/// `Fn(&ConsumerRecord) -> Result<T, DeserializeError>` is one, so key, headers, partition,
/// offset and timestamp are all at hand.
pub trait KafkaRecordDeserializer<T>: Send + Sync + 'static {
    /// The value of `record`.
    fn deserialize(&self, record: &ConsumerRecord<'_>) -> Result<T, DeserializeError>;
}

impl<T, F> KafkaRecordDeserializer<T> for F
where
    F: Fn(&ConsumerRecord<'_>) -> Result<T, DeserializeError> + Send + Sync + 'static,
{
    fn deserialize(&self, record: &ConsumerRecord<'_>) -> Result<T, DeserializeError> {
        self(record)
    }
}

fn payload<'a>(record: &ConsumerRecord<'a>) -> Result<&'a [u8], DeserializeError> {
    record
        .payload
        .ok_or_else(|| DeserializeError("the record has no value (a tombstone)".into()))
}

/// The value's bytes.
pub fn bytes_deserializer() -> impl KafkaRecordDeserializer<Vec<u8>> {
    |r: &ConsumerRecord<'_>| Ok(payload(r)?.to_vec())
}

/// The value as UTF-8 text; other bytes are a bad record.
pub fn string_deserializer() -> impl KafkaRecordDeserializer<String> {
    |r: &ConsumerRecord<'_>| Ok(std::str::from_utf8(payload(r)?)?.to_owned())
}

/// The value as JSON, into any serde type.
pub struct JsonDeserializer<T>(PhantomData<fn() -> T>);

impl<T> JsonDeserializer<T> {
    /// A deserializer into `T`.
    pub fn new() -> Self {
        JsonDeserializer(PhantomData)
    }
}

impl<T> Default for JsonDeserializer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned + 'static> KafkaRecordDeserializer<T> for JsonDeserializer<T> {
    fn deserialize(&self, record: &ConsumerRecord<'_>) -> Result<T, DeserializeError> {
        Ok(serde_json::from_slice(payload(record)?)?)
    }
}

/// A value serialized for the serializer's topic.
pub(crate) struct SerializedRecord {
    /// The partition; `None` lets the producer's partitioner choose (by key hash).
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
}

type ValueFn<T> = Arc<dyn Fn(&T) -> Result<Vec<u8>, String> + Send + Sync>;
type KeyFn<T> = Arc<dyn Fn(&T) -> Option<Vec<u8>> + Send + Sync>;
type PartitionFn<T> = Arc<dyn Fn(&T, Option<&[u8]>, i32) -> i32 + Send + Sync>;

/// Turns values into Kafka records (Flink's `KafkaRecordSerializationSchema`): a topic, a
/// value serializer (bytes, string, JSON or a function), and optionally a key extractor and a
/// partitioner.
pub struct KafkaRecordSerializer<T> {
    topic: String,
    value: ValueFn<T>,
    key: Option<KeyFn<T>>,
    partitioner: Option<PartitionFn<T>>,
}

impl<T> Clone for KafkaRecordSerializer<T> {
    fn clone(&self) -> Self {
        KafkaRecordSerializer {
            topic: self.topic.clone(),
            value: self.value.clone(),
            key: self.key.clone(),
            partitioner: self.partitioner.clone(),
        }
    }
}

impl<T: 'static> KafkaRecordSerializer<T> {
    /// Values into `topic`, serialized with `value`.
    pub fn new(
        topic: impl Into<String>,
        value: impl Fn(&T) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    ) -> Self {
        KafkaRecordSerializer {
            topic: topic.into(),
            value: Arc::new(value),
            key: None,
            partitioner: None,
        }
    }

    /// Values as JSON into `topic`.
    pub fn json(topic: impl Into<String>) -> Self
    where
        T: Serialize,
    {
        Self::new(topic, |v: &T| {
            serde_json::to_vec(v).map_err(|e| e.to_string())
        })
    }

    /// Sets the key of every record.
    pub fn with_key(mut self, key: impl Fn(&T) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Chooses the partition of every record from the value, its key and the partition count.
    /// Without one, the producer's partitioner hashes the key (or spreads keyless records).
    pub fn with_partitioner(
        mut self,
        partitioner: impl Fn(&T, Option<&[u8]>, i32) -> i32 + Send + Sync + 'static,
    ) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }

    pub(crate) fn has_partitioner(&self) -> bool {
        self.partitioner.is_some()
    }

    /// The record for `value`, to go to [`Self::topic`]; `partitions` is the topic's partition
    /// count (used only with a partitioner).
    pub(crate) fn serialize(&self, value: &T, partitions: i32) -> Result<SerializedRecord, String> {
        let key = self.key.as_ref().and_then(|k| k(value));
        let partition = self
            .partitioner
            .as_ref()
            .map(|p| p(value, key.as_deref(), partitions).rem_euclid(partitions.max(1)));
        Ok(SerializedRecord {
            partition,
            key,
            payload: (self.value)(value)?,
        })
    }

    /// The topic records go to.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }
}

impl KafkaRecordSerializer<String> {
    /// Strings as UTF-8 into `topic`.
    pub fn string(topic: impl Into<String>) -> Self {
        Self::new(topic, |v: &String| Ok(v.as_bytes().to_vec()))
    }
}

impl KafkaRecordSerializer<Vec<u8>> {
    /// Bytes as they are into `topic`.
    pub fn bytes(topic: impl Into<String>) -> Self {
        Self::new(topic, |v: &Vec<u8>| Ok(v.clone()))
    }
}
