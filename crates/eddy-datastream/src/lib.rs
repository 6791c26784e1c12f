//! Eddy's DataStream API: typed streams with Flink's names.
//!
//! A program obtains a [`StreamExecutionEnvironment`], creates streams from sources, transforms
//! them, sends them to sinks, and calls [`execute`](StreamExecutionEnvironment::execute):
//!
//! ```
//! use eddy_datastream::StreamExecutionEnvironment;
//!
//! let env = StreamExecutionEnvironment::create_local_environment(2);
//! let counts = env
//!     .from_collection(vec!["a b", "b c", "c"].into_iter().map(String::from).collect())
//!     .flat_map(|line: String, out| {
//!         for w in line.split(' ') {
//!             out.collect((w.to_string(), 1i64));
//!         }
//!     })
//!     .key_by(|(w, _): &(String, i64)| w.clone())
//!     .sum(|(_, n): &mut (String, i64)| n)
//!     .execute_and_collect("word count")
//!     .unwrap();
//! assert_eq!(counts.len(), 5); // rolling updates: a=1, b=1, b=2, c=1, c=2
//! ```
//!
//! Every record type is [`Data`]: cloneable, sendable between threads, and serializable with
//! serde, so the same program runs unchanged in the mini cluster and on a cluster.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod connected;
mod datastream;
mod environment;
mod error;
pub mod functions;
pub mod joins;
mod keyed;
pub mod operators;
pub mod process;
pub mod watermark;
pub mod windowing;

pub use connected::{
    BroadcastConnectedStream, BroadcastContext, BroadcastProcessFunction, BroadcastStream,
    CoProcessFunction, ConnectedStreams, KeyedBroadcastConnectedStream, KeyedCoProcessFunction,
    KeyedConnectedStreams, ReadOnlyBroadcastState, ReadOnlyContext,
};
pub use datastream::{DataStream, DataStreamSink};
pub use eddy_runtime::state::{
    AggregateFunction, AggregatingState, AggregatingStateDescriptor, BroadcastState, ListState,
    ListStateDescriptor, MapState, MapStateDescriptor, OperatorListState, ReducingState,
    ReducingStateDescriptor, StateTtlConfig, StateVisibility, UpdateType, ValueState,
    ValueStateDescriptor,
};
pub use environment::StreamExecutionEnvironment;
pub use error::{Error, Result};
pub use functions::{
    Collector, FunctionError, FunctionResult, OutputTag, RichFilterFunction, RichFlatMapFunction,
    RichMapFunction, RuntimeContext,
};
pub use keyed::KeyedStream;
pub use process::{
    Context, KeyedContext, KeyedProcessFunction, ProcessFunction, TimeDomain, TimerService,
};
pub use watermark::WatermarkStrategy;

pub use eddy_core::config::{Configuration, RuntimeMode};
pub use eddy_core::keys::Key;
pub use eddy_runtime::executor::{JobClient, JobError, JobExecutionResult, JobStatus};

/// A type that can flow through a stream: cloneable, sendable, and serializable (so that it can
/// cross processes and go into state).
pub trait Data:
    Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static
{
}

impl<T> Data for T where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static
{
}
