//! The source interface, after Flink's FLIP-27: a source is split into *splits* (a file range,
//! a Kafka partition, a range of a sequence), and each parallel *reader* reads the splits it is
//! assigned.
//!
//! Splits are assigned deterministically: every reader subtask enumerates the same splits in
//! the same order and takes those whose position modulo the parallelism is its index. That needs
//! no coordinator process that would have to run user code, and it gives the same assignment on
//! every worker of a cluster. A reader's splits, with their positions, are its checkpoint state;
//! on restore (at any parallelism) the checkpointed splits are dealt out the same way.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use eddy_core::element::StreamRecord;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::metrics::MetricGroup;
use crate::operator::TaskInfo;

/// Whether a source ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundedness {
    /// The source ends after a finite number of records.
    Bounded,
    /// The source runs until the job is cancelled.
    ContinuousUnbounded,
}

/// A unit of work for a reader. Its state (position) is checkpointed.
pub trait SourceSplit: Serialize + DeserializeOwned + Clone + Debug + Send + 'static {
    /// A stable identifier, unique within the source.
    fn split_id(&self) -> String;
}

/// What [`SourceReader::poll_next`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputStatus {
    /// More records can be read at once.
    MoreAvailable,
    /// Nothing right now; the task waits briefly (or until [`SourceReader::wait_available`]
    /// returns) before polling again.
    NothingAvailable,
    /// The reader's splits are exhausted and no more will come.
    EndOfInput,
}

/// What a reader is told about its subtask.
#[derive(Clone)]
pub struct SourceReaderContext {
    /// The subtask.
    pub task_info: Arc<TaskInfo>,
    /// The source operator's metric group.
    pub metrics: MetricGroup,
    /// Records per batch; readers should return after emitting about this many.
    pub batch_size: usize,
}

/// The records a reader emits during one `poll_next`.
pub struct ReaderOutput<T> {
    pub(crate) batch: Vec<StreamRecord<T>>,
    pub(crate) batch_size: usize,
}

impl<T> ReaderOutput<T> {
    /// An output that holds batches of `batch_size` records.
    pub fn new(batch_size: usize) -> Self {
        ReaderOutput {
            batch: Vec::with_capacity(batch_size),
            batch_size,
        }
    }

    /// Emits a record without a timestamp.
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.batch.push(StreamRecord::new(value));
    }

    /// Emits a record with an event timestamp (ms).
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, timestamp: i64) {
        self.batch
            .push(StreamRecord::with_timestamp(value, timestamp));
    }

    /// Whether the reader has emitted a batch's worth and should return.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.batch.len() >= self.batch_size
    }

    /// How many more records fit in this batch.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.batch_size.saturating_sub(self.batch.len())
    }

    /// Takes the records emitted so far.
    pub fn take(&mut self) -> Vec<StreamRecord<T>> {
        std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size))
    }
}

/// Reads the splits assigned to one subtask.
pub trait SourceReader<T> {
    /// The split type.
    type Split: SourceSplit;

    /// Called once before the first `poll_next`.
    fn start(&mut self) -> Result<()> {
        Ok(())
    }

    /// Adds splits to read.
    fn add_splits(&mut self, splits: Vec<Self::Split>) -> Result<()>;

    /// No more splits will be added: once the current ones are done, return `EndOfInput`.
    fn notify_no_more_splits(&mut self) {}

    /// Emits available records (about `output.remaining()` of them at most) and says what is
    /// left. Must not block for long: at most a few tens of milliseconds.
    fn poll_next(&mut self, output: &mut ReaderOutput<T>) -> Result<InputStatus>;

    /// After `NothingAvailable`: waits at most `timeout` for more data. The default sleeps a
    /// little; readers with a real readiness signal block on it instead.
    fn wait_available(&mut self, timeout: Duration) {
        std::thread::sleep(timeout.min(Duration::from_millis(5)));
    }

    /// The current state of every unfinished split, for a checkpoint.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<Self::Split>> {
        Ok(Vec::new())
    }

    /// A checkpoint completed (e.g. commit offsets to Kafka).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// Releases resources.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A parallel source of records of type `T`.
pub trait Source<T>: Send + Sync + 'static {
    /// The split type.
    type Split: SourceSplit;
    /// The reader type.
    type Reader: SourceReader<T, Split = Self::Split>;

    /// Whether the source ends.
    fn boundedness(&self) -> Boundedness;

    /// Every split of the source, in a deterministic order. `parallelism` is the source's
    /// parallelism, for sources that split work by it.
    fn enumerate_splits(&self, parallelism: u32) -> Result<Vec<Self::Split>>;

    /// A reader for one subtask.
    fn create_reader(&self, ctx: &SourceReaderContext) -> Result<Self::Reader>;
}

/// The splits subtask `index` of `parallelism` reads from `splits`.
pub fn assign_splits<S>(splits: Vec<S>, index: u32, parallelism: u32) -> Vec<S> {
    splits
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (*i as u32) % parallelism.max(1) == index)
        .map(|(_, s)| s)
        .collect()
}
