//! Operator chains: operators of one task call each other directly.
//!
//! A task's chain is a tree of [`ChainOutput`]s built from its tail to its head: each
//! [`OperatorLink`] owns its operator and the output the operator writes to — the next link, a
//! [`FanOut`] to several, or a network [`RecordWriter`](crate::exchange::RecordWriter). Data
//! moves down the tree by plain (virtual) calls, one per batch. Control calls (open, end of
//! input, timers, snapshots, barriers) travel the same way, so every operator sees them in
//! order with its data.
//!
//! Every call into an operator is guarded: an error or a panic in user code becomes a
//! [`RuntimeError::Operator`] that names the operator and the subtask.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;

use eddy_core::element::{
    CheckpointBarrier, LatencyMarker, StopMode, StreamRecord, Watermark, WatermarkStatus,
};

use crate::error::{Result, RuntimeError, panic_message};
use crate::metrics::{Counter, OperatorIoMetrics, WatermarkGauge};
use crate::operator::{OneInputOperator, OperatorContext, Output};

/// An output inside a task's chain: data methods from [`Output`] plus the control calls that
/// travel down the chain. Control calls default to doing nothing (network writers ignore most).
pub trait ChainOutput<T>: Output<T> {
    /// Opens every operator below, tail first.
    fn open(&mut self) -> Result<()> {
        Ok(())
    }

    /// All input has ended: finish every operator below, head first.
    fn end_input(&mut self) -> Result<()> {
        Ok(())
    }

    /// Delivers a processing-time timer to the operator at `operator_index`.
    fn on_processing_time(&mut self, _operator_index: usize, _time: i64) -> Result<()> {
        Ok(())
    }

    /// Asks every operator below to snapshot its state.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// Tells every operator below that a checkpoint completed or was aborted.
    fn notify_checkpoint(&mut self, _checkpoint_id: u64, _completed: bool) -> Result<()> {
        Ok(())
    }

    /// Sends a checkpoint barrier to every network output below.
    fn emit_barrier(&mut self, _barrier: CheckpointBarrier) -> Result<()> {
        Ok(())
    }

    /// Sends end-of-data to every network output below.
    fn emit_end_of_data(&mut self, _mode: StopMode) -> Result<()> {
        Ok(())
    }

    /// Sends end-of-partition to every network output below.
    fn emit_end_of_partition(&mut self) -> Result<()> {
        Ok(())
    }

    /// Sends every buffered record of every network output below.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Closes every operator below; runs after success and after failure.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// Whether every network output below has room for a buffer: with unaligned checkpoints a
    /// task reads input only then, so that it is not stuck in a full output when a barrier
    /// arrives (Flink's output availability).
    fn is_available(&self) -> bool {
        true
    }
}

/// The names an operator's errors carry.
pub(crate) struct Names {
    operator: String,
    task: String,
}

impl Names {
    pub(crate) fn new(operator: &str, task: &str) -> Self {
        Names {
            operator: operator.to_string(),
            task: task.to_string(),
        }
    }
}

/// Runs `f`, turning an error or a panic into an error naming the operator and task.
#[inline]
pub(crate) fn guard<R>(names: &Names, f: impl FnOnce() -> Result<R>) -> Result<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.in_operator(&names.operator, &names.task)),
        Err(payload) => Err(RuntimeError::Panic(panic_message(payload.as_ref()))
            .in_operator(&names.operator, &names.task)),
    }
}

/// Records of a side output, erased over their type.
pub trait SideOutput {
    /// Emits `records`, a `Vec<StreamRecord<X>>`.
    fn collect_any(&mut self, records: Box<dyn Any>) -> Result<()>;
    /// The chain control and event calls, forwarded.
    fn control(&mut self) -> &mut dyn ErasedControl;
    /// See [`ChainOutput::is_available`].
    fn is_available(&self) -> bool;
}

