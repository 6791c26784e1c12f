//! Tasks: one thread per chained subtask, running a loop over its inputs and its mailbox.
//!
//! A task reads elements from its input gate(s), hands records to the head of its chain, keeps
//! track of watermarks per channel ([`WatermarkValve`]), fires processing-time timers, flushes
//! its output buffers when the buffer timeout passes, and reacts to mailbox messages
//! (cancellation, checkpoint notifications). A source task polls its reader instead of gates.

mod checkpointing;
mod one_input;
mod pacer;
mod source;
mod two_input;
mod valve;

pub use checkpointing::{SnapshotTargets, SubtaskCheckpointStats, TaskCheckpointing, TaskReporter};
pub use one_input::OneInputTask;
pub use source::SourceTask;
pub use two_input::TwoInputTask;
pub use valve::WatermarkValve;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use eddy_core::element::{CheckpointBarrier, StopMode};
use eddy_core::graph::ExecutionMode;

use crate::chain::ChainOutput;
use crate::error::{Result, RuntimeError};
use crate::exchange::TaskSignals;
use crate::metrics::TaskTimeMetrics;
use crate::operator::{ProcessingTimeService, TaskInfo};

/// A message to a running task.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum TaskMessage {
    /// Stop as soon as possible.
    Cancel,
    /// Take a snapshot and send the barrier downstream (sent to source tasks).
    TriggerCheckpoint(CheckpointBarrier),
    /// A stop-with-savepoint is starting: when the input ends, wait for the savepoint before
    /// exiting (even without periodic checkpoints).
    PrepareStop,
    /// A checkpoint completed.
    NotifyCheckpointComplete(u64),
    /// A checkpoint was aborted.
    NotifyCheckpointAborted(u64),
}

/// A task ready to run on its thread.
pub trait StreamTask {
    /// Runs until the input ends, the task fails, or it is cancelled.
    fn run(self: Box<Self>) -> Result<()>;
}

/// Everything the runtime hands a task besides its operators and channels.
pub struct TaskEnv {
    /// The subtask.
    pub info: Arc<TaskInfo>,
    /// Control messages.
    pub mailbox: Receiver<TaskMessage>,
    /// Cancellation flag and back-pressure gauge, shared with the writers.
    pub signals: Arc<TaskSignals>,
    /// Processing-time timers of the chain's operators.
    pub timers: ProcessingTimeService,
    /// Set by writers when records wait in a buffer.
    pub dirty: Rc<Cell<bool>>,
    /// `execution.buffer-timeout.interval`, or `None` to flush only full buffers.
    pub buffer_timeout: Option<Duration>,
    /// Idle and back-pressured time.
    pub time_metrics: TaskTimeMetrics,
    /// `pipeline.auto-watermark-interval`, or `None` when periodic watermarks are off.
    pub auto_watermark_interval: Option<Duration>,
    /// Streaming or batch.
    pub mode: ExecutionMode,
    /// Records per batch for the head's output.
    pub batch_size: usize,
    /// Checkpoints, snapshots and how the task ends.
    pub checkpointing: TaskCheckpointing,
}

/// Flushes output buffers when the buffer timeout has passed since the last flush; with a
/// timeout of 0, after every batch the task handles (the records of one batch became available
/// together, and batches are kept to about a millisecond of work by the pacer).
pub(crate) struct FlushTimer {
    interval: Option<Duration>,
    next: Instant,
    dirty: Rc<Cell<bool>>,
}

impl FlushTimer {
    pub(crate) fn new(interval: Option<Duration>, dirty: Rc<Cell<bool>>) -> Self {
        FlushTimer {
            interval,
            next: Instant::now() + interval.unwrap_or_default(),
            dirty,
        }
    }

    /// The next time a flush is due, if records are waiting.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.interval {
            Some(_) if self.dirty.get() => Some(self.next),
            _ => None,
        }
    }

    /// Flushes `chain` if the timeout has passed and records are waiting.
    #[inline]
    pub(crate) fn maybe_flush<T>(&mut self, chain: &mut dyn ChainOutput<T>) -> Result<()> {
        if let Some(interval) = self.interval
            && self.dirty.get()
        {
            let now = Instant::now();
            if now >= self.next {
                self.dirty.set(false);
                self.next = now + interval;
                chain.flush()?;
            }
        }
        Ok(())
    }
}

