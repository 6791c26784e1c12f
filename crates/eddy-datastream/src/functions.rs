//! User functions: the [`Collector`] that flat-map style functions emit into, the
//! [`RuntimeContext`] rich functions receive in `open`, and the rich function traits.
//!
//! Plain closures cover most programs: `map(|x| ...)`, `filter(|x| ...)`. A *rich* function is
//! a struct with per-subtask state and `open` / `close` hooks. Programs pass its constructor
//! (`rich_map(MyFunction::default)`, `process(move || Alert::new(limit))`), which every subtask
//! calls in its own thread: the function may then keep state handles in its fields, as Flink
//! functions do, without being `Send` or `Sync`.

use std::sync::Arc;

use eddy_core::config::Configuration;
use eddy_core::element::StreamRecord;
use eddy_core::graph::ExecutionMode;
use eddy_core::ids::JobId;
use eddy_runtime::accumulators::{
    Accumulators, DoubleCounter, HistogramAccumulator, ListAccumulator, LongCounter,
};
use eddy_runtime::metrics::MetricGroup;
use eddy_runtime::operator::{OperatorContext, TaskInfo};
use eddy_runtime::state::{
    AggregatingState, AggregatingStateDescriptor, KeyedStateBackend, KeyedStateStore, ListState,
    ListStateDescriptor, MapState, MapStateDescriptor, OperatorStateStore, ReducingState,
    ReducingStateDescriptor, ValueState, ValueStateDescriptor,
};
use eddy_runtime::{Result, RuntimeError};

use crate::Data;

/// The error a user function may return; any error type converts into it with `?`.
pub type FunctionError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a fallible user function.
pub type FunctionResult<T> = std::result::Result<T, FunctionError>;

/// A record as it appears in error messages: formatted as Flink prints it, cut to 200
/// characters.
pub(crate) fn describe<T: serde::Serialize>(value: &T) -> String {
    let mut s = String::new();
    eddy_connectors::print::flink_format(value, &mut s);
    if s.chars().count() > 200 {
        s = s.chars().take(200).collect::<String>() + "...";
    }
    s
}

/// Converts a user function's error into a runtime error.
pub(crate) fn user_error(e: FunctionError) -> RuntimeError {
    RuntimeError::User(e.to_string())
}

/// Where a function emits any number of output records. Every record gets the timestamp of the
/// input record being processed, as in Flink.
pub struct Collector<'a, T> {
    pub(crate) out: &'a mut Vec<StreamRecord<T>>,
    pub(crate) timestamp: i64,
}

impl<'a, T> Collector<'a, T> {
    /// A collector appending to `out` with `timestamp`.
    pub fn new(out: &'a mut Vec<StreamRecord<T>>, timestamp: i64) -> Self {
        Collector { out, timestamp }
    }

    /// Emits a record.
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.out.push(StreamRecord {
            value,
            timestamp: self.timestamp,
        });
    }
}

/// What a rich function can see of the runtime (Flink's `RuntimeContext`).
#[derive(Clone)]
pub struct RuntimeContext {
    task_info: Arc<TaskInfo>,
    metrics: MetricGroup,
    accumulators: Accumulators,
    config: Arc<Configuration>,
    mode: ExecutionMode,
    keyed: Option<KeyedStateStore>,
    operator_state: OperatorStateStore,
    restored: bool,
}

impl RuntimeContext {
    /// The context of the operator described by `ctx`, without keyed state.
    pub fn new(ctx: &OperatorContext) -> Self {
        RuntimeContext {
            task_info: ctx.task_info.clone(),
            metrics: ctx.metrics.clone(),
            accumulators: ctx.accumulators.clone(),
            config: ctx.config.clone(),
            mode: ctx.execution_mode,
            keyed: None,
            operator_state: ctx.state.operator_state().clone(),
            restored: ctx.state.is_restored(),
        }
    }

    /// Whether this subtask's state was restored from a checkpoint or savepoint (Flink's
    /// `isRestored`).
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// The context of a keyed operator: state handles are scoped to the current key.
    pub fn keyed(ctx: &OperatorContext, backend: KeyedStateBackend) -> Self {
        let mut rc = Self::new(ctx);
        rc.keyed = Some(KeyedStateStore::new(backend));
        rc
    }

