//! The source task: polls a reader and pushes its records down the chain.

use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;
use eddy_core::element::Watermark;

use super::{FlushTimer, StreamTask, TaskEnv, TaskMessage, earliest, finish_chain, fire_timers, timer_deadline};
use crate::chain::ChainOutput;
use crate::error::{Result, RuntimeError};
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
}

impl<T, R: SourceReader<T>> SourceTask<T, R> {
    /// A task reading `splits` with `reader` into `chain`.
    pub fn new(
        env: TaskEnv,
        reader: R,
        splits: Vec<R::Split>,
        bounded: bool,
        chain: Box<dyn ChainOutput<T>>,
    ) -> Self {
        SourceTask {
            env,
            reader,
            chain,
            splits: Some(splits),
            bounded,
        }
    }

    fn run_loop(&mut self) -> Result<()> {
        self.chain.open()?;
        self.reader.start()?;
        self.reader.add_splits(self.splits.take().unwrap_or_default())?;
        if self.bounded {
            self.reader.notify_no_more_splits();
        }
        let mut output = ReaderOutput::new(self.env.batch_size);
        let mut flush = FlushTimer::new(self.env.buffer_timeout, self.env.dirty.clone());
        loop {
            self.handle_mailbox()?;
            fire_timers(&self.env.timers, self.chain.as_mut())?;
            let status = self.reader.poll_next(&mut output)?;
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
                    self.reader.wait_available(wait);
                    self.env.time_metrics.idle.add(start.elapsed());
                }
            }
            flush.maybe_flush(self.chain.as_mut())?;
        }
        // The input is exhausted: the final watermark fires every event-time timer downstream.
        self.chain.emit_watermark(Watermark::MAX)?;
        finish_chain(self.chain.as_mut())
    }

    fn handle_mailbox(&mut self) -> Result<()> {
        loop {
            match self.env.mailbox.try_recv() {
                Ok(TaskMessage::Cancel) => return Err(RuntimeError::Cancelled),
                Ok(TaskMessage::NotifyCheckpointComplete(id)) => {
                    self.reader.notify_checkpoint_complete(id)?;
                    self.chain.notify_checkpoint(id, true)?;
                }
                Ok(TaskMessage::NotifyCheckpointAborted(id)) => {
                    self.chain.notify_checkpoint(id, false)?;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(RuntimeError::Cancelled),
            }
        }
        if self.env.signals.is_cancelled() {
            return Err(RuntimeError::Cancelled);
        }
        Ok(())
    }
}

impl<T, R: SourceReader<T>> StreamTask for SourceTask<T, R> {
    fn run(mut self: Box<Self>) -> Result<()> {
        let result = self.run_loop();
        let closed = self.reader.close();
        let chain_closed = self.chain.close();
        result.and(closed).and(chain_closed)
    }
}
