//! The source task: polls a reader and pushes its records down the chain.

use std::time::{Duration, Instant};

use eddy_core::element::{Watermark, WatermarkStatus};

use super::{
    FlushTimer, StreamTask, TaskEnv, drain_mailbox, earliest, finish_chain, fire_timers,
    timer_deadline,
};
use crate::chain::{ChainOutput, Names, guard};
use crate::error::Result;
use crate::source::{Emitted, InputStatus, ReaderOutput, SourceReader};
use crate::watermark::{WatermarkEvent, WatermarkStrategy};

/// The longest a source with nothing to read waits before it looks at its mailbox again.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Runs a source reader at the head of a chain.
pub struct SourceTask<T, R: SourceReader<T>> {
    env: TaskEnv,
    reader: R,
    chain: Box<dyn ChainOutput<T>>,
    splits: Option<Vec<R::Split>>,
    bounded: bool,
    watermarks: WatermarkStrategy<T>,
    names: Names,
}

impl<T: 'static, R: SourceReader<T>> SourceTask<T, R> {
    /// A task reading `splits` with `reader` into `chain`; errors name `operator_name`.
    pub fn new(
        env: TaskEnv,
        operator_name: &str,
        reader: R,
        splits: Vec<R::Split>,
        bounded: bool,
        watermarks: WatermarkStrategy<T>,
        chain: Box<dyn ChainOutput<T>>,
    ) -> Self {
        let names = Names::new(operator_name, &env.info.task_name_with_subtask());
        SourceTask {
            env,
            reader,
            chain,
            splits: Some(splits),
            bounded,
            watermarks,
            names,
        }
    }

    /// Sends what the reader emitted down the chain, in order.
    fn forward(&mut self, output: &mut ReaderOutput<T>) -> Result<()> {
        for emitted in output.drain() {
            match emitted {
                Emitted::Records(batch) => self.chain.collect(batch)?,
                Emitted::Watermark(WatermarkEvent::Watermark(w)) => self.chain.emit_watermark(w)?,
                Emitted::Watermark(WatermarkEvent::Idle) => {
                    self.chain.emit_watermark_status(WatermarkStatus::Idle)?
                }
                Emitted::Watermark(WatermarkEvent::Active) => {
                    self.chain.emit_watermark_status(WatermarkStatus::Active)?
                }
            }
        }
        Ok(())
    }

    fn run_loop(&mut self) -> Result<()> {
        self.chain.open()?;
        let splits = self.splits.take().unwrap_or_default();
        let no_splits = splits.is_empty();
        let (reader, bounded) = (&mut self.reader, self.bounded);
        guard(&self.names, || {
            reader.start()?;
            reader.add_splits(splits)?;
            if bounded {
                reader.notify_no_more_splits();
            }
            Ok(())
        })?;
        let mut output =
            ReaderOutput::with_watermarks(self.env.batch_size, self.watermarks.clone());
        if no_splits && !self.bounded {
            // A subtask without splits must not hold back event time downstream.
            self.chain.emit_watermark_status(WatermarkStatus::Idle)?;
        }
        let periodic = self
            .env
            .auto_watermark_interval
            .filter(|_| output.has_watermarks());
        let mut next_periodic = periodic.map(|p| Instant::now() + p);
        let mut flush = FlushTimer::new(self.env.buffer_timeout, self.env.dirty.clone());
        loop {
            let (reader, names) = (&mut self.reader, &self.names);
            drain_mailbox(&self.env, self.chain.as_mut(), |id| {
                guard(names, || reader.notify_checkpoint_complete(id))
            })?;
            fire_timers(&self.env.timers, self.chain.as_mut())?;
            let reader = &mut self.reader;
            let status = guard(&self.names, || reader.poll_next(&mut output))?;
            self.forward(&mut output)?;
            if let (Some(p), Some(next)) = (periodic, next_periodic)
                && Instant::now() >= next
            {
                output.emit_periodic_watermark();
                self.forward(&mut output)?;
                next_periodic = Some(Instant::now() + p);
            }
            match status {
                InputStatus::MoreAvailable => {}
                InputStatus::EndOfInput => break,
                InputStatus::NothingAvailable => {
                    flush.maybe_flush(self.chain.as_mut())?;
                    let deadline = earliest(
                        earliest(flush.deadline(), timer_deadline(&self.env.timers)),
                        next_periodic,
                    );
                    let wait = deadline
                        .map(|d| d.saturating_duration_since(Instant::now()))
                        .unwrap_or(IDLE_POLL)
                        .min(IDLE_POLL);
                    let start = Instant::now();
                    let reader = &mut self.reader;
                    guard(&self.names, || {
                        reader.wait_available(wait);
                        Ok(())
                    })?;
                    self.env.time_metrics.idle.add(start.elapsed());
                }
            }
            flush.maybe_flush(self.chain.as_mut())?;
        }
        // The input is exhausted: the final watermark fires every event-time timer downstream.
        self.chain.emit_watermark(Watermark::MAX)?;
        finish_chain(self.chain.as_mut())
    }
}

impl<T: 'static, R: SourceReader<T>> StreamTask for SourceTask<T, R> {
    fn run(mut self: Box<Self>) -> Result<()> {
        let result = self.run_loop();
        let reader = &mut self.reader;
        let closed = guard(&self.names, || reader.close());
        let chain_closed = self.chain.close();
        result.and(closed).and(chain_closed)
    }
}
