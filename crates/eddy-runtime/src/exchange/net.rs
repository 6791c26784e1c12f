//! Channels between processes: credit-based flow control over one TCP connection per pair of
//! worker processes.
//!
//! Every channel that crosses processes keeps Flink's credit protocol: the receiving side owns
//! `capacity` buffers for the channel (the same number a local channel holds), the sending side
//! starts with that many credits, spends one per element it sends and blocks — back pressure —
//! when it has none. The receiver returns a credit each time its task takes an element out of
//! the channel. So a slow channel never blocks the connection it shares with others, and the
//! memory held by a channel stays bounded on both sides.
//!
//! A connection carries frames `[u32 length][u8 kind][u64 channel][payload]`: a serialized
//! element, a credit grant, the close of a channel, or an unaligned barrier, which takes no
//! credit and overtakes what the receiver has queued. One thread writes a connection's frames,
//! one reads them and hands each element to its channel.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use eddy_core::element::StreamElement;
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::channel::{PriorityBarrier, TaskSignals};
use crate::error::{Result, RuntimeError};
use crate::metrics::Counter;

const KIND_DATA: u8 = 0;
const KIND_CREDIT: u8 = 1;
const KIND_CLOSE: u8 = 2;
/// A barrier of an unaligned checkpoint: it takes no credit and goes to the channel's priority
/// lane, ahead of the elements queued there.
const KIND_PRIORITY: u8 = 3;
const HEADER: usize = 1 + 8;
/// A frame's bytes besides its payload: the length, kind and channel.
const FRAME_HEADER: usize = 4 + HEADER;
/// The largest frame a peer may send: an element larger than this is a protocol error.
const MAX_FRAME: usize = 256 << 20;
/// How long a sender without credit waits before it checks whether its task was cancelled.
const CANCEL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The id of one channel on a connection: the job edge, the upstream and the downstream
/// subtask. Both ends compute it from the JobGraph.
pub fn channel_id(edge: u32, source_subtask: u32, target_subtask: u32) -> u64 {
    (u64::from(edge) << 40) | (u64::from(source_subtask) << 20) | u64::from(target_subtask)
}

enum Outgoing {
    Data(u64, Vec<u8>),
    Priority(u64, Vec<u8>),
    Credit(u64, u32),
    Close(u64),
}

/// The sending side's credits for one channel.
struct Credits {
    state: Mutex<CreditState>,
    granted: Condvar,
}

struct CreditState {
    available: u32,
    capacity: u32,
    dead: bool,
}

impl Credits {
    fn acquire(&self, signals: &TaskSignals) -> Result<()> {
        let mut state = self.state.lock();
        if state.available == 0 && !state.dead {
            let start = Instant::now();
            while state.available == 0 && !state.dead {
                self.granted.wait_for(&mut state, CANCEL_CHECK_INTERVAL);
                if signals.is_cancelled() {
                    signals.back_pressured.add(start.elapsed());
                    return Err(RuntimeError::Cancelled);
                }
            }
            signals.back_pressured.add(start.elapsed());
        }
        if state.dead {
            return Err(RuntimeError::ChannelClosed);
        }
        state.available -= 1;
        Ok(())
    }

    fn grant(&self, n: u32) {
        let mut state = self.state.lock();
        state.available = (state.available + n).min(state.capacity);
        self.granted.notify_all();
    }

    fn kill(&self) {
        self.state.lock().dead = true;
        self.granted.notify_all();
    }
}

/// Delivers one channel's elements to its local queue.
type Deliver = Box<dyn Fn(&[u8]) -> Result<()> + Send>;

#[derive(Default)]
struct Routes {
    inbound: HashMap<u64, Deliver>,
    priority: HashMap<u64, Deliver>,
    credits: HashMap<u64, Arc<Credits>>,
}

