//! The one-input task: reads one input gate (one or more upstream edges of the same type).

use std::collections::VecDeque;
use std::time::Instant;

use eddy_core::element::{CheckpointBarrier, StopMode, StreamElement, StreamRecord};

use super::checkpointing::{BarrierAligner, BarrierStep, UnalignedCheckpoints};
use super::pacer::{BatchPacer, MAX_INPUT_CHUNK, next_chunk};
use super::valve::ValveOutput;
use super::{
    FlushTimer, InputEnds, StreamTask, TaskEnv, TaskMessage, WatermarkValve, checkpoint_chain,
    earliest, end_chain_data, fire_timers, maybe_end_partition, next_message, timer_deadline,
};
use crate::chain::ChainOutput;
use crate::error::Result;
use crate::exchange::{InputGate, wait_for_input, wait_for_output};

/// Reads a gate and drives a chain whose head has one input.
pub struct OneInputTask<IN> {
    env: TaskEnv,
    gate: InputGate<IN>,
    chain: Box<dyn ChainOutput<IN>>,
    valve: WatermarkValve,
    aligner: BarrierAligner,
    unaligned: UnalignedCheckpoints,
    ends: InputEnds,
    partition_ended: bool,
    flush: FlushTimer,
    pacer: BatchPacer,
}

impl<IN> OneInputTask<IN> {
    /// A task reading `gate` into `chain`.
    pub fn new(env: TaskEnv, gate: InputGate<IN>, chain: Box<dyn ChainOutput<IN>>) -> Self {
        let n = gate.num_channels();
        OneInputTask {
            flush: FlushTimer::new(env.buffer_timeout, env.dirty.clone()),
            pacer: BatchPacer::new(MAX_INPUT_CHUNK, env.signals.back_pressured.clone()),
            aligner: BarrierAligner::new(n, env.checkpointing.mode),
            unaligned: UnalignedCheckpoints::new(env.checkpointing.unaligned),
            valve: WatermarkValve::new(n),
            ends: InputEnds::new(n),
            env,
            gate,
            chain,
            partition_ended: false,
        }
    }

    fn apply_valve(&mut self, out: ValveOutput) -> Result<()> {
        match out {
            ValveOutput::None => Ok(()),
            ValveOutput::Watermark(w) => self.chain.emit_watermark(w),
            ValveOutput::Status(s) => self.chain.emit_watermark_status(s),
        }
    }

    fn apply_step(&mut self, step: BarrierStep) -> Result<()> {
        if let Some(c) = step.block {
            self.gate.block(c);
        }
        if step.unblock_all {
            self.gate.unblock_all();
        }
        if let Some(old) = step.aborted {
            self.env.checkpointing.decline(
                old,
                "a newer checkpoint's barrier arrived before it aligned",
            );
        }
        if let Some((barrier, alignment)) = step.complete {
            self.unaligned.take_announcements(barrier.id);
            checkpoint_chain(self.chain.as_mut(), &mut self.env, barrier, alignment)?;
        }
        Ok(())
    }

    fn handle_mailbox(&mut self) -> Result<()> {
        while let Some(msg) = next_message(&self.env)? {
            match msg {
                TaskMessage::NotifyCheckpointComplete(id) => {
                    self.chain.notify_checkpoint(id, true)?;
                    self.env.checkpointing.on_complete(id);
                }
                TaskMessage::NotifyCheckpointAborted(id) => {
                    self.chain.notify_checkpoint(id, false)?;
                    self.unaligned.abort(id);
                    self.gate.abort_recordings(id);
                    let step = self.aligner.abort(id);
                    self.apply_step(step)?;
                    self.env.checkpointing.on_abort(id);
                }
                TaskMessage::PrepareStop => self.env.checkpointing.prepare_stop(),
                TaskMessage::TriggerCheckpoint(_) | TaskMessage::Cancel => {}
            }
        }
        Ok(())
    }

    /// Barriers that overtook the data lane, and an alignment that has taken too long.
    fn handle_unaligned(&mut self) -> Result<()> {
        self.take_priority_barriers(&[])?;
        if let (true, _) = self.alignment_timed_out()
            && let Some(barrier) = self.aligning()
        {
            self.checkpoint_unaligned(barrier)?;
        }
        self.complete_unaligned()
    }

