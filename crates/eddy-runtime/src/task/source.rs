//! The source task: polls a reader and pushes its records down the chain.

use std::time::{Duration, Instant};

use eddy_core::element::Watermark;

use super::{
    FlushTimer, StreamTask, TaskEnv, drain_mailbox, earliest, finish_chain, fire_timers,
    timer_deadline,
};
use crate::chain::{ChainOutput, Names, guard};
use crate::error::Result;
use crate::source::{InputStatus, ReaderOutput, SourceReader};

/// The longest a source with nothing to read waits before it looks at its mailbox again.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Runs a source reader at the head of a chain.
pub struct SourceTask<T, R: SourceReader<T>> {
    env: TaskEnv,
    reader: R,
    chain: Box<dyn ChainOutput<T>>,
    splits: Option<Vec<R::Split>>,
    bounded: bool,
    names: Names,
}

impl<T, R: SourceReader<T>> SourceTask<T, R> {
    /// A task reading `splits` with `reader` into `chain`; errors name `operator_name`.
    pub fn new(
        env: TaskEnv,
        operator_name: &str,
        reader: R,
        splits: Vec<R::Split>,
        bounded: bool,
        chain: Box<dyn ChainOutput<T>>,
    ) -> Self {
        let names = Names::new(operator_name, &env.info.task_name_with_subtask());
        SourceTask {
            env,
            reader,
            chain,
            splits: Some(splits),
            bounded,
            names,
        }
    }

    fn run_loop(&mut self) -> Result<()> {
        self.chain.open()?;
        let splits = self.splits.take().unwrap_or_default();
        let (reader, bounded) = (&mut self.reader, self.bounded);
        guard(&self.names, || {
            reader.start()?;
            reader.add_splits(splits)?;
            if bounded {
                reader.notify_no_more_splits();
            }
            Ok(())
        })?;
        let mut output = ReaderOutput::new(self.env.batch_size);
        let mut flush = FlushTimer::new(self.env.buffer_timeout, self.env.dirty.clone());
        loop {
            let (reader, names) = (&mut self.reader, &self.names);
            drain_mailbox(&self.env, self.chain.as_mut(), |id| {
                guard(names, || reader.notify_checkpoint_complete(id))
            })?;
            fire_timers(&self.env.timers, self.chain.as_mut())?;
            let status = guard(&self.names, || self.reader.poll_next(&mut output))?;
            if !output.batch.is_empty() {
                self.chain.collect(output.take())?;
            }
            match status {
                InputStatus::MoreAvailable => {}
                InputStatus::EndOfInput => break,
                InputStatus::NothingAvailable => {
                    flush.maybe_flush(self.chain.as_mut())?;
                    let deadline = earliest(flush.deadline(), timer_deadline(&self.env.timers));
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

impl<T, R: SourceReader<T>> StreamTask for SourceTask<T, R> {
    fn run(mut self: Box<Self>) -> Result<()> {
        let result = self.run_loop();
        let reader = &mut self.reader;
        let closed = guard(&self.names, || reader.close());
        let chain_closed = self.chain.close();
        result.and(closed).and(chain_closed)
    }
}
