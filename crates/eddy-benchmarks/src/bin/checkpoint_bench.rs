//! The checkpoint benchmark:
//!
//! - **state**: checkpoint duration and size for about 1 GiB of keyed state (9 M keys of
//!   120 bytes) on each backend, while records keep updating it; on the LSM backend with
//!   incremental checkpoints, also the next checkpoint after 1% of the keys changed;
//! - **throughput**: the tumbling-window pipeline of `core_bench` with checkpoints every second
//!   against checkpoints off, on each backend;
//! - **recovery**: time from a failure to processing again, with 1 M keys of state;
//! - **back pressure**: checkpoint durations, aligned against unaligned (at once, and after
//!   a 100 ms aligned-checkpoint timeout), while a sink slowed to a tenth of the source's rate
//!   holds the job back.
//!
//! Every case runs in a process of its own.
//!
//! ```text
//! cargo run --release -p eddy-benchmarks --bin checkpoint_bench
//! cargo run --release -p eddy-benchmarks --bin checkpoint_bench -- --only state
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use eddy::connectors::datagen::DataGeneratorSource;
use eddy::connectors::discard::DiscardingSink;
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    /// Run one case (`state`, `throughput`, `recovery`, `backpressure`) and print one result
    /// line.
    #[arg(long)]
    case: Option<String>,
    /// `hashmap` or `lsm`.
    #[arg(long, default_value = "hashmap")]
    backend: String,
    /// Checkpoint interval in ms for `throughput` (0: off).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Keyed state to build for `state`, in MiB.
    #[arg(long, default_value_t = 1024)]
    state_mib: u64,
    /// Records for `throughput`.
    #[arg(long, default_value_t = 20_000_000)]
    records: u64,
    /// Unaligned checkpoints for `backpressure`.
    #[arg(long)]
    unaligned: bool,
    /// With `--unaligned`, the aligned-checkpoint timeout for `backpressure`, in ms.
    #[arg(long, default_value_t = 0)]
    aligned_timeout_ms: u64,
    /// How long `backpressure` runs, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// In table mode, run only this case.
    #[arg(long)]
    only: Option<String>,
    /// Configuration overrides, `-D key=value`, passed to every case.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic_properties: Vec<String>,
}

/// A value of about 110 bytes: its key and 100 bytes of payload.
#[derive(Clone, Serialize, Deserialize)]
struct Value {
    key: u64,
    seq: u64,
    payload: [[u8; 25]; 4],
}

/// Serialized size of one key's state: the key (9 bytes) and the value.
const BYTES_PER_KEY: u64 = 9 + 8 + 8 + 100 + 3;

fn env_for(
    backend: &str,
    dir: &std::path::Path,
    extra: &[(&str, String)],
) -> StreamExecutionEnvironment {
    let mut conf = Configuration::new();
    conf.set_string("state.backend.type", backend);
    conf.set_string(
        "execution.checkpointing.dir",
        dir.join("checkpoints").display().to_string(),
    );
    conf.set_string("io.tmp.dirs", dir.join("tmp").display().to_string());
    conf.set_string("execution.checkpointing.incremental", "true");
    for (k, v) in extra {
        conf.set_string(*k, v.clone());
    }
    // `-D key=value` arguments of this process.
    if let Err(e) = conf.apply_dynamic_properties(std::env::args().skip(1)) {
        eprintln!("{e}");
        std::process::exit(2);
    }
    StreamExecutionEnvironment::with_configuration(conf)
}

