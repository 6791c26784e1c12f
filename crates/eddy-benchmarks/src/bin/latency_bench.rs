//! The latency benchmark: records carry the time they were due at the source, and the sink
//! records how long after that each one arrived, in an HDR histogram.
//!
//! A rate-limited source emits events at a fixed rate; each event carries the wall-clock time
//! at which the schedule wanted it (so a source that falls behind shows up as latency, not as a
//! lower rate). Cases:
//!
//! - `passthrough`: source → sink, chained;
//! - `keyed-map`: source → hash exchange → map → sink;
//! - `window`: source → hash exchange → 100 ms tumbling event-time windows counting per key →
//!   sink. Event time is the creation time and watermarks follow every millisecond of it, so a
//!   window's latency is measured from its end (when the watermark can first pass it) to its
//!   result at the sink.
//!
//! Each case runs at a rate (events/s over all subtasks) and an `execution.buffer-timeout`,
//! at parallelism 2, in the mini cluster (a fresh process per case) or on a JobManager and
//! two TaskManagers. The first seconds are a warm-up and are not recorded. It prints p50, p99,
//! p99.9 and max in microseconds and the rate the source reached.
//!
//! ```text
//! cargo build --release -p eddy-cluster --bin eddy -p eddy-benchmarks --bin latency_bench
//! target/release/latency_bench all            # every case, rate and timeout; both deployments
//! target/release/latency_bench run --case keyed-map --rate 100000 --buffer-timeout-ms 1
//! target/release/latency_bench checkpoints    # checkpoint trigger-to-completion times
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use eddy::prelude::*;
use eddy::runtime::sink::{Sink, SinkWriter, SinkWriterContext};
use eddy::runtime::source::{
    Boundedness, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext, SourceSplit,
};
use eddy::watermark::{WatermarkGenerator, WatermarkOutput};
use eddy::windowing::TumblingEventTimeWindows;
use eddy::windowing::{ProcessWindowContext, ProcessWindowFunction, TimeWindow};
use eddy::{AggregateFunction, FunctionResult};
use eddy_benchmarks::cluster::Cluster;
use eddy_benchmarks::pipelines::mix;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs one case in this process (or, submitted to a cluster, on it).
    Run(CaseArgs),
    /// Runs every case, rate and buffer timeout, in the mini cluster and on two TaskManagers.
    All(AllArgs),
    /// Checkpoint trigger-to-completion times of small states, every 100 ms for 10 s in the
    /// mini cluster: the window case at 100k events/s, and a fast source chained to an
    /// operator that takes 5 ms per record.
    Checkpoints,
}

#[derive(clap::Args, Clone)]
struct CaseArgs {
    /// `passthrough`, `keyed-map` or `window`.
    #[arg(long)]
    case: String,
    /// Events per second over all source subtasks.
    #[arg(long)]
    rate: u64,
    /// `execution.buffer-timeout.interval` in milliseconds.
    #[arg(long)]
    buffer_timeout_ms: u64,
    /// Seconds to run, warm-up included.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds at the start that are not recorded.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
    /// Where sources and sinks leave their figures; in the mini cluster a temporary directory.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct AllArgs {
    /// Cases, comma-separated.
    #[arg(long, default_value = "passthrough,keyed-map,window")]
    cases: String,
    /// Rates, comma-separated.
    #[arg(long, default_value = "10000,100000,1000000")]
    rates: String,
    /// Buffer timeouts in ms, comma-separated.
    #[arg(long, default_value = "0,1,100")]
    buffer_timeouts_ms: String,
    /// `mini`, `cluster` or both, comma-separated.
    #[arg(long, default_value = "mini,cluster")]
    deployments: String,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Print one JSON object per case instead of a table.
    #[arg(long)]
    json: bool,
}

/// Keys of the keyed cases.
const KEYS: u64 = 1_000;
/// The window size of the `window` case.
const WINDOW_MS: u64 = 100;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// An event: its key, its per-subtask sequence number and when it was due (µs since the epoch).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Event {
    key: u64,
    seq: u64,
    due_us: i64,
}

/// A window's count, stamped with its end (as µs since the epoch) for the sink.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WindowCount {
    key: u64,
    count: u64,
    due_us: i64,
}

