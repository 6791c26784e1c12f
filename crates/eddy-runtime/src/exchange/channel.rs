//! One bounded channel between two subtasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TryRecvError, TrySendError};
use eddy_core::element::StreamElement;

use super::net::{CreditReturn, NetSender};
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
    inner: SenderKind<T>,
}

enum SenderKind<T> {
    Local(Sender<StreamElement<T>>),
    Remote(Box<dyn RemoteSend<T>>),
}

/// The sending end of a channel to another process.
pub(crate) trait RemoteSend<T>: Send {
    fn send(&self, element: StreamElement<T>, signals: &TaskSignals) -> Result<()>;
    fn in_flight(&self) -> usize;
}

impl<T: serde::Serialize + Send + 'static> RemoteSend<T> for NetSender<T> {
    fn send(&self, element: StreamElement<T>, signals: &TaskSignals) -> Result<()> {
        NetSender::send(self, &element, signals)
    }

    fn in_flight(&self) -> usize {
        NetSender::in_flight(self)
    }
}

/// The receiving end of a channel.
pub struct ChannelReceiver<T> {
    pub(crate) rx: Receiver<StreamElement<T>>,
    credit: Option<CreditReturn>,
}

/// A channel inside one process that holds at most `capacity` elements.
pub fn local_channel<T>(capacity: usize) -> (ChannelSender<T>, ChannelReceiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    (
        ChannelSender {
            inner: SenderKind::Local(tx),
        },
        ChannelReceiver { rx, credit: None },
    )
}

impl<T: serde::Serialize + Send + 'static> ChannelSender<T> {
    /// The sending end of a channel over a connection to another process.
    pub fn remote(sender: NetSender<T>) -> Self {
        ChannelSender {
            inner: SenderKind::Remote(Box::new(sender)),
        }
    }
}

impl<T> ChannelReceiver<T> {
    /// The receiving end of a channel from another process: `rx` is filled by the connection,
    /// and every element taken returns a credit to the sender.
    pub fn remote(rx: Receiver<StreamElement<T>>, credit: CreditReturn) -> Self {
        ChannelReceiver {
            rx,
            credit: Some(credit),
        }
    }
}

impl<T> ChannelSender<T> {
    /// Sends an element, blocking while the channel is full (back pressure). Fails when the
    /// receiver is gone or the task is cancelled while blocked.
    #[inline]
    pub fn send(&self, element: StreamElement<T>, signals: &TaskSignals) -> Result<()> {
        let tx = match &self.inner {
            SenderKind::Local(tx) => tx,
            SenderKind::Remote(remote) => return remote.send(element, signals),
        };
        match tx.try_send(element) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(RuntimeError::ChannelClosed),
            Err(TrySendError::Full(element)) => Self::send_blocking(tx, element, signals),
        }
    }

    #[cold]
    fn send_blocking(
        tx: &Sender<StreamElement<T>>,
        mut element: StreamElement<T>,
        signals: &TaskSignals,
    ) -> Result<()> {
        let start = Instant::now();
        let result = loop {
            match tx.send_timeout(element, CANCEL_CHECK_INTERVAL) {
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
        match &self.inner {
            SenderKind::Local(tx) => tx.len(),
            SenderKind::Remote(remote) => remote.in_flight(),
        }
    }

    /// Whether the channel holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
            Ok(e) => {
                if let Some(credit) = &self.credit {
                    credit.consumed();
                }
                Polled::Element(e)
            }
            Err(TryRecvError::Empty) => Polled::Empty,
            Err(TryRecvError::Disconnected) => Polled::Closed,
        }
    }
}
