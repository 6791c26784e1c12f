//! The Kafka source and sink against real Apache Kafka (a broker started per test on a free
//! port). Outputs are compared with the input as multisets at parallelism 1, 2 and 4; failures
//! are injected after checkpoints have completed. Exactly-once Kafka → Kafka, with the job
//! killed, is in `exactly_once.rs`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Broker;
use eddy::JobClient;
use eddy::prelude::*;
use eddy::windowing::{TimeWindow, TumblingEventTimeWindows};
use eddy_kafka::{
    BadRecordPolicy, ConsumerRecord, DeliveryGuarantee, JsonDeserializer, KafkaRecordSerializer,
    KafkaSink, KafkaSource, OffsetsInitializer, string_deserializer,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Event {
    id: u64,
    user: String,
    ts: i64,
}

const PARTITIONS: i32 = 3;

/// `n` events, spread over the partitions by id, with timestamps rising within each partition
/// but partitions far apart in time (partition p starts p × 100 s later). No timestamp is 0:
/// librdkafka reads a 0 timestamp as "now".
fn events(n: u64) -> Vec<Event> {
    (0..n)
        .map(|id| Event {
            id,
            user: format!("user-{}", id % 17),
            ts: 1_000_000 + (id % PARTITIONS as u64) as i64 * 100_000 + id as i64 * 10,
        })
        .collect()
}

fn produce(broker: &Broker, topic: &str, events: &[Event]) {
    produce_to(broker, topic, events, PARTITIONS);
}

fn conf(pairs: &[(&str, &str)]) -> Configuration {
    let mut c = Configuration::new();
    for (k, v) in [
        ("execution.checkpointing.interval", "30 ms"),
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "3"),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
        ("taskmanager.memory.segment-size", "1kb"),
    ] {
        c.set_string(k, v);
    }
    for (k, v) in pairs {
        c.set_string(*k, *v);
    }
    c
}

fn source(broker: &Broker, topic: &str) -> eddy_kafka::KafkaSourceBuilder<Event> {
    KafkaSource::builder()
        .set_bootstrap_servers(&broker.bootstrap)
        .set_topics([topic])
        .set_group_id("eddy-test")
        .set_bounded(OffsetsInitializer::Latest)
        .set_deserializer(JsonDeserializer::<Event>::new())
}

/// Arms `fail` once the job has completed two checkpoints.
fn arm_after_checkpoints(client: &JobClient, fail: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.checkpoint_statistics().completed < 2 && Instant::now() < deadline {
        if client.wait_timeout(Duration::from_millis(2)).is_some() {
            break;
        }
    }
    fail.store(true, Ordering::SeqCst);
}

/// A map that is slow until `fail` is armed, then panics once.
fn failing_once(fail: Arc<AtomicBool>) -> impl Fn(Event) -> Event + Clone + Send + Sync + 'static {
    let fired = Arc::new(AtomicBool::new(false));
    move |e: Event| {
        if !fail.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_micros(300));
        } else if !fired.swap(true, Ordering::SeqCst) {
            panic!("injected failure");
        }
        e
    }
}

#[test]
fn the_source_reads_every_record_once_across_a_failure_at_any_parallelism() {
    let broker = Broker::start();
    broker.create_topic("events", PARTITIONS);
    let input = events(3000);
    produce(&broker, "events", &input);
    for p in [1, 2, 4] {
        let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
        env.set_parallelism(p);
        let fail = Arc::new(AtomicBool::new(false));
        let handle = env
            .from_source(
                source(&broker, "events").build().unwrap(),
                WatermarkStrategy::no_watermarks(),
                "kafka",
            )
            .map(failing_once(fail.clone()))
            .collect_async();
        let client = env.execute_async("kafka source").unwrap();
        arm_after_checkpoints(&client, &fail);
        client.get_job_execution_result().unwrap();
        assert!(
            client.checkpoint_statistics().restored >= 1,
            "p={p}: no restore"
        );
        let mut out = handle.take();
        out.sort();
        assert_eq!(out, input, "p={p}");
    }
}