/// What a latency sink measures: the time since `due_us`.
trait Due {
    fn due_us(&self) -> i64;
}

impl Due for Event {
    fn due_us(&self) -> i64 {
        self.due_us
    }
}

impl Due for WindowCount {
    fn due_us(&self) -> i64 {
        self.due_us
    }
}

/// One split per subtask, `count` events at `rate` per second.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TimedSplit {
    id: u32,
}

impl SourceSplit for TimedSplit {
    fn split_id(&self) -> String {
        self.id.to_string()
    }
}

/// A bounded source emitting events on a schedule of `rate` per second per subtask.
struct TimedSource {
    rate: f64,
    count: u64,
    out_dir: PathBuf,
}

impl Source<Event> for TimedSource {
    type Split = TimedSplit;
    type Reader = TimedReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn enumerate_splits(&self, parallelism: u32) -> eddy::runtime::Result<Vec<TimedSplit>> {
        Ok((0..parallelism).map(|id| TimedSplit { id }).collect())
    }

    fn create_reader(&self, _ctx: &SourceReaderContext) -> eddy::runtime::Result<TimedReader> {
        Ok(TimedReader {
            rate: self.rate,
            count: self.count,
            out_dir: self.out_dir.clone(),
            split: None,
            started: Instant::now(),
            origin_us: 0,
            emitted: 0,
        })
    }
}

struct TimedReader {
    rate: f64,
    count: u64,
    out_dir: PathBuf,
    split: Option<u32>,
    started: Instant,
    origin_us: i64,
    emitted: u64,
}

/// What a source subtask reports when it ends: events and the seconds it took.
#[derive(Serialize, Deserialize)]
struct SourceReport {
    events: u64,
    seconds: f64,
}

impl SourceReader<Event> for TimedReader {
    type Split = TimedSplit;

    fn start(&mut self) -> eddy::runtime::Result<()> {
        self.started = Instant::now();
        self.origin_us = now_us();
        Ok(())
    }

    fn add_splits(&mut self, splits: Vec<TimedSplit>) -> eddy::runtime::Result<()> {
        self.split = splits.first().map(|s| s.id).or(self.split);
        Ok(())
    }

    fn poll_next(
        &mut self,
        output: &mut ReaderOutput<Event>,
    ) -> eddy::runtime::Result<InputStatus> {
        let Some(split) = self.split.filter(|_| self.emitted < self.count) else {
            return Ok(InputStatus::EndOfInput);
        };
        // Event `seq` is due `seq / rate` seconds after the start.
        let due = ((self.started.elapsed().as_secs_f64() * self.rate) as u64 + 1).min(self.count);
        let n = due
            .saturating_sub(self.emitted)
            .min(output.remaining() as u64);
        if n == 0 {
            return Ok(InputStatus::NothingAvailable);
        }
        let base = u64::from(split) << 40;
        for seq in self.emitted..self.emitted + n {
            output.collect(Event {
                key: mix(base + seq) % KEYS,
                seq,
                due_us: self.origin_us + (seq as f64 * 1e6 / self.rate) as i64,
            });
        }
        self.emitted += n;
        if self.emitted < self.count {
            return Ok(InputStatus::MoreAvailable);
        }
        let report = SourceReport {
            events: self.emitted,
            seconds: self.started.elapsed().as_secs_f64(),
        };
        let path = self.out_dir.join(format!("source-{split}.json"));
        std::fs::write(&path, serde_json::to_vec(&report).unwrap_or_default())
            .map_err(|e| eddy::runtime::RuntimeError::io(path.display(), e))?;
        self.split = None;
        Ok(InputStatus::EndOfInput)
    }

    fn wait_available(&mut self, timeout: Duration) {
        let next = Duration::from_secs_f64(self.emitted as f64 / self.rate);
        std::thread::sleep(next.saturating_sub(self.started.elapsed()).min(timeout));
    }
}

/// Records the latency of every record after the warm-up into a histogram, and leaves the
/// histogram in `out_dir` when the input ends.
struct LatencySink {
    warmup_us: i64,
    out_dir: PathBuf,
}

