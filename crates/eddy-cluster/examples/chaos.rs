//! The chaos suite: a real pipeline on a real cluster, kept under continuous failures, then
//! checked against an oracle.
//!
//! It starts, on this machine and on loopback only, a ZooKeeper server, a Kafka broker, a
//! private Postgres server, three JobManagers with high availability and three TaskManagers,
//! and submits `chaos_pipeline` (Kafka → keyed event-time windows → Postgres and Kafka, both
//! exactly once) while a producer writes events at a steady rate. For `--duration-secs` it then:
//!
//! - SIGKILLs a TaskManager that runs the job's tasks (with its workers) and starts a new one;
//! - SIGKILLs the leading JobManager and starts a new standby;
//! - pauses a JobManager or TaskManager (SIGSTOP, with its workers) past the heartbeat and
//!   ZooKeeper session timeouts, then resumes it (a deposed leader exits and is replaced);
//! - fills the checkpoint directory's file system, or makes the job's checkpoint directory
//!   immutable, for a few seconds.
//!
//! Then it stops producing, sends end markers that move event time past the last window, waits
//! for both outputs, and compares them with the windows computed from what it produced: lost,
//! duplicated and wrong rows per sink. It reports each failure's recovery time (the failure to
//! the first record processed again by the restarted windows) and exits with status 1 unless
//! nothing is lost, duplicated or wrong and every kind of failure happened at least
//! `--min-each` times.
//!
//! ```text
//! scripts/services.sh zookeeper kafka postgres     # the servers' binaries, once
//! cargo build --release -p eddy-cluster --bin eddy --example chaos --example chaos_pipeline
//! target/release/examples/chaos --duration-secs 600 --report /tmp/chaos.json
//! ```

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

const INPUT: &str = "chaos-input";
const OUTPUT: &str = "chaos-output";
const TABLE: &str = "chaos_windows";
const PARTITIONS: i32 = 4;
const KEYS: u64 = 20;
const WINDOW_MS: i64 = 1000;
/// `heartbeat.timeout` and the ZooKeeper session timeout of the cluster.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(4);
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Parser)]
#[command(about = "Runs a pipeline on a cluster under continuous failures and checks its output")]
struct Args {
    /// How long the failures go on.
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
    /// Seconds between kills of a TaskManager.
    #[arg(long, default_value_t = 30)]
    taskmanager_kill_every: u64,
    /// Seconds between kills of the leading JobManager.
    #[arg(long, default_value_t = 60)]
    jobmanager_kill_every: u64,
    /// Seconds between pauses of a process.
    #[arg(long, default_value_t = 45)]
    pause_every: u64,
    /// Seconds between checkpoint storage faults.
    #[arg(long, default_value_t = 50)]
    storage_fault_every: u64,
    /// Events produced per second.
    #[arg(long, default_value_t = 400)]
    rate: u64,
    /// Fail unless each kind of failure happened at least this often.
    #[arg(long, default_value_t = 1)]
    min_each: usize,
    /// The `eddy` binary (default: beside the examples directory).
    #[arg(long)]
    eddy: Option<PathBuf>,
    /// The pipeline program (default: `chaos_pipeline` beside this program).
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// Also write the report, as JSON, here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the working directory (logs, checkpoints) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// A failure the suite injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillTaskManager,
    KillLeader,
    Pause,
    Storage,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillTaskManager => "TaskManager killed",
            Fault::KillLeader => "leading JobManager killed",
            Fault::Pause => "process paused",
            Fault::Storage => "checkpoint storage fault",
        }
    }
}

/// A process of the cluster, in a process group of its own (with its worker processes).
struct Process {
    name: String,
    child: Child,
    rest_port: Option<u16>,
}

