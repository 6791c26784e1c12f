//! Nexmark, the standard streaming benchmark, for Eddy.
//!
//! - [`GeneratorConfig`] makes the reference's Person / Auction / Bid event stream, seeded, so
//!   that the same seed always gives the same events whatever the parallelism.
//! - [`NexmarkSource`] runs it as a parallel source inside a job; [`write_files`] writes it as
//!   newline-delimited JSON in the reference's layout, for other engines to read.
//! - [`queries`] holds q0–q5, q7–q9, q11, q14–q18 and q20–q22 written with the DataStream API;
//!   [`run_query`] runs one on files or on the generator.
//!
//! The `nexmark` binary wraps both (`nexmark generate`, `nexmark run`), and `bench/nexmark.py`
//! measures Eddy against Apache Flink with it.
#![deny(missing_docs)]

pub mod generator;
pub mod json;
pub mod model;
pub mod queries;
pub mod source;

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eddy::connectors::discard::DiscardingSink;
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

pub use generator::{FIRST_AUCTION_ID, FIRST_CATEGORY_ID, FIRST_PERSON_ID, GeneratorConfig};
pub use model::{Auction, Bid, Event, Person};
pub use queries::Query;
pub use source::NexmarkSource;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum NexmarkError {
    /// A line is not a Nexmark event in the reference's JSON layout.
    #[error("malformed Nexmark event ({message}): {line}")]
    Json {
        /// The line (cut to 120 characters).
        line: String,
        /// What is wrong with it.
        message: String,
    },
    /// No such query.
    #[error(
        "unknown query '{0}' (known: q0, q1, q2, q3, q4, q5, q7, q8, q9, q11, q14, q15, q16, q17, q18, q20, q21, q22)"
    )]
    UnknownQuery(String),
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The job failed.
    #[error(transparent)]
    Job(#[from] eddy::Error),
}

impl NexmarkError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NexmarkError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The description of a generated file set, written beside it as `_manifest.json` (files whose
/// names start with `_` are skipped by both Eddy's and Flink's file sources).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// How many events the files hold in all.
    pub events: u64,
    /// The generator's configuration.
    pub config: GeneratorConfig,
    /// The files' names.
    pub files: Vec<String>,
}

impl Manifest {
    /// The file name of the manifest.
    pub const FILE_NAME: &'static str = "_manifest.json";

    /// Reads the manifest of the file set in `dir`.
    pub fn read(dir: &Path) -> Result<Manifest, NexmarkError> {
        let path = dir.join(Self::FILE_NAME);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| NexmarkError::io(format!("cannot read '{}'", path.display()), e))?;
        serde_json::from_str(&text).map_err(|e| NexmarkError::Json {
            line: path.display().to_string(),
            message: e.to_string(),
        })
    }
}

/// Writes the first `events` events of `config` to `files` JSON-lines files in `dir`, event
/// number `n` going to file `n % files`: each file is in timestamp order and spans the whole run,
/// so that one reader per file advances through event time with the others.
pub fn write_files(
    config: &GeneratorConfig,
    events: u64,
    files: u32,
    dir: &Path,
) -> Result<Manifest, NexmarkError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| NexmarkError::io(format!("cannot create '{}'", dir.display()), e))?;
    let files = u64::from(files.max(1));
    let names: Vec<String> = (0..files).map(|i| format!("events-{i:03}.json")).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(files))
            .map(|t| {
                let names = &names;
                scope.spawn(move || -> Result<(), NexmarkError> {
                    for f in (t..files).step_by(threads.min(files) as usize) {
                        let path = dir.join(&names[f as usize]);
                        write_one(config, events, f, files, &path)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| {
                Err(NexmarkError::io(
                    "writer",
                    std::io::Error::other("panicked"),
                ))
            })
        })
    })?;
    let manifest = Manifest {
        events,
        config: config.clone(),
        files: names,
    };
    let path = dir.join(Manifest::FILE_NAME);
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| NexmarkError::Json {
        line: String::new(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, text)
        .map_err(|e| NexmarkError::io(format!("cannot write '{}'", path.display()), e))?;
    Ok(manifest)
}

