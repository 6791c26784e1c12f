//! Combining the watermarks of several input channels (Flink's `StatusWatermarkValve`).

use eddy_core::element::{Watermark, WatermarkStatus};

/// What the valve decided after an input event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValveOutput {
    /// Nothing changes downstream.
    None,
    /// The combined watermark advanced.
    Watermark(Watermark),
    /// The combined status changed.
    Status(WatermarkStatus),
}

#[derive(Clone, Copy, Debug)]
struct ChannelState {
    watermark: i64,
    active: bool,
    finished: bool,
}

/// Tracks the watermark and status of every input channel and emits the combined watermark:
/// the minimum over active channels, only ever increasing. Idle channels are left out; a
/// finished channel counts as watermark `MAX` (nothing more can come from it). When every
/// unfinished channel is idle, the output is idle too.
#[derive(Debug)]
pub struct WatermarkValve {
    channels: Vec<ChannelState>,
    last_output: i64,
    output_active: bool,
}

impl WatermarkValve {
    /// A valve over `num_channels` channels, all active at `Watermark::MIN`.
    pub fn new(num_channels: usize) -> Self {
        WatermarkValve {
            channels: vec![
                ChannelState {
                    watermark: i64::MIN,
                    active: true,
                    finished: false,
                };
                num_channels
            ],
            last_output: i64::MIN,
            output_active: true,
        }
    }

    /// The last combined watermark emitted.
    pub fn current(&self) -> i64 {
        self.last_output
    }

    /// A watermark arrived on `channel`.
    pub fn input_watermark(&mut self, channel: usize, watermark: Watermark) -> ValveOutput {
        let ch = &mut self.channels[channel];
        if ch.finished {
            return ValveOutput::None;
        }
        if !ch.active {
            // A watermark means the channel is active again (Flink's behaviour); the status
            // change is reported by the status element that precedes it.
            return ValveOutput::None;
        }
        if watermark.0 > ch.watermark {
            ch.watermark = watermark.0;
            return self.advance();
        }
        ValveOutput::None
    }

    /// A status change arrived on `channel`.
    pub fn input_status(&mut self, channel: usize, status: WatermarkStatus) -> ValveOutput {
        let active = status == WatermarkStatus::Active;
        if self.channels[channel].finished || self.channels[channel].active == active {
            return ValveOutput::None;
        }
        self.channels[channel].active = active;
        self.recompute_status()
    }

    /// `channel` delivered end-of-partition: it no longer holds back the watermark.
    pub fn finish_channel(&mut self, channel: usize) -> ValveOutput {
        let ch = &mut self.channels[channel];
        ch.finished = true;
        ch.active = true;
        ch.watermark = i64::MAX;
        if self.channels.iter().all(|c| c.finished) {
            return ValveOutput::None;
        }
        self.recompute_status()
    }

    fn recompute_status(&mut self) -> ValveOutput {
        // Finished channels stay active (at watermark MAX).
        let any_active = self.channels.iter().any(|c| c.active);
        if !any_active && self.output_active {
            self.output_active = false;
            return ValveOutput::Status(WatermarkStatus::Idle);
        }
        if any_active && !self.output_active {
            self.output_active = true;
            // Becoming active again: report the status; a watermark follows when it advances.
            return ValveOutput::Status(WatermarkStatus::Active);
        }
        if any_active {
            return self.advance();
        }
        ValveOutput::None
    }

    fn advance(&mut self) -> ValveOutput {
        let min = self
            .channels
            .iter()
            .filter(|c| c.active)
            .map(|c| c.watermark)
            .min();
        match min {
            Some(m) if m > self.last_output => {
                self.last_output = m;
                ValveOutput::Watermark(Watermark(m))
            }
            _ => ValveOutput::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_active_channels() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(v.input_watermark(0, Watermark(10)), ValveOutput::None);
        assert_eq!(
            v.input_watermark(1, Watermark(5)),
            ValveOutput::Watermark(Watermark(5))
        );
        assert_eq!(
            v.input_watermark(1, Watermark(20)),
            ValveOutput::Watermark(Watermark(10))
        );
        assert_eq!(v.input_watermark(1, Watermark(15)), ValveOutput::None);
    }

    #[test]
    fn idle_channels_do_not_hold_back() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, Watermark(10));
        assert_eq!(
            v.input_status(1, WatermarkStatus::Idle),
            ValveOutput::Watermark(Watermark(10))
        );
        assert_eq!(
            v.input_status(0, WatermarkStatus::Idle),
            ValveOutput::Status(WatermarkStatus::Idle)
        );
        assert_eq!(
            v.input_status(0, WatermarkStatus::Active),
            ValveOutput::Status(WatermarkStatus::Active)
        );
    }

    #[test]
    fn finished_channels_do_not_hold_back() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, Watermark(10));
        assert_eq!(v.finish_channel(1), ValveOutput::Watermark(Watermark(10)));
    }

    #[test]
    fn a_finished_channel_counts_as_max_when_the_others_go_idle() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, Watermark(i64::MAX));
        v.finish_channel(0);
        assert_eq!(v.current(), i64::MIN, "channel 1 is active at MIN");
        assert_eq!(
            v.input_status(1, WatermarkStatus::Idle),
            ValveOutput::Watermark(Watermark::MAX)
        );
    }
}