    fn keyed_store(&self) -> Result<&KeyedStateStore> {
        self.keyed.as_ref().ok_or_else(|| {
            RuntimeError::user("keyed state is only available on a keyed stream (after key_by)")
        })
    }

    /// A value state of the current key (Flink's `getState`).
    pub fn get_state<V: Data>(
        &self,
        descriptor: &ValueStateDescriptor<V>,
    ) -> Result<ValueState<V>> {
        self.keyed_store()?.get_state(descriptor)
    }

    /// A list state of the current key.
    pub fn get_list_state<V: Data>(
        &self,
        descriptor: &ListStateDescriptor<V>,
    ) -> Result<ListState<V>> {
        self.keyed_store()?.get_list_state(descriptor)
    }

    /// A map state of the current key.
    pub fn get_map_state<UK, UV>(
        &self,
        descriptor: &MapStateDescriptor<UK, UV>,
    ) -> Result<MapState<UK, UV>>
    where
        UK: Data + std::hash::Hash + Eq,
        UV: Data,
    {
        self.keyed_store()?.get_map_state(descriptor)
    }

    /// A reducing state of the current key.
    pub fn get_reducing_state<V: Data>(
        &self,
        descriptor: &ReducingStateDescriptor<V>,
    ) -> Result<ReducingState<V>> {
        self.keyed_store()?.get_reducing_state(descriptor)
    }

    /// An aggregating state of the current key.
    pub fn get_aggregating_state<IN: 'static, ACC: Data, OUT: 'static>(
        &self,
        descriptor: &AggregatingStateDescriptor<IN, ACC, OUT>,
    ) -> Result<AggregatingState<IN, OUT>> {
        self.keyed_store()?.get_aggregating_state(descriptor)
    }

    /// The operator (non-keyed) state of this subtask: list state and broadcast state.
    pub fn get_operator_state_store(&self) -> &OperatorStateStore {
        &self.operator_state
    }

    /// Facts about this subtask.
    pub fn get_task_info(&self) -> &TaskInfo {
        &self.task_info
    }

    /// The task's name.
    pub fn get_task_name(&self) -> &str {
        &self.task_info.task_name
    }

    /// `Task (i/n)#attempt`.
    pub fn get_task_name_with_subtasks(&self) -> String {
        self.task_info.task_name_with_subtask()
    }

    /// 0-based index of this subtask.
    pub fn get_index_of_this_subtask(&self) -> u32 {
        self.task_info.subtask_index
    }

    /// Number of parallel subtasks.
    pub fn get_number_of_parallel_subtasks(&self) -> u32 {
        self.task_info.parallelism
    }

    /// Number of key groups.
    pub fn get_max_number_of_parallel_subtasks(&self) -> u32 {
        self.task_info.max_parallelism
    }

    /// Restart attempt, from 0.
    pub fn get_attempt_number(&self) -> u32 {
        self.task_info.attempt_number
    }

    /// The job's id.
    pub fn get_job_id(&self) -> JobId {
        self.task_info.job_id
    }

    /// The job's configuration.
    pub fn get_configuration(&self) -> &Configuration {
        &self.config
    }

    /// Streaming or batch.
    pub fn get_execution_mode(&self) -> ExecutionMode {
        self.mode
    }

    /// The operator's metric group, for user counters, gauges, meters and histograms.
    pub fn get_metric_group(&self) -> &MetricGroup {
        &self.metrics
    }

    /// The long-counter accumulator `name` (Flink's `getLongCounter`).
    pub fn get_long_counter(&self, name: &str) -> Result<LongCounter> {
        self.accumulators.long_counter(name)
    }

    /// The double-counter accumulator `name`.
    pub fn get_double_counter(&self, name: &str) -> Result<DoubleCounter> {
        self.accumulators.double_counter(name)
    }

    /// The histogram accumulator `name`.
    pub fn get_histogram(&self, name: &str) -> Result<HistogramAccumulator> {
        self.accumulators.histogram(name)
    }

    /// The list accumulator `name`.
    pub fn get_list_accumulator(&self, name: &str) -> Result<ListAccumulator> {
        self.accumulators.list(name)
    }
}

