//! The two-input task: reads two gates of different element types into a two-input operator
//! (connect, co-process, joins), which heads the task's chain.

use std::time::Instant;

use crossbeam_channel::TryRecvError;
use eddy_core::element::StreamElement;

use super::valve::ValveOutput;
use super::{
    FlushTimer, StreamTask, TaskEnv, TaskMessage, WatermarkValve, earliest, timer_deadline,
};
use crate::chain::{ChainOutput, Names, OperatorOutput, guard};
use crate::error::{Result, RuntimeError};
use crate::exchange::{InputGate, wait_for_input};
use crate::metrics::OperatorIoMetrics;
use crate::operator::{OperatorContext, Output, TwoInputOperator};

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
    ended: [bool; 2],
    prefer_second: bool,
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
        let valve = WatermarkValve::new(gate1.num_channels() + gate2.num_channels());
        TwoInputTask {
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

    fn handle<T>(
        &mut self,
        input: u8,
        channel: usize,
        element: StreamElement<T>,
        process: impl FnOnce(
            &mut OP,
            Vec<eddy_core::element::StreamRecord<T>>,
            &mut OperatorOutput<OUT>,
        ) -> Result<()>,
    ) -> Result<()> {
        let offset = if input == 1 {
            0
        } else {
            self.gate1.num_channels()
        };
        match element {
            StreamElement::Records(batch) => {
                self.io.num_records_in.inc_by(batch.len() as u64);
                let (op, out) = (&mut self.op, &mut self.out);
                guard(&self.names, || process(op, batch, out))
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
            StreamElement::Barrier(_) => Err(RuntimeError::Internal(
                "checkpoint barrier received, but this build does not checkpoint".into(),
            )),
            StreamElement::EndOfPartition => {
                let finished = if input == 1 {
                    self.gate1.finish_channel(channel);
                    self.gate1.is_finished()
                } else {
                    self.gate2.finish_channel(channel);
                    self.gate2.is_finished()
                };
                let v = self.valve.finish_channel(offset + channel);
                self.apply_valve(v)?;
                let slot = (input - 1) as usize;
                if finished && !self.ended[slot] {
                    self.ended[slot] = true;
                    self.end_input(input)?;
                }
                Ok(())
            }
        }
    }

    fn poll_one(&mut self) -> Result<bool> {
        // Alternate between the inputs so that neither starves the other.
        self.prefer_second = !self.prefer_second;
        for second in [self.prefer_second, !self.prefer_second] {
            if second {
                if let Some((c, e)) = self.gate2.try_next()? {
                    self.handle(2, c, e, |op, b, out| op.process_batch2(b, out))?;
                    return Ok(true);
                }
            } else if let Some((c, e)) = self.gate1.try_next()? {
                self.handle(1, c, e, |op, b, out| op.process_batch1(b, out))?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn handle_mailbox(&mut self) -> Result<()> {
        loop {
            match self.env.mailbox.try_recv() {
                Ok(TaskMessage::Cancel) | Err(TryRecvError::Disconnected) => {
                    return Err(RuntimeError::Cancelled);
                }
                Ok(TaskMessage::NotifyCheckpointComplete(id)) => {
                    let op = &mut self.op;
                    guard(&self.names, || op.notify_checkpoint_complete(id))?;
                    self.out.notify_checkpoint(id, true)?;
                }
                Ok(TaskMessage::NotifyCheckpointAborted(id)) => {
                    self.out.notify_checkpoint(id, false)?;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if self.env.signals.is_cancelled() {
            return Err(RuntimeError::Cancelled);
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
        let mut flush = FlushTimer::new(self.env.buffer_timeout, self.env.dirty.clone());
        while !(self.gate1.is_finished() && self.gate2.is_finished()) {
            self.handle_mailbox()?;
            if self.poll_one()? {
                flush.maybe_flush(&mut self.out)?;
                continue;
            }
            self.fire_timers()?;
            flush.maybe_flush(&mut self.out)?;
            if self.gate1.is_finished() && self.gate2.is_finished() {
                break;
            }
            let deadline = earliest(flush.deadline(), timer_deadline(&self.env.timers));
            let start = Instant::now();
            wait_for_input(&[&self.gate1, &self.gate2], &self.env.mailbox, deadline);
            self.env.time_metrics.idle.add(start.elapsed());
        }
        let (op, out) = (&mut self.op, &mut self.out);
        guard(&self.names, || op.finish(out))?;
        self.out.end_input()?;
        self.out.flush()?;
        self.out.emit_end_of_partition()
    }
}

impl<IN1, IN2, OUT, OP> StreamTask for TwoInputTask<IN1, IN2, OUT, OP>
where
    OP: TwoInputOperator<IN1, IN2, OUT>,
{
    fn run(mut self: Box<Self>) -> Result<()> {
        let result = self.run_loop();
        let op = &mut self.op;
        let closed = guard(&self.names, || op.close());
        let out_closed = self.out.close();
        result.and(closed).and(out_closed)
    }
}
