//! What flows along a stream: batches of records and in-band control events.
//!
//! Control events (watermarks, checkpoint barriers, latency markers, end of partition) travel in
//! the same channel as the data, in order with it. That is what makes barrier alignment and
//! watermark propagation plain stream logic: an operator sees a barrier exactly between the
//! records that precede it and the records that follow it.

use serde::{Deserialize, Serialize};

use crate::ids::OperatorId;

/// The timestamp value meaning "this record has no timestamp".
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// One record with its (optional) event timestamp, in milliseconds since the epoch.
///
/// The timestamp is stored inline as an `i64` with [`NO_TIMESTAMP`] for "none", which keeps a
/// record eight bytes larger than its value instead of sixteen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord<T> {
    /// The user's value.
    pub value: T,
    /// Event timestamp in ms, or [`NO_TIMESTAMP`].
    pub timestamp: i64,
}

impl<T> StreamRecord<T> {
    /// A record without a timestamp.
    #[inline]
    pub fn new(value: T) -> Self {
        StreamRecord {
            value,
            timestamp: NO_TIMESTAMP,
        }
    }

    /// A record with an event timestamp.
    #[inline]
    pub fn with_timestamp(value: T, timestamp: i64) -> Self {
        StreamRecord { value, timestamp }
    }

    /// The event timestamp, if the record has one.
    #[inline]
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// A record holding `value` with this record's timestamp, as Flink's `StreamRecord.replace`.
    #[inline]
    pub fn replace<U>(&self, value: U) -> StreamRecord<U> {
        StreamRecord {
            value,
            timestamp: self.timestamp,
        }
    }
}

/// A watermark: the assertion that no more records with a timestamp `<=` it will arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watermark(pub i64);

impl Watermark {
    /// The watermark that fires every event-time timer: sent when a bounded input ends.
    pub const MAX: Watermark = Watermark(i64::MAX);
    /// The initial watermark of every operator.
    pub const MIN: Watermark = Watermark(i64::MIN);

    /// The watermark's timestamp in ms.
    #[inline]
    pub fn timestamp(self) -> i64 {
        self.0
    }
}

/// Whether a channel currently carries watermarks (Flink's `WatermarkStatus`).
///
/// An idle input is left out of the minimum that computes an operator's watermark, so one quiet
/// source split cannot hold back event time for the whole job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatermarkStatus {
    /// The channel produces watermarks.
    Active,
    /// The channel is idle and is ignored when combining watermarks.
    Idle,
}

/// What a barrier asks the tasks to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    /// A periodic checkpoint, owned by Eddy and discarded by retention.
    Checkpoint,
    /// A savepoint: owned by the user, self-contained, kept until the user deletes it.
    Savepoint,
    /// A savepoint after which sources stop (stop-with-savepoint); `drain` also fires all
    /// remaining event-time timers first, by sending the final watermark.
    SavepointAndStop {
        /// Whether to send `Watermark::MAX` before the barrier.
        drain: bool,
    },
}

impl SnapshotKind {
    /// Whether this is a savepoint (self-contained, owned by the user).
    pub fn is_savepoint(self) -> bool {
        !matches!(self, SnapshotKind::Checkpoint)
    }

    /// How sources stop before this snapshot, if they do.
    pub fn stop_mode(self) -> Option<StopMode> {
        match self {
            SnapshotKind::SavepointAndStop { drain: true } => Some(StopMode::Drain),
            SnapshotKind::SavepointAndStop { drain: false } => Some(StopMode::NoDrain),
            _ => None,
        }
    }
}

/// Checkpoint alignment mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CheckpointingMode {
    /// Aligned barriers: state and output reflect every record exactly once.
    #[default]
    ExactlyOnce,
    /// No alignment: after a failure, some records may be processed twice.
    AtLeastOnce,
}

/// A checkpoint barrier: splits the stream into the part before and after checkpoint `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBarrier {
    /// The checkpoint id, increasing over a job's lifetime.
    pub id: u64,
    /// When the coordinator triggered it, in ms since the epoch.
    pub timestamp: i64,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// An unaligned barrier overtakes the records queued ahead of it, which go into the
    /// checkpoint as in-flight data instead (`execution.checkpointing.unaligned.enabled`).
    #[serde(default)]
    pub unaligned: bool,
    /// An aligned barrier that is also announced on the priority lane, with its position: a
    /// receiver whose alignment times out (`execution.checkpointing.aligned-checkpoint-timeout`)
    /// takes the checkpoint unaligned without waiting for the barrier to arrive.
    #[serde(default)]
    pub announce: bool,
}

/// A latency marker: emitted periodically by sources, carried to sinks, never delayed by
/// buffering in operators, to measure end-to-end latency (Flink's `LatencyMarker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyMarker {
    /// Wall-clock time at which the source emitted the marker, in ms.
    pub marked_time: i64,
    /// The source operator that emitted it.
    pub operator_id: OperatorId,
    /// The source subtask that emitted it.
    pub subtask_index: u32,
}

/// One element of a stream channel: a batch of records or a control event.
///
/// Records travel in batches (a network buffer's worth), never one channel operation per record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamElement<T> {
    /// A batch of records, in order.
    Records(Vec<StreamRecord<T>>),
    /// A watermark.
    Watermark(Watermark),
    /// A change of the channel's watermark status.
    WatermarkStatus(WatermarkStatus),
    /// A checkpoint barrier.
    Barrier(CheckpointBarrier),
    /// A latency marker.
    LatencyMarker(LatencyMarker),
    /// The upstream subtask has no more data: only barriers and end-of-partition follow. With
    /// [`StopMode::Drain`] the receiver finishes its operators (fires remaining timers and
    /// windows); with [`StopMode::NoDrain`] (stop with savepoint) it leaves them as they are.
    EndOfData(StopMode),
    /// The upstream subtask has finished: nothing follows on this channel.
    EndOfPartition,
}

/// How a stream ends (Flink's `StopMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopMode {
    /// The input is exhausted, or the job stops with `--drain`: event time advances to the end
    /// and every operator finishes.
    Drain,
    /// The job stops with a savepoint to be resumed later: timers and windows stay in state.
    NoDrain,
}

impl<T> StreamElement<T> {
    /// Whether this is a data batch (which uses a buffer credit) rather than an event.
    #[inline]
    pub fn is_records(&self) -> bool {
        matches!(self, StreamElement::Records(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_timestamp_roundtrip() {
        let r = StreamRecord::new(5);
        assert_eq!(r.timestamp(), None);
        let r = StreamRecord::with_timestamp(5, 0);
        assert_eq!(r.timestamp(), Some(0));
        let r2 = r.replace("x");
        assert_eq!(r2.timestamp(), Some(0));
        assert_eq!(r2.value, "x");
    }

    #[test]
    fn elements_serialize_with_postcard() {
        let e: StreamElement<String> = StreamElement::Records(vec![
            StreamRecord::new("a".into()),
            StreamRecord::with_timestamp("b".into(), 7),
        ]);
        let bytes = postcard::to_stdvec(&e).unwrap();
        let back: StreamElement<String> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, e);
    }
}
