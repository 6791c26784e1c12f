//! Topic administration, for setup commands and tests.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::KafkaConnectorError;

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, KafkaConnectorError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| KafkaConnectorError::client(format!("connecting to {brokers}"), e))
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Creates each `(topic, partitions)` that does not exist yet at `brokers`, with the brokers'
/// default replication factor.
pub fn create_topics(brokers: &str, topics: &[(&str, i32)]) -> Result<(), KafkaConnectorError> {
    let new: Vec<_> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(-1)))
        .collect();
    let results = futures::executor::block_on(admin(brokers)?.create_topics(&new, &options()))
        .map_err(|e| KafkaConnectorError::client(format!("creating topics at {brokers}"), e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaConnectorError::client(
                    format!("creating topic '{topic}'"),
                    rdkafka::error::KafkaError::AdminOp(code),
                ));
            }
        }
    }
    Ok(())
}

/// Grows `topic` to `partitions` partitions (Kafka's `CreatePartitions`).
pub fn create_partitions(
    brokers: &str,
    topic: &str,
    partitions: usize,
) -> Result<(), KafkaConnectorError> {
    let context = || format!("adding partitions to '{topic}'");
    let request = [NewPartitions::new(topic, partitions)];
    let results =
        futures::executor::block_on(admin(brokers)?.create_partitions(&request, &options()))
            .map_err(|e| KafkaConnectorError::client(context(), e))?;
    for result in results {
        if let Err((_, code)) = result {
            return Err(KafkaConnectorError::client(
                context(),
                rdkafka::error::KafkaError::AdminOp(code),
            ));
        }
    }
    Ok(())
}
