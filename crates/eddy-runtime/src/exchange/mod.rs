//! Moving records between tasks: channels, partitioners, record writers and input gates.
//!
//! A *channel* connects one upstream subtask to one downstream subtask and carries
//! [`StreamElement`](eddy_core::element::StreamElement)s: batches of records and in-band events.
//! Channels are bounded: a full channel blocks its writer, which is how back pressure travels
//! from a slow sink up to the sources while memory stays bounded. The time a writer spends
//! blocked is reported as `backPressuredTimeMsPerSecond`.
//!
//! A [`RecordWriter`] sits at the end of a chain, fills one buffer per channel as its
//! [`Partitioner`] routes each record, and sends a buffer when it is full or when the task's
//! buffer timeout flushes it. An [`InputGate`] is the reading side: all channels of one input,
//! polled round-robin, any of which can be blocked during barrier alignment.

mod channel;
mod gate;
pub mod net;
mod partitioner;
mod writer;

pub use channel::{ChannelReceiver, ChannelSender, PriorityBarrier, TaskSignals, local_channel};
pub use gate::{InputGate, RecordCodec, wait_for_input, wait_for_output};
pub use partitioner::{
    BroadcastPartitioner, ForwardPartitioner, KeyGroupPartitioner, Partitioner,
    RebalancePartitioner, ShufflePartitioner,
};
pub use writer::RecordWriter;

/// The number of records per batch for records of type `T`: about one network segment's worth
/// (`taskmanager.memory.segment-size`), at least 16 and at most 4096.
pub fn batch_size_for<T>(segment_size: u64) -> usize {
    let per = std::mem::size_of::<eddy_core::element::StreamRecord<T>>().max(1) as u64;
    (segment_size / per).clamp(16, 4096) as usize
}
