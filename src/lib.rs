//! Eddy: a distributed stream processor in the style of Apache Flink, written in Rust.
//!
//! This crate is the one programs depend on. It re-exports the DataStream API
//! ([`StreamExecutionEnvironment`], [`DataStream`], [`KeyedStream`], ...) and the built-in
//! connectors ([`connectors`]).
//!
//! ```
//! use eddy::prelude::*;
//!
//! let env = StreamExecutionEnvironment::create_local_environment(2);
//! let evens = env
//!     .from_sequence(1, 10)
//!     .filter(|x| x % 2 == 0)
//!     .execute_and_collect("evens")
//!     .unwrap();
//! assert_eq!(evens.len(), 5);
//! ```
#![deny(missing_docs)]

pub use eddy_datastream::*;

/// Built-in sources and sinks.
pub mod connectors {
    pub use eddy_connectors::*;
}

/// Lower-level building blocks: custom operators, sources and sinks, metrics, configuration.
pub mod runtime {
    pub use eddy_core::config;
    pub use eddy_core::element;
    pub use eddy_core::time;
    pub use eddy_runtime::*;
}

/// The names most programs need.
pub mod prelude {
    pub use eddy_connectors::file::{
        CsvEncoder, FileSink, FileSource, JsonLinesEncoder, SimpleStringEncoder,
    };
    pub use eddy_datastream::{
        Collector, Configuration, DataStream, KeyedStream, RichFilterFunction, RichFlatMapFunction,
        RichMapFunction, RuntimeContext, RuntimeMode, StreamExecutionEnvironment,
        WatermarkStrategy,
    };
}

/// The README's code, compiled as a doc test so that it stays correct.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