struct LatencyWriter {
    warmup_us: i64,
    out_dir: PathBuf,
    subtask: u32,
    first_due: Option<i64>,
    histogram: Histogram<u64>,
}

impl<T: Due + 'static> Sink<T> for LatencySink {
    type Writer = LatencyWriter;

    fn create_writer(&self, ctx: &SinkWriterContext) -> eddy::runtime::Result<LatencyWriter> {
        Ok(LatencyWriter {
            warmup_us: self.warmup_us,
            out_dir: self.out_dir.clone(),
            subtask: ctx.task_info.subtask_index,
            first_due: None,
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(|e| eddy::runtime::RuntimeError::Internal(e.to_string()))?,
        })
    }
}

impl<T: Due> SinkWriter<T> for LatencyWriter {
    fn write(&mut self, value: T, _timestamp: Option<i64>) -> eddy::runtime::Result<()> {
        let (due, now) = (value.due_us(), now_us());
        let first = *self.first_due.get_or_insert(due);
        // Windows the end of the input fires before their time are not measured.
        if due >= first + self.warmup_us && due <= now {
            self.histogram.saturating_record((now - due).max(1) as u64);
        }
        Ok(())
    }

    fn flush(&mut self, end_of_input: bool) -> eddy::runtime::Result<()> {
        if end_of_input {
            let mut text = String::new();
            for v in self.histogram.iter_recorded() {
                text.push_str(&format!(
                    "{} {}\n",
                    v.value_iterated_to(),
                    v.count_at_value()
                ));
            }
            let path = self.out_dir.join(format!("sink-{}.txt", self.subtask));
            std::fs::write(&path, text)
                .map_err(|e| eddy::runtime::RuntimeError::io(path.display(), e))?;
        }
        Ok(())
    }
}

/// Watermarks that follow every millisecond of event time.
struct EveryMillisecond {
    max: i64,
}

