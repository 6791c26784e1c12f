//! The sink interface, after Flink's Sink V2: a [`Sink`] creates one [`SinkWriter`] per
//! parallel subtask.
//!
//! A writer that only implements `write` and `flush` is *at-least-once*: it flushes at every
//! checkpoint, so nothing acknowledged is lost, but records written after the last completed
//! checkpoint are written again after a failure. A [`TwoPhaseCommittingSink`] is
//! *exactly-once*: its writers pre-commit at each checkpoint barrier and its committer makes
//! the data visible only when the checkpoint completes.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use eddy_core::element::{StreamRecord, Watermark};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::metrics::MetricGroup;
use crate::operator::{OneInputOperator, OperatorContext, Output, TaskInfo};
use crate::state::{ListStateDescriptor, OperatorListState};

/// What a writer is told about its subtask.
#[derive(Clone)]
pub struct SinkWriterContext {
    /// The subtask.
    pub task_info: Arc<TaskInfo>,
    /// The sink operator's metric group.
    pub metrics: MetricGroup,
    /// Whether the job takes periodic checkpoints (two-phase sinks then commit at each one;
    /// without them they may make data visible as they go).
    pub checkpointing: bool,
    /// The job's configuration.
    pub config: Arc<eddy_core::config::Configuration>,
}

impl SinkWriterContext {
    fn from_operator(ctx: &OperatorContext) -> Result<Self> {
        Ok(SinkWriterContext {
            task_info: ctx.task_info.clone(),
            metrics: ctx.metrics.clone(),
            checkpointing: ctx
                .config
                .get_optional(&eddy_core::config::options::CHECKPOINTING_INTERVAL)?
                .is_some_and(|d| !d.is_zero()),
            config: ctx.config.clone(),
        })
    }

    /// Whether this subtask removes, in
    /// [`abort_leftovers`](TwoPhaseCommittingSink::abort_leftovers), what an earlier attempt of
    /// subtask `subtask` left: its own, and for subtask 0 those of subtasks that no longer
    /// exist.
    pub fn cleans_up_after(&self, subtask: u32) -> bool {
        let index = self.task_info.subtask_index;
        subtask == index || (index == 0 && subtask >= self.task_info.parallelism)
    }
}

/// Writes the records of one subtask.
pub trait SinkWriter<T> {
    /// Writes one record.
    fn write(&mut self, value: T, timestamp: Option<i64>) -> Result<()>;

    /// Writes a batch of records; the default writes them one by one.
    fn write_batch(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()> {
        for r in batch {
            let ts = r.timestamp();
            self.write(r.value, ts)?;
        }
        Ok(())
    }

    /// Makes everything written so far durable (or visible). Called at every checkpoint and,
    /// with `end_of_input`, when the input has ended.
    fn flush(&mut self, end_of_input: bool) -> Result<()>;

    /// A watermark reached the sink.
    fn write_watermark(&mut self, _watermark: Watermark) -> Result<()> {
        Ok(())
    }

    /// Releases resources.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A parallel sink of records of type `T`.
pub trait Sink<T>: Send + Sync + 'static {
    /// The writer type.
    type Writer: SinkWriter<T>;

    /// A writer for one subtask.
    fn create_writer(&self, ctx: &SinkWriterContext) -> Result<Self::Writer>;
}

/// The operator that drives a sink's writer.
pub struct SinkOperator<T, S: Sink<T>> {
    sink: Arc<S>,
    writer: Option<S::Writer>,
    _t: PhantomData<fn(T)>,
}

impl<T, S: Sink<T>> SinkOperator<T, S> {
    /// An operator writing to `sink`.
    pub fn new(sink: Arc<S>) -> Self {
        SinkOperator {
            sink,
            writer: None,
            _t: PhantomData,
        }
    }

    fn writer(&mut self) -> Result<&mut S::Writer> {
        self.writer
            .as_mut()
            .ok_or_else(|| crate::RuntimeError::Internal("sink used before open".into()))
    }
}

impl<T, S: Sink<T>> OneInputOperator<T, ()> for SinkOperator<T, S> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let wctx = SinkWriterContext::from_operator(ctx)?;
        self.writer = Some(self.sink.create_writer(&wctx)?);
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        _out: &mut dyn Output<()>,
    ) -> Result<()> {
        self.writer()?.write_batch(batch)
    }

    fn process_watermark(&mut self, watermark: Watermark, _out: &mut dyn Output<()>) -> Result<()> {
        self.writer()?.write_watermark(watermark)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<()> {
        self.writer()?.flush(false)
    }

    fn finish(&mut self, _out: &mut dyn Output<()>) -> Result<()> {
        self.writer()?.flush(true)
    }

    fn close(&mut self) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.close(),
            None => Ok(()),
        }
    }
}