/// One connection to a peer worker process, shared by all channels to and from it.
pub struct DataConnection {
    peer: String,
    out: Sender<Outgoing>,
    out_rx: Mutex<Option<Receiver<Outgoing>>>,
    routes: Arc<Mutex<Routes>>,
    stream: Mutex<Option<TcpStream>>,
    pending: Mutex<Option<TcpStream>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl DataConnection {
    /// A connection to `peer` whose channels can be registered before [`DataConnection::start`].
    pub fn new(peer: impl Into<String>) -> Arc<Self> {
        let (out, out_rx) = crossbeam_channel::unbounded();
        Arc::new(DataConnection {
            peer: peer.into(),
            out,
            out_rx: Mutex::new(Some(out_rx)),
            routes: Arc::new(Mutex::new(Routes::default())),
            stream: Mutex::new(None),
            pending: Mutex::new(None),
            writer: Mutex::new(None),
        })
    }

    /// The sending end of channel `id`, whose receiver holds `capacity` elements; the bytes it
    /// sends are added to `bytes`.
    pub fn sender<T: Serialize + Send + 'static>(
        self: &Arc<Self>,
        id: u64,
        capacity: usize,
        bytes: Arc<Counter>,
    ) -> NetSender<T> {
        let capacity = capacity.max(1) as u32;
        let credits = Arc::new(Credits {
            state: Mutex::new(CreditState {
                available: capacity,
                capacity,
                dead: false,
            }),
            granted: Condvar::new(),
        });
        self.routes.lock().credits.insert(id, credits.clone());
        NetSender {
            id,
            credits,
            bytes,
            out: self.out.clone(),
            _type: std::marker::PhantomData,
        }
    }

    /// The receiving end of channel `id`: a local queue of `capacity` elements that the
    /// connection fills, its priority lane, and the credit return for the task that reads it.
    /// The bytes received are added to `received`.
    pub fn receiver<T: DeserializeOwned + Send + 'static>(
        self: &Arc<Self>,
        id: u64,
        capacity: usize,
        received: Arc<Counter>,
    ) -> (
        Receiver<StreamElement<T>>,
        Receiver<PriorityBarrier<T>>,
        CreditReturn,
    ) {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let (ptx, prx) = crossbeam_channel::unbounded();
        let (peer, priority_peer) = (self.peer.clone(), self.peer.clone());
        let priority_received = received.clone();
        let deliver_priority: Deliver = Box::new(move |bytes| {
            priority_received.inc_by((bytes.len() + FRAME_HEADER) as u64);
            let barrier: PriorityBarrier<T> = postcard::from_bytes(bytes).map_err(|e| {
                RuntimeError::Serialization(format!(
                    "cannot read a barrier of channel {id:#x} from {priority_peer}: {e}"
                ))
            })?;
            ptx.send(barrier).map_err(|_| RuntimeError::ChannelClosed)
        });
        let deliver: Deliver = Box::new(move |bytes| {
            received.inc_by((bytes.len() + FRAME_HEADER) as u64);
            let element: StreamElement<T> = postcard::from_bytes(bytes).map_err(|e| {
                RuntimeError::Serialization(format!(
                    "cannot read an element of channel {id:#x} from {peer}: {e}"
                ))
            })?;
            tx.try_send(element).map_err(|e| match e {
                crossbeam_channel::TrySendError::Full(_) => {
                    RuntimeError::Internal(format!("{peer} sent on channel {id:#x} without credit"))
                }
                // The reading task has ended (cancelled or failed); drop what still arrives.
                crossbeam_channel::TrySendError::Disconnected(_) => RuntimeError::ChannelClosed,
            })
        });
        {
            let mut routes = self.routes.lock();
            routes.inbound.insert(id, deliver);
            routes.priority.insert(id, deliver_priority);
        }
        (
            rx,
            prx,
            CreditReturn {
                id,
                out: self.out.clone(),
            },
        )
    }

    /// Keeps `stream` for [`DataConnection::start_pending`].
    pub fn set_pending(&self, stream: TcpStream) {
        *self.pending.lock() = Some(stream);
    }

    /// Starts the connection kept by [`DataConnection::set_pending`].
    pub fn start_pending(self: &Arc<Self>) -> Result<()> {
        match self.pending.lock().take() {
            Some(stream) => self.start(stream),
            None => Err(RuntimeError::Internal(format!(
                "no connection to {} to start",
                self.peer
            ))),
        }
    }

    /// Starts the reader and writer threads on `stream`, once every channel is registered.
    pub fn start(self: &Arc<Self>, stream: TcpStream) -> Result<()> {
        let _ = stream.set_nodelay(true);
        let read_half = stream
            .try_clone()
            .map_err(|e| RuntimeError::io(format!("connection to {}", self.peer), e))?;
        let write_half = stream
            .try_clone()
            .map_err(|e| RuntimeError::io(format!("connection to {}", self.peer), e))?;
        *self.stream.lock() = Some(stream);
        let out_rx = self.out_rx.lock().take().ok_or_else(|| {
            RuntimeError::Internal(format!("connection to {} started twice", self.peer))
        })?;

        let routes = self.routes.clone();
        let peer = self.peer.clone();
        let writer = std::thread::Builder::new()
            .name(format!("net-out {peer}"))
            .spawn(move || {
                if let Err(e) = write_loop(write_half, out_rx) {
                    tracing::debug!(peer = %peer, error = %e, "data connection closed for writing");
                }
                for c in routes.lock().credits.values() {
                    c.kill();
                }
            })
            .map_err(|e| RuntimeError::io("cannot start a network thread", e))?;
        *self.writer.lock() = Some(writer);

        let routes = self.routes.clone();
        let peer = self.peer.clone();
        std::thread::Builder::new()
            .name(format!("net-in {peer}"))
            .spawn(move || {
                if let Err(e) = read_loop(read_half, &routes) {
                    tracing::warn!(peer = %peer, error = %e, "data connection lost");
                }
                // Channels that did not end cleanly now report a closed channel to their task.
                let mut r = routes.lock();
                r.inbound.clear();
                r.priority.clear();
                for c in r.credits.values() {
                    c.kill();
                }
            })
            .map_err(|e| RuntimeError::io("cannot start a network thread", e))?;
        Ok(())
    }

    /// Sends what is queued, then closes the connection for writing. Called once every task
    /// of this process has ended.
    pub fn finish(&self, timeout: Duration) {
        // Dropping our sender lets the writer thread drain its queue and end.
        let handle = self.writer.lock().take();
        let _ = self.out.send(Outgoing::Close(u64::MAX));
        if let Some(h) = handle {
            let deadline = Instant::now() + timeout;
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if let Some(s) = self.stream.lock().as_ref() {
            let _ = s.shutdown(Shutdown::Write);
        }
    }

    /// Breaks the connection at once (the job is being torn down).
    pub fn abort(&self) {
        if let Some(s) = self.stream.lock().as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn write_loop(stream: TcpStream, rx: Receiver<Outgoing>) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(64 * 1024, stream);
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                w.flush()?;
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
        };
        match msg {
            Outgoing::Data(id, bytes) => write_frame(&mut w, KIND_DATA, id, &bytes)?,
            Outgoing::Priority(id, bytes) => write_frame(&mut w, KIND_PRIORITY, id, &bytes)?,
            Outgoing::Credit(id, n) => write_frame(&mut w, KIND_CREDIT, id, &n.to_le_bytes())?,
            Outgoing::Close(u64::MAX) => break,
            Outgoing::Close(id) => write_frame(&mut w, KIND_CLOSE, id, &[])?,
        }
    }
    w.flush()
}