/// Builds ~`state_mib` of keyed state, checkpoints it, then (after 1% more updates) again.
fn state_case(backend: &str, state_mib: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let keys = state_mib * 1024 * 1024 / BYTES_PER_KEY;
    let env = env_for(
        backend,
        dir.path(),
        &[("execution.checkpointing.interval", "1 h".into())],
    );
    env.set_parallelism(2);
    let emitted = Arc::new(AtomicU64::new(0));
    let counter = emitted.clone();
    env.from_source(
        DataGeneratorSource::new(
            move |i| {
                counter.fetch_add(1, Ordering::Relaxed);
                let key = eddy_benchmarks::pipelines::mix(i) % keys;
                Value {
                    key,
                    seq: i,
                    payload: [[i as u8; 25]; 4],
                }
            },
            u64::MAX,
        ),
        WatermarkStrategy::no_watermarks(),
        "values",
    )
    .key_by(|v: &Value| v.key)
    .reduce(|_, b| b)
    .filter(|_| false)
    .sink_to(DiscardingSink);
    env.set_runtime_mode(RuntimeMode::Streaming);
    let client = env.execute_async("state")?;
    // Enough updates that nearly every key has a value (e^-3 of them are still missing).
    let fill = Instant::now();
    while emitted.load(Ordering::Relaxed) < keys * 3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let fill_s = fill.elapsed().as_secs_f64();
    let rss = eddy_benchmarks::usage()?.peak_rss;
    client.trigger_checkpoint().map_err(anyhow::Error::msg)?;
    let before = emitted.load(Ordering::Relaxed);
    while emitted.load(Ordering::Relaxed) < before + keys / 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    client.trigger_checkpoint().map_err(anyhow::Error::msg)?;
    let stats = client.checkpoint_statistics();
    client.cancel();
    let _ = client.get_job_execution_result();
    let describe = |c: &eddy::runtime::checkpoint::coordinator::CheckpointStats| {
        let sync = c
            .subtasks
            .iter()
            .map(|s| s.stats.sync_ms)
            .max()
            .unwrap_or(0);
        let asyn = c
            .subtasks
            .iter()
            .map(|s| s.stats.async_ms)
            .max()
            .unwrap_or(0);
        format!(
            "{}\t{}\t{}\t{}",
            c.state_size, c.end_to_end_duration_ms, sync, asyn
        )
    };
    let first = stats
        .history
        .iter()
        .find(|c| c.id == 1)
        .context("checkpoint 1")?;
    let second = stats
        .history
        .iter()
        .find(|c| c.id == 2)
        .context("checkpoint 2")?;
    println!(
        "state\t{backend}\t{keys}\t{fill_s:.1}\t{rss}\t{}\t{}",
        describe(first),
        describe(second)
    );
    Ok(())
}

/// The tumbling-window pipeline with checkpoints every `interval_ms` (0: off).
fn throughput_case(backend: &str, interval_ms: u64, records: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut extra = Vec::new();
    if interval_ms > 0 {
        extra.push((
            "execution.checkpointing.interval",
            format!("{interval_ms} ms"),
        ));
    }
    let env = env_for(backend, dir.path(), &extra);
    env.set_parallelism(1);
    eddy_benchmarks::pipelines::windows(&env, "window-tumbling", 1, records)?;
    env.set_runtime_mode(RuntimeMode::Streaming);
    let before = eddy_benchmarks::usage()?;
    let start = Instant::now();
    let client = env.execute_async("throughput")?;
    client.get_job_execution_result()?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = (eddy_benchmarks::usage()?.cpu - before.cpu).as_secs_f64();
    let stats = client.checkpoint_statistics();
    println!(
        "throughput\t{backend}\t{interval_ms}\t{records}\t{wall:.3}\t{cpu:.3}\t{}",
        stats.completed
    );
    Ok(())
}

/// Time from a failure to the first record processed by the restored job, with 1 M keys.
fn recovery_case(backend: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let keys = 1_000_000u64;
    let env = env_for(
        backend,
        dir.path(),
        &[
            ("execution.checkpointing.interval", "1 s".into()),
            ("restart-strategy.type", "fixed-delay".into()),
            ("restart-strategy.fixed-delay.delay", "0 ms".into()),
        ],
    );
    env.set_parallelism(2);
    let emitted = Arc::new(AtomicU64::new(0));
    let fail = Arc::new(AtomicBool::new(false));
    let failed_at = Arc::new(AtomicI64::new(0));
    let resumed_at = Arc::new(AtomicI64::new(0));
    let counter = emitted.clone();
    let (f, fa, ra) = (fail.clone(), failed_at.clone(), resumed_at.clone());
    env.from_source(
        DataGeneratorSource::new(
            move |i| {
                counter.fetch_add(1, Ordering::Relaxed);
                Value {
                    key: eddy_benchmarks::pipelines::mix(i) % keys,
                    seq: i,
                    payload: [[i as u8; 25]; 4],
                }
            },
            u64::MAX,
        ),
        WatermarkStrategy::no_watermarks(),
        "values",
    )
    .key_by(|v: &Value| v.key)
    .reduce(|_, b| b)
    .rich_map(move || Probe {
        fail: f.clone(),
        failed_at: fa.clone(),
        resumed_at: ra.clone(),
        attempt: 0,
    })
    .filter(|_| false)
    .sink_to(DiscardingSink);
    env.set_runtime_mode(RuntimeMode::Streaming);
    let client = env.execute_async("recovery")?;
    while emitted.load(Ordering::Relaxed) < keys * 3 || client.checkpoint_statistics().completed < 2
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let checkpoint_bytes = client
        .checkpoint_statistics()
        .latest_completed
        .map(|c| c.state_size)
        .unwrap_or(0);
    fail.store(true, Ordering::SeqCst);
    while resumed_at.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let recovery_ms = resumed_at.load(Ordering::SeqCst) - failed_at.load(Ordering::SeqCst);
    client.cancel();
    let _ = client.get_job_execution_result();
    println!("recovery\t{backend}\t{keys}\t{checkpoint_bytes}\t{recovery_ms}");
    Ok(())
}