/// Names a side output and its element type (Flink's `OutputTag`).
pub struct OutputTag<X> {
    id: Arc<str>,
    _x: std::marker::PhantomData<fn() -> X>,
}

impl<X> Clone for OutputTag<X> {
    fn clone(&self) -> Self {
        OutputTag {
            id: self.id.clone(),
            _x: std::marker::PhantomData,
        }
    }
}

impl<X> std::fmt::Debug for OutputTag<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({})", self.id)
    }
}

impl<X> OutputTag<X> {
    /// A tag named `id`; tags are equal when their ids are.
    pub fn new(id: impl Into<String>) -> Self {
        OutputTag {
            id: Arc::from(id.into()),
            _x: std::marker::PhantomData,
        }
    }

    /// The tag's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Side-output records emitted during one call, flushed to the operator's output afterwards.
#[derive(Default)]
pub struct SideOutputs {
    buffers: Vec<(Arc<str>, Box<dyn std::any::Any>)>,
}

impl SideOutputs {
    /// Emits `value` with `timestamp` to the side output `tag`.
    pub fn emit<X: 'static>(&mut self, tag: &OutputTag<X>, value: X, timestamp: i64) {
        let record = StreamRecord { value, timestamp };
        if let Some((_, b)) = self.buffers.iter_mut().find(|(id, _)| **id == *tag.id)
            && let Some(v) = b.downcast_mut::<Vec<StreamRecord<X>>>()
        {
            v.push(record);
            return;
        }
        self.buffers.push((tag.id.clone(), Box::new(vec![record])));
    }

    /// Sends every buffered record to `out`.
    pub fn flush<O>(&mut self, out: &mut dyn eddy_runtime::operator::Output<O>) -> Result<()> {
        for (id, records) in self.buffers.drain(..) {
            out.collect_side(&id, records)?;
        }
        Ok(())
    }
}

/// A map function with state and `open` / `close` (Flink's `RichMapFunction`).
pub trait RichMapFunction<T, U>: 'static {
    /// Called once per subtask before the first record.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// Maps one record.
    fn map(&mut self, value: T) -> FunctionResult<U>;
    /// Called at every checkpoint, before the operator state is captured: bring operator
    /// state up to date here (Flink's `CheckpointedFunction.snapshotState`).
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> FunctionResult<()> {
        Ok(())
    }
    /// A checkpoint completed (Flink's `CheckpointListener`).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> FunctionResult<()> {
        Ok(())
    }
    /// Called once per subtask at the end.
    fn close(&mut self) -> FunctionResult<()> {
        Ok(())
    }
}

/// A flat-map function with state and `open` / `close` (Flink's `RichFlatMapFunction`).
pub trait RichFlatMapFunction<T, U>: 'static {
    /// Called once per subtask before the first record.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// Emits any number of records for one input record.
    fn flat_map(&mut self, value: T, out: &mut Collector<'_, U>) -> FunctionResult<()>;
    /// Called at every checkpoint, before the operator state is captured: bring operator
    /// state up to date here (Flink's `CheckpointedFunction.snapshotState`).
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> FunctionResult<()> {
        Ok(())
    }
    /// A checkpoint completed (Flink's `CheckpointListener`).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> FunctionResult<()> {
        Ok(())
    }
    /// Called once per subtask at the end.
    fn close(&mut self) -> FunctionResult<()> {
        Ok(())
    }
}

/// A filter with state and `open` / `close` (Flink's `RichFilterFunction`).
pub trait RichFilterFunction<T>: 'static {
    /// Called once per subtask before the first record.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// Whether to keep the record.
    fn filter(&mut self, value: &T) -> FunctionResult<bool>;
    /// Called at every checkpoint, before the operator state is captured: bring operator
    /// state up to date here (Flink's `CheckpointedFunction.snapshotState`).
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> FunctionResult<()> {
        Ok(())
    }
    /// A checkpoint completed (Flink's `CheckpointListener`).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> FunctionResult<()> {
        Ok(())
    }
    /// Called once per subtask at the end.
    fn close(&mut self) -> FunctionResult<()> {
        Ok(())
    }
}
