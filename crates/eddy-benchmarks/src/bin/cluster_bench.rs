//! The cluster benchmark: a JobManager and two TaskManagers (one slot each) started from the
//! `eddy` binary, measuring
//!
//! - the keyed-reduce case of `core_bench` at parallelism 2, so every record crosses between
//!   the two TaskManagers' worker processes, against the same case in the mini cluster, in
//!   records per CPU-second (records/s per core);
//! - job submission to RUNNING (REST `POST /jars/:id/run` until `/jobs/:id` says RUNNING),
//!   including the run of the program that builds the JobGraph;
//! - idle memory (RSS) of a TaskManager and of the JobManager.
//!
//! ```text
//! cargo build --release -p eddy-cluster --bin eddy -p eddy-benchmarks --bin core_bench
//! cargo run --release -p eddy-benchmarks --bin cluster_bench
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use eddy_benchmarks::cluster::Cluster;

#[derive(Parser)]
struct Args {
    /// Records of the keyed-reduce case.
    #[arg(long, default_value_t = 20_000_000)]
    records: u64,
    /// Submissions measured for the latency figures.
    #[arg(long, default_value_t = 20)]
    submissions: usize,
}

fn case_args(records: u64) -> Vec<String> {
    ["--case", "keyed-reduce", "--parallelism", "2", "--records"]
        .iter()
        .map(|s| s.to_string())
        .chain([records.to_string()])
        .collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("no executable directory")?;
    let eddy: PathBuf = dir.join("eddy");
    let core_bench: PathBuf = dir.join("core_bench");
    for p in [&eddy, &core_bench] {
        if !p.exists() {
            bail!(
                "{} is missing: cargo build --release -p eddy-cluster --bin eddy -p eddy-benchmarks --bin core_bench",
                p.display()
            );
        }
    }
    let work = tempfile::tempdir()?;
    let cluster = Cluster::start(&eddy, work.path(), 2)?;
    let tm_pids: Vec<u32> = cluster.processes[1..].iter().map(Child::id).collect();
    let jm_pid = cluster.processes[0].id();

    std::thread::sleep(Duration::from_secs(2));
    let tm_idle: Vec<u64> = tm_pids
        .iter()
        .map(|p| eddy_benchmarks::rss(*p))
        .collect::<Result<_>>()?;
    let jm_idle = eddy_benchmarks::rss(jm_pid)?;

    let jar = cluster.upload(&core_bench)?;

    // Submission to RUNNING, on a small job.
    let mut latencies = Vec::new();
    for _ in 0..args.submissions {
        let start = Instant::now();
        let job = cluster.run(&jar, &case_args(1_000))?;
        let running = cluster.wait(&job, "RUNNING", Duration::from_millis(1));
        // A job this small may finish before a poll sees RUNNING: measure up to FINISHED then.
        let seen = match running {
            Ok(t) => t,
            Err(_) => Instant::now(),
        };
        latencies.push(seen.duration_since(start));
        cluster.wait(&job, "FINISHED", Duration::from_millis(5))?;
    }
    latencies.sort();

    // Throughput across the two TaskManagers.
    std::thread::sleep(Duration::from_secs(1));
    let cpu_before: Duration = tm_pids
        .iter()
        .map(|p| eddy_benchmarks::children_cpu(*p))
        .sum::<Result<_>>()?;
    let job = cluster.run(&jar, &case_args(args.records))?;
    let running = cluster.wait(&job, "RUNNING", Duration::from_millis(2))?;
    let finished = cluster.wait(&job, "FINISHED", Duration::from_millis(5))?;
    let wall = finished.duration_since(running).as_secs_f64();
    // The TaskManagers account a worker's CPU time once they have reaped it.
    std::thread::sleep(Duration::from_millis(1500));
    let cpu_after: Duration = tm_pids
        .iter()
        .map(|p| eddy_benchmarks::children_cpu(*p))
        .sum::<Result<_>>()?;
    let cluster_cpu = (cpu_after - cpu_before).as_secs_f64();
    drop(cluster);

    // The same case in the mini cluster.
    let out = Command::new(&core_bench)
        .args(case_args(args.records))
        .output()?;
    if !out.status.success() {
        bail!(
            "core_bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8(out.stdout)?;
    let f: Vec<&str> = line.trim().split('\t').collect();
    let mini_wall: f64 = f[3].parse()?;
    let mini_cpu: f64 = f[4].parse()?;

    let r = args.records as f64;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("keyed-reduce, parallelism 2, {} records", args.records);
    println!(
        "{:<34} {:>10} {:>10} {:>14} {:>16}",
        "", "wall s", "CPU s", "records/s", "records/s/core"
    );
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>14.0} {:>16.0}",
        "mini cluster (one process)",
        mini_wall,
        mini_cpu,
        r / mini_wall,
        r / mini_cpu
    );
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>14.0} {:>16.0}",
        "two TaskManagers (two workers)",
        wall,
        cluster_cpu,
        r / wall,
        r / cluster_cpu
    );
    println!(
        "CPU per record, cluster / mini cluster: {:.2}x",
        (cluster_cpu / r) / (mini_cpu / r)
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "submission to RUNNING over {} submissions: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() * 9 / 10]),
        ms(*latencies.last().context("no submissions")?)
    );
    println!(
        "idle RSS: TaskManagers {} MiB, JobManager {:.1} MiB",
        tm_idle
            .iter()
            .map(|b| format!("{:.1}", mib(*b)))
            .collect::<Vec<_>>()
            .join(" / "),
        mib(jm_idle)
    );
    Ok(())
}
