//! Kafka → keyed job → Kafka, exactly once, with the job killed: the `kafka_exactly_once`
//! example runs as its own process while a producer keeps writing its input; it is killed
//! with SIGKILL at random moments, once during a checkpoint (its transaction prepared) and
//! once after a checkpoint completed but before the commit, and each time started again from
//! its newest checkpoint. A `read_committed` consumer must then see every input record's
//! result exactly once: the output equals a brute-force oracle, with no duplicates and nothing
//! from aborted transactions. At parallelism 1, 2 and 4, with a rescale 2 → 4 on restore, and
//! with a broker of a three-broker cluster killed and restarted under the job.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Broker;
use rand::Rng;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const KEYS: u64 = 40;
const PARTITIONS: i32 = 4;

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples/kafka_exactly_once")
}

/// What the job must write for input record `id`: the key's n-th record.
fn expected(records: u64) -> BTreeMap<u64, String> {
    (0..records)
        .map(|id| (id, format!("{id},key-{},{}", id % KEYS, id / KEYS + 1)))
        .collect()
}

/// Writes `records` input records, `id,key-(id % KEYS)` keyed by the key, at about `rate`
/// records per second, in its own thread.
fn feed(bootstrap: &str, topic: &str, records: u64, rate: u64) -> std::thread::JoinHandle<()> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let start = Instant::now();
        for id in 0..records {
            let key = format!("key-{}", id % KEYS);
            let value = format!("{id},{key}");
            eddy_kafka::producer::send(&producer, BaseRecord::to(&topic).key(&key).payload(&value))
                .unwrap();
            let due = start + Duration::from_micros(id * 1_000_000 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    })
}

/// Reads the output as a `read_committed` consumer, from the beginning, as it grows.
struct Output {
    consumer: BaseConsumer,
    seen: Vec<String>,
}

impl Output {
    fn new(bootstrap: &str, topic: &str) -> Output {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "eddy-test-output")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        Output {
            consumer,
            seen: Vec::new(),
        }
    }

    /// Reads what is there, for up to `time`.
    fn poll_for(&mut self, time: Duration) {
        let until = Instant::now() + time;
        while Instant::now() < until {
            match self.consumer.poll(Duration::from_millis(20)) {
                Some(Ok(m)) => self
                    .seen
                    .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
                Some(Err(e)) => eprintln!("reading the output: {e}"),
                None => {}
            }
        }
    }
}

/// How one run of the job ends.
enum Ending {
    /// The test kills it after a random time once it made progress.
    KilledAtRandom,
    /// It kills itself during its n-th checkpoint that holds records.
    DuringCheckpoint(u64),
    /// It kills itself after its n-th checkpoint that holds records completed, before
    /// committing.
    BeforeCommit(u64),
    /// It runs until the whole output is there.
    Finish,
}

struct Scenario<'a> {
    bootstrap: &'a str,
    input: &'a str,
    output: &'a str,
    dir: &'a Path,
    extra: &'a [&'a str],
}