/// A writer that takes part in checkpoints with two-phase commit: what it writes between two
/// checkpoints becomes visible only when the later one completes.
pub trait CommittingSinkWriter<T>: SinkWriter<T> {
    /// What the committer needs to make prepared data visible (a file to rename, a
    /// transaction to commit). Committables are stored in checkpoints.
    type Committable: Serialize + DeserializeOwned + Clone + Send + 'static;

    /// Prepares everything written since the last call for commit, and returns what commits
    /// it. Called at every checkpoint barrier (the *pre-commit*).
    fn prepare_commit(&mut self) -> Result<Vec<Self::Committable>>;
}

/// Makes prepared data visible.
pub trait Committer<C> {
    /// Commits `committables`. Must be idempotent: after a failure, committables of the
    /// restored checkpoint are committed again, and some may have been committed before.
    fn commit(&mut self, committables: Vec<C>) -> Result<()>;
}

/// A sink with exactly-once output through two-phase commit (Flink's
/// `TwoPhaseCommittingSink`): writers pre-commit at each checkpoint barrier; the committer
/// commits when the checkpoint completes; after a failure, restored committables are committed
/// again and everything else the failed attempt wrote is aborted.
///
/// Without checkpoints, data is committed when the input ends.
pub trait TwoPhaseCommittingSink<T>: Send + Sync + 'static {
    /// The writer type.
    type Writer: CommittingSinkWriter<T>;
    /// The committer type.
    type Committer: Committer<<Self::Writer as CommittingSinkWriter<T>>::Committable>;

    /// A writer for one subtask. After a restore, `restored` holds every committable of the
    /// restored checkpoint, of every subtask, which their committers commit while writers
    /// start: a sink whose writers reuse transaction names must leave these alone.
    fn create_writer(
        &self,
        ctx: &SinkWriterContext,
        restored: &[<Self::Writer as CommittingSinkWriter<T>>::Committable],
    ) -> Result<Self::Writer>;

    /// A committer for one subtask.
    fn create_committer(&self, ctx: &SinkWriterContext) -> Result<Self::Committer>;

    /// After a restore, removes what earlier attempts of this subtask left behind that none of
    /// `restored` (every committable of the restored checkpoint) refers to: files or
    /// transactions of an aborted attempt. Subtask 0 also removes what subtasks that no longer
    /// exist (index at or above the parallelism) left. Called by every restored subtask before
    /// its writer writes, so that a subtask restarted alone (region failover) leaves the
    /// running subtasks' work alone.
    fn abort_leftovers(
        &self,
        _ctx: &SinkWriterContext,
        _restored: &[<Self::Writer as CommittingSinkWriter<T>>::Committable],
    ) -> Result<()> {
        Ok(())
    }
}

/// The operator state holding a two-phase sink's pending committables.
pub const COMMITTABLES_STATE: &str = "_sink-committables";

/// A committable waiting for its checkpoint to complete, with the subtask that prepared it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct PendingCommittable<C> {
    checkpoint_id: u64,
    /// The subtask that prepared it, and the sink's parallelism then.
    subtask: u32,
    parallelism: u32,
    committable: C,
}

/// Whether the restored subtask `index` of `parallelism` commits `c` again: each subtask its
/// own, or subtask 0 all of them when the parallelism changed.
fn commits_again<C>(c: &PendingCommittable<C>, index: u32, parallelism: u32) -> bool {
    if c.parallelism == parallelism {
        c.subtask == index
    } else {
        index == 0
    }
}

/// Drives a [`TwoPhaseCommittingSink`]: writes, pre-commits at every snapshot, commits when a
/// checkpoint completes.
pub struct CommittingSinkOperator<T, S: TwoPhaseCommittingSink<T>> {
    sink: Arc<S>,
    writer: Option<S::Writer>,
    committer: Option<S::Committer>,
    /// Committables per checkpoint, not yet committed.
    pending: BTreeMap<u64, Vec<Committable<T, S>>>,
    state: Option<OperatorListState<PendingCommittable<Committable<T, S>>>>,
    /// This subtask's index and the sink's parallelism.
    subtask: (u32, u32),
    checkpointing: bool,
    _t: PhantomData<fn(T)>,
}

type Committable<T, S> =
    <<S as TwoPhaseCommittingSink<T>>::Writer as CommittingSinkWriter<T>>::Committable;

impl<T, S: TwoPhaseCommittingSink<T>> CommittingSinkOperator<T, S> {
    /// An operator writing to `sink`.
    pub fn new(sink: Arc<S>) -> Self {
        CommittingSinkOperator {
            sink,
            writer: None,
            committer: None,
            pending: BTreeMap::new(),
            state: None,
            subtask: (0, 1),
            checkpointing: false,
            _t: PhantomData,
        }
    }

