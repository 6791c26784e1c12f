//! One bounded channel between two subtasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TryRecvError, TrySendError};
use eddy_core::element::StreamElement;

use crate::error::{Result, RuntimeError};
use crate::metrics::TimeGauge;

/// How long a blocked writer waits before it checks whether its task was cancelled.
const CANCEL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Per-task flags and gauges shared with the task's writers.
#[derive(Debug, Default)]
pub struct TaskSignals {
    /// Set when the task must stop.
    pub cancelled: AtomicBool,
    /// Time spent blocked on full output channels.
    pub back_pressured: Arc<TimeGauge>,
}

impl TaskSignals {
    /// Whether the task has been cancelled.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Asks the task to stop.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// The sending end of a channel.
pub struct ChannelSender<T> {
    tx: Sender<StreamElement<T>>,
}

/// The receiving end of a channel.
pub struct ChannelReceiver<T> {
    pub(crate) rx: Receiver<StreamElement<T>>,
}

/// A channel inside one process that holds at most `capacity` elements.
pub fn local_channel<T>(capacity: usize) -> (ChannelSender<T>, ChannelReceiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    (ChannelSender { tx }, ChannelReceiver { rx })
}

impl<T> ChannelSender<T> {
    /// Sends an element, blocking while the channel is full (back pressure). Fails when the
    /// receiver is gone or the task is cancelled while blocked.
    #[inline]
    pub fn send(&self, element: StreamElement<T>, signals: &TaskSignals) -> Result<()> {
        match self.tx.try_send(element) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(RuntimeError::ChannelClosed),
            Err(TrySendError::Full(element)) => self.send_blocking(element, signals),
        }
    }

    #[cold]
    fn send_blocking(&self, mut element: StreamElement<T>, signals: &TaskSignals) -> Result<()> {
        let start = Instant::now();
        let result = loop {
            match self.tx.send_timeout(element, CANCEL_CHECK_INTERVAL) {
                Ok(()) => break Ok(()),
                Err(SendTimeoutError::Disconnected(_)) => break Err(RuntimeError::ChannelClosed),
                Err(SendTimeoutError::Timeout(e)) => {
                    if signals.is_cancelled() {
                        break Err(RuntimeError::Cancelled);
                    }
                    element = e;
                }
            }
        };
        signals.back_pressured.add(start.elapsed());
        result
    }

    /// Number of elements waiting in the channel.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// Whether the channel holds nothing.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

/// What a non-blocking read found.
pub(crate) enum Polled<T> {
    Element(StreamElement<T>),
    Empty,
    Closed,
}

impl<T> ChannelReceiver<T> {
    #[inline]
    pub(crate) fn try_recv(&self) -> Polled<T> {
        match self.rx.try_recv() {
            Ok(e) => Polled::Element(e),
            Err(TryRecvError::Empty) => Polled::Empty,
            Err(TryRecvError::Disconnected) => Polled::Closed,
        }
    }
}