impl Scenario<'_> {
    fn start(&self, parallelism: u32, ending: &Ending, log: &Path) -> Child {
        let mut cmd = Command::new(example());
        cmd.args(["run", "--bootstrap-servers", self.bootstrap])
            .args(["--input", self.input, "--output", self.output])
            .args(["--group-id", self.output])
            .args(["--parallelism", &parallelism.to_string()])
            .args(["--checkpoint-interval", "150", "--resume"])
            .arg("--checkpoint-dir")
            .arg(self.dir)
            .args(self.extra);
        match ending {
            Ending::DuringCheckpoint(n) => {
                cmd.args(["--kill-during-checkpoint", &n.to_string()]);
            }
            Ending::BeforeCommit(n) => {
                cmd.args(["--kill-before-commit", &n.to_string()]);
            }
            Ending::KilledAtRandom | Ending::Finish => {}
        }
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("run the kafka_exactly_once example")
    }

    /// Runs the job once per entry of `runs` (its parallelism and how it ends), reading the
    /// output into `out` all along.
    fn run(&self, runs: &[(u32, Ending)], records: u64, out: &mut Output) {
        let mut rng = rand::rng();
        for (i, (parallelism, ending)) in runs.iter().enumerate() {
            let log = self.dir.join(format!("run-{i}.log"));
            let resumes = has_checkpoint(self.dir);
            let mut child = self.start(*parallelism, ending, &log);
            let before = out.seen.len();
            let deadline = Instant::now() + Duration::from_secs(120);
            let describe = |what: &str| {
                format!(
                    "run {i} (p={parallelism}): {what}; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            };
            match ending {
                Ending::KilledAtRandom => {
                    // Once it has committed something (or after 5 s), kill it at a random
                    // moment within the next second.
                    let progress = Instant::now() + Duration::from_secs(5);
                    while out.seen.len() == before && Instant::now() < progress {
                        out.poll_for(Duration::from_millis(50));
                    }
                    out.poll_for(Duration::from_millis(rng.random_range(0..1000)));
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!("{}", describe(&format!("exited early with {status}")));
                    }
                    child.kill().unwrap();
                    child.wait().unwrap();
                }
                Ending::DuringCheckpoint(_) | Ending::BeforeCommit(_) => {
                    let status = loop {
                        if let Some(status) = child.try_wait().unwrap() {
                            break status;
                        }
                        assert!(
                            Instant::now() < deadline,
                            "{}",
                            describe("never killed itself")
                        );
                        out.poll_for(Duration::from_millis(50));
                    };
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        !status.success() && text.contains("killing myself"),
                        "{}",
                        describe(&format!("ended with {status}"))
                    );
                }
                Ending::Finish => {
                    while (out.seen.len() as u64) < records {
                        if let Some(status) = child.try_wait().unwrap() {
                            panic!("{}", describe(&format!("exited with {status}")));
                        }
                        assert!(
                            Instant::now() < deadline,
                            "{}",
                            describe(&format!("only {} of {records} results", out.seen.len()))
                        );
                        out.poll_for(Duration::from_millis(50));
                    }
                    // A few more checkpoints: nothing may come twice.
                    out.poll_for(Duration::from_millis(800));
                    child.kill().unwrap();
                    child.wait().unwrap();
                }
            }
            // A run killed at random may die before it says anything.
            if resumes && !matches!(ending, Ending::KilledAtRandom) {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(
                    text.contains("resuming from"),
                    "{}",
                    describe("did not resume")
                );
            }
        }
        out.poll_for(Duration::from_millis(500));
    }
}

/// Whether a completed checkpoint lies under `dir` (`JOB/chk-N/_metadata`).
fn has_checkpoint(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|job| {
            std::fs::read_dir(job.path())
                .into_iter()
                .flatten()
                .flatten()
                .any(|chk| chk.path().join("_metadata").exists())
        })
}

/// Checks that `seen` holds each expected result exactly once, and nothing else.
fn check(seen: &[String], records: u64, what: &str) {
    let mut got: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
    for s in seen {
        let id: u64 = s.split(',').next().and_then(|i| i.parse().ok()).unwrap();
        got.entry(id).or_default().push(s);
    }
    let doubled: Vec<_> = got.iter().filter(|(_, v)| v.len() > 1).take(5).collect();
    assert!(
        doubled.is_empty(),
        "{what}: results seen twice: {doubled:?}"
    );
    let expected = expected(records);
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !got.contains_key(id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: results missing for ids {missing:?}"
    );
    for (id, want) in &expected {
        assert_eq!(got[id][0], want, "{what}: the result of {id}");
    }
    assert_eq!(
        got.len() as u64,
        records,
        "{what}: results of records never written"
    );
}

/// The job at `parallelisms` (one per run: five killed at random, one killed during a
/// checkpoint, one before a commit, then one to the end), with the input written while it
/// runs.
fn killed_again_and_again(parallelisms: [u32; 8]) {
    killed_again_and_again_with(parallelisms, &[]);
}