/// The type-independent part of [`ChainOutput`].
pub trait ErasedControl {
    /// See [`Output::emit_watermark`].
    fn emit_watermark(&mut self, watermark: Watermark) -> Result<()>;
    /// See [`Output::emit_watermark_status`].
    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> Result<()>;
    /// See [`ChainOutput::open`].
    fn open(&mut self) -> Result<()>;
    /// See [`ChainOutput::end_input`].
    fn end_input(&mut self) -> Result<()>;
    /// See [`ChainOutput::on_processing_time`].
    fn on_processing_time(&mut self, operator_index: usize, time: i64) -> Result<()>;
    /// See [`ChainOutput::snapshot_state`].
    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<()>;
    /// See [`ChainOutput::notify_checkpoint`].
    fn notify_checkpoint(&mut self, checkpoint_id: u64, completed: bool) -> Result<()>;
    /// See [`ChainOutput::emit_barrier`].
    fn emit_barrier(&mut self, barrier: CheckpointBarrier) -> Result<()>;
    /// See [`ChainOutput::emit_end_of_data`].
    fn emit_end_of_data(&mut self, mode: StopMode) -> Result<()>;
    /// See [`ChainOutput::emit_end_of_partition`].
    fn emit_end_of_partition(&mut self) -> Result<()>;
    /// See [`ChainOutput::flush`].
    fn flush(&mut self) -> Result<()>;
    /// See [`ChainOutput::close`].
    fn close(&mut self) -> Result<()>;
}

/// A side output whose records have type `X`.
pub struct TypedSideOutput<X> {
    inner: Box<dyn ChainOutput<X>>,
}

impl<X: 'static> TypedSideOutput<X> {
    /// Wraps the chain output that consumes the side output.
    pub fn new(inner: Box<dyn ChainOutput<X>>) -> Self {
        TypedSideOutput { inner }
    }
}

impl<X: 'static> SideOutput for TypedSideOutput<X> {
    fn collect_any(&mut self, records: Box<dyn Any>) -> Result<()> {
        match records.downcast::<Vec<StreamRecord<X>>>() {
            Ok(batch) => self.inner.collect(*batch),
            Err(_) => Err(RuntimeError::Internal(format!(
                "side output records are not of type {}",
                std::any::type_name::<X>()
            ))),
        }
    }

    fn control(&mut self) -> &mut dyn ErasedControl {
        self
    }

    fn is_available(&self) -> bool {
        self.inner.is_available()
    }
}

impl<X: 'static> ErasedControl for TypedSideOutput<X> {
    fn emit_watermark(&mut self, w: Watermark) -> Result<()> {
        self.inner.emit_watermark(w)
    }
    fn emit_watermark_status(&mut self, s: WatermarkStatus) -> Result<()> {
        self.inner.emit_watermark_status(s)
    }
    fn open(&mut self) -> Result<()> {
        self.inner.open()
    }
    fn end_input(&mut self) -> Result<()> {
        self.inner.end_input()
    }
    fn on_processing_time(&mut self, i: usize, t: i64) -> Result<()> {
        self.inner.on_processing_time(i, t)
    }
    fn snapshot_state(&mut self, id: u64) -> Result<()> {
        self.inner.snapshot_state(id)
    }
    fn notify_checkpoint(&mut self, id: u64, c: bool) -> Result<()> {
        self.inner.notify_checkpoint(id, c)
    }
    fn emit_barrier(&mut self, b: CheckpointBarrier) -> Result<()> {
        self.inner.emit_barrier(b)
    }
    fn emit_end_of_data(&mut self, m: StopMode) -> Result<()> {
        self.inner.emit_end_of_data(m)
    }
    fn emit_end_of_partition(&mut self) -> Result<()> {
        self.inner.emit_end_of_partition()
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
}

/// What an operator writes to: its main output, its side outputs, its `numRecordsOut` and
/// `currentOutputWatermark`.
pub struct OperatorOutput<T> {
    main: Box<dyn ChainOutput<T>>,
    sides: Vec<(String, Box<dyn SideOutput>)>,
    records_out: Arc<Counter>,
    watermark: Arc<WatermarkGauge>,
}

