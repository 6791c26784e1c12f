//! TopSpeedWindowing, as Flink's example: for each car, every time it has driven another 50
//! meters, the top speed of its last 10 seconds.
//!
//! Records are `(car_id, speed_kmh, distance_m, timestamp_ms)`. Each car gets a global window
//! with a delta trigger (fire when the distance grew by more than `--trigger-meters` since the
//! last firing) and a time evictor (keep `--eviction-seconds` of data); the window's record with
//! the highest speed is emitted.
//!
//! ```text
//! cargo run --release --example top_speed_windowing              # simulated cars
//! cargo run --release --example top_speed_windowing -- --input cars.csv --output /tmp/top
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use eddy::connectors::datagen::DataGeneratorSource;
use eddy::prelude::*;
use eddy::windowing::{DeltaTrigger, GlobalWindows, TimeEvictor};

/// `(car_id, speed_kmh, distance_m, timestamp_ms)`.
type CarEvent = (i32, i32, f64, i64);

#[derive(Parser)]
#[command(about = "Top speed of each car over its last seconds, every few meters")]
struct Args {
    /// CSV input `car_id,speed,distance,timestamp`; without it, cars are simulated.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Directory for `car_id,speed,distance,timestamp` part files; without it, results print.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Simulated cars.
    #[arg(long, default_value_t = 2)]
    cars: u32,
    /// Simulated records per car (one every 100 ms of event time).
    #[arg(long, default_value_t = 600)]
    records_per_car: u64,
    /// Keep this much of each car's history.
    #[arg(long, default_value_t = 10)]
    eviction_seconds: u64,
    /// Fire when a car drove more than this since the last firing.
    #[arg(long, default_value_t = 50.0)]
    trigger_meters: f64,
    /// Configuration overrides, `-D key=value`.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic_properties: Vec<String>,
}

/// A deterministic car simulator: every 100 ms each car's speed changes by up to ±5 km/h
/// (within 0..=100), and its distance grows by speed / 3.6 m (Flink's `CarSource`).
fn simulated_car(cars: u32) -> impl Fn(u64) -> CarEvent + Send + Sync + 'static {
    move |i| {
        let car = (i % u64::from(cars)) as i32;
        let tick = i / u64::from(cars);
        // Replay the car's random walk up to this tick (cheap enough for an example, and the
        // same whatever the parallelism).
        let mut speed = 50i32;
        let mut distance = 0f64;
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (car as u64 + 1);
        for _ in 0..=tick {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let step = (state % 11) as i32 - 5;
            speed = (speed + step).clamp(0, 100);
            distance += f64::from(speed) / 3.6;
        }
        (car, speed, distance, tick as i64 * 100)
    }
}

fn parse(line: &str) -> Option<CarEvent> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    match f.as_slice() {
        [car, speed, distance, ts] => Some((
            car.parse().ok()?,
            speed.parse().ok()?,
            distance.parse().ok()?,
            ts.parse().ok()?,
        )),
        _ => None,
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let env = StreamExecutionEnvironment::get_execution_environment()?;
    let cars = match &args.input {
        Some(path) => env
            .read_text_file(path)
            .set_parallelism(1)
            .try_map(|line: String| {
                parse(&line).ok_or_else(|| format!("malformed car record {line:?}").into())
            })
            .name("Parse")
            .set_parallelism(1),
        None => env
            .from_source(
                DataGeneratorSource::new(
                    simulated_car(args.cars),
                    u64::from(args.cars) * args.records_per_car,
                ),
                WatermarkStrategy::no_watermarks(),
                "Car Simulator",
            )
            .set_parallelism(1),
    };
    let trigger_meters = args.trigger_meters;
    let top_speeds = cars
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|c: &CarEvent, _| c.3),
        )
        .set_parallelism(1)
        .key_by(|c: &CarEvent| c.0)
        .window(GlobalWindows::create())
        .evictor(TimeEvictor::of(Duration::from_secs(args.eviction_seconds)))
        .trigger(DeltaTrigger::of(
            trigger_meters,
            |old: &CarEvent, new: &CarEvent| new.2 - old.2,
        ))
        .max_by(|c: &CarEvent| c.1)
        .name("Top Speed");
    match &args.output {
        Some(dir) => {
            top_speeds.sink_to(FileSink::for_row_format(dir, CsvEncoder::new()));
        }
        None => {
            top_speeds.print();
        }
    }
    env.execute("CarTopSpeedWindowingExample")?;
    Ok(())
}
