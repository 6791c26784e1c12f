//! Eddy's shared vocabulary.
//!
//! Everything here is plain data that every other crate agrees on, and that can cross a process
//! boundary: the elements that flow through a job ([`element`]), keys and key groups ([`keys`]),
//! configuration with Flink's keys ([`config`]), identifiers ([`ids`]) and the serializable
//! [`graph::JobGraph`]. Nothing here runs a job; the runtime lives in `eddy-runtime`.
//!
//! Why a separate crate: the JobManager, the TaskManagers, the SQL planner and the DataStream API
//! all need these types, and none of them should have to depend on the others to get them.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod config;
pub mod element;
pub mod error;
pub mod graph;
pub mod ids;
pub mod keys;
pub mod time;

pub use error::{CoreError, Result};