    fn writer(&mut self) -> Result<&mut S::Writer> {
        self.writer
            .as_mut()
            .ok_or_else(|| crate::RuntimeError::Internal("sink used before open".into()))
    }

    fn commit_up_to(&mut self, checkpoint_id: u64) -> Result<()> {
        let later = match checkpoint_id.checked_add(1) {
            Some(next) => self.pending.split_off(&next),
            None => BTreeMap::new(),
        };
        let due: Vec<_> = std::mem::replace(&mut self.pending, later)
            .into_values()
            .flatten()
            .collect();
        if !due.is_empty()
            && let Some(c) = self.committer.as_mut()
        {
            c.commit(due)?;
        }
        self.store_pending();
        Ok(())
    }

    fn store_pending(&self) {
        let (subtask, parallelism) = self.subtask;
        if let Some(state) = &self.state {
            state.update(
                self.pending
                    .iter()
                    .flat_map(|(id, cs)| {
                        cs.iter().map(move |c| PendingCommittable {
                            checkpoint_id: *id,
                            subtask,
                            parallelism,
                            committable: c.clone(),
                        })
                    })
                    .collect(),
            );
        }
    }
}

impl<T, S: TwoPhaseCommittingSink<T>> OneInputOperator<T, ()> for CommittingSinkOperator<T, S> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let wctx = SinkWriterContext::from_operator(ctx)?;
        self.checkpointing = wctx.checkpointing;
        let state: OperatorListState<PendingCommittable<Committable<T, S>>> = ctx
            .state
            .operator_state()
            .get_union_list_state(&ListStateDescriptor::new(COMMITTABLES_STATE))?;
        let mut committer = self.sink.create_committer(&wctx)?;
        let (index, parallelism) = (ctx.task_info.subtask_index, ctx.task_info.parallelism);
        self.subtask = (index, parallelism);
        // Every subtask restores every committable (union state), commits its own again, and
        // aborts whatever else its failed attempt left; the other subtasks may be running.
        let restored = if ctx.state.is_restored() {
            let all = state.get();
            let own = all
                .iter()
                .filter(|c| commits_again(c, index, parallelism))
                .map(|c| c.committable.clone())
                .collect();
            committer.commit(own)?;
            let restored: Vec<_> = all.into_iter().map(|c| c.committable).collect();
            self.sink.abort_leftovers(&wctx, &restored)?;
            restored
        } else {
            Vec::new()
        };
        state.clear();
        self.state = Some(state);
        self.committer = Some(committer);
        self.writer = Some(self.sink.create_writer(&wctx, &restored)?);
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        _out: &mut dyn Output<()>,
    ) -> Result<()> {
        self.writer()?.write_batch(batch)
    }

    fn process_watermark(&mut self, watermark: Watermark, _out: &mut dyn Output<()>) -> Result<()> {
        self.writer()?.write_watermark(watermark)
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<()> {
        let prepared = self.writer()?.prepare_commit()?;
        if !prepared.is_empty() {
            self.pending.insert(checkpoint_id, prepared);
        }
        self.store_pending();
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.commit_up_to(checkpoint_id)
    }

    fn finish(&mut self, _out: &mut dyn Output<()>) -> Result<()> {
        self.writer()?.flush(true)?;
        if !self.checkpointing {
            // No checkpoint will come: commit everything now.
            let prepared = self.writer()?.prepare_commit()?;
            self.pending.entry(u64::MAX).or_default().extend(prepared);
            self.commit_up_to(u64::MAX)?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.close(),
            None => Ok(()),
        }
    }
}

/// Marks how a sink is driven, so that one `sink_to` accepts both kinds.
pub mod kind {
    /// A sink flushed at checkpoints: at-least-once.
    pub struct AtLeastOnce;
    /// A two-phase-committing sink: exactly-once.
    pub struct ExactlyOnce;
}

/// A sink of either kind, and the operator that drives it.
pub trait SinkOperatorFactory<T, Kind>: Send + Sync + 'static {
    /// The operator.
    type Operator: OneInputOperator<T, ()> + 'static;
    /// The operator for one subtask.
    fn create_operator(sink: &Arc<Self>) -> Self::Operator;
}

impl<T: 'static, S: Sink<T>> SinkOperatorFactory<T, kind::AtLeastOnce> for S {
    type Operator = SinkOperator<T, S>;
    fn create_operator(sink: &Arc<Self>) -> Self::Operator {
        SinkOperator::new(sink.clone())
    }
}

impl<T: 'static, S: TwoPhaseCommittingSink<T>> SinkOperatorFactory<T, kind::ExactlyOnce> for S {
    type Operator = CommittingSinkOperator<T, S>;
    fn create_operator(sink: &Arc<Self>) -> Self::Operator {
        CommittingSinkOperator::new(sink.clone())
    }
}
