//! Event-time windows over a CSV file: the end-to-end test program of Eddy's windowing.
//!
//! Input: lines `key,timestamp_ms,value` (possibly out of order), read by one source subtask.
//! Output: one line per window firing, `key,window_start,window_end,count,sum`, in part files
//! under `--output`. Records too late for every window they belong to are written back, in
//! their input form, under `--late-output`.
//!
//! ```text
//! cargo run --release --example event_time_windows -- \
//!     --input events.csv --output /tmp/windows --window sliding:10000:2000 \
//!     --out-of-orderness 500 --allowed-lateness 1000 --late-output /tmp/late \
//!     --watermarks per-record --parallelism 2
//! ```
//!
//! With `--watermarks per-record` a watermark (`max timestamp - out-of-orderness - 1`) follows
//! every record, so results do not depend on timing; `periodic` emits it every
//! `pipeline.auto-watermark-interval`.
//!
//! Checkpoints, failures and savepoints (the part files are written exactly once, so each
//! of these runs writes the same output as an undisturbed one):
//!
//! ```text
//! # checkpoint every 200 ms; fail once after 5000 records, recover from the last checkpoint
//! ... --checkpoint-interval 200 --checkpoint-dir /tmp/ckpt --source-rate 20000 \
//!     --inject-failure-after 5000
//! # stop with a savepoint after 5000 records (prints `savepoint: <path>`), then resume it
//! ... --source-rate 20000 --savepoint-after-records 5000 --savepoint-dir /tmp/sp
//! ... --from-savepoint /tmp/sp/savepoint-... --parallelism 4
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use eddy::prelude::*;
use eddy::watermark::{WatermarkGenerator, WatermarkOutput};
use eddy::windowing::{
    EventTimeSessionWindows, ProcessWindowContext, ProcessWindowFunction, SlidingEventTimeWindows,
    TimeWindow, TumblingEventTimeWindows, WindowedStream,
};
use eddy::{AggregateFunction, FunctionResult, OutputTag};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, ValueEnum)]
enum Watermarks {
    /// Every `pipeline.auto-watermark-interval`.
    Periodic,
    /// After every record.
    PerRecord,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnMalformed {
    /// Fail the job, naming the line.
    Fail,
    /// Skip the line and count it in the `numMalformedRecords` metric.
    Drop,
}

#[derive(Parser)]
#[command(about = "Counts and sums values per key in event-time windows")]
struct Args {
    /// CSV input: `key,timestamp_ms,value` per line.
    #[arg(long)]
    input: PathBuf,
    /// Directory for `key,window_start,window_end,count,sum` part files.
    #[arg(long)]
    output: PathBuf,
    /// Parallelism of the window operator (default: `parallelism.default`, which `eddy run -p`
    /// sets).
    #[arg(long)]
    parallelism: Option<u32>,
    /// `tumbling:SIZE_MS`, `sliding:SIZE_MS:SLIDE_MS` or `session:GAP_MS`.
    #[arg(long)]
    window: String,
    /// Maximum out-of-orderness, in ms.
    #[arg(long, default_value_t = 0)]
    out_of_orderness: u64,
    /// Allowed lateness, in ms.
    #[arg(long, default_value_t = 0)]
    allowed_lateness: u64,
    /// Directory for late records, written in their input form.
    #[arg(long)]
    late_output: Option<PathBuf>,
    /// When watermarks are emitted.
    #[arg(long, value_enum, default_value = "periodic")]
    watermarks: Watermarks,
    /// What happens to a line that is not `key,timestamp_ms,value`.
    #[arg(long, value_enum, default_value = "fail")]
    on_malformed: OnMalformed,
    /// Take a checkpoint every this many ms.
    #[arg(long, value_name = "MS")]
    checkpoint_interval: Option<u64>,
    /// Where checkpoints go (a path or URL).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<String>,
    /// Read at most this many records per second, so that a run lasts long enough to
    /// checkpoint.
    #[arg(long, value_name = "R")]
    source_rate: Option<f64>,
    /// Fail once, in a task after the source, after this many records; the job recovers from
    /// its last checkpoint.
    #[arg(long, value_name = "N")]
    inject_failure_after: Option<u64>,
    /// Stop with a savepoint once the source has read this many records, print
    /// `savepoint: <path>`, and exit.
    #[arg(long, value_name = "N", requires = "savepoint_dir")]
    savepoint_after_records: Option<u64>,
    /// Where `--savepoint-after-records` writes its savepoint.
    #[arg(long, value_name = "DIR")]
    savepoint_dir: Option<String>,
    /// Resume from this savepoint (or retained checkpoint), at any `--parallelism`.
    #[arg(long, value_name = "PATH")]
    from_savepoint: Option<String>,
    /// Configuration overrides, `-D key=value`.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic_properties: Vec<String>,
}

/// Records the source has read, in this process.
static READ: AtomicU64 = AtomicU64::new(0);
/// Records seen by the failing map, in this process (across restarts).
static SEEN: AtomicU64 = AtomicU64::new(0);
/// Whether the failure was injected.
static FAILED: AtomicBool = AtomicBool::new(false);

/// One input record.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Event {
    key: String,
    timestamp: i64,
    value: i64,
}