    /// Takes the checkpoints whose barriers wait on the priority lanes. `rest` is what the
    /// task still has to hand on of the batch it is working on: it precedes those barriers,
    /// so it goes into their in-flight data.
    fn take_priority_barriers(&mut self, rest: &[StreamRecord<IN>]) -> Result<()> {
        while let Some((channel, barrier, sequence)) = self.gate.poll_priority() {
            if !barrier.unaligned {
                // An aligned barrier announced ahead of itself.
                if self.gate.is_recording(barrier.id) {
                    self.gate.end_recording(barrier.id, channel, sequence)?;
                } else if !self.aligner.is_stale(barrier.id) {
                    self.unaligned.announce(barrier, channel, sequence);
                }
                continue;
            }
            let before = self.unaligned.newest();
            self.checkpoint_unaligned(barrier)?;
            if self.unaligned.newest() > before && !rest.is_empty() {
                self.gate.record_rest(before, rest)?;
            }
            self.gate.end_recording(barrier.id, channel, sequence)?;
        }
        Ok(())
    }

    /// Whether the alignment in progress should switch to unaligned now, or when it will.
    /// Not once an input has ended: the barriers behind end-of-data align, so that the task's
    /// snapshot follows its own end when every input has ended (the checkpoint after which it
    /// may exit), and channels that ended hold nothing to wait for.
    fn alignment_timed_out(&self) -> (bool, Option<Instant>) {
        if self.ends.any_ended() {
            return (false, None);
        }
        self.unaligned.timed_out(self.aligning())
    }

    /// The aligned checkpoint in progress: a barrier being aligned, or one announced.
    fn aligning(&self) -> Option<CheckpointBarrier> {
        self.aligner
            .pending_barrier()
            .or_else(|| self.unaligned.announced())
    }

    /// Takes checkpoint `barrier` unaligned, if it is new: the snapshot now, the barrier ahead
    /// of everything queued downstream, and from here on, until each channel's barrier, what
    /// is read goes into the checkpoint as in-flight data.
    fn checkpoint_unaligned(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        let Some(t) = self
            .unaligned
            .take_over(&mut self.aligner, &self.env.checkpointing, barrier)
        else {
            return Ok(());
        };
        self.gate.unblock_all();
        let id = t.barrier.id;
        let started = Instant::now();
        self.chain.snapshot_state(id)?;
        let hooks = started.elapsed();
        self.chain.emit_barrier(t.barrier)?;
        let captured =
            self.env
                .checkpointing
                .capture(&self.env.info, t.barrier, t.alignment, hooks)?;
        if captured.is_some() {
            self.gate.start_recording(id);
            for c in t.seen {
                self.gate.end_recording_here(id, c)?;
            }
            for (c, at) in t.announced {
                self.gate.end_recording(id, c, at)?;
            }
        }
        tracing::debug!(task = %self.env.info.task_name_with_subtask(), checkpoint = id, "snapshot taken unaligned");
        self.unaligned.started(id, captured);
        Ok(())
    }

    /// Writes the unaligned checkpoints whose in-flight data is complete.
    fn complete_unaligned(&mut self) -> Result<()> {
        if !self.unaligned.has_active() {
            return Ok(());
        }
        self.gate.prefetch_all()?;
        let gate = &self.gate;
        for captured in self
            .unaligned
            .take_complete(|id| gate.is_recording_complete(id))
        {
            let data = self.gate.take_recording(captured.id());
            self.env.checkpointing.write(captured, vec![(1, data)]);
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
        }
        if self.unaligned.enabled() {
            self.gate.enable_unaligned()?;
        }
        // In-flight data of the unaligned checkpoint restored from comes first.
        for bytes in self.env.checkpointing.take_in_flight(1) {
            let batch = self.gate.decode(&bytes)?;
            self.collect(batch)?;
        }
        loop {
            self.handle_mailbox()?;
            if self.unaligned.enabled() {
                self.handle_unaligned()?;
            }
            if maybe_end_partition(self.chain.as_mut(), &self.env, &mut self.partition_ended)?
                && self.gate.is_finished()
            {
                return Ok(());
            }
            if self.unaligned.enabled() && !self.chain.is_available() {
                let start = Instant::now();
                wait_for_output(&[&self.gate], &self.env.mailbox);
                self.env.signals.back_pressured.add(start.elapsed());
                continue;
            }
            match self.gate.try_next()? {
                Some((channel, element)) => {
                    self.process_element(channel, element)?;
                    self.flush.maybe_flush(self.chain.as_mut())?;
                }
                None if self.gate.has_pending_barriers() => {}
                None => {
                    if self.env.checkpointing.ended().is_none() {
                        fire_timers(&self.env.timers, self.chain.as_mut())?;
                    }
                    self.flush.maybe_flush(self.chain.as_mut())?;
                    let (_, switch) = self.alignment_timed_out();
                    let deadline = earliest(
                        earliest(self.flush.deadline(), timer_deadline(&self.env.timers)),
                        switch,
                    );
                    let start = Instant::now();
                    wait_for_input(&[&self.gate], &self.env.mailbox, deadline);
                    self.env.time_metrics.idle.add(start.elapsed());
                }
            }
        }
    }