#[test]
fn record_metadata_reaches_the_deserializer() {
    let broker = Broker::start();
    broker.create_topic("meta", PARTITIONS);
    let input = events(300);
    produce(&broker, "meta", &input);
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    env.set_parallelism(2);
    let handle = env
        .from_source(
            KafkaSource::builder()
                .set_bootstrap_servers(&broker.bootstrap)
                .set_topics(["meta"])
                .set_bounded(OffsetsInitializer::Latest)
                .set_deserializer(|r: &ConsumerRecord<'_>| {
                    let e: Event = serde_json::from_slice(r.payload.unwrap_or_default())?;
                    let key = String::from_utf8_lossy(r.key.unwrap_or_default()).into_owned();
                    Ok((
                        e,
                        r.topic.to_owned(),
                        r.partition,
                        r.offset,
                        key,
                        r.timestamp,
                    ))
                })
                .build()
                .unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .collect_async();
    env.execute("metadata").unwrap();
    let out = handle.take();
    assert_eq!(out.len(), input.len());
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (e, topic, partition, offset, key, ts) in out {
        assert_eq!(topic, "meta");
        assert_eq!(partition as u64, e.id % PARTITIONS as u64);
        assert_eq!(key, e.id.to_string());
        assert_eq!(ts, Some(e.ts));
        offsets.entry(partition).or_default().push(offset);
    }
    for (p, mut o) in offsets {
        o.sort();
        let n = o.len() as i64;
        assert_eq!(o, (0..n).collect::<Vec<_>>(), "partition {p}: offsets");
    }
}

