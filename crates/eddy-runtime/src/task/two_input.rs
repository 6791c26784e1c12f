//! The two-input task: reads two gates of different element types into a two-input operator
//! (connect, co-process, joins), which heads the task's chain.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use eddy_core::element::{CheckpointBarrier, StopMode, StreamElement, StreamRecord};

use super::checkpointing::{BarrierAligner, BarrierStep, UnalignedCheckpoints};
use super::pacer::{BatchPacer, MAX_INPUT_CHUNK, next_chunk};
use super::valve::ValveOutput;
use super::{
    FlushTimer, InputEnds, StreamTask, TaskEnv, TaskMessage, WatermarkValve, earliest,
    next_message, timer_deadline,
};
use crate::chain::{ChainOutput, Names, OperatorOutput, guard};
use crate::error::Result;
use crate::exchange::{InputGate, wait_for_input, wait_for_output};
use crate::metrics::OperatorIoMetrics;
use crate::operator::{OperatorContext, Output, TwoInputOperator};

/// Puts the rest of a batch into the in-flight data of the gate it came from.
type RestInto<S, T> = fn(&mut S, u64, &[StreamRecord<T>]) -> Result<()>;

/// Drives a two-input operator and the chain behind it.
pub struct TwoInputTask<IN1, IN2, OUT, OP> {
    env: TaskEnv,
    gate1: InputGate<IN1>,
    gate2: InputGate<IN2>,
    op: OP,
    out: OperatorOutput<OUT>,
    ctx: OperatorContext,
    io: OperatorIoMetrics,
    names: Names,
    valve: WatermarkValve,
    aligner: BarrierAligner,
    unaligned: UnalignedCheckpoints,
    ends: InputEnds,
    ended: [bool; 2],
    prefer_second: bool,
    partition_ended: bool,
    flush: FlushTimer,
    pacer: BatchPacer,
}

