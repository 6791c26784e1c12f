//! `nexmark generate` writes Nexmark events as JSON files; `nexmark run` runs a query on them
//! (or on the generator inside the job) and prints what it measured as one JSON line.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use eddy::prelude::*;
use eddy_nexmark::{GeneratorConfig, Input, Query, write_files};

#[derive(Parser)]
#[command(about = "The Nexmark benchmark on Eddy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write events as newline-delimited JSON files in the reference's layout.
    Generate {
        /// How many events.
        #[arg(long)]
        events: u64,
        /// How many files (one per reading subtask).
        #[arg(long, default_value_t = 2)]
        files: u32,
        /// The directory to write to.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        generator: GeneratorArgs,
    },
    /// Run a query and print a JSON line with its throughput.
    Run {
        /// The query: q0, q1, q2, q3, q4, q5, q7 or q8.
        #[arg(long)]
        query: Query,
        /// Read the events from the files `generate` wrote here.
        #[arg(long, conflicts_with = "events")]
        input: Option<PathBuf>,
        /// Generate this many events inside the job instead.
        #[arg(long)]
        events: Option<u64>,
        /// Write the query's rows as CSV files here (otherwise they are discarded).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Parallelism of every operator.
        #[arg(long, short, default_value_t = 2)]
        parallelism: u32,
        #[command(flatten)]
        generator: GeneratorArgs,
        /// Configuration overrides, `-D key=value`.
        #[arg(short = 'D', value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
}

#[derive(Args)]
struct GeneratorArgs {
    /// Seed of the generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Events per second of event time.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
}

impl GeneratorArgs {
    fn config(&self) -> GeneratorConfig {
        GeneratorConfig {
            seed: self.seed,
            events_per_second: self.rate,
            ..GeneratorConfig::default()
        }
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Generate {
            events,
            files,
            out,
            generator,
        } => {
            let manifest = write_files(&generator.config(), events, files, &out)?;
            println!(
                "wrote {} events to {} files in {}",
                manifest.events,
                manifest.files.len(),
                out.display()
            );
        }
        Command::Run {
            query,
            input,
            events,
            output,
            parallelism,
            generator,
            config,
        } => {
            let input = match (input, events) {
                (Some(dir), _) => Input::Files(dir),
                (None, Some(events)) => Input::Generator {
                    config: generator.config(),
                    events,
                },
                (None, None) => anyhow::bail!("give --input DIR or --events N"),
            };
            let mut conf = Configuration::new();
            for kv in &config {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("-D takes key=value, got '{kv}'"))?;
                conf.set_string(k.trim(), v.trim());
            }
            let env = StreamExecutionEnvironment::with_configuration(conf);
            env.set_parallelism(parallelism);
            let report = eddy_nexmark::run_query(&env, query, &input, output.as_deref())?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