impl Event {
    fn parse(line: &str) -> Result<Event, String> {
        let mut fields = line.split(',');
        let (Some(key), Some(ts), Some(value), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("expected `key,timestamp_ms,value`, got {line:?}"));
        };
        Ok(Event {
            key: key.to_string(),
            timestamp: ts
                .trim()
                .parse()
                .map_err(|e| format!("bad timestamp in {line:?}: {e}"))?,
            value: value
                .trim()
                .parse()
                .map_err(|e| format!("bad value in {line:?}: {e}"))?,
        })
    }
}

/// One window firing.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WindowResult {
    key: String,
    window_start: i64,
    window_end: i64,
    count: u64,
    sum: i64,
}

/// Counts and sums incrementally.
struct CountSum;

impl AggregateFunction<Event, (u64, i64), (u64, i64)> for CountSum {
    fn create_accumulator(&self) -> (u64, i64) {
        (0, 0)
    }
    fn add(&self, e: Event, acc: &mut (u64, i64)) {
        acc.0 += 1;
        acc.1 += e.value;
    }
    fn get_result(&self, acc: &(u64, i64)) -> (u64, i64) {
        *acc
    }
    fn merge(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

/// Adds the key and the window's bounds to the aggregate.
#[derive(Clone)]
struct WithWindow;

impl ProcessWindowFunction<(u64, i64), WindowResult, String, TimeWindow> for WithWindow {
    fn process(
        &mut self,
        key: &String,
        ctx: &mut ProcessWindowContext<'_, TimeWindow>,
        elements: Vec<(u64, i64)>,
        out: &mut Collector<'_, WindowResult>,
    ) -> FunctionResult<()> {
        for (count, sum) in elements {
            out.collect(WindowResult {
                key: key.clone(),
                window_start: ctx.window().start,
                window_end: ctx.window().end,
                count,
                sum,
            });
        }
        Ok(())
    }
}

/// Emits `max timestamp - out-of-orderness - 1` after every event.
struct PerRecordWatermarks {
    max: i64,
    out_of_orderness: i64,
}

impl WatermarkGenerator<Event> for PerRecordWatermarks {
    fn on_event(&mut self, _: &Event, ts: i64, output: &mut WatermarkOutput) {
        self.max = self.max.max(ts);
        output.emit_watermark(eddy::runtime::element::Watermark(
            self.max - self.out_of_orderness - 1,
        ));
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

fn parse_window(spec: &str) -> Result<(String, Vec<u64>)> {
    let mut parts = spec.split(':');
    let kind = parts.next().unwrap_or_default().to_string();
    let numbers = parts
        .map(|p| {
            p.parse::<u64>()
                .with_context(|| format!("bad number {p:?} in --window {spec}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let expected = match kind.as_str() {
        "tumbling" | "session" => 1,
        "sliding" => 2,
        _ => bail!("--window must be tumbling:SIZE_MS, sliding:SIZE_MS:SLIDE_MS or session:GAP_MS"),
    };
    if numbers.len() != expected || numbers.contains(&0) {
        bail!("--window {spec}: expected {expected} positive number(s)");
    }
    Ok((kind, numbers))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (kind, sizes) = parse_window(&args.window)?;
    let env = StreamExecutionEnvironment::get_execution_environment()?;
    if let Some(p) = args.parallelism {
        env.set_parallelism(p);
    }
    let mut conf = Configuration::new();
    if let Some(ms) = args.checkpoint_interval {
        conf.set_string("execution.checkpointing.interval", format!("{ms} ms"));
    }
    if let Some(dir) = &args.checkpoint_dir {
        conf.set_string("execution.checkpointing.dir", dir.clone());
    }
    if let Some(path) = &args.from_savepoint {
        conf.set_string("execution.savepoint.path", path.clone());
    }
    env.configure(&conf);

    let on_malformed = args.on_malformed;
    let ooo = args.out_of_orderness as i64;
    let strategy = match args.watermarks {
        Watermarks::Periodic => {
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(ooo as u64))
        }
        Watermarks::PerRecord => WatermarkStrategy::for_generator(move || PerRecordWatermarks {
            max: i64::MIN + ooo + 1,
            out_of_orderness: ooo,
        }),
    }
    .with_timestamp_assigner(|e: &Event, _| e.timestamp);

    let events = env
        .from_source(
            FileSource::for_text_lines(&args.input),
            WatermarkStrategy::no_watermarks(),
            "events",
        )
        .set_parallelism(1)
        .rich_flat_map(move || ParseEvents::new(on_malformed, args.source_rate))
        .name("Parse")
        .set_parallelism(1)
        .assign_timestamps_and_watermarks(strategy)
        .set_parallelism(1);
    let events = match args.inject_failure_after {
        None => events,
        Some(n) => events
            .map(move |e: Event| {
                if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == n
                    && !FAILED.swap(true, Ordering::SeqCst)
                {
                    panic!("injected failure after {n} records");
                }
                e
            })
            .name("Inject Failure")
            .set_parallelism(1)
            .start_new_chain(),
    };

    let late_tag = OutputTag::<Event>::new("late-events");
    let keyed = events.key_by(|e: &Event| e.key.clone());
    let lateness = Duration::from_millis(args.allowed_lateness);
    let windowed = |w: WindowedStream<Event, String, TimeWindow>| {
        w.allowed_lateness(lateness)
            .side_output_late_data(&late_tag)
            .aggregate_with(CountSum, || WithWindow)
            .name("Windows")
    };
    let ms = Duration::from_millis;
    let results = match kind.as_str() {
        "tumbling" => windowed(keyed.window(TumblingEventTimeWindows::of(ms(sizes[0])))),
        "sliding" => {
            windowed(keyed.window(SlidingEventTimeWindows::of(ms(sizes[0]), ms(sizes[1]))))
        }
        _ => windowed(keyed.window(EventTimeSessionWindows::with_gap(ms(sizes[0])))),
    };
    let late = results.get_side_output(&late_tag);
    results
        .sink_to(FileSink::for_row_format(&args.output, CsvEncoder::new()))
        .name("Window Results");
    if let Some(dir) = &args.late_output {
        late.map(|e| format!("{},{},{}", e.key, e.timestamp, e.value))
            .sink_to(FileSink::for_row_format(
                dir,
                SimpleStringEncoder::default(),
            ))
            .name("Late Records");
    }
    let client = env.execute_async("EventTimeWindows")?;
    if let (Some(n), Some(dir)) = (args.savepoint_after_records, &args.savepoint_dir) {
        loop {
            if READ.load(Ordering::SeqCst) >= n {
                let path = client.stop_with_savepoint(false, Some(dir))?;
                println!("savepoint: {path}");
                break;
            }
            if let Some(result) = client.wait_timeout(Duration::from_millis(5)) {
                result?;
                bail!("the input ended before {n} records were read: no savepoint was taken");
            }
        }
    }
    client.get_job_execution_result()?;
    Ok(())
}

/// Parses lines into events; a malformed line fails the job or is dropped and counted. With a
/// rate, it keeps the source to that many records per second.
#[derive(Clone)]
struct ParseEvents {
    on_malformed: OnMalformed,
    malformed: Option<std::sync::Arc<eddy::runtime::metrics::Counter>>,
    rate: Option<f64>,
    started: Instant,
    read: u64,
}

impl ParseEvents {
    fn new(on_malformed: OnMalformed, rate: Option<f64>) -> Self {
        ParseEvents {
            on_malformed,
            malformed: None,
            rate,
            started: Instant::now(),
            read: 0,
        }
    }

    fn throttle(&mut self) {
        self.read += 1;
        READ.fetch_add(1, Ordering::SeqCst);
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(self.read as f64 / rate);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

impl RichFlatMapFunction<String, Event> for ParseEvents {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.malformed = Some(ctx.get_metric_group().counter("numMalformedRecords"));
        self.started = Instant::now();
        Ok(())
    }

    fn flat_map(&mut self, line: String, out: &mut Collector<'_, Event>) -> FunctionResult<()> {
        self.throttle();
        if line.trim().is_empty() {
            return Ok(());
        }
        match (Event::parse(&line), self.on_malformed) {
            (Ok(e), _) => out.collect(e),
            (Err(e), OnMalformed::Fail) => return Err(format!("malformed record: {e}").into()),
            (Err(_), OnMalformed::Drop) => {
                if let Some(c) = &self.malformed {
                    c.inc();
                }
            }
        }
        Ok(())
    }
}
