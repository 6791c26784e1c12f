//! A real Kafka-compatible broker for tests: tansu, started on a free port with in-memory
//! storage, and helpers to produce and read topics.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// The tansu binary: `EDDY_TANSU`, the one the test script installs, or `tansu` on the path.
fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("EDDY_TANSU") {
        return PathBuf::from(p);
    }
    let installed = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/eddy-tools/bin/tansu");
    if installed.exists() {
        return installed;
    }
    PathBuf::from("tansu")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker of its own for one test; killed on drop.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args(["broker", "--storage-engine", "memory://tansu/", "--silent"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start tansu ({}): {e}; scripts/test.sh installs it (cargo install tansu@0.6.0 --features dynostore)",
                    tansu().display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
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
            // One record per batch: tansu 0.6.0 misreads fetches and list-offsets requests
            // that fall inside a batch (see ARCHITECTURE.md, "Kafka").
            .set("batch.num.messages", "1")
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

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