fn write_frame(w: &mut impl Write, kind: u8, id: u64, payload: &[u8]) -> std::io::Result<()> {
    let len = (HEADER + payload.len()) as u32;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&[kind])?;
    w.write_all(&id.to_le_bytes())?;
    w.write_all(payload)
}

fn read_loop(stream: TcpStream, routes: &Mutex<Routes>) -> Result<()> {
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(RuntimeError::io("reading a data connection", e)),
        }
        let len = u32::from_le_bytes(len) as usize;
        if !(HEADER..=MAX_FRAME).contains(&len) {
            return Err(RuntimeError::Serialization(format!(
                "malformed frame of {len} bytes on a data connection"
            )));
        }
        buf.resize(len, 0);
        r.read_exact(&mut buf)
            .map_err(|e| RuntimeError::io("reading a data connection", e))?;
        let kind = buf[0];
        let mut id = [0u8; 8];
        id.copy_from_slice(&buf[1..HEADER]);
        let id = u64::from_le_bytes(id);
        let payload = &buf[HEADER..];
        match kind {
            KIND_DATA | KIND_PRIORITY => {
                let routes = routes.lock();
                let lane = if kind == KIND_DATA {
                    &routes.inbound
                } else {
                    &routes.priority
                };
                match lane.get(&id) {
                    Some(deliver) => match deliver(payload) {
                        Ok(()) | Err(RuntimeError::ChannelClosed) => {}
                        Err(e) => return Err(e),
                    },
                    None => tracing::debug!(channel = id, "element for a closed channel dropped"),
                }
            }
            KIND_CREDIT => {
                let n = payload
                    .try_into()
                    .map(u32::from_le_bytes)
                    .map_err(|_| RuntimeError::Serialization("malformed credit frame".into()))?;
                if let Some(c) = routes.lock().credits.get(&id) {
                    c.grant(n);
                }
            }
            KIND_CLOSE => {
                let mut routes = routes.lock();
                routes.inbound.remove(&id);
                routes.priority.remove(&id);
            }
            other => {
                return Err(RuntimeError::Serialization(format!(
                    "unknown frame kind {other} on a data connection"
                )));
            }
        }
    }
}

