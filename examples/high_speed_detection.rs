//! HighSpeedDetection, from the seeds: lines `car, speed` typed into a socket; an alert is
//! printed for every speed above the threshold.
//!
//! ```text
//! nc -lk 9000          # in one terminal; type lines like `Toyota, 67`
//! cargo run --release --example high_speed_detection -- --port 9000 --threshold 100
//! ```
//!
//! A line that is not `name, speed` is skipped with a warning on stderr and counted in the
//! `malformedLines` metric; the job keeps running.

use anyhow::Result;
use clap::Parser;
use eddy::prelude::*;
use eddy::runtime::metrics::Counter;
use eddy::{FunctionResult, RuntimeContext};
use std::sync::Arc;

#[derive(Parser)]
#[command(about = "Prints an alert for every car above a speed threshold")]
struct Args {
    /// Socket host.
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// Socket port.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Speeds above this raise an alert.
    #[arg(long, default_value_t = 100.0)]
    threshold: f64,
    /// Configuration overrides, `-D key=value`.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic_properties: Vec<String>,
}

/// Parses `name, speed`; skips and counts anything else.
#[derive(Clone, Default)]
struct ParseReading {
    malformed: Option<Arc<Counter>>,
}

impl RichFlatMapFunction<String, (String, f64)> for ParseReading {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.malformed = Some(ctx.get_metric_group().counter("malformedLines"));
        Ok(())
    }

    fn flat_map(
        &mut self,
        line: String,
        out: &mut Collector<'_, (String, f64)>,
    ) -> FunctionResult<()> {
        let parsed = line
            .split_once(',')
            .and_then(|(car, speed)| Some((car.trim(), speed.trim().parse::<f64>().ok()?)))
            .filter(|(car, _)| !car.is_empty());
        match parsed {
            Some((car, speed)) => out.collect((car.to_string(), speed)),
            None if line.trim().is_empty() => {}
            None => {
                eprintln!("skipping malformed line {line:?}: expected `car, speed`");
                if let Some(c) = &self.malformed {
                    c.inc();
                }
            }
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let env = StreamExecutionEnvironment::get_execution_environment()?;
    let threshold = args.threshold;
    env.socket_text_stream(&args.hostname, args.port)
        .rich_flat_map(ParseReading::default)
        .name("Parse")
        .filter(move |(_, speed)| *speed > threshold)
        .name("Above Threshold")
        .map(move |(car, speed)| {
            format!("HIGH SPEED ALERT: {car} at {speed} (threshold {threshold})")
        })
        .print();
    env.execute("HighSpeedDetection")?;
    Ok(())
}
