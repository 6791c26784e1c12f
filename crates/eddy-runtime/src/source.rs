//! The source interface, after Flink's FLIP-27: a source is split into *splits* (a file range,
//! a Kafka partition, a range of a sequence), and each parallel *reader* reads the splits it is
//! assigned.
//!
//! Splits are assigned deterministically: every reader subtask enumerates the same splits in
//! the same order and takes its share, by default those whose position modulo the parallelism
//! is its index ([`Source::assign_splits`]). That needs no coordinator process that would have
//! to run user code, and it gives the same assignment on every worker of a cluster. A reader's
//! splits, with their positions, are its checkpoint state; on restore every subtask sees the
//! union of the checkpointed splits and takes back its own, or, at another parallelism, its
//! share dealt the same way as at the start. A source whose splits appear while it runs (new
//! Kafka partitions) assigns them by a function of the split alone, so that each new split has
//! exactly one owner.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use eddy_core::element::{NO_TIMESTAMP, StreamRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::metrics::MetricGroup;
use crate::operator::TaskInfo;
use crate::watermark::{SplitWatermarks, WatermarkEvent, WatermarkStrategy};

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

/// What a reader emitted, in order: batches of records and watermark changes.
#[derive(Debug)]
pub enum Emitted<T> {
    /// Records.
    Records(Vec<StreamRecord<T>>),
    /// A watermark or a status change.
    Watermark(WatermarkEvent),
}

/// The records a reader emits during one `poll_next`. When the source has a watermark strategy,
/// the output assigns timestamps and runs one watermark generator per split; a watermark that
/// an event produces follows that event.
pub struct ReaderOutput<T> {
    batch: Vec<StreamRecord<T>>,
    batch_size: usize,
    /// At most `batch_size`: what the task's chain handles in about a millisecond.
    limit: usize,
    pending: Vec<Emitted<T>>,
    pending_records: usize,
    watermarks: Option<SplitWatermarks<T>>,
}

impl<T: 'static> ReaderOutput<T> {
    /// An output that holds batches of `batch_size` records.
    pub fn new(batch_size: usize) -> Self {
        ReaderOutput {
            batch: Vec::with_capacity(batch_size),
            batch_size,
            limit: batch_size,
            pending: Vec::new(),
            pending_records: 0,
            watermarks: None,
        }
    }

    /// An output that assigns timestamps and generates watermarks with `strategy`.
    pub fn with_watermarks(batch_size: usize, strategy: WatermarkStrategy<T>) -> Self {
        let mut out = Self::new(batch_size);
        if strategy.generates_watermarks() || strategy.assigns_timestamps() {
            out.watermarks = Some(SplitWatermarks::new(strategy));
        }
        out
    }

    /// Emits a record without a source timestamp.
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.collect_with_timestamp(value, NO_TIMESTAMP);
    }

    /// Emits a record with the timestamp the source knows for it (ms), which the watermark
    /// strategy's timestamp assigner may replace.
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, timestamp: i64) {
        let Some(wm) = self.watermarks.as_mut() else {
            self.batch
                .push(StreamRecord::with_timestamp(value, timestamp));
            return;
        };
        let ts = wm.strategy().timestamp(&value, timestamp);
        let event = wm.on_event(&value, ts);
        self.batch.push(StreamRecord::with_timestamp(value, ts));
        if let Some(event) = event {
            self.push_event(event);
        }
    }

    /// Attributes the records that follow to `split_id`, which gets a watermark generator of its
    /// own.
    pub fn set_current_split(&mut self, split_id: &str) {
        if let Some(wm) = self.watermarks.as_mut() {
            wm.set_current_split(split_id);
        }
    }

    /// `split_id` is finished and no longer holds back the watermark.
    pub fn release_split(&mut self, split_id: &str) {
        if let Some(event) = self
            .watermarks
            .as_mut()
            .and_then(|w| w.release_split(split_id))
        {
            self.push_event(event);
        }
    }

    /// Asks every generator for a periodic watermark.
    pub(crate) fn emit_periodic_watermark(&mut self) {
        if let Some(event) = self.watermarks.as_mut().and_then(|w| w.on_periodic_emit()) {
            self.push_event(event);
        }
    }

    /// Asks for at most `limit` records per poll (at most the batch size).
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit.clamp(1, self.batch_size.max(1));
    }

    /// Whether a watermark strategy runs here.
    pub(crate) fn has_watermarks(&self) -> bool {
        self.watermarks.is_some()
    }

    fn push_event(&mut self, event: WatermarkEvent) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.limit));
            self.pending_records += batch.len();
            self.pending.push(Emitted::Records(batch));
        }
        self.pending.push(Emitted::Watermark(event));
    }

    /// Everything emitted so far, in order.
    pub fn drain(&mut self) -> Vec<Emitted<T>> {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.limit));
            self.pending.push(Emitted::Records(batch));
        }
        self.pending_records = 0;
        std::mem::take(&mut self.pending)
    }

    /// Whether the reader has emitted a batch's worth and should return.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.batch.len() + self.pending_records >= self.limit
    }

    /// How many more records fit in this batch.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.limit
            .saturating_sub(self.batch.len() + self.pending_records)
    }

    /// Takes the records emitted so far (ignoring watermarks): for tests of readers.
    pub fn take_records(&mut self) -> Vec<StreamRecord<T>> {
        self.drain()
            .into_iter()
            .flat_map(|e| match e {
                Emitted::Records(r) => r,
                Emitted::Watermark(_) => Vec::new(),
            })
            .collect()
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

    /// The share of `splits` that subtask `index` of `parallelism` reads: `splits` holds every
    /// split of the source at the start, and on restore at another parallelism the union of the
    /// splits all subtasks checkpointed ([`restore_splits`]). The shares must be disjoint and
    /// together cover `splits`. The default deals the splits out by position.
    fn assign_splits(
        &self,
        splits: Vec<Self::Split>,
        index: u32,
        parallelism: u32,
    ) -> Vec<Self::Split> {
        assign_splits(splits, index, parallelism)
    }
}

/// A split as checkpointed: with the subtask that read it and the parallelism then.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct CheckpointedSplit<S> {
    /// The subtask that was reading the split.
    pub subtask: u32,
    /// The source's parallelism at the checkpoint.
    pub parallelism: u32,
    /// The split, with its position.
    pub split: S,
}

/// The splits subtask `index` of `parallelism` takes on restore, out of every subtask's
/// checkpointed splits. At the same parallelism each subtask takes back its own: a subtask
/// that had finished stays finished (it does not run again), so none of another's splits may
/// move to it. At another parallelism no subtask restores as finished unless all had, and the
/// source deals the union out.
pub fn restore_splits<T, S: Source<T>>(
    source: &S,
    checkpointed: Vec<CheckpointedSplit<S::Split>>,
    index: u32,
    parallelism: u32,
) -> Vec<S::Split> {
    if checkpointed.iter().all(|c| c.parallelism == parallelism) {
        checkpointed
            .into_iter()
            .filter(|c| c.subtask == index)
            .map(|c| c.split)
            .collect()
    } else {
        let all = checkpointed.into_iter().map(|c| c.split).collect();
        source.assign_splits(all, index, parallelism)
    }
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
