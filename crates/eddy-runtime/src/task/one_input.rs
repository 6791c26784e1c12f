//! The one-input task: reads one input gate (one or more upstream edges of the same type).

use std::time::Instant;

use eddy_core::element::StreamElement;

use super::valve::ValveOutput;
use super::{
    FlushTimer, StreamTask, TaskEnv, WatermarkValve, drain_mailbox, earliest, finish_chain,
    fire_timers, timer_deadline,
};
use crate::chain::ChainOutput;
use crate::error::{Result, RuntimeError};
use crate::exchange::{InputGate, wait_for_input};

/// Reads a gate and drives a chain whose head has one input.
pub struct OneInputTask<IN> {
    env: TaskEnv,
    gate: InputGate<IN>,
    chain: Box<dyn ChainOutput<IN>>,
    valve: WatermarkValve,
}

impl<IN> OneInputTask<IN> {
    /// A task reading `gate` into `chain`.
    pub fn new(env: TaskEnv, gate: InputGate<IN>, chain: Box<dyn ChainOutput<IN>>) -> Self {
        let valve = WatermarkValve::new(gate.num_channels());
        OneInputTask {
            env,
            gate,
            chain,
            valve,
        }
    }

    fn apply_valve(&mut self, out: ValveOutput) -> Result<()> {
        match out {
            ValveOutput::None => Ok(()),
            ValveOutput::Watermark(w) => self.chain.emit_watermark(w),
            ValveOutput::Status(s) => self.chain.emit_watermark_status(s),
        }
    }

    fn run_loop(&mut self) -> Result<()> {
        self.chain.open()?;
        let mut flush = FlushTimer::new(self.env.buffer_timeout, self.env.dirty.clone());
        while !self.gate.is_finished() {
            drain_mailbox(&self.env, self.chain.as_mut(), |_| Ok(()))?;
            match self.gate.try_next()? {
                Some((channel, element)) => {
                    self.process_element(channel, element)?;
                    flush.maybe_flush(self.chain.as_mut())?;
                }
                None => {
                    fire_timers(&self.env.timers, self.chain.as_mut())?;
                    flush.maybe_flush(self.chain.as_mut())?;
                    if self.gate.is_finished() {
                        break;
                    }
                    let deadline = earliest(flush.deadline(), timer_deadline(&self.env.timers));
                    let start = Instant::now();
                    wait_for_input(&[&self.gate], &self.env.mailbox, deadline);
                    self.env.time_metrics.idle.add(start.elapsed());
                }
            }
        }
        finish_chain(self.chain.as_mut())
    }

    #[inline]
    fn process_element(&mut self, channel: usize, element: StreamElement<IN>) -> Result<()> {
        match element {
            StreamElement::Records(batch) => self.chain.collect(batch),
            StreamElement::Watermark(w) => {
                let out = self.valve.input_watermark(channel, w);
                self.apply_valve(out)
            }
            StreamElement::WatermarkStatus(s) => {
                let out = self.valve.input_status(channel, s);
                self.apply_valve(out)
            }
            StreamElement::LatencyMarker(m) => self.chain.emit_latency_marker(m),
            StreamElement::Barrier(_) => Err(RuntimeError::Internal(
                "checkpoint barrier received, but this build does not checkpoint".into(),
            )),
            StreamElement::EndOfPartition => {
                self.gate.finish_channel(channel);
                let out = self.valve.finish_channel(channel);
                self.apply_valve(out)
            }
        }
    }
}

impl<IN> StreamTask for OneInputTask<IN> {
    fn run(mut self: Box<Self>) -> Result<()> {
        let result = self.run_loop();
        let closed = self.chain.close();
        result.and(closed)
    }
}
