//! Generic [`OperatorFactory`] implementations for sources and one-input operators.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::chain::{OperatorLink, OperatorOutput};
use crate::error::{Result, RuntimeError};
use crate::exchange::InputGate;
use crate::metrics::OperatorIoMetrics;
use crate::operator::{OneInputOperator, OperatorContext, TwoInputOperator};
use crate::registry::{
    AnyBox, DataPort, OperatorFactory, OperatorKind, OutputParts, Port, TaskInputs, downcast,
};
use crate::source::{Boundedness, CheckpointedSplit, Source, SourceReaderContext, restore_splits};
use crate::state::ListStateDescriptor;
use crate::task::{OneInputTask, SourceTask, StreamTask, TaskEnv, TwoInputTask};
use crate::watermark::WatermarkStrategy;

fn operator_output<OUT: Clone + Send + 'static>(
    parts: OutputParts,
    io: &OperatorIoMetrics,
) -> Result<OperatorOutput<OUT>> {
    Ok(OperatorOutput::new(
        Port::<OUT>::combine(parts.main)?,
        parts.sides,
        io,
    ))
}

/// Makes a fresh one-input operator per subtask with a constructor closure.
pub struct OneInputFactory<IN, OUT, OP, F> {
    make: F,
    _types: PhantomData<fn(IN) -> (OUT, OP)>,
}

impl<IN, OUT, OP, F> OneInputFactory<IN, OUT, OP, F>
where
    F: Fn() -> OP + Send + Sync + 'static,
{
    /// A factory calling `make` once per subtask.
    pub fn new(make: F) -> Self {
        OneInputFactory {
            make,
            _types: PhantomData,
        }
    }
}

impl<IN, OUT, OP, F> OneInputFactory<IN, OUT, OP, F>
where
    IN: Clone + Send + 'static,
    OUT: Clone + Send + 'static,
    OP: OneInputOperator<IN, OUT> + 'static,
    F: Fn() -> OP + Send + Sync + 'static,
{
    fn link(&self, ctx: OperatorContext, output: OutputParts) -> Result<OperatorLink<IN, OUT, OP>> {
        let io = OperatorIoMetrics::register(&ctx.metrics);
        let out = operator_output::<OUT>(output, &io)?;
        Ok(OperatorLink::new((self.make)(), out, ctx, &io))
    }
}

impl<IN, OUT, OP, F> OperatorFactory for OneInputFactory<IN, OUT, OP, F>
where
    IN: Clone + Send + 'static,
    OUT: Clone + Send + 'static,
    OP: OneInputOperator<IN, OUT> + 'static,
    F: Fn() -> OP + Send + Sync + 'static,
{
    fn kind(&self) -> OperatorKind {
        OperatorKind::OneInput
    }

    fn output_port(&self) -> Arc<dyn DataPort> {
        Arc::new(Port::<OUT>::default())
    }

    fn create_link(&self, ctx: OperatorContext, output: OutputParts) -> Result<AnyBox> {
        let link: Box<dyn crate::chain::ChainOutput<IN>> = Box::new(self.link(ctx, output)?);
        Ok(Box::new(link))
    }

    fn create_task(
        &self,
        ctx: OperatorContext,
        env: TaskEnv,
        mut inputs: TaskInputs,
        output: OutputParts,
    ) -> Result<Box<dyn StreamTask>> {
        if inputs.gates.len() != 1 {
            return Err(RuntimeError::Internal(format!(
                "one-input operator '{}' got {} inputs",
                ctx.operator_name,
                inputs.gates.len()
            )));
        }
        let gate = downcast::<InputGate<IN>>(inputs.gates.remove(0), "input gate")?;
        let link = self.link(ctx, output)?;
        Ok(Box::new(OneInputTask::new(env, gate, Box::new(link))))
    }
}

/// The operator state holding a source reader's splits.
pub const SOURCE_SPLITS_STATE: &str = "_source-splits";

/// Makes a source's reader per subtask.
pub struct SourceFactory<T, S> {
    source: Arc<S>,
    watermarks: WatermarkStrategy<T>,
}

impl<T: 'static, S: Source<T>> SourceFactory<T, S> {
    /// A factory for `source`, with timestamps and watermarks from `watermarks`.
    pub fn new(source: S, watermarks: WatermarkStrategy<T>) -> Self {
        SourceFactory {
            source: Arc::new(source),
            watermarks,
        }
    }
}