fn write_one(
    config: &GeneratorConfig,
    events: u64,
    first: u64,
    stride: u64,
    path: &Path,
) -> Result<(), NexmarkError> {
    let err = |e| NexmarkError::io(format!("cannot write '{}'", path.display()), e);
    let file = std::fs::File::create(path).map_err(err)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    let mut n = first;
    while n < events {
        line.clear();
        json::write_event(&config.event(n), &mut line)?;
        out.write_all(&line).map_err(err)?;
        n += stride;
    }
    out.flush().map_err(err)
}

/// Where a query's events come from.
#[derive(Clone, Debug)]
pub enum Input {
    /// The JSON files in a directory (see [`write_files`]).
    Files(PathBuf),
    /// The generator, inside the job.
    Generator {
        /// Its configuration.
        config: GeneratorConfig,
        /// How many events.
        events: u64,
    },
}

/// What a query run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// The query.
    pub query: String,
    /// Events read.
    pub events: u64,
    /// Parallelism.
    pub parallelism: u32,
    /// Wall time of the job, from submission to its end, in seconds.
    pub seconds: f64,
    /// Events per second.
    pub events_per_second: f64,
}

/// Events are at most this far out of order (the reference DDL's watermark delay).
pub const MAX_OUT_OF_ORDERNESS: Duration = Duration::from_secs(4);

/// The event stream of `input`, with timestamps and watermarks.
pub fn events(env: &StreamExecutionEnvironment, input: &Input) -> DataStream<Event> {
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(MAX_OUT_OF_ORDERNESS)
        .with_timestamp_assigner(|e: &Event, _| e.date_time());
    match input {
        Input::Files(dir) => env
            .from_source(
                // One split per file: each file is in timestamp order.
                FileSource::for_text_lines(dir).with_split_size(u64::MAX),
                WatermarkStrategy::no_watermarks(),
                "Nexmark files",
            )
            .try_map(|line: String| Ok(json::parse_event(&line)?))
            .name("Parse")
            .assign_timestamps_and_watermarks(strategy),
        Input::Generator { config, events } => env.from_source(
            NexmarkSource::new(config.clone(), *events),
            strategy,
            "Nexmark generator",
        ),
    }
}

/// Adds `query` over `events` to the job, writing its rows to CSV files under `output` or, with
/// no output, discarding them.
pub fn add_query(query: Query, events: DataStream<Event>, output: Option<&Path>) {
    fn sink<T: eddy::Data + Display>(rows: DataStream<T>, output: Option<&Path>) {
        match output {
            Some(dir) => rows.sink_to(FileSink::for_row_format(
                dir,
                SimpleStringEncoder::default(),
            )),
            None => rows.sink_to(DiscardingSink),
        };
    }
    match query {
        Query::Q0 => sink(queries::q0(events), output),
        Query::Q1 => sink(queries::q1(events), output),
        Query::Q2 => sink(queries::q2(events), output),
        Query::Q3 => sink(queries::q3(events), output),
        Query::Q4 => sink(queries::q4(events), output),
        Query::Q5 => sink(queries::q5(events), output),
        Query::Q7 => sink(queries::q7(events), output),
        Query::Q8 => sink(queries::q8(events), output),
        Query::Q9 => sink(queries::q9(events), output),
        Query::Q11 => sink(queries::q11(events), output),
        Query::Q14 => sink(queries::q14(events), output),
        Query::Q15 => sink(queries::q15(events), output),
        Query::Q16 => sink(queries::q16(events), output),
        Query::Q17 => sink(queries::q17(events), output),
        Query::Q18 => sink(queries::q18(events), output),
        Query::Q20 => sink(queries::q20(events), output),
        Query::Q21 => sink(queries::q21(events), output),
        Query::Q22 => sink(queries::q22(events), output),
    }
}

/// Runs `query` on `input` at `parallelism` and reports its throughput.
pub fn run_query(
    env: &StreamExecutionEnvironment,
    query: Query,
    input: &Input,
    output: Option<&Path>,
) -> Result<RunReport, NexmarkError> {
    let events = match input {
        Input::Files(dir) => Manifest::read(dir)?.events,
        Input::Generator { events, .. } => *events,
    };
    add_query(query, self::events(env, input), output);
    let start = Instant::now();
    env.execute(&format!("Nexmark {query}"))?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(RunReport {
        query: query.to_string(),
        events,
        parallelism: env.get_parallelism(),
        seconds,
        events_per_second: events as f64 / seconds,
    })
}
