//! The core engine benchmark: records/s, records/s per core and peak memory for
//!
//! - (a) source → map → sink passthrough of 100-byte records (chained, and across a rebalance);
//! - (b) key_by + reduce over 1,000 keys;
//! - event-time windows summing a value over 100,000 keys: tumbling (1 s), sliding (10 s every
//!   1 s) and session (500 ms gap), with 1,000,000 events per second of event time;
//!
//! each at parallelism 1 and 2. Every case runs in a process of its own.
//!
//! ```text
//! cargo run --release -p eddy-benchmarks --bin core_bench
//! ```

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use eddy::connectors::datagen::DataGeneratorSource;
use eddy::connectors::discard::DiscardingSink;
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

/// A 100-byte record: a sequence number and 92 bytes of payload.
#[derive(Clone, Serialize, Deserialize)]
struct Record100 {
    seq: u64,
    payload: [[u8; 23]; 4],
}

#[derive(Parser)]
struct Args {
    /// Run one case (`passthrough`, `passthrough-rebalance` or `keyed-reduce`) and print one
    /// result line; without it, run every case in its own process and print a table.
    #[arg(long)]
    case: Option<String>,
    /// Parallelism of the case.
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    /// Records per case (default: 100 M for passthrough, 20 M for the others).
    #[arg(long)]
    records: Option<u64>,
    /// In table mode, run only this case.
    #[arg(long)]
    only: Option<String>,
}

fn run_case(case: &str, parallelism: u32, records: u64) -> Result<()> {
    let env = StreamExecutionEnvironment::create_local_environment(parallelism);
    match case {
        "passthrough" | "passthrough-rebalance" => {
            let src = env.from_source(
                DataGeneratorSource::new(
                    |i| Record100 {
                        seq: i,
                        payload: [[i as u8; 23]; 4],
                    },
                    records,
                ),
                WatermarkStrategy::no_watermarks(),
                "records",
            );
            let src = if case == "passthrough-rebalance" {
                src.rebalance()
            } else {
                src
            };
            src.map(|mut r: Record100| {
                r.payload[0][0] ^= 1;
                r
            })
            .sink_to(DiscardingSink);
        }
        "keyed-reduce" => {
            env.from_source(
                DataGeneratorSource::new(|i| (i % 1000, i as i64), records),
                WatermarkStrategy::no_watermarks(),
                "pairs",
            )
            .key_by(|(k, _): &(u64, i64)| *k)
            .reduce(|a, b| (a.0, a.1.wrapping_add(b.1)))
            .sink_to(DiscardingSink);
        }
        "window-tumbling" | "window-sliding" | "window-session" => {
            eddy_benchmarks::pipelines::windows(&env, case, parallelism, records)?;
        }
        other => anyhow::bail!("unknown case {other}"),
    }
    // Streaming semantics for every case: the reduce emits an update per record.
    env.set_runtime_mode(RuntimeMode::Streaming);
    let before = eddy_benchmarks::usage()?;
    let start = Instant::now();
    env.execute(case)?;
    let wall = start.elapsed();
    let after = eddy_benchmarks::usage()?;
    let cpu = (after.cpu - before.cpu).as_secs_f64();
    println!(
        "{case}\t{parallelism}\t{records}\t{:.3}\t{:.3}\t{}",
        wall.as_secs_f64(),
        cpu,
        after.peak_rss
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(case) = &args.case {
        let records = args.records.unwrap_or(match case.as_str() {
            "keyed-reduce" | "window-tumbling" | "window-sliding" | "window-session" => 20_000_000,
            _ => 100_000_000,
        });
        return run_case(case, args.parallelism, records);
    }
    println!(
        "{:<24} {:>4} {:>12} {:>8} {:>14} {:>16} {:>10}",
        "case", "p", "records", "wall s", "records/s", "records/s/core", "peak MiB"
    );
    let cases = match &args.only {
        Some(only) => vec![only.clone()],
        None => [
            "passthrough",
            "passthrough-rebalance",
            "keyed-reduce",
            "window-tumbling",
            "window-sliding",
            "window-session",
        ]
        .map(String::from)
        .to_vec(),
    };
    for case in &cases {
        for p in [1u32, 2] {
            let mut case_args = vec![
                "--case".to_string(),
                case.to_string(),
                "--parallelism".to_string(),
                p.to_string(),
            ];
            if let Some(r) = args.records {
                case_args.extend(["--records".to_string(), r.to_string()]);
            }
            let line = eddy_benchmarks::run_isolated(&case_args)?;
            let f: Vec<&str> = line.trim().split('\t').collect();
            let records: f64 = f[2].parse()?;
            let wall: f64 = f[3].parse()?;
            let cpu: f64 = f[4].parse()?;
            let peak: f64 = f[5].parse()?;
            println!(
                "{:<24} {:>4} {:>12} {:>8.2} {:>14.0} {:>16.0} {:>10.1}",
                case,
                p,
                records,
                wall,
                records / wall,
                records / cpu.max(1e-9),
                peak / (1024.0 * 1024.0)
            );
        }
    }
    Ok(())
}
