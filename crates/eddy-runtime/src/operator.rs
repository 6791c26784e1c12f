//! The operator traits: small, with default hooks.
//!
//! An operator receives whole batches of records ([`OneInputOperator::process_batch`]) and
//! writes to an [`Output`]. Everything else — watermarks, timers, snapshots, the end of input —
//! has a default that does the obvious thing, so a stateless operator implements one method.
//!
//! Operators are created inside their task's thread and never move between threads, so they
//! need not be `Send`; they may hold `Rc`s to state shared with their context.

use std::any::Any;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::Arc;

use eddy_core::config::Configuration;
use eddy_core::element::{LatencyMarker, StreamRecord, Watermark, WatermarkStatus};
use eddy_core::graph::ExecutionMode;
use eddy_core::ids::{JobId, OperatorId};

use crate::accumulators::Accumulators;
use crate::error::Result;
use crate::metrics::MetricGroup;
use crate::state::StateContext;

/// Where an operator writes its results.
///
/// Implementations are the next operator in the chain, a fan-out to several, or a network
/// writer. All methods return an error when something downstream failed; operators pass it on
/// with `?`.
pub trait Output<T> {
    /// Emits a batch of records, in order.
    fn collect(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()>;

    /// Emits a watermark.
    fn emit_watermark(&mut self, watermark: Watermark) -> Result<()>;

    /// Emits a change of watermark status (idle / active).
    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> Result<()>;

    /// Forwards a latency marker.
    fn emit_latency_marker(&mut self, marker: LatencyMarker) -> Result<()>;

    /// Emits records to the side output named `tag`. `records` is a `Vec<StreamRecord<X>>` for
    /// the tag's type `X`. Records for a tag nobody consumes are dropped, as in Flink.
    fn collect_side(&mut self, tag: &str, records: Box<dyn Any>) -> Result<()>;
}

/// Static facts about the subtask an operator runs in (Flink's `TaskInfo`).
#[derive(Clone, Debug)]
pub struct TaskInfo {
    /// The job's id.
    pub job_id: JobId,
    /// The job's name.
    pub job_name: String,
    /// The task's (vertex's) name, e.g. `Map -> Sink: Print to Std. Out`.
    pub task_name: String,
    /// 0-based index of this subtask.
    pub subtask_index: u32,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Restart attempt, starting at 0.
    pub attempt_number: u32,
}

impl TaskInfo {
    /// `Task Name (i/n)#attempt`, as Flink names a subtask.
    pub fn task_name_with_subtask(&self) -> String {
        format!(
            "{} ({}/{})#{}",
            self.task_name,
            self.subtask_index + 1,
            self.parallelism,
            self.attempt_number
        )
    }
}

/// Registered timers of a task: `(time, operator index)`, earliest first.
type TimerQueue = Rc<RefCell<BinaryHeap<Reverse<(i64, usize)>>>>;

/// Processing-time timers of one task. Each operator registers through its own handle; the
/// task thread fires due timers between batches and sleeps no longer than the next one.
#[derive(Clone, Default)]
pub struct ProcessingTimeService {
    queue: TimerQueue,
    operator_index: usize,
}

impl ProcessingTimeService {
    /// The handle for the operator at `operator_index` in the chain.
    pub fn for_operator(&self, operator_index: usize) -> Self {
        ProcessingTimeService {
            queue: self.queue.clone(),
            operator_index,
        }
    }

    /// The current processing time in ms since the epoch.
    pub fn current_processing_time(&self) -> i64 {
        eddy_core::time::now_millis()
    }

    /// Calls the operator's `on_processing_time(time)` once the wall clock reaches `time`.
    pub fn register_timer(&self, time: i64) {
        self.queue
            .borrow_mut()
            .push(Reverse((time, self.operator_index)));
    }