impl Process {
    /// Sends `signal` to the process and its workers (its process group).
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args(["-s", signal, "--", &format!("-{}", self.child.id())])
            .status();
    }

    fn kill(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

/// The cluster and its servers.
struct Cluster {
    dir: PathBuf,
    eddy: PathBuf,
    quorum: String,
    jobmanagers: Vec<Process>,
    taskmanagers: Vec<Process>,
    started: usize,
}

impl Cluster {
    fn ha_properties(&self) -> Vec<String> {
        [
            "high-availability.type=zookeeper".to_string(),
            format!("high-availability.zookeeper.quorum={}", self.quorum),
            format!(
                "high-availability.storageDir={}",
                self.dir.join("ha").display()
            ),
            "high-availability.cluster-id=/chaos".into(),
            format!(
                "high-availability.zookeeper.client.session-timeout={}ms",
                SESSION_TIMEOUT.as_millis()
            ),
            "high-availability.zookeeper.client.connection-timeout=10s".into(),
            format!("heartbeat.timeout={}ms", HEARTBEAT_TIMEOUT.as_millis()),
            "heartbeat.interval=500ms".into(),
            "metrics.reporter.prom.port=0".into(),
        ]
        .into_iter()
        .flat_map(|p| ["-D".to_string(), p])
        .collect()
    }

    fn spawn(&mut self, role: &str, extra: &[String]) -> Result<Process> {
        self.started += 1;
        let name = format!("{role}{}", self.started);
        let log = self.dir.join("log").join(&name);
        std::fs::create_dir_all(&log)?;
        let rest_port = (role == "jm").then(free_port).transpose()?;
        let mut cmd = Command::new(&self.eddy);
        cmd.args(self.ha_properties());
        if let Some(port) = rest_port {
            cmd.args(["-D", &format!("rest.port={port}")]).args([
                "-D",
                "jobmanager.rpc.port=0",
                "jobmanager",
            ]);
        } else {
            cmd.args(["-D", "taskmanager.numberOfTaskSlots=2"]).args([
                "-D",
                &format!("taskmanager.resource-id={name}"),
                "taskmanager",
            ]);
        }
        let child = cmd
            .arg("--work-dir")
            .arg(self.dir.join("work").join(&name))
            .args(extra)
            .env("EDDY_LOG_DIR", &log)
            // Each exits when this program does (its standard input, a pipe, closes).
            .env(eddy_cluster::application::EXIT_WITH_LAUNCHER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(log.join("stdout.txt"))?)
            .stderr(std::fs::File::create(log.join("stderr.txt"))?)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.eddy.display()))?;
        Ok(Process {
            name,
            child,
            rest_port,
        })
    }

    fn start_jobmanager(&mut self) -> Result<()> {
        let p = self.spawn("jm", &[])?;
        self.jobmanagers.push(p);
        Ok(())
    }

    fn start_taskmanager(&mut self) -> Result<()> {
        let p = self.spawn("tm", &[])?;
        self.taskmanagers.push(p);
        Ok(())
    }

    /// Starts new JobManagers in place of those that exited (a deposed leader exits).
    fn replace_exited(&mut self) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.jobmanagers.len() {
            if matches!(self.jobmanagers[i].child.try_wait(), Ok(Some(_))) {
                gone.push(self.jobmanagers.remove(i).name);
                self.start_jobmanager()?;
            } else {
                i += 1;
            }
        }
        Ok(gone)
    }

    /// The REST address of the JobManager that serves it (only the leader binds its ports).
    fn leader(&self) -> Option<(usize, String)> {
        self.jobmanagers.iter().enumerate().find_map(|(i, jm)| {
            let url = format!("http://127.0.0.1:{}", jm.rest_port?);
            get(&format!("{url}/overview")).map(|_| (i, url))
        })
    }

    fn eddy(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.eddy)
            .args(self.ha_properties())
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "eddy {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self
            .jobmanagers
            .drain(..)
            .chain(self.taskmanagers.drain(..))
        {
            p.signal("CONT");
            p.kill();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn get(url: &str) -> Option<Value> {
    reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .ok()?
        .error_for_status()
        .ok()?
        .json()
        .ok()
}

/// What the job looks like through the leader's REST API.
#[derive(Debug, Default, PartialEq)]
struct JobView {
    leader: String,
    running: bool,
    /// Per subtask of the windows: its attempt and records read.
    windows: Vec<(u64, u64)>,
    /// TaskManagers running the job's subtasks.
    taskmanagers: Vec<String>,
}

fn job_view(cluster: &Cluster, job: &str) -> Option<JobView> {
    let (_, url) = cluster.leader()?;
    let details = get(&format!("{url}/jobs/{job}"))?;
    let running = details["state"] == "RUNNING";
    let mut view = JobView {
        leader: url.clone(),
        running,
        ..JobView::default()
    };
    for v in details["vertices"].as_array()? {
        let vid = v["id"].as_str()?;
        let vertex = get(&format!("{url}/jobs/{job}/vertices/{vid}"))?;
        for s in vertex["subtasks"].as_array()? {
            if let Some(tm) = s["taskmanager-id"].as_str()
                && !tm.is_empty()
                && !view.taskmanagers.iter().any(|t| t == tm)
            {
                view.taskmanagers.push(tm.to_string());
            }
            let is_window = v["name"].as_str().is_some_and(|n| n.contains("Window"));
            if is_window {
                view.windows.push((
                    s["attempt"].as_u64().unwrap_or(0),
                    s["metrics"]["read-records"].as_u64().unwrap_or(0),
                ));
            }
        }
    }
    Some(view)
}

/// Waits until the windows process records again after a failure at `since`, which the job
/// saw as `before`: a new leader or a new attempt, running, with records read. `None` if the
/// failure did not touch the job (nothing restarted within `quiet`).
fn recovery(
    cluster: &Cluster,
    job: &str,
    before: &JobView,
    since: Instant,
    quiet: Duration,
    deadline: Duration,
) -> Option<Duration> {
    let attempt = |v: &JobView| v.windows.iter().map(|w| w.0).max().unwrap_or(0);
    let mut disturbed = false;
    while since.elapsed() < deadline {
        match job_view(cluster, job) {
            Some(v) => {
                let restarted = v.leader != before.leader || attempt(&v) > attempt(before);
                disturbed |= restarted || !v.running;
                if restarted
                    && v.running
                    && !v.windows.is_empty()
                    && v.windows.iter().all(|w| w.0 == attempt(&v))
                    && v.windows.iter().any(|w| w.1 > 0)
                {
                    return Some(since.elapsed());
                }
            }
            None => disturbed = true,
        }
        if !disturbed && since.elapsed() > quiet {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(since.elapsed())
}

/// Produces `{"id","key","ts"}` events at `rate` per second: event `id` has key `k(id % KEYS)`,
/// timestamp `base + id` ms and partition `id % PARTITIONS`, so timestamps rise within a
/// partition. (Timestamps near the present: the sink writes a window's end as its record's
/// Kafka timestamp, and the broker's retention would delete records from 1970 at once.)
fn produce(
    bootstrap: String,
    rate: u64,
    base: i64,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Result<()>> {
    std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()?;
        let start = Instant::now();
        let mut id = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = start.elapsed().as_millis() as u64 * rate / 1000;
            while id < due {
                let payload =
                    json!({"id": id, "key": format!("k{}", id % KEYS), "ts": base + id as i64})
                        .to_string();
                let record = BaseRecord::<str, str>::to(INPUT)
                    .partition((id % PARTITIONS as u64) as i32)
                    .payload(&payload);
                eddy_kafka::producer::send(&producer, record)?;
                id += 1;
            }
            produced.store(id, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
        // End markers: event time far past the last window in every partition.
        for p in 0..PARTITIONS {
            let payload =
                json!({"id": 0, "key": "end", "ts": base + id as i64 + 10 * WINDOW_MS}).to_string();
            eddy_kafka::producer::send(
                &producer,
                BaseRecord::<str, str>::to(INPUT)
                    .partition(p)
                    .payload(&payload),
            )?;
        }
        producer.flush(Duration::from_secs(60))?;
        produced.store(id, Ordering::Relaxed);
        Ok(())
    })
}

/// The windows the pipeline must write for events `0..produced` (timestamps from `base`).
fn oracle(produced: u64, base: i64) -> BTreeMap<(String, i64), (i64, i64)> {
    let mut windows: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for id in 0..produced {
        let ts = base + id as i64;
        let w = windows
            .entry((format!("k{}", id % KEYS), ts - ts % WINDOW_MS))
            .or_default();
        w.0 += 1;
        w.1 += id as i64;
    }
    windows
}

/// How a sink's rows compare with the oracle's windows.
#[derive(Debug, Default)]
struct Check {
    rows: usize,
    lost: usize,
    duplicated: usize,
    wrong: usize,
    /// A few of the windows lost, duplicated or wrong, for the report.
    examples: Vec<String>,
}

fn check(
    rows: &[(String, i64, i64, i64)],
    expected: &BTreeMap<(String, i64), (i64, i64)>,
) -> Check {
    let mut seen: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut result = Check {
        rows: rows.len(),
        ..Check::default()
    };
    for (key, start, count, sum) in rows {
        let k = (key.clone(), *start);
        let n = seen.entry(k.clone()).or_default();
        *n += 1;
        if *n > 1 {
            result.duplicated += 1;
            result.examples.push(format!("duplicated {key},{start}"));
        } else if expected.get(&k) != Some(&(*count, *sum)) {
            result.wrong += 1;
            result
                .examples
                .push(format!("wrong {key},{start},{count},{sum}"));
        }
    }
    for (key, start) in expected.keys().filter(|k| !seen.contains_key(*k)) {
        result.lost += 1;
        result.examples.push(format!("lost {key},{start}"));
    }
    result.examples.truncate(10);
    result
}

fn postgres_rows(url: &str) -> Result<Vec<(String, i64, i64, i64)>> {
    let mut client = eddy_postgres::connect(url)?;
    Ok(client
        .query(
            &format!("SELECT key, window_start, cnt, total FROM {TABLE}"),
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Everything committed to the output topic: read until `expected` rows came, or nothing new
/// for `quiet`.
fn kafka_rows(
    bootstrap: &str,
    expected: usize,
    quiet: Duration,
) -> Result<Vec<(String, i64, i64, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chaos-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(OUTPUT, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut rows = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet && rows.len() < expected {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let text = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                let f: Vec<&str> = text.split(',').collect();
                if let [key, start, count, sum] = f.as_slice() {
                    rows.push((
                        key.to_string(),
                        start.parse()?,
                        count.parse()?,
                        sum.parse()?,
                    ));
                } else {
                    bail!("output record '{text}' is not key,start,count,sum");
                }
                last = Instant::now();
            }
            Some(Err(e)) => eprintln!("chaos: reading the output: {e}"),
            None => {}
        }
    }
    Ok(rows)
}

/// A file system of the checkpoint directory that can be filled: a tmpfs mounted there, when
/// this process may mount one.
struct CheckpointStorage {
    dir: PathBuf,
    mounted: bool,
}

impl CheckpointStorage {
    fn new(dir: PathBuf) -> Result<CheckpointStorage> {
        std::fs::create_dir_all(&dir)?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512m", "tmpfs"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Ok(CheckpointStorage { dir, mounted })
    }

    /// Fills the file system for `time`, or (every other time, or without a tmpfs) makes the
    /// job's checkpoint directory immutable for `time`. Returns what it did.
    fn fault(&self, job: &str, fill: bool, time: Duration) -> Result<String> {
        if fill && self.mounted {
            let ballast = self.dir.join("ballast");
            let mut file = std::fs::File::create(&ballast)?;
            let block = vec![0u8; 1 << 20];
            while std::io::Write::write_all(&mut file, &block).is_ok() {}
            drop(file);
            std::thread::sleep(time);
            std::fs::remove_file(&ballast)?;
            return Ok("checkpoint file system full".into());
        }
        let job_dir = self.dir.join(job);
        let set = |flag: &str| {
            Command::new("chattr")
                .arg(flag)
                .arg(&job_dir)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !set("+i") {
            bail!("cannot make {} immutable (chattr)", job_dir.display());
        }
        std::thread::sleep(time);
        set("-i");
        Ok("checkpoint directory immutable".into())
    }
}

impl Drop for CheckpointStorage {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let examples = std::env::current_exe()?
        .parent()
        .context("no directory of this program")?
        .to_path_buf();
    let eddy = args
        .eddy
        .clone()
        .unwrap_or_else(|| examples.parent().unwrap_or(&examples).join("eddy"));
    let pipeline = args
        .pipeline
        .clone()
        .unwrap_or_else(|| examples.join("chaos_pipeline"));
    for p in [&eddy, &pipeline] {
        if !p.is_file() {
            bail!("{} is missing (build it, or name it)", p.display());
        }
    }
    let work = tempfile::Builder::new().prefix("eddy-chaos-").tempdir()?;
    let dir = work.path().to_path_buf();
    println!("chaos: working in {}", dir.display());
    let zookeeper = eddy_cluster::ha::testing::ZooKeeperServer::start()?;
    let kafka = eddy_kafka::testing::KafkaCluster::start(1)?;
    let postgres = eddy_postgres::testing::PrivatePostgres::start()?;
    let bootstrap = kafka.bootstrap_servers().to_string();
    eddy_kafka::admin::create_topics(&bootstrap, &[(INPUT, PARTITIONS), (OUTPUT, 2)])?;
    eddy_postgres::connect(postgres.url())?.batch_execute(&format!(
        "CREATE TABLE {TABLE} (key TEXT NOT NULL, window_start BIGINT NOT NULL, \
         cnt BIGINT NOT NULL, total BIGINT NOT NULL)"
    ))?;
    let storage = CheckpointStorage::new(dir.join("checkpoints"))?;

    let mut cluster = Cluster {
        dir: dir.clone(),
        eddy,
        quorum: zookeeper.quorum(),
        jobmanagers: Vec::new(),
        taskmanagers: Vec::new(),
        started: 0,
    };
    for _ in 0..3 {
        cluster.start_jobmanager()?;
        cluster.start_taskmanager()?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicU64::new(0));
    let base = eddy_core::time::now_millis() / WINDOW_MS * WINDOW_MS;
    let producer = produce(
        bootstrap.clone(),
        args.rate,
        base,
        stop.clone(),
        produced.clone(),
    );
    let submitted = cluster.eddy(&[
        "run",
        "-d",
        "-p",
        "2",
        &pipeline.display().to_string(),
        "--",
        "--bootstrap-servers",
        &bootstrap,
        "--postgres-url",
        postgres.url(),
        "--checkpoint-dir",
        &storage.dir.display().to_string(),
    ])?;
    let job = submitted
        .lines()
        .find_map(|l| l.strip_prefix("Job has been submitted with JobID "))
        .context("no job id")?
        .trim()
        .to_string();
    println!("chaos: job {job} submitted");
    let wait_start = Instant::now();
    while !job_view(&cluster, &job).is_some_and(|v| v.running && v.windows.iter().any(|w| w.1 > 0))
    {
        if wait_start.elapsed() > Duration::from_secs(120) {
            bail!("the job did not start processing within two minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut rng = StdRng::seed_from_u64(args.seed);
    let schedule = [
        (Fault::KillTaskManager, args.taskmanager_kill_every, 0.3),
        (Fault::KillLeader, args.jobmanager_kill_every, 0.55),
        (Fault::Pause, args.pause_every, 0.8),
        (Fault::Storage, args.storage_fault_every, 0.45),
    ];
    let mut next: Vec<Instant> = schedule
        .iter()
        .map(|(_, every, phase)| Instant::now() + Duration::from_secs_f64(*every as f64 * phase))
        .collect();
    let chaos_start = Instant::now();
    let end = chaos_start + Duration::from_secs(args.duration_secs);
    let mut events: Vec<(Fault, String, Option<Duration>)> = Vec::new();
    let mut fills = false;
    while Instant::now() < end {
        for name in cluster.replace_exited()? {
            println!("chaos: {name} exited; a new JobManager stands by");
        }
        let Some(i) = (0..schedule.len()).find(|&i| Instant::now() >= next[i]) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let (fault, every, _) = schedule[i];
        next[i] = Instant::now() + Duration::from_secs(every);
        let before = job_view(&cluster, &job).unwrap_or_default();
        let at = Instant::now();
        let what = match fault {
            Fault::KillTaskManager => {
                let candidates: Vec<usize> = (0..cluster.taskmanagers.len())
                    .filter(|&t| before.taskmanagers.contains(&cluster.taskmanagers[t].name))
                    .collect();
                let t = candidates
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or_else(|| rng.random_range(0..cluster.taskmanagers.len()));
                let victim = cluster.taskmanagers.remove(t);
                let name = victim.name.clone();
                victim.kill();
                cluster.start_taskmanager()?;
                name
            }
            Fault::KillLeader => {
                let Some((l, _)) = cluster.leader() else {
                    next[i] = Instant::now() + Duration::from_secs(2);
                    continue;
                };
                let victim = cluster.jobmanagers.remove(l);
                let name = victim.name.clone();
                victim.kill();
                cluster.start_jobmanager()?;
                name
            }
            Fault::Pause => {
                let all = cluster.jobmanagers.len() + cluster.taskmanagers.len();
                let n = rng.random_range(0..all);
                let p = if n < cluster.jobmanagers.len() {
                    &cluster.jobmanagers[n]
                } else {
                    &cluster.taskmanagers[n - cluster.jobmanagers.len()]
                };
                let name = p.name.clone();
                p.signal("STOP");
                std::thread::sleep(HEARTBEAT_TIMEOUT + Duration::from_secs(2));
                p.signal("CONT");
                name
            }
            Fault::Storage => {
                fills = !fills;
                storage.fault(&job, fills, Duration::from_secs(6))?
            }
        };
        let recovered = match fault {
            Fault::Storage => None,
            _ => recovery(
                &cluster,
                &job,
                &before,
                at,
                HEARTBEAT_TIMEOUT + Duration::from_secs(6),
                Duration::from_secs(120),
            ),
        };
        println!(
            "chaos: {:>6.1} s  {} ({what}){}",
            at.duration_since(chaos_start).as_secs_f64(),
            fault.name(),
            recovered.map_or(String::new(), |r| format!(
                "; processing again after {:.2} s",
                r.as_secs_f64()
            ))
        );
        events.push((fault, what, recovered));
    }

    println!("chaos: stopping the producer and waiting for the last windows");
    stop.store(true, Ordering::Relaxed);
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer panicked"))??;
    let produced = produced.load(Ordering::Relaxed);
    let expected = oracle(produced, base);
    let wait = Instant::now();
    let mut pg = postgres_rows(postgres.url())?;
    while pg.len() < expected.len() && wait.elapsed() < Duration::from_secs(180) {
        cluster.replace_exited()?;
        std::thread::sleep(Duration::from_secs(1));
        pg = postgres_rows(postgres.url())?;
    }
    // One more checkpoint interval for the Kafka transaction of the same checkpoint.
    std::thread::sleep(Duration::from_secs(2));
    let pg = check(&postgres_rows(postgres.url())?, &expected);
    let kf = check(
        &kafka_rows(&bootstrap, expected.len(), Duration::from_secs(30))?,
        &expected,
    );

    let mut counts: BTreeMap<Fault, usize> = BTreeMap::new();
    for (f, _, _) in &events {
        *counts.entry(*f).or_default() += 1;
    }
    let secs = |d: Duration| (d.as_secs_f64() * 100.0).round() / 100.0;
    // Recovery times of every failure that disturbed the job, and per kind of failure.
    let summary = |of: Option<Fault>| {
        let mut times: Vec<Duration> = events
            .iter()
            .filter(|e| of.is_none_or(|f| e.0 == f))
            .filter_map(|e| e.2)
            .collect();
        times.sort();
        json!({
            "count": times.len(),
            "p50": secs(percentile(&times, 0.5)),
            "p99": secs(percentile(&times, 0.99)),
            "max": secs(times.last().copied().unwrap_or_default()),
        })
    };
    let mut recovery = serde_json::Map::new();
    recovery.insert("all".into(), summary(None));
    for fault in counts.keys() {
        recovery.insert(fault.name().into(), summary(Some(*fault)));
    }
    let report = json!({
        "duration_s": args.duration_secs,
        "events_produced": produced,
        "windows_expected": expected.len(),
        "failures": counts.iter().map(|(f, n)| (f.name(), *n)).collect::<BTreeMap<_, _>>(),
        "recovery_s": recovery,
        "postgres": {"rows": pg.rows, "lost": pg.lost, "duplicated": pg.duplicated, "wrong": pg.wrong, "examples": pg.examples},
        "kafka": {"rows": kf.rows, "lost": kf.lost, "duplicated": kf.duplicated, "wrong": kf.wrong, "examples": kf.examples},
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    let mut problems = Vec::new();
    for (sink, c) in [("postgres", &pg), ("kafka", &kf)] {
        if c.lost + c.duplicated + c.wrong > 0 {
            problems.push(format!(
                "{sink}: {} lost, {} duplicated, {} wrong",
                c.lost, c.duplicated, c.wrong
            ));
        }
    }
    for (fault, _, _) in &schedule {
        let n = counts.get(fault).copied().unwrap_or(0);
        if n < args.min_each {
            problems.push(format!(
                "{}: {n} time(s), fewer than {}",
                fault.name(),
                args.min_each
            ));
        }
    }
    drop(cluster);
    drop(storage);
    if args.keep {
        println!("chaos: kept {}", work.keep().display());
    }
    if !problems.is_empty() {
        bail!("chaos: {}", problems.join("; "));
    }
    println!("chaos: passed");
    Ok(())
}
