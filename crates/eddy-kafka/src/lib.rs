//! Kafka connectors for Eddy, on librdkafka (through the `rdkafka` crate).
//!
//! - [`KafkaSource`] reads topics (or a topic pattern) in parallel: each partition is a split,
//!   assigned to one subtask by a function of the partition alone (as Flink's `KafkaSource`
//!   does), so new partitions found while the job runs have exactly one reader. Positions live
//!   in checkpoints and are committed to the consumer group only when a checkpoint completes.
//!   Each partition gets its own watermark generator, and idle partitions can be left out.
//!   Records that cannot be deserialized fail the job, are skipped and counted, or go to a
//!   dead-letter topic ([`BadRecordPolicy`]).
//! - [`KafkaSink`] writes with at-least-once delivery (flush at every checkpoint) or exactly
//!   once (one Kafka transaction per checkpoint, committed when the checkpoint completes).
//!
//! The source uses the consumer group only to commit offsets; it never subscribes, so a group
//! rebalance can't take partitions away from a running job.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod admin;
mod error;
pub mod producer;
mod record;
mod sink;
mod source;
#[cfg(feature = "testing")]
pub mod testing;
mod transactions;

pub use error::KafkaConnectorError;
pub use record::{
    ConsumerRecord, DeserializeError, JsonDeserializer, KafkaRecordDeserializer,
    KafkaRecordSerializer, bytes_deserializer, string_deserializer,
};
pub use sink::{
    DeliveryGuarantee, KafkaCommittable, KafkaCommitter, KafkaSink, KafkaSinkBuilder, KafkaWriter,
};
pub use source::{
    BadRecordPolicy, KafkaPartitionSplit, KafkaSource, KafkaSourceBuilder, KafkaSourceReader,
    OffsetsInitializer,
};
pub use transactions::ProducerIdentity;