/// The next mailbox message, if any; cancellation (or a vanished job master) is an error.
pub(crate) fn next_message(env: &TaskEnv) -> Result<Option<TaskMessage>> {
    match env.mailbox.try_recv() {
        Ok(TaskMessage::Cancel) | Err(TryRecvError::Disconnected) => Err(RuntimeError::Cancelled),
        Ok(m) => Ok(Some(m)),
        Err(TryRecvError::Empty) => {
            if env.signals.is_cancelled() {
                return Err(RuntimeError::Cancelled);
            }
            Ok(None)
        }
    }
}

/// Which input channels have delivered end-of-data, and how.
pub(crate) struct InputEnds {
    ended: Vec<Option<StopMode>>,
    count: usize,
}

impl InputEnds {
    pub(crate) fn new(num_channels: usize) -> Self {
        InputEnds {
            ended: vec![None; num_channels],
            count: 0,
        }
    }

    /// Records that `channel` ended; returns false if it had already.
    pub(crate) fn set(&mut self, channel: usize, mode: StopMode) -> bool {
        if self.ended[channel].is_some() {
            return false;
        }
        self.ended[channel] = Some(mode);
        self.count += 1;
        true
    }

    /// Whether some channel has ended.
    pub(crate) fn any_ended(&self) -> bool {
        self.count > 0
    }

    /// Whether `channel` has ended.
    pub(crate) fn is_ended(&self, channel: usize) -> bool {
        self.ended[channel].is_some()
    }

    /// How the channels in `range` ended, once all have: `Drain` only if every one drained.
    pub(crate) fn all_ended(&self, range: std::ops::Range<usize>) -> Option<StopMode> {
        let mut mode = StopMode::Drain;
        for c in range {
            match self.ended[c]? {
                StopMode::Drain => {}
                StopMode::NoDrain => mode = StopMode::NoDrain,
            }
        }
        Some(mode)
    }

    /// Number of channels.
    pub(crate) fn len(&self) -> usize {
        self.ended.len()
    }
}

/// Fires every due processing-time timer of the chain.
pub(crate) fn fire_timers<T>(
    timers: &ProcessingTimeService,
    chain: &mut dyn ChainOutput<T>,
) -> Result<()> {
    if timers.next_timer().is_none() {
        return Ok(());
    }
    let now = eddy_core::time::now_millis();
    while let Some((time, op)) = timers.poll_due(now) {
        chain.on_processing_time(op, time)?;
    }
    Ok(())
}

/// The instant at which the next processing-time timer is due.
pub(crate) fn timer_deadline(timers: &ProcessingTimeService) -> Option<Instant> {
    timers.next_timer().map(|t| {
        let wait = t.saturating_sub(eddy_core::time::now_millis()).max(0) as u64;
        Instant::now() + Duration::from_millis(wait)
    })
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Ends a chain's data: with `Drain` (and `finish`), finishes every operator; then flushes and
/// sends end-of-data downstream, and records the end.
pub(crate) fn end_chain_data<T>(
    chain: &mut dyn ChainOutput<T>,
    checkpointing: &mut TaskCheckpointing,
    mode: StopMode,
    finish: bool,
) -> Result<()> {
    if checkpointing.ended().is_some() {
        return Ok(());
    }
    if finish && mode == StopMode::Drain {
        chain.end_input()?;
    }
    chain.flush()?;
    chain.emit_end_of_data(mode)?;
    checkpointing.set_ended(mode);
    Ok(())
}

/// Takes a checkpoint for `barrier`: the operators' hooks, the barrier downstream, then the
/// snapshot of their state.
pub(crate) fn checkpoint_chain<T>(
    chain: &mut dyn ChainOutput<T>,
    env: &mut TaskEnv,
    barrier: CheckpointBarrier,
    alignment: Duration,
) -> Result<()> {
    let started = Instant::now();
    chain.snapshot_state(barrier.id)?;
    let hooks = started.elapsed();
    chain.emit_barrier(barrier)?;
    env.checkpointing
        .snapshot(&env.info, barrier, alignment, hooks)
}

/// Sends end-of-partition once the task may exit; returns whether it has been sent.
pub(crate) fn maybe_end_partition<T>(
    chain: &mut dyn ChainOutput<T>,
    env: &TaskEnv,
    sent: &mut bool,
) -> Result<bool> {
    if !*sent && env.checkpointing.may_exit() {
        chain.flush()?;
        chain.emit_end_of_partition()?;
        *sent = true;
    }
    Ok(*sent)
}