impl<T> OperatorOutput<T> {
    /// An output to `main` and the given side outputs, counting records and watermarks in `io`.
    pub fn new(
        main: Box<dyn ChainOutput<T>>,
        sides: Vec<(String, Box<dyn SideOutput>)>,
        io: &OperatorIoMetrics,
    ) -> Self {
        OperatorOutput {
            main,
            sides,
            records_out: io.num_records_out.clone(),
            watermark: io.output_watermark.clone(),
        }
    }

    fn each_side(&mut self, mut f: impl FnMut(&mut dyn ErasedControl) -> Result<()>) -> Result<()> {
        for (_, s) in &mut self.sides {
            f(s.control())?;
        }
        Ok(())
    }
}

impl<T> Output<T> for OperatorOutput<T> {
    #[inline]
    fn collect(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()> {
        self.records_out.inc_by(batch.len() as u64);
        self.main.collect(batch)
    }

    fn emit_watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.watermark.set(watermark.0);
        self.main.emit_watermark(watermark)?;
        self.each_side(|s| s.emit_watermark(watermark))
    }

    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> Result<()> {
        self.main.emit_watermark_status(status)?;
        self.each_side(|s| s.emit_watermark_status(status))
    }

    fn emit_latency_marker(&mut self, marker: LatencyMarker) -> Result<()> {
        self.main.emit_latency_marker(marker)
    }

    fn collect_side(&mut self, tag: &str, records: Box<dyn Any>) -> Result<()> {
        match self.sides.iter_mut().find(|(t, _)| t == tag) {
            Some((_, s)) => s.collect_any(records),
            None => Ok(()),
        }
    }
}

impl<T> ChainOutput<T> for OperatorOutput<T> {
    fn open(&mut self) -> Result<()> {
        self.main.open()?;
        self.each_side(|s| s.open())
    }
    fn end_input(&mut self) -> Result<()> {
        self.main.end_input()?;
        self.each_side(|s| s.end_input())
    }
    fn on_processing_time(&mut self, i: usize, t: i64) -> Result<()> {
        self.main.on_processing_time(i, t)?;
        self.each_side(|s| s.on_processing_time(i, t))
    }
    fn snapshot_state(&mut self, id: u64) -> Result<()> {
        self.main.snapshot_state(id)?;
        self.each_side(|s| s.snapshot_state(id))
    }
    fn notify_checkpoint(&mut self, id: u64, c: bool) -> Result<()> {
        self.main.notify_checkpoint(id, c)?;
        self.each_side(|s| s.notify_checkpoint(id, c))
    }
    fn emit_barrier(&mut self, b: CheckpointBarrier) -> Result<()> {
        self.main.emit_barrier(b)?;
        self.each_side(|s| s.emit_barrier(b))
    }
    fn emit_end_of_data(&mut self, m: StopMode) -> Result<()> {
        self.main.emit_end_of_data(m)?;
        self.each_side(|s| s.emit_end_of_data(m))
    }
    fn emit_end_of_partition(&mut self) -> Result<()> {
        self.main.emit_end_of_partition()?;
        self.each_side(|s| s.emit_end_of_partition())
    }
    fn flush(&mut self) -> Result<()> {
        self.main.flush()?;
        self.each_side(|s| s.flush())
    }
    fn close(&mut self) -> Result<()> {
        let r = self.main.close();
        let r2 = self.each_side(|s| s.close());
        r.and(r2)
    }
    fn is_available(&self) -> bool {
        self.main.is_available() && self.sides.iter().all(|(_, s)| s.is_available())
    }
}

