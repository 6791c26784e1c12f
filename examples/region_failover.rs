//! Failover by pipelined region: one job runs two independent pipelines, and a failure in one
//! restarts only the tasks it exchanges data with, while the other keeps running.
//!
//! * **numbers**: `0..records` through a map into an exactly-once file sink. Every exchange is
//!   forward, so each parallel subtask is a region of its own.
//! * **sums**: `0..records` keyed by `x % keys` into running sums, written to a second file
//!   sink. The keyed exchange joins all its subtasks into one region.
//!
//! With `--fail-at X` the numbers pipeline fails once, at `X` (a marker file in the output
//! directory remembers it across processes, so it also works on a cluster). Each subtask that
//! opens leaves a file `opens/<pipeline>-<subtask>-<attempt>` in the output directory: after
//! the run, only the failed subtask of the numbers pipeline has a second attempt.
//!
//! ```text
//! cargo run --release --example region_failover -- --output /tmp/regions --fail-at 5000 -p 2
//! ```
//!
//! The job's configuration comes from the environment (`EDDY_CONF_DIR`, `-D key=value`), so
//! `-D jobmanager.execution.failover-strategy=full` shows the difference.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use eddy::prelude::*;
use eddy::{FunctionResult, RuntimeContext};

#[derive(Parser, Debug)]
#[command(about = "Two independent pipelines; a failure restarts only its own region")]
struct Args {
    /// Directory for the outputs (`numbers/`, `sums/`) and the record of opens (`opens/`).
    #[arg(long)]
    output: PathBuf,
    /// Numbers each pipeline reads.
    #[arg(long, default_value_t = 20_000)]
    records: i64,
    /// Keys of the running sums.
    #[arg(long, default_value_t = 7)]
    keys: i64,
    /// Fail the numbers pipeline once, when it maps this number.
    #[arg(long)]
    fail_at: Option<i64>,
    /// Parallelism (by default `parallelism.default`).
    #[arg(short = 'p', long)]
    parallelism: Option<u32>,
    /// Checkpoint interval in milliseconds.
    #[arg(long, default_value_t = 50)]
    checkpoint_interval: u64,
    /// A pause in milliseconds after every 100 records of each subtask, so that the run lasts.
    #[arg(long, default_value_t = 2)]
    pause_ms: u64,
    /// Configuration overrides, `-D key=value` (read by `Configuration::from_environment`).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic_properties: Vec<String>,
}

/// A map that records its opens, pauses now and then, and fails once at `fail_at`.
#[derive(Clone)]
struct Probe {
    pipeline: &'static str,
    dir: PathBuf,
    fail_at: Option<i64>,
    pause: Duration,
    seen: u64,
}

impl Probe {
    /// The marker that the failure happened.
    fn marker(&self) -> PathBuf {
        self.dir.join("failed-once")
    }
}

impl RichMapFunction<i64, i64> for Probe {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        let name = format!(
            "{}-{}-{}",
            self.pipeline,
            ctx.get_index_of_this_subtask(),
            ctx.get_attempt_number()
        );
        std::fs::write(self.dir.join("opens").join(name), b"")?;
        Ok(())
    }

    fn map(&mut self, x: i64) -> FunctionResult<i64> {
        self.seen += 1;
        if self.seen.is_multiple_of(100) {
            std::thread::sleep(self.pause);
        }
        if self.fail_at == Some(x) && !self.marker().exists() {
            std::fs::write(self.marker(), b"")?;
            return Err(format!("injected failure at {x}").into());
        }
        Ok(x)
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(args.output.join("opens"))
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    // `-D` arguments (and EDDY_CONF_DIR) first; the example's defaults fill the rest.
    let mut conf = Configuration::from_environment()?;
    if conf
        .get_string("execution.checkpointing.interval")
        .is_none()
    {
        conf.set_string(
            "execution.checkpointing.interval",
            format!("{} ms", args.checkpoint_interval),
        );
    }
    if conf.get_string("restart-strategy.type").is_none() {
        conf.set_string("restart-strategy.type", "fixed-delay");
        conf.set_string("restart-strategy.fixed-delay.attempts", "3");
        conf.set_string("restart-strategy.fixed-delay.delay", "100 ms");
    }
    if conf.get_string("execution.checkpointing.dir").is_none() {
        let dir = args.output.join("checkpoints");
        conf.set_string("execution.checkpointing.dir", dir.display().to_string());
    }
    let env = StreamExecutionEnvironment::with_configuration(conf);
    if let Some(p) = args.parallelism {
        env.set_parallelism(p);
    }

    let probe = |pipeline: &'static str, fail_at: Option<i64>| {
        let p = Probe {
            pipeline,
            dir: args.output.clone(),
            fail_at,
            pause: Duration::from_millis(args.pause_ms),
            seen: 0,
        };
        move || p.clone()
    };
    env.from_sequence(0, args.records - 1)
        .uid("numbers-source")
        .rich_map(probe("numbers", args.fail_at))
        .uid("numbers-map")
        .sink_to(FileSink::for_row_format(
            args.output.join("numbers"),
            SimpleStringEncoder::default(),
        ))
        .name("Numbers");
    let keys = args.keys;
    env.from_sequence(0, args.records - 1)
        .uid("sums-source")
        .rich_map(probe("sums", None))
        .uid("sums-map")
        .map(move |x| (x % keys, x))
        .key_by(|v: &(i64, i64)| v.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .uid("sums")
        .sink_to(FileSink::for_row_format(
            args.output.join("sums"),
            CsvEncoder::new(),
        ))
        .name("Sums");
    env.execute("RegionFailover")?;
    report(&args.output)
}

/// Prints which subtasks opened under which attempt.
fn report(dir: &Path) -> Result<()> {
    let mut opens: Vec<String> = std::fs::read_dir(dir.join("opens"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    opens.sort();
    println!(
        "subtasks opened (pipeline-subtask-attempt): {}",
        opens.join(" ")
    );
    Ok(())
}
