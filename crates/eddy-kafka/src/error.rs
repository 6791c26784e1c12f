//! The error type of the Kafka connectors.

use eddy::runtime::RuntimeError;

/// What went wrong in a Kafka source or sink.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConnectorError {
    /// The connector is configured wrongly (a missing option, a bad pattern, a transaction
    /// timeout too short for the checkpoint interval).
    #[error("kafka connector configuration: {0}")]
    Config(String),
    /// The broker or the client failed; names what was being done.
    #[error("kafka {context}: {source}")]
    Client {
        /// What was being done: the topic, the partition, the broker.
        context: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker did not take records the sink wrote.
    #[error("kafka {0}")]
    Delivery(String),
    /// A record could not be deserialized and the policy is to fail.
    #[error(
        "kafka record at topic '{topic}' partition {partition} offset {offset} cannot be deserialized: {reason}"
    )]
    BadRecord {
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// Why it can't be read.
        reason: String,
    },
    /// The broker does not support Kafka transactions, which exactly-once delivery needs.
    #[error(
        "exactly-once delivery needs Kafka transactions, which the broker at {brokers} does not support ({reason}); use DeliveryGuarantee::AtLeastOnce, or a broker with transactions"
    )]
    TransactionsUnsupported {
        /// The bootstrap servers.
        brokers: String,
        /// What the client reported.
        reason: String,
    },
}

impl KafkaConnectorError {
    pub(crate) fn client(
        context: impl std::fmt::Display,
        source: rdkafka::error::KafkaError,
    ) -> Self {
        KafkaConnectorError::Client {
            context: context.to_string(),
            source,
        }
    }
}

impl From<KafkaConnectorError> for RuntimeError {
    fn from(e: KafkaConnectorError) -> Self {
        match e {
            KafkaConnectorError::Config(_)
            | KafkaConnectorError::BadRecord { .. }
            | KafkaConnectorError::TransactionsUnsupported { .. } => RuntimeError::user(e),
            KafkaConnectorError::Client { context, source } => {
                RuntimeError::io(format!("kafka {context}"), std::io::Error::other(source))
            }
            KafkaConnectorError::Delivery(what) => {
                RuntimeError::io("kafka sink", std::io::Error::other(what))
            }
        }
    }
}