/// One operator in a chain, with the output it writes to.
pub struct OperatorLink<IN, OUT, OP> {
    op: OP,
    out: OperatorOutput<OUT>,
    ctx: OperatorContext,
    records_in: Arc<Counter>,
    input_watermark: Arc<WatermarkGauge>,
    names: Rc<Names>,
    _in: PhantomData<fn(IN)>,
}

impl<IN, OUT, OP: OneInputOperator<IN, OUT>> OperatorLink<IN, OUT, OP> {
    /// Links `op` to `out`, counting its input in `io`.
    pub fn new(
        op: OP,
        out: OperatorOutput<OUT>,
        ctx: OperatorContext,
        io: &OperatorIoMetrics,
    ) -> Self {
        let names = Rc::new(Names::new(
            &ctx.operator_name,
            &ctx.task_info.task_name_with_subtask(),
        ));
        OperatorLink {
            op,
            out,
            ctx,
            records_in: io.num_records_in.clone(),
            input_watermark: io.input_watermark.clone(),
            names,
            _in: PhantomData,
        }
    }
}

impl<IN, OUT, OP: OneInputOperator<IN, OUT>> Output<IN> for OperatorLink<IN, OUT, OP> {
    #[inline]
    fn collect(&mut self, batch: Vec<StreamRecord<IN>>) -> Result<()> {
        self.records_in.inc_by(batch.len() as u64);
        guard(&self.names, || self.op.process_batch(batch, &mut self.out))
    }

    fn emit_watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.input_watermark.set(watermark.0);
        guard(&self.names, || {
            self.op.process_watermark(watermark, &mut self.out)
        })
    }

    fn emit_watermark_status(&mut self, status: WatermarkStatus) -> Result<()> {
        guard(&self.names, || {
            self.op.process_watermark_status(status, &mut self.out)
        })
    }

    fn emit_latency_marker(&mut self, marker: LatencyMarker) -> Result<()> {
        self.out.emit_latency_marker(marker)
    }

    fn collect_side(&mut self, _tag: &str, _records: Box<dyn Any>) -> Result<()> {
        Ok(())
    }
}

impl<IN, OUT, OP: OneInputOperator<IN, OUT>> ChainOutput<IN> for OperatorLink<IN, OUT, OP> {
    fn open(&mut self) -> Result<()> {
        self.out.open()?;
        guard(&self.names, || self.op.open(&mut self.ctx))
    }

    fn end_input(&mut self) -> Result<()> {
        guard(&self.names, || self.op.finish(&mut self.out))?;
        self.out.end_input()
    }

    fn on_processing_time(&mut self, operator_index: usize, time: i64) -> Result<()> {
        if operator_index == self.ctx.operator_index {
            guard(&self.names, || {
                self.op.on_processing_time(time, &mut self.out)
            })
        } else {
            self.out.on_processing_time(operator_index, time)
        }
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<()> {
        guard(&self.names, || self.op.snapshot_state(checkpoint_id))?;
        self.out.snapshot_state(checkpoint_id)
    }

    fn notify_checkpoint(&mut self, checkpoint_id: u64, completed: bool) -> Result<()> {
        guard(&self.names, || {
            if completed {
                self.op.notify_checkpoint_complete(checkpoint_id)
            } else {
                self.op.notify_checkpoint_aborted(checkpoint_id)
            }
        })?;
        self.out.notify_checkpoint(checkpoint_id, completed)
    }

    fn emit_barrier(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        self.out.emit_barrier(barrier)
    }

    fn emit_end_of_data(&mut self, m: StopMode) -> Result<()> {
        self.out.emit_end_of_data(m)
    }

    fn emit_end_of_partition(&mut self) -> Result<()> {
        self.out.emit_end_of_partition()
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush()
    }

    fn close(&mut self) -> Result<()> {
        let r = guard(&self.names, || self.op.close());
        let r2 = self.out.close();
        r.and(r2)
    }

    fn is_available(&self) -> bool {
        self.out.is_available()
    }
}

/// Sends everything to several outputs; records are cloned for all but the last.
pub struct FanOut<T> {
    outputs: Vec<Box<dyn ChainOutput<T>>>,
}

impl<T> FanOut<T> {
    /// A fan-out to `outputs`.
    pub fn new(outputs: Vec<Box<dyn ChainOutput<T>>>) -> Self {
        FanOut { outputs }
    }