/// Source rate of the back-pressure case; its sink takes ten times as long per record.
const BACKPRESSURE_RATE: f64 = 20_000.0;

/// A source at `BACKPRESSURE_RATE` records/s, a keyed map, and a sink at a tenth of that rate
/// (two subtasks of 1 ms per record), checkpointing every 2 s for `seconds`: the durations of
/// the checkpoints completed and the in-flight data they held.
fn backpressure_case(unaligned: bool, aligned_timeout_ms: u64, seconds: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let env = env_for(
        "hashmap",
        dir.path(),
        &[
            ("execution.checkpointing.interval", "2 s".into()),
            (
                "execution.checkpointing.unaligned.enabled",
                unaligned.to_string(),
            ),
            (
                "execution.checkpointing.aligned-checkpoint-timeout",
                format!("{aligned_timeout_ms} ms"),
            ),
        ],
    );
    env.set_parallelism(2);
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    env.from_source(
        DataGeneratorSource::new(
            |i| Value {
                key: eddy_benchmarks::pipelines::mix(i) % 10_000,
                seq: i,
                payload: [[i as u8; 25]; 4],
            },
            u64::MAX,
        )
        .with_rate_limit(BACKPRESSURE_RATE),
        WatermarkStrategy::no_watermarks(),
        "values",
    )
    .set_parallelism(1)
    .key_by(|v: &Value| v.key)
    .map(|mut v: Value| {
        v.seq += 1;
        v
    })
    .rebalance()
    .map(move |v: Value| {
        std::thread::sleep(Duration::from_millis(1));
        w.fetch_add(1, Ordering::Relaxed);
        v.seq
    })
    .name("Slow Sink")
    .sink_to(DiscardingSink);
    env.set_runtime_mode(RuntimeMode::Streaming);
    let client = env.execute_async("backpressure")?;
    std::thread::sleep(Duration::from_secs(seconds));
    let stats = client.checkpoint_statistics();
    client.cancel();
    let _ = client.get_job_execution_result();
    let completed: Vec<_> = stats
        .history
        .iter()
        .filter(|c| c.status == eddy::runtime::checkpoint::coordinator::CheckpointStatus::Completed)
        .collect();
    let mut durations: Vec<u64> = completed.iter().map(|c| c.end_to_end_duration_ms).collect();
    durations.sort_unstable();
    let pick = |q: f64| {
        durations
            .get(((durations.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let persisted =
        completed.iter().map(|c| c.persisted_data).sum::<u64>() / completed.len().max(1) as u64;
    // Checkpoints still running when the case ended count with their age so far.
    let in_progress = stats
        .history
        .iter()
        .filter(|c| {
            c.status == eddy::runtime::checkpoint::coordinator::CheckpointStatus::InProgress
        })
        .map(|c| c.end_to_end_duration_ms)
        .max()
        .unwrap_or(0);
    println!(
        "backpressure\t{}\t{}\t{}\t{}\t{}\t{persisted}\t{in_progress}\t{}",
        match (unaligned, aligned_timeout_ms) {
            (false, _) => "aligned".to_string(),
            (true, 0) => "unaligned".to_string(),
            (true, t) => format!("timeout-{t}ms"),
        },
        stats.completed,
        pick(0.5),
        pick(0.9),
        durations.last().copied().unwrap_or(0),
        written.load(Ordering::Relaxed) as f64 / seconds as f64
    );
    Ok(())
}

/// Fails once when told to; records when the failure happened and when the next attempt
/// processed its first record.
struct Probe {
    fail: Arc<AtomicBool>,
    failed_at: Arc<AtomicI64>,
    resumed_at: Arc<AtomicI64>,
    attempt: u32,
}

impl RichMapFunction<Value, Value> for Probe {
    fn open(&mut self, ctx: &RuntimeContext) -> eddy::FunctionResult<()> {
        self.attempt = ctx.get_attempt_number();
        Ok(())
    }

    fn map(&mut self, v: Value) -> eddy::FunctionResult<Value> {
        if self.attempt == 0 && self.fail.swap(false, Ordering::SeqCst) {
            self.failed_at.store(now_ms(), Ordering::SeqCst);
            return Err("injected failure".into());
        }
        if self.attempt > 0 && self.resumed_at.load(Ordering::SeqCst) == 0 {
            self.resumed_at.store(now_ms(), Ordering::SeqCst);
        }
        Ok(v)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.case.as_deref() {
        Some("state") => return state_case(&args.backend, args.state_mib),
        Some("throughput") => {
            return throughput_case(&args.backend, args.interval_ms, args.records);
        }
        Some("recovery") => return recovery_case(&args.backend),
        Some("backpressure") => {
            return backpressure_case(args.unaligned, args.aligned_timeout_ms, args.seconds);
        }
        Some(other) => anyhow::bail!("unknown case {other}"),
        None => {}
    }
    let run = |a: &[&str]| -> Result<Vec<String>> {
        let line =
            eddy_benchmarks::run_isolated(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        Ok(line.trim().split('\t').map(String::from).collect())
    };
    let only = args.only.as_deref();
    let mib = args.state_mib.to_string();
    if only.is_none_or(|o| o == "state") {
        println!(
            "{:<8} {:>9} {:>7} {:>9} | {:>10} {:>8} {:>7} {:>8} | {:>10} {:>8} {:>7} {:>8}",
            "backend",
            "keys",
            "fill s",
            "peak MiB",
            "full MiB",
            "total ms",
            "sync ms",
            "async ms",
            "next MiB",
            "total ms",
            "sync ms",
            "async ms"
        );
        for backend in ["hashmap", "lsm"] {
            let f = run(&["--case", "state", "--backend", backend, "--state-mib", &mib])?;
            let mib = |s: &str| s.parse::<f64>().unwrap_or(0.0) / (1024.0 * 1024.0);
            println!(
                "{:<8} {:>9} {:>7} {:>9.0} | {:>10.1} {:>8} {:>7} {:>8} | {:>10.1} {:>8} {:>7} {:>8}",
                f[1],
                f[2],
                f[3],
                mib(&f[4]),
                mib(&f[5]),
                f[6],
                f[7],
                f[8],
                mib(&f[9]),
                f[10],
                f[11],
                f[12]
            );
        }
    }
    if only.is_none_or(|o| o == "throughput") {
        println!(
            "\n{:<8} {:>12} {:>10} {:>14} {:>16} {:>12}",
            "backend", "checkpoints", "wall s", "records/s", "records/s/core", "completed"
        );
        let records = args.records.to_string();
        for backend in ["hashmap", "lsm"] {
            let mut rates = Vec::new();
            for interval in ["0", "1000"] {
                let f = run(&[
                    "--case",
                    "throughput",
                    "--backend",
                    backend,
                    "--interval-ms",
                    interval,
                    "--records",
                    &records,
                ])?;
                let (n, wall, cpu): (f64, f64, f64) = (f[3].parse()?, f[4].parse()?, f[5].parse()?);
                rates.push(n / cpu);
                println!(
                    "{:<8} {:>12} {:>10.2} {:>14.0} {:>16.0} {:>12}",
                    backend,
                    if interval == "0" { "off" } else { "every 1 s" },
                    wall,
                    n / wall,
                    n / cpu,
                    f[6]
                );
            }
            println!(
                "{backend}: checkpoints every second cost {:.1}% of throughput per core",
                100.0 * (1.0 - rates[1] / rates[0])
            );
        }
    }
    if only.is_none_or(|o| o == "recovery") {
        println!(
            "\n{:<8} {:>9} {:>16} {:>14}",
            "backend", "keys", "checkpoint MiB", "recovery ms"
        );
        for backend in ["hashmap", "lsm"] {
            let f = run(&["--case", "recovery", "--backend", backend])?;
            println!(
                "{:<8} {:>9} {:>16.1} {:>14}",
                f[1],
                f[2],
                f[3].parse::<f64>()? / (1024.0 * 1024.0),
                f[4]
            );
        }
    }
    if only.is_none_or(|o| o == "backpressure") {
        println!(
            "\n{:<14} {:>10} {:>8} {:>8} {:>8} {:>15} {:>16} {:>11}",
            "mode",
            "completed",
            "p50 ms",
            "p90 ms",
            "max ms",
            "in-flight KiB",
            "running ms",
            "sink rec/s"
        );
        let seconds = args.seconds.to_string();
        for (unaligned, timeout) in [(false, "0"), (true, "0"), (true, "100")] {
            let mut a = vec!["--case", "backpressure", "--seconds", &seconds];
            if unaligned {
                a.extend(["--unaligned", "--aligned-timeout-ms", timeout]);
            }
            let f = run(&a)?;
            println!(
                "{:<14} {:>10} {:>8} {:>8} {:>8} {:>15.1} {:>16} {:>11.0}",
                f[1],
                f[2],
                f[3],
                f[4],
                f[5],
                f[6].parse::<f64>()? / 1024.0,
                f[7],
                f[8].parse::<f64>()?
            );
        }
    }
    Ok(())
}