/// [`killed_again_and_again`] with `extra` arguments for the job.
fn killed_again_and_again_with(parallelisms: [u32; 8], extra: &[&str]) {
    let broker = Broker::start();
    let what = format!("parallelism {parallelisms:?}");
    broker.create_topic("input", PARTITIONS);
    broker.create_topic("output", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    // The input keeps coming for about 25 s, while the job is killed.
    let records = 10_000;
    let feeder = feed(&broker.bootstrap, "input", records, 400);
    let scenario = Scenario {
        bootstrap: &broker.bootstrap,
        input: "input",
        output: "output",
        dir: dir.path(),
        extra,
    };
    let endings = [
        Ending::KilledAtRandom,
        Ending::DuringCheckpoint(2),
        Ending::KilledAtRandom,
        Ending::BeforeCommit(2),
        Ending::KilledAtRandom,
        Ending::KilledAtRandom,
        Ending::KilledAtRandom,
        Ending::Finish,
    ];
    let runs: Vec<_> = parallelisms.into_iter().zip(endings).collect();
    let mut out = Output::new(&broker.bootstrap, "output");
    scenario.run(&runs, records, &mut out);
    feeder.join().unwrap();
    check(&out.seen, records, &what);
}

#[test]
fn killed_at_parallelism_1_each_result_is_seen_exactly_once() {
    killed_again_and_again([1; 8]);
}

#[test]
fn killed_at_parallelism_2_each_result_is_seen_exactly_once() {
    killed_again_and_again([2; 8]);
}

#[test]
fn killed_at_parallelism_4_each_result_is_seen_exactly_once() {
    killed_again_and_again([4; 8]);
}

#[test]
fn killed_at_parallelism_2_with_unaligned_checkpoints_each_result_is_seen_exactly_once() {
    killed_again_and_again_with(
        [2; 8],
        &["-D", "execution.checkpointing.unaligned.enabled=true"],
    );
}

#[test]
fn killed_and_rescaled_from_2_to_4_each_result_is_seen_exactly_once() {
    killed_again_and_again([2, 2, 2, 2, 4, 4, 4, 4]);
}

#[test]
fn a_broker_killed_and_restarted_under_the_job_loses_and_doubles_nothing() {
    let mut broker = Broker::cluster(3);
    broker.create_topic("input", PARTITIONS);
    broker.create_topic("output", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let records = 8_000;
    let feeder = feed(&broker.bootstrap, "input", records, 1_000);
    let mut out = Output::new(&broker.bootstrap, "output");
    let scenario = Scenario {
        bootstrap: &broker.bootstrap,
        input: "input",
        output: "output",
        dir: dir.path(),
        extra: &["--restart-attempts", "30"],
    };
    let log = dir.path().join("job.log");
    let mut child = scenario.start(2, &Ending::Finish, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.seen.len() < 500 {
        assert!(
            Instant::now() < deadline,
            "too little output before the broker was killed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        out.poll_for(Duration::from_millis(50));
    }
    broker.cluster.kill(1);
    out.poll_for(Duration::from_secs(3));
    broker.cluster.restart(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (out.seen.len() as u64) < records {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the job exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {records} results",
            out.seen.len()
        );
        out.poll_for(Duration::from_millis(50));
    }
    out.poll_for(Duration::from_millis(800));
    child.kill().unwrap();
    child.wait().unwrap();
    feeder.join().unwrap();
    check(&out.seen, records, "a broker killed and restarted");
}

#[test]
fn a_transaction_the_broker_aborted_before_the_restore_is_a_clear_error() {
    // The broker looks for timed-out transactions every 500 ms.
    let broker = Broker::with_properties(
        1,
        &[(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "500",
        )],
    );
    broker.create_topic("input", PARTITIONS);
    broker.create_topic("output", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let feeder = feed(&broker.bootstrap, "input", 6_000, 500);
    let scenario = Scenario {
        bootstrap: &broker.bootstrap,
        input: "input",
        output: "output",
        dir: dir.path(),
        extra: &["--transaction-timeout-ms", "6000"],
    };
    let mut out = Output::new(&broker.bootstrap, "output");
    // Killed after its first checkpoint with records completed, before the commit: then the
    // broker aborts the transaction once its 6 s are up, and the restored job finds it aborted.
    scenario.run(&[(2, Ending::BeforeCommit(1))], 6_000, &mut out);
    std::thread::sleep(Duration::from_secs(8));
    let log = dir.path().join("restored.log");
    let mut child = scenario.start(2, &Ending::Finish, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "the restored job did not fail: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("of a completed checkpoint cannot be committed")
            && text.contains("records are lost")
            && text.contains("transaction.timeout.ms"),
        "{text}"
    );
    feeder.join().unwrap();
}