    fn each(&mut self, mut f: impl FnMut(&mut dyn ChainOutput<T>) -> Result<()>) -> Result<()> {
        for o in &mut self.outputs {
            f(o.as_mut())?;
        }
        Ok(())
    }
}

impl<T: Clone> Output<T> for FanOut<T> {
    fn collect(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()> {
        if let Some((last, rest)) = self.outputs.split_last_mut() {
            for o in rest {
                o.collect(batch.clone())?;
            }
            last.collect(batch)?;
        }
        Ok(())
    }
    fn emit_watermark(&mut self, w: Watermark) -> Result<()> {
        self.each(|o| o.emit_watermark(w))
    }
    fn emit_watermark_status(&mut self, s: WatermarkStatus) -> Result<()> {
        self.each(|o| o.emit_watermark_status(s))
    }
    fn emit_latency_marker(&mut self, m: LatencyMarker) -> Result<()> {
        self.each(|o| o.emit_latency_marker(m))
    }
    fn collect_side(&mut self, _tag: &str, _records: Box<dyn Any>) -> Result<()> {
        Ok(())
    }
}

impl<T: Clone> ChainOutput<T> for FanOut<T> {
    fn open(&mut self) -> Result<()> {
        self.each(|o| o.open())
    }
    fn end_input(&mut self) -> Result<()> {
        self.each(|o| o.end_input())
    }
    fn on_processing_time(&mut self, i: usize, t: i64) -> Result<()> {
        self.each(|o| o.on_processing_time(i, t))
    }
    fn snapshot_state(&mut self, id: u64) -> Result<()> {
        self.each(|o| o.snapshot_state(id))
    }
    fn notify_checkpoint(&mut self, id: u64, c: bool) -> Result<()> {
        self.each(|o| o.notify_checkpoint(id, c))
    }
    fn emit_barrier(&mut self, b: CheckpointBarrier) -> Result<()> {
        self.each(|o| o.emit_barrier(b))
    }
    fn emit_end_of_data(&mut self, m: StopMode) -> Result<()> {
        self.each(|o| o.emit_end_of_data(m))
    }
    fn emit_end_of_partition(&mut self) -> Result<()> {
        self.each(|o| o.emit_end_of_partition())
    }
    fn flush(&mut self) -> Result<()> {
        self.each(|o| o.flush())
    }
    fn close(&mut self) -> Result<()> {
        let mut first_err = Ok(());
        for o in &mut self.outputs {
            let r = o.close();
            if first_err.is_ok() {
                first_err = r;
            }
        }
        first_err
    }
    fn is_available(&self) -> bool {
        self.outputs.iter().all(|o| o.is_available())
    }
}

/// Discards everything: the output of a sink, or of an operator whose results nobody reads.
pub struct NullOutput<T>(PhantomData<fn(T)>);

impl<T> Default for NullOutput<T> {
    fn default() -> Self {
        NullOutput(PhantomData)
    }
}

impl<T> Output<T> for NullOutput<T> {
    fn collect(&mut self, _: Vec<StreamRecord<T>>) -> Result<()> {
        Ok(())
    }
    fn emit_watermark(&mut self, _: Watermark) -> Result<()> {
        Ok(())
    }
    fn emit_watermark_status(&mut self, _: WatermarkStatus) -> Result<()> {
        Ok(())
    }
    fn emit_latency_marker(&mut self, _: LatencyMarker) -> Result<()> {
        Ok(())
    }
    fn collect_side(&mut self, _: &str, _: Box<dyn Any>) -> Result<()> {
        Ok(())
    }
}

impl<T> ChainOutput<T> for NullOutput<T> {}
