//! The input gate: all channels of one logical input of a task.

use std::time::Instant;

use crossbeam_channel::{Receiver, Select};
use eddy_core::element::StreamElement;

use super::channel::{ChannelReceiver, Polled};
use crate::error::{Result, RuntimeError};

/// The channels of one input, read round-robin. Channels can be blocked (during barrier
/// alignment) and are retired once they deliver end-of-partition.
pub struct InputGate<T> {
    channels: Vec<ChannelReceiver<T>>,
    blocked: Vec<bool>,
    finished: Vec<bool>,
    num_finished: usize,
    next: usize,
}

impl<T> InputGate<T> {
    /// A gate over `channels`.
    pub fn new(channels: Vec<ChannelReceiver<T>>) -> Self {
        let n = channels.len();
        InputGate {
            channels,
            blocked: vec![false; n],
            finished: vec![false; n],
            num_finished: 0,
            next: 0,
        }
    }

    /// Number of channels.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// The next element from any readable channel, without waiting.
    #[inline]
    pub fn try_next(&mut self) -> Result<Option<(usize, StreamElement<T>)>> {
        let n = self.channels.len();
        for i in 0..n {
            let c = (self.next + i) % n;
            if self.blocked[c] || self.finished[c] {
                continue;
            }
            match self.channels[c].try_recv() {
                Polled::Element(e) => {
                    self.next = c + 1;
                    return Ok(Some((c, e)));
                }
                Polled::Empty => {}
                Polled::Closed => return Err(RuntimeError::ChannelClosed),
            }
        }
        Ok(None)
    }

    /// Stops reading channel `c` until [`InputGate::unblock_all`].
    pub fn block(&mut self, c: usize) {
        self.blocked[c] = true;
    }

    /// Whether channel `c` is blocked.
    pub fn is_blocked(&self, c: usize) -> bool {
        self.blocked[c]
    }

    /// Reads every channel again.
    pub fn unblock_all(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// Retires channel `c` after its end-of-partition.
    pub fn finish_channel(&mut self, c: usize) {
        if !self.finished[c] {
            self.finished[c] = true;
            self.num_finished += 1;
        }
    }

    /// Whether channel `c` has delivered end-of-partition.
    pub fn is_channel_finished(&self, c: usize) -> bool {
        self.finished[c]
    }

    /// Whether every channel has delivered end-of-partition.
    pub fn is_finished(&self) -> bool {
        self.num_finished == self.channels.len()
    }

    /// Number of channels that are neither finished nor blocked.
    pub fn num_readable(&self) -> usize {
        (0..self.channels.len())
            .filter(|&c| !self.blocked[c] && !self.finished[c])
            .count()
    }
}

/// Something a task can wait on: the readable channels of a gate.
pub trait Waitable {
    /// Adds a receive operation for each readable channel.
    fn register<'a>(&'a self, select: &mut Select<'a>);
}

impl<T> Waitable for InputGate<T> {
    fn register<'a>(&'a self, select: &mut Select<'a>) {
        for (c, ch) in self.channels.iter().enumerate() {
            if !self.blocked[c] && !self.finished[c] {
                select.recv(&ch.rx);
            }
        }
    }
}

/// Blocks until a readable channel of one of `gates` or the mailbox has something, or until
/// `deadline`. Returns without consuming anything; the caller then polls.
pub fn wait_for_input<M>(
    gates: &[&dyn Waitable],
    mailbox: &Receiver<M>,
    deadline: Option<Instant>,
) {
    let mut select = Select::new();
    select.recv(mailbox);
    for g in gates {
        g.register(&mut select);
    }
    match deadline {
        Some(d) => {
            let _ = select.ready_deadline(d);
        }
        None => {
            select.ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::TaskSignals;
    use crate::exchange::local_channel;

    #[test]
    fn round_robin_blocking_and_finish() {
        let signals = TaskSignals::default();
        let (tx0, rx0) = local_channel::<u32>(4);
        let (tx1, rx1) = local_channel::<u32>(4);
        let mut gate = InputGate::new(vec![rx0, rx1]);
        tx0.send(
            StreamElement::Watermark(eddy_core::element::Watermark(1)),
            &signals,
        )
        .unwrap();
        tx0.send(
            StreamElement::Watermark(eddy_core::element::Watermark(2)),
            &signals,
        )
        .unwrap();
        tx1.send(
            StreamElement::Watermark(eddy_core::element::Watermark(3)),
            &signals,
        )
        .unwrap();
        let (c, _) = gate.try_next().unwrap().unwrap();
        assert_eq!(c, 0);
        let (c, _) = gate.try_next().unwrap().unwrap();
        assert_eq!(c, 1, "round robin moves on to the next channel");
        gate.block(0);
        assert!(gate.try_next().unwrap().is_none(), "channel 0 is blocked");
        gate.unblock_all();
        assert!(gate.try_next().unwrap().is_some());
        gate.finish_channel(0);
        gate.finish_channel(1);
        assert!(gate.is_finished());
        drop(tx0);
        drop(tx1);
    }

    #[test]
    fn dropped_sender_without_end_of_partition_is_an_error() {
        let (tx, rx) = local_channel::<u32>(1);
        let mut gate = InputGate::new(vec![rx]);
        drop(tx);
        assert!(matches!(gate.try_next(), Err(RuntimeError::ChannelClosed)));
    }

    #[test]
    fn wait_returns_at_deadline() {
        let (_tx, rx) = local_channel::<u32>(1);
        let gate = InputGate::new(vec![rx]);
        let (_mtx, mrx) = crossbeam_channel::unbounded::<()>();
        let start = Instant::now();
        wait_for_input(
            &[&gate],
            &mrx,
            Some(start + std::time::Duration::from_millis(30)),
        );
        assert!(start.elapsed() >= std::time::Duration::from_millis(25));
    }
}
