//! Eddy's built-in connectors.
//!
//! Each connector implements the runtime's [`Source`](eddy_runtime::source::Source) or
//! [`Sink`](eddy_runtime::sink::Sink) trait and lives in its own module:
//!
//! | module | what |
//! |---|---|
//! | [`collection`] | records from a `Vec` (bounded, one split) |
//! | [`sequence`] | a range of numbers, split across subtasks (bounded) |
//! | [`datagen`] | generated records, optionally rate-limited (bounded or unbounded) |
//! | [`file`](mod@file) | text lines from files and directories, split across subtasks; a file sink with part files |
//! | [`socket`] | text lines from a TCP socket (unbounded) |
//! | [`print`](mod@print) | `N> record` lines on stdout or stderr, as Flink prints |
//! | [`collect`] | records back to the program, for tests and examples |
//! | [`discard`] | drops everything (for benchmarks) |
//!
//! Kafka and Postgres have their own crates, so that the core builds without their
//! dependencies.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod collect;
pub mod collection;
pub mod datagen;
pub mod discard;
pub mod file;
pub mod print;
pub mod sequence;
pub mod socket;