    /// The earliest registered timer, if any.
    pub fn next_timer(&self) -> Option<i64> {
        self.queue.borrow().peek().map(|Reverse((t, _))| *t)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    pub fn poll_due(&self, now: i64) -> Option<(i64, usize)> {
        let mut q = self.queue.borrow_mut();
        match q.peek() {
            Some(Reverse((t, _))) if *t <= now => q.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

/// Everything an operator may use at runtime, handed to [`OneInputOperator::open`].
pub struct OperatorContext {
    /// The subtask.
    pub task_info: Arc<TaskInfo>,
    /// The operator's display name.
    pub operator_name: String,
    /// The operator's stable id.
    pub operator_id: OperatorId,
    /// The operator's position in its chain.
    pub operator_index: usize,
    /// The operator's metric group.
    pub metrics: MetricGroup,
    /// Processing-time timers.
    pub timer_service: ProcessingTimeService,
    /// Accumulators, merged over all subtasks when the job ends.
    pub accumulators: Accumulators,
    /// The job's configuration.
    pub config: Arc<Configuration>,
    /// Streaming or batch.
    pub execution_mode: ExecutionMode,
    /// Operator and keyed state, restored from a snapshot when there is one.
    pub state: StateContext,
}

/// An operator with one input (map, filter, keyed reduce, sink, ...).
pub trait OneInputOperator<IN, OUT> {
    /// Called once before the first record, after every downstream operator in the chain has
    /// been opened.
    fn open(&mut self, _ctx: &mut OperatorContext) -> Result<()> {
        Ok(())
    }

    /// Processes a batch of records.
    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<IN>>,
        out: &mut dyn Output<OUT>,
    ) -> Result<()>;

    /// Processes a watermark. The default forwards it.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<OUT>) -> Result<()> {
        out.emit_watermark(watermark)
    }

    /// Processes a watermark status change. The default forwards it.
    fn process_watermark_status(
        &mut self,
        status: WatermarkStatus,
        out: &mut dyn Output<OUT>,
    ) -> Result<()> {
        out.emit_watermark_status(status)
    }

    /// A processing-time timer registered through the context fired.
    fn on_processing_time(&mut self, _time: i64, _out: &mut dyn Output<OUT>) -> Result<()> {
        Ok(())
    }

    /// Writes the operator's state for checkpoint `checkpoint_id`.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// Checkpoint `checkpoint_id` completed: effects prepared for it may be committed.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// Checkpoint `checkpoint_id` was aborted.
    fn notify_checkpoint_aborted(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// All input has been consumed: emit whatever is still buffered (Flink's `finish`).
    fn finish(&mut self, _out: &mut dyn Output<OUT>) -> Result<()> {
        Ok(())
    }

    /// Releases resources. Called after `finish` on success and also after a failure.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// An operator with two inputs of different types (connect, joins, co-process).
pub trait TwoInputOperator<IN1, IN2, OUT> {
    /// Called once before the first record.
    fn open(&mut self, _ctx: &mut OperatorContext) -> Result<()> {
        Ok(())
    }

    /// Processes a batch from the first input.
    fn process_batch1(
        &mut self,
        batch: Vec<StreamRecord<IN1>>,
        out: &mut dyn Output<OUT>,
    ) -> Result<()>;

    /// Processes a batch from the second input.
    fn process_batch2(
        &mut self,
        batch: Vec<StreamRecord<IN2>>,
        out: &mut dyn Output<OUT>,
    ) -> Result<()>;

    /// Processes the combined watermark (the minimum over both inputs). The default forwards it.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<OUT>) -> Result<()> {
        out.emit_watermark(watermark)
    }

    /// A processing-time timer fired.
    fn on_processing_time(&mut self, _time: i64, _out: &mut dyn Output<OUT>) -> Result<()> {
        Ok(())
    }

    /// Writes the operator's state.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// Checkpoint completed.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// One input (1 or 2) has ended.
    fn end_input(&mut self, _input: u8, _out: &mut dyn Output<OUT>) -> Result<()> {
        Ok(())
    }

    /// Both inputs have ended.
    fn finish(&mut self, _out: &mut dyn Output<OUT>) -> Result<()> {
        Ok(())
    }

    /// Releases resources.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