impl<IN1, IN2, OUT, OP> TwoInputTask<IN1, IN2, OUT, OP>
where
    OP: TwoInputOperator<IN1, IN2, OUT>,
{
    /// A task reading `gate1` and `gate2` into `op`, which writes to `out`.
    pub fn new(
        env: TaskEnv,
        gate1: InputGate<IN1>,
        gate2: InputGate<IN2>,
        op: OP,
        out: OperatorOutput<OUT>,
        ctx: OperatorContext,
        io: OperatorIoMetrics,
    ) -> Self {
        let names = Names::new(&ctx.operator_name, &env.info.task_name_with_subtask());
        let n = gate1.num_channels() + gate2.num_channels();
        let valve = WatermarkValve::new(n);
        TwoInputTask {
            flush: FlushTimer::new(env.buffer_timeout, env.dirty.clone()),
            pacer: BatchPacer::new(MAX_INPUT_CHUNK, env.signals.back_pressured.clone()),
            aligner: BarrierAligner::new(n, env.checkpointing.mode),
            unaligned: UnalignedCheckpoints::new(env.checkpointing.unaligned),
            ends: InputEnds::new(n),
            partition_ended: false,
            env,
            gate1,
            gate2,
            op,
            out,
            ctx,
            io,
            names,
            valve,
            ended: [false, false],
            prefer_second: false,
        }
    }

    fn apply_valve(&mut self, v: ValveOutput) -> Result<()> {
        match v {
            ValveOutput::None => Ok(()),
            ValveOutput::Watermark(w) => {
                self.io.input_watermark.set(w.0);
                let (op, out) = (&mut self.op, &mut self.out);
                guard(&self.names, || op.process_watermark(w, out))
            }
            ValveOutput::Status(s) => self.out.emit_watermark_status(s),
        }
    }

    fn end_input(&mut self, input: u8) -> Result<()> {
        let (op, out) = (&mut self.op, &mut self.out);
        guard(&self.names, || op.end_input(input, out))
    }

    /// Handles `element` from `channel` of `input`; `rest_into` puts the rest of a batch into
    /// the in-flight data of the gate it came from (see `take_priority_barriers`).
    fn handle<T>(
        &mut self,
        input: u8,
        channel: usize,
        element: StreamElement<T>,
        process: impl Fn(&mut OP, Vec<StreamRecord<T>>, &mut OperatorOutput<OUT>) -> Result<()>,
        rest_into: RestInto<Self, T>,
    ) -> Result<()> {
        let offset = if input == 1 {
            0
        } else {
            self.gate1.num_channels()
        };
        match element {
            StreamElement::Records(batch) => {
                self.io.num_records_in.inc_by(batch.len() as u64);
                if batch.len() <= self.pacer.limit() {
                    let (op, out, names) = (&mut self.op, &mut self.out, &self.names);
                    return self
                        .pacer
                        .timed(batch.len(), || guard(names, || process(op, batch, out)));
                }
                // Chunks the pacer sizes, with the mailbox answered and buffers flushed on
                // time between them.
                let mut rest = VecDeque::from(batch);
                while !rest.is_empty() {
                    let chunk = next_chunk(&mut rest, self.pacer.limit());
                    let (op, out, names) = (&mut self.op, &mut self.out, &self.names);
                    self.pacer
                        .timed(chunk.len(), || guard(names, || process(op, chunk, out)))?;
                    if !rest.is_empty() {
                        self.handle_mailbox()?;
                        if self.unaligned.enabled()
                            && (self.gate1.has_priority_waiting()
                                || self.gate2.has_priority_waiting())
                        {
                            // A barrier need not wait for the rest of a large batch.
                            self.take_priority_barriers(rest.make_contiguous(), rest_into)?;
                            self.complete_unaligned()?;
                        }
                        self.flush.maybe_flush(&mut self.out)?;
                    }
                }
                Ok(())
            }
            StreamElement::Watermark(_) | StreamElement::WatermarkStatus(_)
                if self.ends.is_ended(offset + channel) =>
            {
                Ok(())
            }
            StreamElement::Watermark(w) => {
                let v = self.valve.input_watermark(offset + channel, w);
                self.apply_valve(v)
            }
            StreamElement::WatermarkStatus(s) => {
                let v = self.valve.input_status(offset + channel, s);
                self.apply_valve(v)
            }
            StreamElement::LatencyMarker(m) => self.out.emit_latency_marker(m),
            StreamElement::Barrier(b) => {
                if input == 1 && self.gate1.is_recording(b.id) {
                    self.gate1.end_recording_here(b.id, channel)?;
                    return Ok(());
                }
                if input == 2 && self.gate2.is_recording(b.id) {
                    self.gate2.end_recording_here(b.id, channel)?;
                    return Ok(());
                }
                if !self.unaligned.is_new(b.id) {
                    return Ok(());
                }
                let step = self.aligner.on_barrier(offset + channel, b);
                self.apply_step(step)
            }
            StreamElement::EndOfData(mode) => self.channel_ended(input, offset + channel, mode),
            StreamElement::EndOfPartition => {
                self.channel_ended(input, offset + channel, StopMode::Drain)?;
                if input == 1 {
                    self.gate1.finish_channel(channel);
                } else {
                    self.gate2.finish_channel(channel);
                }
                let step = self.aligner.on_channel_closed(offset + channel);
                self.apply_step(step)
            }
        }
    }

    /// Channel `channel` (over both inputs) of `input` has no more data.
    fn channel_ended(&mut self, input: u8, channel: usize, mode: StopMode) -> Result<()> {
        if !self.ends.set(channel, mode) {
            return Ok(());
        }
        if mode == StopMode::Drain {
            let v = self.valve.finish_channel(channel);
            self.apply_valve(v)?;
        }
        let n1 = self.gate1.num_channels();
        let range = if input == 1 {
            0..n1
        } else {
            n1..self.ends.len()
        };
        let slot = (input - 1) as usize;
        if !self.ended[slot] && self.ends.all_ended(range) == Some(StopMode::Drain) {
            self.ended[slot] = true;
            if !self.env.checkpointing.finished_on_restore {
                self.end_input(input)?;
            }
        }
        if let Some(all) = self.ends.all_ended(0..self.ends.len()) {
            self.end_data(all, true)?;
        }
        Ok(())
    }

    fn end_data(&mut self, mode: StopMode, finish: bool) -> Result<()> {
        if self.env.checkpointing.ended().is_some() {
            return Ok(());
        }
        if finish && mode == StopMode::Drain {
            let (op, out) = (&mut self.op, &mut self.out);
            guard(&self.names, || op.finish(out))?;
            self.out.end_input()?;
        }
        self.out.flush()?;
        self.out.emit_end_of_data(mode)?;
        self.env.checkpointing.set_ended(mode);
        Ok(())
    }

    fn apply_step(&mut self, step: BarrierStep) -> Result<()> {
        if let Some(c) = step.block {
            let n1 = self.gate1.num_channels();
            if c < n1 {
                self.gate1.block(c);
            } else {
                self.gate2.block(c - n1);
            }
        }
        if step.unblock_all {
            self.gate1.unblock_all();
            self.gate2.unblock_all();
        }
        if let Some(old) = step.aborted {
            self.env.checkpointing.decline(
                old,
                "a newer checkpoint's barrier arrived before it aligned",
            );
        }
        if let Some((barrier, alignment)) = step.complete {
            self.unaligned.take_announcements(barrier.id);
            self.checkpoint(barrier, alignment)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, barrier: CheckpointBarrier, alignment: Duration) -> Result<()> {
        let started = Instant::now();
        let op = &mut self.op;
        guard(&self.names, || op.snapshot_state(barrier.id))?;
        self.out.snapshot_state(barrier.id)?;
        let hooks = started.elapsed();
        self.out.emit_barrier(barrier)?;
        self.env
            .checkpointing
            .snapshot(&self.env.info, barrier, alignment, hooks)
    }

    /// Barriers that overtook the data lanes, and an alignment that has taken too long.
    fn handle_unaligned(&mut self) -> Result<()> {
        self.take_priority_barriers::<IN1>(&[], |_, _, _| Ok(()))?;
        if let (true, _) = self.alignment_timed_out()
            && let Some(barrier) = self.aligning()
        {
            self.checkpoint_unaligned(barrier)?;
        }
        self.complete_unaligned()
    }

    /// Takes the checkpoints whose barriers wait on the priority lanes. `rest` is what the task
    /// still has to hand on of the batch it is working on: `rest_into` puts it into their
    /// in-flight data, which it precedes.
    fn take_priority_barriers<T>(
        &mut self,
        rest: &[StreamRecord<T>],
        rest_into: RestInto<Self, T>,
    ) -> Result<()> {
        loop {
            let (input, (channel, barrier, sequence)) = match self.gate1.poll_priority() {
                Some(p) => (1, p),
                None => match self.gate2.poll_priority() {
                    Some(p) => (2, p),
                    None => return Ok(()),
                },
            };
            if !barrier.unaligned {
                // An aligned barrier announced ahead of itself.
                let recording = if input == 1 {
                    self.gate1.is_recording(barrier.id)
                } else {
                    self.gate2.is_recording(barrier.id)
                };
                if recording {
                    self.end_recording(input, barrier.id, channel, sequence)?;
                } else if !self.aligner.is_stale(barrier.id) {
                    let offset = if input == 1 {
                        0
                    } else {
                        self.gate1.num_channels()
                    };
                    self.unaligned.announce(barrier, offset + channel, sequence);
                }
                continue;
            }
            let before = self.unaligned.newest();
            self.checkpoint_unaligned(barrier)?;
            if self.unaligned.newest() > before && !rest.is_empty() {
                rest_into(self, before, rest)?;
            }
            self.end_recording(input, barrier.id, channel, sequence)?;
        }
    }

    /// Channel `channel` of `input` has checkpoint `id`'s barrier at `end`.
    fn end_recording(&mut self, input: u8, id: u64, channel: usize, end: u64) -> Result<()> {
        if input == 1 {
            self.gate1.end_recording(id, channel, end)
        } else {
            self.gate2.end_recording(id, channel, end)
        }
    }

    /// Writes the unaligned checkpoints whose in-flight data is complete.
    fn complete_unaligned(&mut self) -> Result<()> {
        if !self.unaligned.has_active() {
            return Ok(());
        }
        self.gate1.prefetch_all()?;
        self.gate2.prefetch_all()?;
        let (g1, g2) = (&self.gate1, &self.gate2);
        for captured in self
            .unaligned
            .take_complete(|id| g1.is_recording_complete(id) && g2.is_recording_complete(id))
        {
            let id = captured.id();
            let data = vec![
                (1, self.gate1.take_recording(id)),
                (2, self.gate2.take_recording(id)),
            ];
            self.env.checkpointing.write(captured, data);
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

    /// Takes checkpoint `barrier` unaligned, if it is new (see the one-input task).
    fn checkpoint_unaligned(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        let Some(t) = self
            .unaligned
            .take_over(&mut self.aligner, &self.env.checkpointing, barrier)
        else {
            return Ok(());
        };
        self.gate1.unblock_all();
        self.gate2.unblock_all();
        let id = t.barrier.id;
        let started = Instant::now();
        let op = &mut self.op;
        guard(&self.names, || op.snapshot_state(id))?;
        self.out.snapshot_state(id)?;
        let hooks = started.elapsed();
        self.out.emit_barrier(t.barrier)?;
        let captured =
            self.env
                .checkpointing
                .capture(&self.env.info, t.barrier, t.alignment, hooks)?;
        if captured.is_some() {
            self.gate1.start_recording(id);
            self.gate2.start_recording(id);
            let n1 = self.gate1.num_channels();
            for c in t.seen {
                if c < n1 {
                    self.gate1.end_recording_here(id, c)?;
                } else {
                    self.gate2.end_recording_here(id, c - n1)?;
                }
            }
            for (c, at) in t.announced {
                if c < n1 {
                    self.end_recording(1, id, c, at)?;
                } else {
                    self.end_recording(2, id, c - n1, at)?;
                }
            }
        }
        tracing::debug!(task = %self.env.info.task_name_with_subtask(), checkpoint = id, "snapshot taken unaligned");
        self.unaligned.started(id, captured);
        Ok(())
    }

    fn poll_one(&mut self) -> Result<bool> {
        // Alternate between the inputs so that neither starves the other.
        self.prefer_second = !self.prefer_second;
        for second in [self.prefer_second, !self.prefer_second] {
            if second {
                if let Some((c, e)) = self.gate2.try_next()? {
                    self.handle(
                        2,
                        c,
                        e,
                        |op, b, out| op.process_batch2(b, out),
                        |t, since, rest| t.gate2.record_rest(since, rest),
                    )?;
                    return Ok(true);
                }
            } else if let Some((c, e)) = self.gate1.try_next()? {
                self.handle(
                    1,
                    c,
                    e,
                    |op, b, out| op.process_batch1(b, out),
                    |t, since, rest| t.gate1.record_rest(since, rest),
                )?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn handle_mailbox(&mut self) -> Result<()> {
        while let Some(msg) = next_message(&self.env)? {
            match msg {
                TaskMessage::NotifyCheckpointComplete(id) => {
                    let op = &mut self.op;
                    guard(&self.names, || op.notify_checkpoint_complete(id))?;
                    self.out.notify_checkpoint(id, true)?;
                    self.env.checkpointing.on_complete(id);
                }
                TaskMessage::NotifyCheckpointAborted(id) => {
                    self.out.notify_checkpoint(id, false)?;
                    self.unaligned.abort(id);
                    self.gate1.abort_recordings(id);
                    self.gate2.abort_recordings(id);
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

    fn fire_timers(&mut self) -> Result<()> {
        if self.env.timers.next_timer().is_none() {
            return Ok(());
        }
        let now = eddy_core::time::now_millis();
        while let Some((time, index)) = self.env.timers.poll_due(now) {
            if index == 0 {
                let (op, out) = (&mut self.op, &mut self.out);
                guard(&self.names, || op.on_processing_time(time, out))?;
            } else {
                self.out.on_processing_time(index, time)?;
            }
        }
        Ok(())
    }

    fn run_loop(&mut self) -> Result<()> {
        self.out.open()?;
        let (op, ctx) = (&mut self.op, &mut self.ctx);
        guard(&self.names, || op.open(ctx))?;
        if self.env.checkpointing.finished_on_restore {
            self.end_data(StopMode::Drain, false)?;
        }
        if self.unaligned.enabled() {
            self.gate1.enable_unaligned()?;
            self.gate2.enable_unaligned()?;
        }
        // In-flight data of the unaligned checkpoint restored from comes first.
        for bytes in self.env.checkpointing.take_in_flight(1) {
            let batch = self.gate1.decode(&bytes)?;
            self.handle(
                1,
                0,
                StreamElement::Records(batch),
                |op, b, out| op.process_batch1(b, out),
                |t, since, rest| t.gate1.record_rest(since, rest),
            )?;
        }
        for bytes in self.env.checkpointing.take_in_flight(2) {
            let batch = self.gate2.decode(&bytes)?;
            self.handle(
                2,
                0,
                StreamElement::Records(batch),
                |op, b, out| op.process_batch2(b, out),
                |t, since, rest| t.gate2.record_rest(since, rest),
            )?;
        }
        loop {
            self.handle_mailbox()?;
            if self.unaligned.enabled() {
                self.handle_unaligned()?;
            }
            if !self.partition_ended && self.env.checkpointing.may_exit() {
                self.out.flush()?;
                self.out.emit_end_of_partition()?;
                self.partition_ended = true;
            }
            if self.partition_ended && self.gate1.is_finished() && self.gate2.is_finished() {
                return Ok(());
            }
            if self.unaligned.enabled() && !self.out.is_available() {
                let start = Instant::now();
                wait_for_output(&[&self.gate1, &self.gate2], &self.env.mailbox);
                self.env.signals.back_pressured.add(start.elapsed());
                continue;
            }
            if self.poll_one()? {
                self.flush.maybe_flush(&mut self.out)?;
                continue;
            }
            if self.gate1.has_pending_barriers() || self.gate2.has_pending_barriers() {
                continue;
            }
            if self.env.checkpointing.ended().is_none() {
                self.fire_timers()?;
            }
            self.flush.maybe_flush(&mut self.out)?;
            let (_, switch) = self.alignment_timed_out();
            let deadline = earliest(
                earliest(self.flush.deadline(), timer_deadline(&self.env.timers)),
                switch,
            );
            let start = Instant::now();
            wait_for_input(&[&self.gate1, &self.gate2], &self.env.mailbox, deadline);
            self.env.time_metrics.idle.add(start.elapsed());
        }
    }
}

impl<IN1, IN2, OUT, OP> StreamTask for TwoInputTask<IN1, IN2, OUT, OP>
where
    OP: TwoInputOperator<IN1, IN2, OUT>,
{
    fn run(mut self: Box<Self>) -> Result<()> {
        let result = self.run_loop();
        if result.is_ok() {
            self.env.checkpointing.wait_for_uploads();
        }
        let op = &mut self.op;
        let closed = guard(&self.names, || op.close());
        let out_closed = self.out.close();
        result.and(closed).and(out_closed)
    }
}