/// The sending end of a channel to another process.
pub struct NetSender<T> {
    id: u64,
    credits: Arc<Credits>,
    bytes: Arc<Counter>,
    out: Sender<Outgoing>,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T: Serialize> NetSender<T> {
    /// Waits for a credit, then queues the element on the connection.
    pub fn send(&self, element: &StreamElement<T>, signals: &TaskSignals) -> Result<()> {
        let bytes = postcard::to_allocvec(element).map_err(|e| {
            RuntimeError::Serialization(format!("cannot serialize an element: {e}"))
        })?;
        self.credits.acquire(signals)?;
        self.bytes.inc_by((bytes.len() + FRAME_HEADER) as u64);
        self.out
            .send(Outgoing::Data(self.id, bytes))
            .map_err(|_| RuntimeError::ChannelClosed)
    }

    /// Queues an unaligned barrier on the connection, without waiting for a credit.
    pub fn send_priority(&self, barrier: &PriorityBarrier<T>) -> Result<()> {
        let bytes = postcard::to_allocvec(barrier)
            .map_err(|e| RuntimeError::Serialization(format!("cannot serialize a barrier: {e}")))?;
        self.bytes.inc_by((bytes.len() + FRAME_HEADER) as u64);
        self.out
            .send(Outgoing::Priority(self.id, bytes))
            .map_err(|_| RuntimeError::ChannelClosed)
    }

    /// Whether a credit is available: an element can be sent without waiting.
    pub fn has_credit(&self) -> bool {
        let s = self.credits.state.lock();
        s.available > 0 || s.dead
    }

    /// Elements sent that the receiver has not yet taken.
    pub fn in_flight(&self) -> usize {
        let s = self.credits.state.lock();
        (s.capacity - s.available) as usize
    }
}

impl<T> Drop for NetSender<T> {
    fn drop(&mut self) {
        let _ = self.out.send(Outgoing::Close(self.id));
    }
}

/// Returns a credit to the sender each time the receiving task takes an element.
pub struct CreditReturn {
    id: u64,
    out: Sender<Outgoing>,
}

impl CreditReturn {
    #[inline]
    pub(crate) fn consumed(&self) {
        let _ = self.out.send(Outgoing::Credit(self.id, 1));
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use eddy_core::element::{CheckpointBarrier, SnapshotKind, StreamRecord};

    use super::*;
    use crate::exchange::{ChannelReceiver, ChannelSender, InputGate, RecordCodec};

    #[test]
    fn an_unaligned_barrier_overtakes_the_elements_queued_at_the_receiver() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (a, b) = (DataConnection::new("b"), DataConnection::new("a"));
        let id = channel_id(1, 0, 0);
        let bytes = Arc::new(Counter::default());
        let tx = ChannelSender::<u32>::remote(a.sender(id, 4, bytes.clone()));
        let (rx, priority, credit) = b.receiver::<u32>(id, 4, bytes);
        a.start(client).unwrap();
        b.start(server).unwrap();
        let mut gate = InputGate::new(vec![ChannelReceiver::remote(rx, priority, credit)])
            .with_codec(Some(RecordCodec::postcard()));
        gate.enable_unaligned().unwrap();

        let signals = TaskSignals::default();
        for v in 0..4 {
            tx.send(StreamElement::Records(vec![StreamRecord::new(v)]), &signals)
                .unwrap();
        }
        // The receiver holds four elements and has granted no more credit: only a barrier
        // that takes none can pass.
        let barrier = CheckpointBarrier {
            id: 1,
            timestamp: 0,
            kind: SnapshotKind::Checkpoint,
            unaligned: true,
            announce: false,
        };
        tx.send_priority(barrier, vec![StreamRecord::new(4)])
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (c, got, sequence) = loop {
            if let Some(p) = gate.poll_priority() {
                break p;
            }
            assert!(Instant::now() < deadline, "the barrier did not arrive");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!((c, got, sequence), (0, barrier, 4));
        gate.start_recording(1);
        gate.end_recording(1, 0, sequence).unwrap();
        // What precedes the barrier goes into the checkpoint as it arrives, before it is read.
        while !gate.is_recording_complete(1) {
            assert!(Instant::now() < deadline, "the elements did not arrive");
            std::thread::sleep(Duration::from_millis(1));
            gate.prefetch_all().unwrap();
        }
        assert_eq!(gate.take_recording(1).len(), 5);
        let mut read = Vec::new();
        while read.len() < 5 {
            match gate.try_next().unwrap() {
                Some((_, StreamElement::Records(b))) => read.extend(b.into_iter().map(|r| r.value)),
                Some((_, other)) => panic!("unexpected {other:?}"),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(read, [0, 1, 2, 3, 4]);
    }
}
