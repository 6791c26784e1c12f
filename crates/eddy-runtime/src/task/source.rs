//! The source task: polls a reader and pushes its records down the chain.
//!
//! Checkpoints start here: the coordinator asks each source task to take one (a mailbox
//! message); the task records its reader's splits with their positions, takes its chain's
//! snapshot and sends the barrier downstream, between two batches of records. A
//! stop-with-savepoint first ends the input — with `--drain` by sending the final watermark
//! and finishing the operators — so that the savepoint is the last thing the job does.

use std::time::{Duration, Instant};

use eddy_core::element::{CheckpointBarrier, StopMode, Watermark, WatermarkStatus};

use super::pacer::BatchPacer;
use super::{
    FlushTimer, StreamTask, TaskEnv, TaskMessage, checkpoint_chain, earliest, end_chain_data,
    fire_timers, maybe_end_partition, next_message, timer_deadline,
};
use crate::chain::{ChainOutput, Names, guard};
use crate::error::Result;
use crate::source::{CheckpointedSplit, Emitted, InputStatus, ReaderOutput, SourceReader};
use crate::state::OperatorListState;
use crate::watermark::{WatermarkEvent, WatermarkStrategy};

/// The longest a source with nothing to read waits before it looks at its mailbox again.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Runs a source reader at the head of a chain.
pub struct SourceTask<T, R: SourceReader<T>> {
    env: TaskEnv,
    reader: R,
    chain: Box<dyn ChainOutput<T>>,
    splits: Option<Vec<R::Split>>,
    split_state: OperatorListState<CheckpointedSplit<R::Split>>,
    bounded: bool,
    watermarks: WatermarkStrategy<T>,
    names: Names,
    partition_ended: bool,
    pacer: BatchPacer,
}

impl<T: 'static, R: SourceReader<T>> SourceTask<T, R> {
    /// A task reading `splits` with `reader` into `chain`; errors name `operator_name`. The
    /// reader's splits are checkpointed into `split_state`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        env: TaskEnv,
        operator_name: &str,
        reader: R,
        splits: Vec<R::Split>,
        split_state: OperatorListState<CheckpointedSplit<R::Split>>,
        bounded: bool,
        watermarks: WatermarkStrategy<T>,
        chain: Box<dyn ChainOutput<T>>,
    ) -> Self {
        let names = Names::new(operator_name, &env.info.task_name_with_subtask());
        let pacer = BatchPacer::new(env.batch_size, env.signals.back_pressured.clone());
        SourceTask {
            pacer,
            env,
            reader,
            chain,
            splits: Some(splits),
            split_state,
            bounded,
            watermarks,
            names,
            partition_ended: false,
        }
    }

    /// Sends what the reader emitted down the chain, in order. The pacer times the records'
    /// way down, and sizes the reader's next batch by it.
    fn forward(&mut self, output: &mut ReaderOutput<T>) -> Result<()> {
        for emitted in output.drain() {
            match emitted {
                Emitted::Records(batch) => {
                    let chain = &mut self.chain;
                    self.pacer.timed(batch.len(), || chain.collect(batch))?
                }
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

    /// Ends the input: with `Drain`, the final watermark fires every event-time timer
    /// downstream and the operators finish.
    fn end_input(&mut self, mode: StopMode) -> Result<()> {
        if self.env.checkpointing.ended().is_some() {
            return Ok(());
        }
        if mode == StopMode::Drain {
            self.chain.emit_watermark(Watermark::MAX)?;
        }
        end_chain_data(self.chain.as_mut(), &mut self.env.checkpointing, mode, true)
    }

    fn trigger(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        if let Some(mode) = barrier.kind.stop_mode() {
            self.end_input(mode)?;
        }
        let reader = &mut self.reader;
        let splits = guard(&self.names, || reader.snapshot_state(barrier.id))?;
        let (subtask, parallelism) = (self.env.info.subtask_index, self.env.info.parallelism);
        self.split_state.update(
            splits
                .into_iter()
                .map(|split| CheckpointedSplit {
                    subtask,
                    parallelism,
                    split,
                })
                .collect(),
        );
        checkpoint_chain(self.chain.as_mut(), &mut self.env, barrier, Duration::ZERO)
    }

    fn handle_mailbox(&mut self) -> Result<()> {
        while let Some(msg) = next_message(&self.env)? {
            match msg {
                TaskMessage::TriggerCheckpoint(barrier) => self.trigger(barrier)?,
                TaskMessage::NotifyCheckpointComplete(id) => {
                    let reader = &mut self.reader;
                    guard(&self.names, || reader.notify_checkpoint_complete(id))?;
                    self.chain.notify_checkpoint(id, true)?;
                    self.env.checkpointing.on_complete(id);
                }
                TaskMessage::NotifyCheckpointAborted(id) => {
                    self.chain.notify_checkpoint(id, false)?;
                    self.env.checkpointing.on_abort(id);
                }
                TaskMessage::PrepareStop => self.env.checkpointing.prepare_stop(),
                TaskMessage::Cancel => {}
            }
        }
        Ok(())
    }

    fn start_reader(&mut self) -> Result<()> {
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
        if no_splits && !self.bounded {
            // A subtask without splits must not hold back event time downstream.
            self.chain.emit_watermark_status(WatermarkStatus::Idle)?;
        }
        Ok(())
    }

    fn run_loop(&mut self) -> Result<()> {
        self.chain.open()?;
        if self.env.checkpointing.finished_on_restore {
            end_chain_data(
                self.chain.as_mut(),
                &mut self.env.checkpointing,
                StopMode::Drain,
                false,
            )?;
        } else {
            self.start_reader()?;
        }
        let mut output =
            ReaderOutput::with_watermarks(self.env.batch_size, self.watermarks.clone());
        let periodic = self
            .env
            .auto_watermark_interval
            .filter(|_| output.has_watermarks());
        let mut next_periodic = periodic.map(|p| Instant::now() + p);
        let mut flush = FlushTimer::new(self.env.buffer_timeout, self.env.dirty.clone());
        loop {
            self.handle_mailbox()?;
            if maybe_end_partition(self.chain.as_mut(), &self.env, &mut self.partition_ended)? {
                return Ok(());
            }
            if self.env.checkpointing.ended().is_some() {
                // Nothing left to read: wait for the final checkpoint.
                let start = Instant::now();
                crate::exchange::wait_for_input(&[], &self.env.mailbox, None);
                self.env.time_metrics.idle.add(start.elapsed());
                continue;
            }
            if self.env.checkpointing.unaligned.is_some() && !self.chain.is_available() {
                // Full outputs: wait for room, or a trigger, without reading.
                let start = Instant::now();
                crate::exchange::wait_for_output(&[], &self.env.mailbox);
                self.env.signals.back_pressured.add(start.elapsed());
                continue;
            }
            fire_timers(&self.env.timers, self.chain.as_mut())?;
            output.set_limit(self.pacer.limit());
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
                InputStatus::EndOfInput => {
                    self.end_input(StopMode::Drain)?;
                    continue;
                }
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
    }
}

impl<T: 'static, R: SourceReader<T>> StreamTask for SourceTask<T, R> {
    fn run(mut self: Box<Self>) -> Result<()> {
        let result = self.run_loop();
        if result.is_ok() {
            self.env.checkpointing.wait_for_uploads();
        }
        let reader = &mut self.reader;
        let closed = guard(&self.names, || reader.close());
        let chain_closed = self.chain.close();
        result.and(closed).and(chain_closed)
    }
}