impl WatermarkGenerator<Event> for EveryMillisecond {
    fn on_event(&mut self, _: &Event, ts: i64, output: &mut WatermarkOutput) {
        if ts > self.max {
            self.max = ts;
            output.emit_watermark(eddy::runtime::element::Watermark(ts - 1));
        }
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

struct Count;

impl AggregateFunction<Event, u64, u64> for Count {
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, _: Event, acc: &mut u64) {
        *acc += 1;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

#[derive(Clone)]
struct StampWindowEnd;

impl ProcessWindowFunction<u64, WindowCount, u64, TimeWindow> for StampWindowEnd {
    fn process(
        &mut self,
        key: &u64,
        ctx: &mut ProcessWindowContext<'_, TimeWindow>,
        elements: Vec<u64>,
        out: &mut eddy::Collector<'_, WindowCount>,
    ) -> FunctionResult<()> {
        for count in elements {
            out.collect(WindowCount {
                key: *key,
                count,
                due_us: ctx.window().end * 1000,
            });
        }
        Ok(())
    }
}

/// Builds and runs one case; returns once the job has ended.
fn run_case(args: &CaseArgs, out_dir: &Path) -> Result<()> {
    let mut conf = Configuration::new();
    conf.set_string(
        "execution.buffer-timeout.interval",
        format!("{} ms", args.buffer_timeout_ms),
    );
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(args.parallelism);
    let per_subtask = args.rate as f64 / f64::from(args.parallelism);
    let source = TimedSource {
        rate: per_subtask,
        count: (per_subtask * args.seconds as f64) as u64,
        out_dir: out_dir.to_path_buf(),
    };
    let sink = LatencySink {
        warmup_us: args.warmup as i64 * 1_000_000,
        out_dir: out_dir.to_path_buf(),
    };
    let events = env.from_source(source, WatermarkStrategy::no_watermarks(), "events");
    match args.case.as_str() {
        "passthrough" => {
            events.sink_to(sink).name("latency");
        }
        "keyed-map" => {
            events
                .key_by(|e: &Event| e.key)
                .map(|mut e: Event| {
                    e.key = e.key.wrapping_add(1);
                    e
                })
                .sink_to(sink)
                .name("latency");
        }
        "window" => {
            events
                .assign_timestamps_and_watermarks(
                    WatermarkStrategy::for_generator(|| EveryMillisecond { max: i64::MIN })
                        .with_timestamp_assigner(|e: &Event, _| e.due_us / 1000),
                )
                .key_by(|e: &Event| e.key)
                .window(TumblingEventTimeWindows::of(Duration::from_millis(
                    WINDOW_MS,
                )))
                .aggregate_with(Count, || StampWindowEnd)
                .sink_to(sink)
                .name("latency");
        }
        other => bail!("unknown case {other:?}: passthrough, keyed-map or window"),
    }
    env.execute(&format!("latency {}", args.case))?;
    Ok(())
}

/// The figures of one case.
#[derive(Serialize)]
struct Figures {
    engine: &'static str,
    deployment: String,
    case: String,
    rate: u64,
    buffer_timeout_ms: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    samples: u64,
    reached_rate: f64,
}

/// Merges what the sources and sinks left in `dir`.
fn collect(args: &CaseArgs, deployment: &str, dir: &Path) -> Result<Figures> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let (mut events, mut seconds) = (0u64, 0f64);
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("sink-") {
            for line in std::fs::read_to_string(&path)?.lines() {
                let (v, n) = line.split_once(' ').context("bad histogram line")?;
                histogram.record_n(v.parse()?, n.parse()?)?;
            }
        } else if name.starts_with("source-") {
            let r: SourceReport = serde_json::from_slice(&std::fs::read(&path)?)?;
            events += r.events;
            seconds = seconds.max(r.seconds);
        }
    }
    if histogram.is_empty() {
        bail!("{} {deployment}: the sinks recorded nothing", args.case);
    }
    Ok(Figures {
        engine: "eddy",
        deployment: deployment.to_string(),
        case: args.case.clone(),
        rate: args.rate,
        buffer_timeout_ms: args.buffer_timeout_ms,
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
        samples: histogram.len(),
        reached_rate: if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        },
    })
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn case_argv(c: &CaseArgs, out_dir: &Path) -> Vec<String> {
    vec![
        "run".into(),
        "--case".into(),
        c.case.clone(),
        "--rate".into(),
        c.rate.to_string(),
        "--buffer-timeout-ms".into(),
        c.buffer_timeout_ms.to_string(),
        "--seconds".into(),
        c.seconds.to_string(),
        "--warmup".into(),
        c.warmup.to_string(),
        "--parallelism".into(),
        c.parallelism.to_string(),
        "--out-dir".into(),
        out_dir.display().to_string(),
    ]
}

fn print_row(f: &Figures, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(f)?);
    } else {
        println!(
            "{:<8} {:<11} {:>8} {:>5} ms {:>9} {:>9} {:>9} {:>9} {:>12.0}",
            f.deployment,
            f.case,
            f.rate,
            f.buffer_timeout_ms,
            f.p50_us,
            f.p99_us,
            f.p999_us,
            f.max_us,
            f.reached_rate
        );
    }
    std::io::stdout().flush()?;
    Ok(())
}

fn all(a: &AllArgs) -> Result<()> {
    let mut cases = Vec::new();
    for case in list(&a.cases) {
        for rate in list(&a.rates) {
            for timeout in list(&a.buffer_timeouts_ms) {
                cases.push(CaseArgs {
                    case: case.clone(),
                    rate: rate.parse().context("--rates")?,
                    buffer_timeout_ms: timeout.parse().context("--buffer-timeouts-ms")?,
                    seconds: a.seconds,
                    warmup: a.warmup,
                    parallelism: 2,
                    out_dir: None,
                });
            }
        }
    }
    if !a.json {
        println!(
            "{:<8} {:<11} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>12}",
            "",
            "case",
            "events/s",
            "timeout",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "reached/s"
        );
    }
    let deployments = list(&a.deployments);
    if deployments.iter().any(|d| d == "mini") {
        for c in &cases {
            let dir = tempfile::tempdir()?;
            eddy_benchmarks::run_isolated(&case_argv(c, dir.path()))?;
            print_row(&collect(c, "mini", dir.path())?, a.json)?;
        }
    }
    if deployments.iter().any(|d| d == "cluster") {
        let exe = std::env::current_exe()?;
        let eddy = exe.with_file_name("eddy");
        if !eddy.exists() {
            bail!(
                "{} is missing: cargo build --release -p eddy-cluster --bin eddy",
                eddy.display()
            );
        }
        let work = tempfile::tempdir()?;
        let cluster = Cluster::start(&eddy, work.path(), 2)?;
        let program = cluster.upload(&exe)?;
        for c in &cases {
            let dir = tempfile::tempdir()?;
            let job = cluster.run(&program, &case_argv(c, dir.path()))?;
            cluster.wait(&job, "FINISHED", Duration::from_millis(50))?;
            print_row(&collect(c, "cluster", dir.path())?, a.json)?;
        }
    }
    Ok(())
}