impl<T, S> OperatorFactory for SourceFactory<T, S>
where
    T: Clone + Send + 'static,
    S: Source<T>,
{
    fn kind(&self) -> OperatorKind {
        OperatorKind::Source {
            bounded: self.source.boundedness() == Boundedness::Bounded,
        }
    }

    fn output_port(&self) -> Arc<dyn DataPort> {
        Arc::new(Port::<T>::default())
    }

    fn create_link(&self, ctx: OperatorContext, _output: OutputParts) -> Result<AnyBox> {
        Err(RuntimeError::Internal(format!(
            "source '{}' cannot be chained behind another operator",
            ctx.operator_name
        )))
    }

    fn create_task(
        &self,
        ctx: OperatorContext,
        env: TaskEnv,
        _inputs: TaskInputs,
        output: OutputParts,
    ) -> Result<Box<dyn StreamTask>> {
        let io = OperatorIoMetrics::register(&ctx.metrics);
        let out = operator_output::<T>(output, &io)?;
        let info = ctx.task_info.clone();
        let reader = self.source.create_reader(&SourceReaderContext {
            task_info: info.clone(),
            metrics: ctx.metrics.clone(),
            batch_size: env.batch_size,
        })?;
        let split_state =
            ctx.state
                .operator_state()
                .get_union_list_state(&ListStateDescriptor::<CheckpointedSplit<S::Split>>::new(
                    SOURCE_SPLITS_STATE,
                ))?;
        let (index, parallelism) = (info.subtask_index, info.parallelism);
        let splits = if ctx.state.is_restored() {
            restore_splits(self.source.as_ref(), split_state.get(), index, parallelism)
        } else {
            let all = self.source.enumerate_splits(parallelism)?;
            self.source.assign_splits(all, index, parallelism)
        };
        let bounded = self.source.boundedness() == Boundedness::Bounded;
        Ok(Box::new(SourceTask::new(
            env,
            &ctx.operator_name,
            reader,
            splits,
            split_state,
            bounded,
            self.watermarks.clone(),
            Box::new(out),
        )))
    }
}

/// The types a two-input factory is generic over.
type TwoInputTypes<IN1, IN2, OUT, OP> = fn(IN1, IN2) -> (OUT, OP);

/// Makes a fresh two-input operator per subtask with a constructor closure.
pub struct TwoInputFactory<IN1, IN2, OUT, OP, F> {
    make: F,
    _types: PhantomData<TwoInputTypes<IN1, IN2, OUT, OP>>,
}

impl<IN1, IN2, OUT, OP, F> TwoInputFactory<IN1, IN2, OUT, OP, F>
where
    F: Fn() -> OP + Send + Sync + 'static,
{
    /// A factory calling `make` once per subtask.
    pub fn new(make: F) -> Self {
        TwoInputFactory {
            make,
            _types: PhantomData,
        }
    }
}

impl<IN1, IN2, OUT, OP, F> OperatorFactory for TwoInputFactory<IN1, IN2, OUT, OP, F>
where
    IN1: Clone + Send + 'static,
    IN2: Clone + Send + 'static,
    OUT: Clone + Send + 'static,
    OP: TwoInputOperator<IN1, IN2, OUT> + 'static,
    F: Fn() -> OP + Send + Sync + 'static,
{
    fn kind(&self) -> OperatorKind {
        OperatorKind::TwoInput
    }

    fn output_port(&self) -> Arc<dyn DataPort> {
        Arc::new(Port::<OUT>::default())
    }

    fn create_link(&self, ctx: OperatorContext, _output: OutputParts) -> Result<AnyBox> {
        Err(RuntimeError::Internal(format!(
            "two-input operator '{}' cannot be chained behind another operator",
            ctx.operator_name
        )))
    }

    fn create_task(
        &self,
        ctx: OperatorContext,
        env: TaskEnv,
        inputs: TaskInputs,
        output: OutputParts,
    ) -> Result<Box<dyn StreamTask>> {
        let mut gates = inputs.gates.into_iter();
        let (Some(g1), Some(g2), None) = (gates.next(), gates.next(), gates.next()) else {
            return Err(RuntimeError::Internal(format!(
                "two-input operator '{}' needs exactly two inputs",
                ctx.operator_name
            )));
        };
        let gate1 = downcast::<InputGate<IN1>>(g1, "first input gate")?;
        let gate2 = downcast::<InputGate<IN2>>(g2, "second input gate")?;
        let io = OperatorIoMetrics::register(&ctx.metrics);
        let out = operator_output::<OUT>(output, &io)?;
        Ok(Box::new(TwoInputTask::new(
            env,
            gate1,
            gate2,
            (self.make)(),
            out,
            ctx,
            io,
        )))
    }
}
