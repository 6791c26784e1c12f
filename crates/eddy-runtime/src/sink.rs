//! The sink interface, after Flink's Sink V2: a [`Sink`] creates one [`SinkWriter`] per
//! parallel subtask.
//!
//! A writer that only implements `write` and `flush` is *at-least-once*: it flushes at every
//! checkpoint, so nothing acknowledged is lost, but records written after the last completed
//! checkpoint are written again after a failure.

use std::marker::PhantomData;
use std::sync::Arc;

use eddy_core::element::{StreamRecord, Watermark};

use crate::error::Result;
use crate::metrics::MetricGroup;
use crate::operator::{OneInputOperator, OperatorContext, Output, TaskInfo};

/// What a writer is told about its subtask.
#[derive(Clone)]
pub struct SinkWriterContext {
    /// The subtask.
    pub task_info: Arc<TaskInfo>,
    /// The sink operator's metric group.
    pub metrics: MetricGroup,
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
        let wctx = SinkWriterContext {
            task_info: ctx.task_info.clone(),
            metrics: ctx.metrics.clone(),
        };
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