    /// Hands `batch` down the chain, timed, or in chunks when it is larger than the pacer's
    /// limit.
    #[inline]
    fn collect(&mut self, batch: Vec<StreamRecord<IN>>) -> Result<()> {
        if batch.len() > self.pacer.limit() {
            return self.collect_in_chunks(batch);
        }
        let chain = &mut self.chain;
        self.pacer.timed(batch.len(), || chain.collect(batch))
    }

    /// Hands `batch` down the chain in chunks the pacer sizes, answering the mailbox and
    /// flushing on time between them.
    #[inline(never)]
    fn collect_in_chunks(&mut self, batch: Vec<StreamRecord<IN>>) -> Result<()> {
        let mut rest = VecDeque::from(batch);
        while !rest.is_empty() {
            let chunk = next_chunk(&mut rest, self.pacer.limit());
            let chain = &mut self.chain;
            self.pacer.timed(chunk.len(), || chain.collect(chunk))?;
            if !rest.is_empty() {
                self.handle_mailbox()?;
                if self.unaligned.enabled() && self.gate.has_priority_waiting() {
                    // A barrier need not wait for the rest of a large batch.
                    self.take_priority_barriers(rest.make_contiguous())?;
                    self.complete_unaligned()?;
                }
                self.flush.maybe_flush(self.chain.as_mut())?;
            }
        }
        Ok(())
    }

    /// `channel` has no more data.
    fn channel_ended(&mut self, channel: usize, mode: StopMode) -> Result<()> {
        if !self.ends.set(channel, mode) {
            return Ok(());
        }
        if mode == StopMode::Drain {
            let out = self.valve.finish_channel(channel);
            self.apply_valve(out)?;
        }
        if let Some(all) = self.ends.all_ended(0..self.ends.len()) {
            end_chain_data(self.chain.as_mut(), &mut self.env.checkpointing, all, true)?;
        }
        Ok(())
    }

    #[inline]
    fn process_element(&mut self, channel: usize, element: StreamElement<IN>) -> Result<()> {
        match element {
            StreamElement::Records(batch) => self.collect(batch),
            StreamElement::Watermark(w) => {
                if self.ends.is_ended(channel) {
                    return Ok(());
                }
                let out = self.valve.input_watermark(channel, w);
                self.apply_valve(out)
            }
            StreamElement::WatermarkStatus(s) => {
                if self.ends.is_ended(channel) {
                    return Ok(());
                }
                let out = self.valve.input_status(channel, s);
                self.apply_valve(out)
            }
            StreamElement::LatencyMarker(m) => self.chain.emit_latency_marker(m),
            StreamElement::Barrier(b) => {
                if self.gate.is_recording(b.id) {
                    self.gate.end_recording_here(b.id, channel)?;
                    return Ok(());
                }
                if !self.unaligned.is_new(b.id) {
                    return Ok(());
                }
                let step = self.aligner.on_barrier(channel, b);
                self.apply_step(step)
            }
            StreamElement::EndOfData(mode) => self.channel_ended(channel, mode),
            StreamElement::EndOfPartition => {
                self.channel_ended(channel, StopMode::Drain)?;
                self.gate.finish_channel(channel);
                let step = self.aligner.on_channel_closed(channel);
                self.apply_step(step)
            }
        }
    }
}

impl<IN> StreamTask for OneInputTask<IN> {
    fn run(mut self: Box<Self>) -> Result<()> {
        let result = self.run_loop();
        if result.is_ok() {
            self.env.checkpointing.wait_for_uploads();
        }
        let closed = self.chain.close();
        result.and(closed)
    }
}