#[test]
fn offsets_are_committed_on_checkpoints_and_committed_offsets_resume() {
    let broker = Broker::start();
    broker.create_topic("commits", PARTITIONS);
    let first = events(600);
    produce(&broker, "commits", &first);
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    env.set_parallelism(2);
    let handle = env
        .from_source(
            source(&broker, "commits").build().unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .map(|e: Event| {
            std::thread::sleep(Duration::from_micros(200));
            e
        })
        .collect_async();
    env.execute("first").unwrap();
    assert_eq!(handle.take().len(), first.len());
    // The group's committed offsets are the ends of the partitions.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "eddy-test")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition("commits", p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    for p in 0..PARTITIONS {
        let expected = first.iter().filter(|e| e.id % 3 == p as u64).count() as i64;
        assert_eq!(
            committed.find_partition("commits", p).map(|e| e.offset()),
            Some(Offset::Offset(expected)),
            "partition {p}"
        );
    }
    // A job starting from the committed offsets reads only what came since.
    let second: Vec<_> = events(900).split_off(600);
    produce(&broker, "commits", &second);
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    let handle = env
        .from_source(
            source(&broker, "commits")
                .set_starting_offsets(OffsetsInitializer::Committed { or_earliest: true })
                .build()
                .unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .collect_async();
    env.execute("second").unwrap();
    let mut out = handle.take();
    out.sort();
    assert_eq!(out, second);
}

#[test]
fn per_partition_watermarks_keep_windows_exact_across_partitions_far_apart_in_time() {
    let broker = Broker::start();
    broker.create_topic("times", PARTITIONS);
    let input = events(3000);
    produce(&broker, "times", &input);
    // Oracle: events per user per 10 s window.
    let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for e in &input {
        *expected.entry((e.user.clone(), e.ts / 10_000)).or_default() += 1;
    }
    for p in [1, 2] {
        let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
        env.set_parallelism(p);
        // No out-of-orderness allowed: within a partition timestamps only rise, so only a
        // watermark shared across partitions could make records late.
        let strategy = WatermarkStrategy::for_monotonous_timestamps();
        let handle = env
            .from_source(source(&broker, "times").build().unwrap(), strategy, "kafka")
            .map(|e: Event| (e.user, 1u64))
            .key_by(|x: &(String, u64)| x.0.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
            .apply(
                |key: &String,
                 w: &TimeWindow,
                 items: Vec<(String, u64)>,
                 out: &mut Collector<'_, ((String, i64), u64)>| {
                    out.collect(((key.clone(), w.start / 10_000), items.len() as u64));
                },
            )
            .collect_async();
        env.execute("windows").unwrap();
        let got: BTreeMap<_, _> = handle.take().into_iter().collect();
        assert_eq!(got, expected, "p={p}");
    }
}

fn poison_input(broker: &Broker, topic: &str) -> Vec<Event> {
    broker.create_topic(topic, PARTITIONS);
    let input = events(1000);
    let mut records = records(&input, PARTITIONS);
    // Record 500 (partition 2, offset 166) is not JSON.
    records[500].2 = b"{not json".to_vec();
    broker.produce(topic, &records);
    input.into_iter().filter(|e| e.id != 500).collect()
}

#[test]
fn a_poison_record_fails_the_job_naming_where_it_is_and_restarts_stay_bounded() {
    let broker = Broker::start();
    poison_input(&broker, "poison");
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    env.set_parallelism(2);
    let _ = env
        .from_source(
            source(&broker, "poison").build().unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .collect_async();
    let client = env.execute_async("poison").unwrap();
    let err = client.get_job_execution_result().unwrap_err().to_string();
    assert!(
        err.contains("topic 'poison' partition 2 offset 166") && err.contains("deserialized"),
        "{err}"
    );
    // The restart strategy's 3 attempts were used, then the job failed: no endless loop.
    assert_eq!(client.job_status(), eddy::JobStatus::Failed);
}

#[test]
fn a_skipped_poison_record_is_counted_and_nothing_else_is_lost() {
    let broker = Broker::start();
    let expected = poison_input(&broker, "skip");
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    env.set_parallelism(2);
    let handle = env
        .from_source(
            source(&broker, "skip")
                .set_bad_record_policy(BadRecordPolicy::Skip)
                .build()
                .unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .collect_async();
    let client = env.execute_async("skip").unwrap();
    client.get_job_execution_result().unwrap();
    let mut out = handle.take();
    out.sort();
    assert_eq!(out, expected);
    let skipped: f64 = client
        .metrics()
        .iter()
        .filter(|m| m.name == "numRecordsInErrors")
        .map(|m| m.value.as_f64())
        .sum();
    assert_eq!(skipped, 1.0);
}

#[test]
fn a_poison_record_goes_to_the_dead_letter_topic() {
    let broker = Broker::start();
    let expected = poison_input(&broker, "dlq-in");
    broker.create_topic("dlq", 1);
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    env.set_parallelism(2);
    let handle = env
        .from_source(
            source(&broker, "dlq-in")
                .set_bad_record_policy(BadRecordPolicy::DeadLetter {
                    topic: "dlq".into(),
                })
                .build()
                .unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .collect_async();
    env.execute("dead letters").unwrap();
    let mut out = handle.take();
    out.sort();
    assert_eq!(out, expected);
    let dead = broker.read_all("dlq", 1, 1);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value, "{not json");
    assert_eq!(dead[0].key.as_deref(), Some("500"));
    let header = |k: &str| {
        dead[0]
            .headers
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("eddy.dlq.topic").as_deref(), Some("dlq-in"));
    assert_eq!(header("eddy.dlq.partition").as_deref(), Some("2"));
    assert_eq!(header("eddy.dlq.offset").as_deref(), Some("166"));
}

#[test]
fn kafka_to_kafka_at_least_once_keeps_every_record_across_a_failure() {
    let broker = Broker::start();
    broker.create_topic("k2k-in", PARTITIONS);
    let input = events(2000);
    produce(&broker, "k2k-in", &input);
    for (p, out_topic) in [(1, "k2k-out-1"), (2, "k2k-out-2"), (4, "k2k-out-4")] {
        broker.create_topic(out_topic, 2);
        let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
        env.set_parallelism(p);
        let fail = Arc::new(AtomicBool::new(false));
        env.from_source(
            source(&broker, "k2k-in").build().unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .map(failing_once(fail.clone()))
        .map(|e: Event| format!("{}:{}", e.id, e.user))
        .sink_to(
            KafkaSink::builder()
                .set_bootstrap_servers(&broker.bootstrap)
                .set_record_serializer(
                    KafkaRecordSerializer::string(out_topic)
                        .with_key(|s: &String| s.split(':').next().map(|k| k.as_bytes().to_vec())),
                )
                .set_delivery_guarantee(DeliveryGuarantee::AtLeastOnce)
                .build()
                .unwrap(),
        );
        let client = env.execute_async("kafka to kafka").unwrap();
        arm_after_checkpoints(&client, &fail);
        client.get_job_execution_result().unwrap();
        assert!(
            client.checkpoint_statistics().restored >= 1,
            "p={p}: no restore"
        );
        let got = broker.read_all(out_topic, 2, usize::MAX);
        let mut distinct: Vec<_> = got.iter().map(|r| r.value.clone()).collect();
        distinct.sort();
        distinct.dedup();
        let mut expected: Vec<_> = input
            .iter()
            .map(|e| format!("{}:{}", e.id, e.user))
            .collect();
        expected.sort();
        assert_eq!(distinct, expected, "p={p}: every record at least once");
        for r in &got {
            assert_eq!(r.key.as_deref(), r.value.split(':').next(), "p={p}: keys");
        }
    }
}

fn exactly_once_sink(broker: &Broker, props: &[(&str, &str)]) -> KafkaSink<String> {
    let mut b = KafkaSink::builder()
        .set_bootstrap_servers(&broker.bootstrap)
        .set_record_serializer(KafkaRecordSerializer::string("eos-out"))
        .set_delivery_guarantee(DeliveryGuarantee::ExactlyOnce)
        .set_transactional_id_prefix("eos-test");
    for (k, v) in props {
        b = b.set_property(*k, *v);
    }
    b.build().unwrap()
}

#[test]
fn a_transaction_timeout_shorter_than_checkpoints_and_restarts_is_refused() {
    let broker = Broker::start();
    // Restarts wait up to 10 s, the first one only 10 ms (so the test is quick).
    let env = StreamExecutionEnvironment::with_configuration(conf(&[
        ("execution.checkpointing.interval", "5 s"),
        ("restart-strategy.type", "exponential-delay"),
        (
            "restart-strategy.exponential-delay.initial-backoff",
            "10 ms",
        ),
        ("restart-strategy.exponential-delay.max-backoff", "10 s"),
        (
            "restart-strategy.exponential-delay.attempts-before-reset-backoff",
            "1",
        ),
    ]));
    env.from_collection(vec!["a".to_string()])
        .sink_to(exactly_once_sink(
            &broker,
            &[("transaction.timeout.ms", "12000")],
        ));
    let err = env.execute("timeout").unwrap_err().to_string();
    assert!(
        err.contains("transaction.timeout.ms (12000 ms) is shorter than"),
        "{err}"
    );
}

#[test]
fn a_missing_topic_is_named() {
    let broker = Broker::start();
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    let _ = env
        .from_source(
            KafkaSource::builder()
                .set_bootstrap_servers(&broker.bootstrap)
                .set_topics(["nowhere"])
                .set_bounded(OffsetsInitializer::Latest)
                .set_deserializer(string_deserializer())
                .build()
                .unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .collect_async();
    let err = env.execute("missing").unwrap_err().to_string();
    assert!(err.contains("'nowhere' does not exist"), "{err}");
}

#[test]
fn partition_discovery_finds_new_topics_of_a_pattern_and_new_partitions_of_a_topic() {
    let broker = Broker::start();
    broker.create_topic("disc-a", 2);
    let first = events(100);
    produce_to(&broker, "disc-a", &first, 2);
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    env.set_parallelism(2);
    let handle = env
        .from_source(
            KafkaSource::builder()
                .set_bootstrap_servers(&broker.bootstrap)
                .set_topic_pattern("disc-.*")
                .set_partition_discovery_interval(Some(Duration::from_millis(100)))
                .set_deserializer(JsonDeserializer::<Event>::new())
                .build()
                .unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .collect_async();
    let client = env.execute_async("discovery").unwrap();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while handle.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records",
                handle.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(first.len());
    broker.create_topic("disc-b", 3);
    broker.create_topic("other", 1);
    let second: Vec<_> = events(250).split_off(100);
    produce_to(&broker, "disc-b", &second, 3);
    produce_to(&broker, "other", &events(10), 1);
    wait_for(first.len() + second.len());
    // Partitions added to a topic the job already reads (CreatePartitions) are found too.
    eddy_kafka::admin::create_partitions(&broker.bootstrap, "disc-a", 4).unwrap();
    let third: Vec<_> = events(400)
        .split_off(250)
        .into_iter()
        .filter(|e| e.id % 4 >= 2)
        .collect();
    produce_to(&broker, "disc-a", &third, 4);
    wait_for(first.len() + second.len() + third.len());
    // Give a wrongly matched topic the time to show up.
    std::thread::sleep(Duration::from_millis(300));
    client.cancel();
    let _ = client.get_job_execution_result();
    let mut out = handle.take();
    out.sort();
    let mut expected = [first, second, third].concat();
    expected.sort();
    assert_eq!(out, expected);
}

fn produce_to(broker: &Broker, topic: &str, events: &[Event], partitions: i32) {
    broker.produce(topic, &records(events, partitions));
}

/// Records of `events`: partition by id, key the id, JSON value, the event's timestamp.
fn records(events: &[Event], partitions: i32) -> Vec<(i32, String, Vec<u8>, i64)> {
    events
        .iter()
        .map(|e| {
            (
                (e.id % partitions as u64) as i32,
                e.id.to_string(),
                serde_json::to_vec(e).unwrap(),
                e.ts,
            )
        })
        .collect()
}

#[test]
fn reading_can_start_at_a_timestamp() {
    let broker = Broker::start();
    broker.create_topic("times-from", PARTITIONS);
    let input = events(600);
    produce(&broker, "times-from", &input);
    let from = 1_000_000 + 3_000;
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    env.set_parallelism(2);
    let handle = env
        .from_source(
            source(&broker, "times-from")
                .set_starting_offsets(OffsetsInitializer::Timestamp(from))
                .build()
                .unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .collect_async();
    env.execute("from a timestamp").unwrap();
    let mut out = handle.take();
    out.sort();
    // Kafka answers, per partition, the first offset whose timestamp is at or after the time:
    // within a partition timestamps rise, so that is exactly the events from `from` on.
    let expected: Vec<_> = input.into_iter().filter(|e| e.ts >= from).collect();
    assert!(!expected.is_empty() && expected.len() < 600);
    assert_eq!(out, expected);
}

#[test]
fn the_sink_partitions_and_keys_records_as_told() {
    let broker = Broker::start();
    broker.create_topic("parted", 3);
    let env = StreamExecutionEnvironment::with_configuration(conf(&[]));
    env.set_parallelism(2);
    env.from_collection(events(300)).sink_to(
        KafkaSink::builder()
            .set_bootstrap_servers(&broker.bootstrap)
            .set_record_serializer(
                KafkaRecordSerializer::<Event>::json("parted")
                    .with_key(|e: &Event| Some(e.user.clone().into_bytes()))
                    .with_partitioner(|e: &Event, _key, partitions| (e.id % 7) as i32 % partitions),
            )
            .build()
            .unwrap(),
    );
    env.execute("partitioned").unwrap();
    let got = broker.read_all("parted", 3, 300);
    assert_eq!(got.len(), 300);
    for r in got {
        let e: Event = serde_json::from_str(&r.value).unwrap();
        assert_eq!(r.partition, (e.id % 7) as i32 % 3);
        assert_eq!(r.key.as_deref(), Some(e.user.as_str()));
    }
}

#[test]
fn an_idle_partition_does_not_hold_back_event_time() {
    let broker = Broker::start();
    broker.create_topic("idle", 2);
    // Partition 1 gets one early record and then nothing; partition 0 keeps going while the
    // job runs, 1 s of event time every 10 ms.
    let quiet = Event {
        id: 1,
        user: "quiet".into(),
        ts: 1_000,
    };
    produce_to(&broker, "idle", &[quiet], 2);
    let bootstrap = broker.bootstrap.clone();
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let busy = std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        for i in 0..500i64 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let e = Event {
                id: 2 * i as u64,
                user: "busy".into(),
                ts: 1_000 + i * 1_000,
            };
            let payload = serde_json::to_vec(&e).unwrap();
            let record = BaseRecord::<str, [u8]>::to("idle")
                .partition(0)
                .key("busy")
                .payload(&payload)
                .timestamp(e.ts);
            // A slow machine may take its time to take a record: wait, don't give up.
            producer.send(record).map_err(|(e, _)| e).unwrap();
            producer.flush(Duration::from_secs(60)).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let env = StreamExecutionEnvironment::with_configuration(conf(&[(
        "pipeline.auto-watermark-interval",
        "20 ms",
    )]));
    let strategy =
        WatermarkStrategy::for_monotonous_timestamps().with_idleness(Duration::from_millis(200));
    let handle = env
        .from_source(
            KafkaSource::builder()
                .set_bootstrap_servers(&broker.bootstrap)
                .set_topics(["idle"])
                .set_deserializer(JsonDeserializer::<Event>::new())
                .build()
                .unwrap(),
            strategy,
            "kafka",
        )
        .map(|e: Event| (e.user, 1u64))
        .key_by(|x: &(String, u64)| x.0.clone())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .apply(
            |key: &String,
             w: &TimeWindow,
             items: Vec<(String, u64)>,
             out: &mut Collector<'_, (String, i64, usize)>| {
                out.collect((key.clone(), w.start, items.len()));
            },
        )
        .collect_async();
    let client = env.execute_async("idleness").unwrap();
    // The job never ends (the source is unbounded): windows must fire while it runs, which
    // the quiet partition would prevent if it held back event time.
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    client.cancel();
    let _ = client.get_job_execution_result();
    done.store(true, Ordering::SeqCst);
    busy.join().unwrap();
    let out = handle.take();
    assert!(
        out.len() >= 5,
        "no windows fired while a partition was idle: {out:?}"
    );
    assert!(out.contains(&("quiet".to_string(), 0, 1)), "{out:?}");
    assert!(out.contains(&("busy".to_string(), 0, 9)), "{out:?}");
    assert!(out.contains(&("busy".to_string(), 10_000, 10)), "{out:?}");
}

#[test]
fn an_unreachable_broker_at_start_is_named_and_restarts_stay_bounded() {
    let nowhere = format!("127.0.0.1:{}", eddy_kafka::testing::free_port().unwrap());
    let env = StreamExecutionEnvironment::with_configuration(conf(&[
        ("restart-strategy.fixed-delay.attempts", "1"),
        ("restart-strategy.fixed-delay.delay", "100 ms"),
    ]));
    let _ = env
        .from_source(
            KafkaSource::builder()
                .set_bootstrap_servers(&nowhere)
                .set_topics(["events"])
                .set_deserializer(string_deserializer())
                .build()
                .unwrap(),
            WatermarkStrategy::no_watermarks(),
            "kafka",
        )
        .collect_async();
    let started = Instant::now();
    let client = env.execute_async("unreachable").unwrap();
    let err = client.get_job_execution_result().unwrap_err().to_string();
    assert!(err.contains(&nowhere), "the error names the brokers: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "it gave up in bounded time"
    );
    // The first attempt and the one restart the strategy allows both failed.
    assert_eq!(client.exceptions().len(), 2, "{:?}", client.exceptions());
}
