//! WordCount, as Flink's example: counts words in text files or in lines read from a socket.
//!
//! ```text
//! # bounded: one `word,count` line per distinct word, in part files under --output
//! cargo run --release --example word_count -- --input examples/data/words.txt --output /tmp/wc
//! # unbounded: running counts printed as lines arrive (start `nc -lk 9000` first)
//! cargo run --release --example word_count -- --hostname localhost --port 9000
//! ```
//!
//! Words are lowercased and split on every character that is not a letter or a digit; empty
//! tokens are dropped.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use eddy::prelude::*;

#[derive(Parser)]
#[command(about = "Counts words in files or on a socket")]
struct Args {
    /// A text file or a directory of text files. Without it, lines are read from the socket.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Directory for the `word,count` part files. Without it, results are printed.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Parallelism of the job (default: `parallelism.default`, which `eddy run -p` sets).
    #[arg(long)]
    parallelism: Option<u32>,
    /// Socket host, when there is no --input.
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// Socket port, when there is no --input.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Configuration overrides, `-D key=value`.
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    dynamic_properties: Vec<String>,
}

/// Lowercases `line` and splits it on every character that is not a letter or a digit.
fn tokenize(line: &str, out: &mut Collector<'_, (String, i64)>) {
    for word in line.to_lowercase().split(|c: char| !c.is_alphanumeric()) {
        if !word.is_empty() {
            out.collect((word.to_string(), 1));
        }
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let env = StreamExecutionEnvironment::get_execution_environment()?;
    if let Some(p) = args.parallelism {
        env.set_parallelism(p);
    }
    // Bounded input runs with batch semantics: one final count per word.
    env.set_runtime_mode(RuntimeMode::Automatic);

    let text = match &args.input {
        Some(path) => env.read_text_file(path),
        None => env.socket_text_stream(&args.hostname, args.port),
    };
    let counts = text
        .flat_map(|line: String, out| tokenize(&line, out))
        .name("Tokenizer")
        .key_by(|(word, _): &(String, i64)| word.clone())
        .sum(|(_, count): &mut (String, i64)| count)
        .name("Counter");

    match &args.output {
        Some(dir) => {
            counts
                .sink_to(FileSink::for_row_format(dir, CsvEncoder::new()))
                .name("File Sink");
        }
        None => {
            counts.print();
        }
    }
    let result = env.execute("WordCount")?;
    eprintln!(
        "WordCount finished in {} ms (job {})",
        result.net_runtime.as_millis(),
        result.job_id
    );
    Ok(())
}
