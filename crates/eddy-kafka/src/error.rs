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
    /// A request over the Kafka protocol (finding a transaction's coordinator, describing or
    /// committing a transaction) failed.
    #[error("kafka {context}: {reason}")]
    Protocol {
        /// What was being done.
        context: String,
        /// What the broker or the connection said.
        reason: String,
    },
    /// A transaction that a completed checkpoint holds can no longer be committed: the broker
    /// aborted it, so the records it held are lost.
    #[error(
        "kafka transaction '{transactional_id}' of a completed checkpoint cannot be committed ({reason}): the broker aborted it, most likely because transaction.timeout.ms passed before the job came back; its records are lost"
    )]
    TransactionLost {
        /// The transactional id.
        transactional_id: String,
        /// The broker's answer.
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
            | KafkaConnectorError::TransactionsUnsupported { .. }
            | KafkaConnectorError::TransactionLost { .. } => RuntimeError::user(e),
            KafkaConnectorError::Protocol { .. } => {
                RuntimeError::io("kafka", std::io::Error::other(e.to_string()))
            }
            KafkaConnectorError::Client { context, source } => {
                RuntimeError::io(format!("kafka {context}"), std::io::Error::other(source))
            }
            KafkaConnectorError::Delivery(what) => {
                RuntimeError::io("kafka sink", std::io::Error::other(what))
            }
        }
    }
}

/// How long requests failing with an error that passes by itself are retried.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `e` passes by itself: a coordinator or leader moving or loading (as right after a
/// broker starts or dies), or a request timing out.
fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e.rdkafka_error_code(),
        Some(
            Code::NotCoordinator
                | Code::CoordinatorLoadInProgress
                | Code::CoordinatorNotAvailable
                | Code::LeaderNotAvailable
                | Code::NotLeaderForPartition
                | Code::RequestTimedOut
                | Code::OperationTimedOut
        )
    )
}

/// Runs `op` again while it fails with a transient error, for up to [`RETRY_FOR`].
pub(crate) fn retrying<T>(
    mut op: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> rdkafka::error::KafkaResult<T> {
    let deadline = std::time::Instant::now() + RETRY_FOR;
    let mut backoff = std::time::Duration::from_millis(50);
    loop {
        match op() {
            Err(e) if is_transient(&e) && std::time::Instant::now() < deadline => {
                tracing::debug!("kafka: {e}; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
            }
            result => return result,
        }
    }
}
