//! One bounded channel between two subtasks.
//!
//! Besides its bounded data lane a channel has a priority lane for barriers of unaligned
//! checkpoints: such a barrier overtakes the elements queued in the data lane. It carries how
//! many data elements were sent before it, so the receiver knows which of the elements still
//! queued precede it (they go into the checkpoint as in-flight data), and the records the
//! sender had buffered but not yet sent, which the receiver puts back in their place.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TryRecvError, TrySendError};
use eddy_core::element::{CheckpointBarrier, StreamElement, StreamRecord};
use serde::{Deserialize, Serialize};

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

/// A barrier on a channel's priority lane: it overtakes the data lane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriorityBarrier<T> {
    /// The barrier.
    pub barrier: CheckpointBarrier,
    /// How many data-lane elements the sender had sent before the barrier.
    pub sequence: u64,
    /// Records the sender had buffered and not sent: they follow element `sequence - 1`.
    pub overtaken: Vec<StreamRecord<T>>,
}

/// The sending end of a channel.
pub struct ChannelSender<T> {
    inner: SenderKind<T>,
    /// Data-lane elements sent.
    sent: Cell<u64>,
}

enum SenderKind<T> {
    Local(Sender<StreamElement<T>>, Sender<PriorityBarrier<T>>),
    Remote(Box<dyn RemoteSend<T>>),
}

/// The sending end of a channel to another process.
pub(crate) trait RemoteSend<T>: Send {
    fn send(&self, element: StreamElement<T>, signals: &TaskSignals) -> Result<()>;
    fn send_priority(&self, barrier: PriorityBarrier<T>) -> Result<()>;
    fn in_flight(&self) -> usize;
    fn has_room(&self) -> bool;
}

impl<T: Serialize + Send + 'static> RemoteSend<T> for NetSender<T> {
    fn send(&self, element: StreamElement<T>, signals: &TaskSignals) -> Result<()> {
        NetSender::send(self, &element, signals)
    }

    fn send_priority(&self, barrier: PriorityBarrier<T>) -> Result<()> {
        NetSender::send_priority(self, &barrier)
    }

    fn in_flight(&self) -> usize {
        NetSender::in_flight(self)
    }

    fn has_room(&self) -> bool {
        NetSender::has_credit(self)
    }
}

/// What arrived on a channel and has not been read yet, besides its data lane: records an
/// unaligned barrier carried, to be read after data element `sequence - 1`.
pub(crate) struct Overtaken<T> {
    pub(crate) checkpoint_id: u64,
    sequence: u64,
    pub(crate) records: Vec<StreamRecord<T>>,
    /// The newest unaligned checkpoint whose in-flight data already holds these records.
    pub(crate) recorded: u64,
}

/// A data element taken from the lane and not yet read: its index, the element, and the
/// newest unaligned checkpoint whose in-flight data already holds it.
pub(crate) type Queued<T> = (u64, StreamElement<T>, u64);

/// The receiving end of a channel.
pub struct ChannelReceiver<T> {
    pub(crate) rx: Receiver<StreamElement<T>>,
    pub(crate) priority: Receiver<PriorityBarrier<T>>,
    credit: Option<CreditReturn>,
    /// Data-lane elements taken.
    taken: u64,
    /// Whether every element taken is followed by a look at the priority lane.
    watch_priority: bool,
    /// Barriers taken from the priority lane and not yet handed to the task.
    barriers: VecDeque<(CheckpointBarrier, u64)>,
    /// Records that barriers carried, each to be read in its place.
    pub(crate) overtaken: VecDeque<Overtaken<T>>,
    /// Elements taken from the data lane and not yet read: one that must wait for records a
    /// barrier carried, or those before an unaligned barrier, taken at once so that they go
    /// into its checkpoint without waiting for the task to work through them.
    pub(crate) queued: VecDeque<Queued<T>>,
}

