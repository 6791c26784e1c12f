//! Real Apache Kafka for tests (`eddy_kafka::testing`), and helpers to produce and read
//! topics.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use eddy_kafka::testing::KafkaCluster;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// Real Apache Kafka for one test: a single broker, or a cluster; stopped on drop.
pub struct Broker {
    pub cluster: KafkaCluster,
    pub bootstrap: String,
}

impl Broker {
    pub fn start() -> Broker {
        Broker::cluster(1)
    }

    /// `n` brokers; with three, topics default to replication 3 and `min.insync.replicas` 2.
    pub fn cluster(n: usize) -> Broker {
        Broker::with_properties(n, &[])
    }

    /// `n` brokers with broker properties of the test's.
    pub fn with_properties(n: usize, properties: &[(&str, &str)]) -> Broker {
        let cluster = KafkaCluster::start_with(n, properties).unwrap_or_else(|e| panic!("{e}"));
        Broker {
            bootstrap: cluster.bootstrap_servers().to_owned(),
            cluster,
        }
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        eddy_kafka::admin::create_topics(&self.bootstrap, &[(topic, partitions)]).unwrap();
    }

    /// Writes `(partition, key, value, timestamp)` records and waits for them all.
    pub fn produce(&self, topic: &str, records: &[(i32, String, Vec<u8>, i64)]) {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for (p, k, v, ts) in records {
            let rec = BaseRecord::to(topic)
                .partition(*p)
                .key(k)
                .payload(v)
                .timestamp(*ts);
            eddy_kafka::producer::send(&producer, rec).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Every record of `topic` (`partitions` partitions): (partition, offset, key, value,
    /// headers). Reads until `expect` records came or nothing came for 3 s.
    pub fn read_all(&self, topic: &str, partitions: i32, expect: usize) -> Vec<Read> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("enable.auto.commit", "false")
            .set("group.id", "eddy-test-reader")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let mut last = Instant::now();
        while out.len() < expect && last.elapsed() < Duration::from_secs(3) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last = Instant::now();
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_owned(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Read {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: String::from_utf8_lossy(m.payload().unwrap_or_default())
                            .into_owned(),
                        headers,
                    });
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        out
    }
}

#[derive(Clone, Debug)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    pub headers: Vec<(String, String)>,
}
