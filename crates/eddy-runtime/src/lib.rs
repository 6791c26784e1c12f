//! Eddy's runtime: everything that executes a job.
//!
//! Reading order for newcomers:
//!
//! 1. [`operator`] — the operator traits and the [`Output`](operator::Output) they write to;
//! 2. [`chain`] — how the operators of one task call each other;
//! 3. [`exchange`] — channels, partitioners, record writers and input gates between tasks;
//! 4. [`task`] — the loops that drive a chain from a source or from input gates;
//! 5. [`graph`] — StreamGraph → JobGraph (chaining, stable operator ids);
//! 6. [`registry`] — how the JobGraph's operator ids find their typed factories;
//! 7. [`executor`] — the mini cluster that deploys a JobGraph as threads and supervises it.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod accumulators;
pub mod chain;
pub mod checkpoint;
pub mod error;
pub mod exchange;
pub mod executor;
pub mod factories;
pub mod graph;
pub mod metrics;
pub mod operator;
pub mod registry;
pub mod sink;
pub mod source;
pub mod state;
pub mod task;
pub mod watermark;

pub use error::{ErrorDomain, Result, RuntimeError};