/// A channel inside one process that holds at most `capacity` elements.
pub fn local_channel<T>(capacity: usize) -> (ChannelSender<T>, ChannelReceiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let (ptx, prx) = crossbeam_channel::unbounded();
    (
        ChannelSender {
            inner: SenderKind::Local(tx, ptx),
            sent: Cell::new(0),
        },
        ChannelReceiver::new(rx, prx, None),
    )
}

impl<T: Serialize + Send + 'static> ChannelSender<T> {
    /// The sending end of a channel over a connection to another process.
    pub fn remote(sender: NetSender<T>) -> Self {
        ChannelSender {
            inner: SenderKind::Remote(Box::new(sender)),
            sent: Cell::new(0),
        }
    }
}

impl<T> ChannelReceiver<T> {
    fn new(
        rx: Receiver<StreamElement<T>>,
        priority: Receiver<PriorityBarrier<T>>,
        credit: Option<CreditReturn>,
    ) -> Self {
        ChannelReceiver {
            rx,
            priority,
            credit,
            taken: 0,
            watch_priority: false,
            barriers: VecDeque::new(),
            overtaken: VecDeque::new(),
            queued: VecDeque::new(),
        }
    }

    /// The receiving end of a channel from another process: `rx` and `priority` are filled by
    /// the connection, and every data element taken returns a credit to the sender.
    pub fn remote(
        rx: Receiver<StreamElement<T>>,
        priority: Receiver<PriorityBarrier<T>>,
        credit: CreditReturn,
    ) -> Self {
        Self::new(rx, priority, Some(credit))
    }
}

impl<T> ChannelSender<T> {
    /// Sends an element, blocking while the channel is full (back pressure). Fails when the
    /// receiver is gone or the task is cancelled while blocked.
    #[inline]
    pub fn send(&self, element: StreamElement<T>, signals: &TaskSignals) -> Result<()> {
        self.sent.set(self.sent.get() + 1);
        let tx = match &self.inner {
            SenderKind::Local(tx, _) => tx,
            SenderKind::Remote(remote) => return remote.send(element, signals),
        };
        match tx.try_send(element) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(RuntimeError::ChannelClosed),
            Err(TrySendError::Full(element)) => Self::send_blocking(tx, element, signals),
        }
    }

    /// Sends `barrier` ahead of everything queued, with `overtaken`, the records buffered for
    /// this channel and not sent. Never blocks.
    pub fn send_priority(
        &self,
        barrier: CheckpointBarrier,
        overtaken: Vec<StreamRecord<T>>,
    ) -> Result<()> {
        self.send_on_priority_lane(PriorityBarrier {
            barrier,
            sequence: self.sent.get(),
            overtaken,
        })
    }

    /// Announces, ahead of everything queued, the aligned `barrier` that will be data element
    /// `at` of the channel. Never blocks.
    pub fn announce(&self, barrier: CheckpointBarrier, at: u64) -> Result<()> {
        self.send_on_priority_lane(PriorityBarrier {
            barrier,
            sequence: at,
            overtaken: Vec::new(),
        })
    }

    /// Data-lane elements sent.
    pub fn sent(&self) -> u64 {
        self.sent.get()
    }

    fn send_on_priority_lane(&self, barrier: PriorityBarrier<T>) -> Result<()> {
        match &self.inner {
            SenderKind::Local(_, ptx) => ptx.send(barrier).map_err(|_| RuntimeError::ChannelClosed),
            SenderKind::Remote(remote) => remote.send_priority(barrier),
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
            SenderKind::Local(tx, _) => tx.len(),
            SenderKind::Remote(remote) => remote.in_flight(),
        }
    }

    /// Whether an element can be sent without waiting.
    pub fn has_room(&self) -> bool {
        match &self.inner {
            SenderKind::Local(tx, _) => !tx.is_full(),
            SenderKind::Remote(remote) => remote.has_room(),
        }
    }

    /// Whether the channel holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a non-blocking read found.