/// Runs `env`'s job for `seconds` with checkpoints, then cancels it (if it has not ended) and
/// prints the trigger-to-completion times of its completed checkpoints.
fn checkpoint_times(env: &StreamExecutionEnvironment, name: &str, seconds: u64) -> Result<()> {
    let client = env.execute_async(name)?;
    let mut durations = std::collections::BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end && client.wait_timeout(Duration::from_millis(200)).is_none() {
        for c in client.checkpoint_statistics().history {
            if matches!(
                c.status,
                eddy::runtime::checkpoint::coordinator::CheckpointStatus::Completed
            ) {
                durations.insert(c.id, c.end_to_end_duration_ms);
            }
        }
    }
    client.cancel();
    let _ = client.wait_timeout(Duration::from_secs(30));
    let mut d: Vec<u64> = durations.into_values().collect();
    d.sort_unstable();
    if d.is_empty() {
        bail!("{name}: no checkpoint completed");
    }
    println!(
        "{name:<44} {:>5} checkpoints   p50 {:>4} ms   p99 {:>4} ms   max {:>4} ms",
        d.len(),
        d[d.len() / 2],
        d[(d.len() * 99 / 100).min(d.len() - 1)],
        d[d.len() - 1]
    );
    Ok(())
}

fn checkpoints() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let conf = |p: &Path| {
        let mut c = Configuration::new();
        c.set_string("execution.checkpointing.interval", "100 ms");
        c.set_string("execution.checkpointing.dir", p.display().to_string());
        c
    };
    // The window case at 100k events/s, parallelism 2.
    let env = StreamExecutionEnvironment::with_configuration(conf(&dir.path().join("w")));
    env.set_parallelism(2);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    env.from_source(
        TimedSource {
            rate: 50_000.0,
            count: u64::MAX,
            out_dir: out.clone(),
        },
        WatermarkStrategy::no_watermarks(),
        "events",
    )
    .assign_timestamps_and_watermarks(
        WatermarkStrategy::for_generator(|| EveryMillisecond { max: i64::MIN })
            .with_timestamp_assigner(|e: &Event, _| e.due_us / 1000),
    )
    .key_by(|e: &Event| e.key)
    .window(TumblingEventTimeWindows::of(Duration::from_millis(
        WINDOW_MS,
    )))
    .aggregate_with(Count, || StampWindowEnd)
    .sink_to(LatencySink {
        warmup_us: 0,
        out_dir: out,
    });
    checkpoint_times(&env, "window, 100k events/s, p = 2", 10)?;
    // A fast source chained to a slow operator, parallelism 1.
    let env = StreamExecutionEnvironment::with_configuration(conf(&dir.path().join("s")));
    env.set_parallelism(1);
    env.from_source(
        eddy::connectors::datagen::DataGeneratorSource::new(|i| i, u64::MAX),
        WatermarkStrategy::no_watermarks(),
        "numbers",
    )
    .map(|x: u64| {
        std::thread::sleep(Duration::from_millis(5));
        x
    })
    .sink_to(eddy::connectors::discard::DiscardingSink);
    checkpoint_times(&env, "source chained to 5 ms per record, p = 1", 10)
}

fn main() -> Result<()> {
    match Args::parse().command {
        Cmd::Run(c) => match &c.out_dir {
            Some(dir) => run_case(&c, dir),
            None => {
                let dir = tempfile::tempdir()?;
                run_case(&c, dir.path())?;
                let f = collect(&c, "mini", dir.path())?;
                print_row(&f, true)
            }
        },
        Cmd::All(a) => all(&a),
        Cmd::Checkpoints => checkpoints(),
    }
}