pub(crate) enum Polled<T> {
    /// Data-lane element number `index`, and the newest unaligned checkpoint that already
    /// holds it as in-flight data.
    Element(u64, StreamElement<T>, u64),
    /// Records that checkpoint `id`'s unaligned barrier carried past the data lane, and the
    /// newest unaligned checkpoint that already holds them.
    Overtaken(u64, Vec<StreamRecord<T>>, u64),
    Empty,
    Closed,
}

impl<T> ChannelReceiver<T> {
    /// Looks at the priority lane after every element taken, so that an element sent after an
    /// unaligned barrier is never read before the records the barrier carried.
    pub(crate) fn watch_priority(&mut self) {
        self.watch_priority = true;
    }

    /// The index of the next data-lane element to be read.
    fn next_index(&self) -> u64 {
        self.queued.front().map_or(self.taken, |(i, _, _)| *i)
    }

    fn overtaken_due(&self) -> bool {
        self.overtaken
            .front()
            .is_some_and(|o| o.sequence <= self.next_index())
    }

    #[inline]
    pub(crate) fn try_recv(&mut self) -> Polled<T> {
        if self.overtaken_due()
            && let Some(o) = self.overtaken.pop_front()
        {
            return Polled::Overtaken(o.checkpoint_id, o.records, o.recorded);
        }
        if let Some((i, e, recorded)) = self.queued.pop_front() {
            return Polled::Element(i, e, recorded);
        }
        match self.rx.try_recv() {
            Ok(e) => {
                if let Some(credit) = &self.credit {
                    credit.consumed();
                }
                let index = self.taken;
                self.taken += 1;
                if self.watch_priority
                    && self.drain_priority()
                    && self.barriers.iter().any(|(_, sequence)| *sequence <= index)
                {
                    // `e` was sent after a barrier the task has not seen: it waits until the
                    // task has taken that checkpoint (and read the records the barrier carried).
                    self.queued.push_back((index, e, 0));
                    return Polled::Empty;
                }
                Polled::Element(index, e, 0)
            }
            Err(TryRecvError::Empty) => Polled::Empty,
            Err(TryRecvError::Disconnected) => Polled::Closed,
        }
    }

    /// Moves what the priority lane holds into `barriers`; whether there was anything.
    fn drain_priority(&mut self) -> bool {
        let mut any = false;
        while let Ok(p) = self.priority.try_recv() {
            any = true;
            if !p.overtaken.is_empty() {
                self.overtaken.push_back(Overtaken {
                    checkpoint_id: p.barrier.id,
                    sequence: p.sequence,
                    records: p.overtaken,
                    recorded: 0,
                });
            }
            self.barriers.push_back((p.barrier, p.sequence));
        }
        any
    }

    /// The next barrier from the priority lane, with the number of data elements sent before
    /// it. The records it carried are kept to be read in their place.
    pub(crate) fn try_recv_priority(&mut self) -> Option<(CheckpointBarrier, u64)> {
        if self.barriers.is_empty() {
            self.drain_priority();
        }
        self.barriers.pop_front()
    }

    /// Takes the data elements before index `end` that have arrived into `queued`, where they
    /// wait to be read.
    pub(crate) fn take_up_to(&mut self, end: u64) {
        while self.taken < end {
            match self.rx.try_recv() {
                Ok(e) => {
                    if let Some(credit) = &self.credit {
                        credit.consumed();
                    }
                    self.queued.push_back((self.taken, e, 0));
                    self.taken += 1;
                }
                Err(_) => break,
            }
        }
    }

    /// Whether barriers taken from the priority lane wait for the task.
    pub(crate) fn has_barriers(&self) -> bool {
        !self.barriers.is_empty()
    }

    /// Data-lane elements taken so far.
    pub(crate) fn taken(&self) -> u64 {
        self.taken
    }
}
