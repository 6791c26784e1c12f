//! The user-code registry: how a plain-data JobGraph finds its typed operators again.
//!
//! Closures cannot be serialized, so they never enter the JobGraph. Instead every operator of
//! the StreamGraph carries a factory ([`OperatorFactory`]), registered under its stable
//! [`OperatorId`], and every edge a [`DataPort`] (the element type) and a
//! [`PartitionerFactory`]. A task looks its operators up here by id and builds its chain.
//!
//! The factories are the only place where types are erased: channels, writers and chain links
//! cross this boundary as `Box<dyn Any>` once, when a task is built, and are downcast back to
//! their concrete types. Records themselves never pass through `Any`.

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use eddy_core::graph::PartitionerKind;
use eddy_core::ids::OperatorId;
use eddy_core::keys::Key;

use crate::chain::{ChainOutput, FanOut, NullOutput, SideOutput, TypedSideOutput};
use crate::error::{Result, RuntimeError};
use crate::exchange::net::DataConnection;
use crate::exchange::{
    BroadcastPartitioner, ChannelReceiver, ChannelSender, ForwardPartitioner, InputGate,
    KeyGroupPartitioner, Partitioner, RebalancePartitioner, RecordCodec, RecordWriter,
    ShufflePartitioner, TaskSignals, local_channel,
};
use crate::metrics::Counter;
use crate::operator::OperatorContext;
use crate::task::{StreamTask, TaskEnv};

/// A value of erased type, built inside a task's thread.
pub type AnyBox = Box<dyn Any>;
/// A value of erased type that can move to a task's thread (a channel end).
pub type AnySendBox = Box<dyn Any + Send>;

pub(crate) fn downcast<T: 'static>(b: AnyBox, what: &str) -> Result<T> {
    b.downcast::<T>().map(|b| *b).map_err(|_| {
        RuntimeError::Internal(format!(
            "{what} is not a {}; the program's types do not match its job graph",
            std::any::type_name::<T>()
        ))
    })
}

pub(crate) fn downcast_send<T: 'static>(b: AnySendBox, what: &str) -> Result<T> {
    b.downcast::<T>().map(|b| *b).map_err(|_| {
        RuntimeError::Internal(format!(
            "{what} is not a {}; the program's types do not match its job graph",
            std::any::type_name::<T>()
        ))
    })
}

/// The element type of a stream, erased: creates channels, writers, gates and fan-outs for it.
pub trait DataPort: Send + Sync {
    /// The Rust type name, for error messages and plans.
    fn type_name(&self) -> &'static str;
    /// A local channel: `(ChannelSender<T>, ChannelReceiver<T>)`.
    fn channel(&self, capacity: usize) -> (AnySendBox, AnySendBox);
    /// A record writer over `senders` as `Box<dyn ChainOutput<T>>`.
    fn writer(
        &self,
        senders: Vec<AnySendBox>,
        partitioner: AnyBox,
        batch_size: usize,
        signals: Arc<TaskSignals>,
        dirty: Rc<Cell<bool>>,
    ) -> Result<AnyBox>;
    /// An input gate over `receivers` (`InputGate<T>`).
    fn gate(&self, receivers: Vec<AnySendBox>) -> Result<AnyBox>;
    /// One `Box<dyn ChainOutput<T>>` feeding all of `outputs` (or nothing, if empty).
    fn fanout(&self, outputs: Vec<AnyBox>) -> Result<AnyBox>;
    /// A side output feeding all of `outputs`.
    fn side_output(&self, outputs: Vec<AnyBox>) -> Result<Box<dyn SideOutput>>;
    /// Records per batch for this type.
    fn batch_size(&self, segment_size: u64) -> usize;
    /// The sending end of channel `id` to another process (`ChannelSender<T>`), counting the
    /// bytes it sends in `bytes`.
    fn remote_sender(
        &self,
        conn: &Arc<DataConnection>,
        id: u64,
        capacity: usize,
        bytes: Arc<Counter>,
    ) -> Result<AnySendBox>;
    /// The receiving end of channel `id` from another process (`ChannelReceiver<T>`),
    /// counting the bytes it receives in `bytes`.
    fn remote_receiver(
        &self,
        conn: &Arc<DataConnection>,
        id: u64,
        capacity: usize,
        bytes: Arc<Counter>,
    ) -> Result<AnySendBox>;
}

/// Builds one end of a channel between processes.
type RemoteEnd = fn(&Arc<DataConnection>, u64, usize, Arc<Counter>) -> AnySendBox;

/// The [`DataPort`] of element type `T`. A port made with [`Port::networked`] (every
/// DataStream edge) can also build channels that cross processes; the default one cannot.
pub struct Port<T> {
    /// The sender and receiver constructors, for a serializable `T`.
    remote: Option<(RemoteEnd, RemoteEnd)>,
    /// Encodes batches of a serializable `T` (in-flight data of unaligned checkpoints).
    codec: Option<RecordCodec<T>>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Default for Port<T> {
    fn default() -> Self {
        Port {
            remote: None,
            codec: None,
            _type: PhantomData,
        }
    }
}

impl<T> Port<T>
where
    T: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    /// The port of a serializable `T`, whose channels can cross processes.
    pub fn networked() -> Self {
        Port {
            remote: Some((
                |conn, id, capacity, bytes| {
                    Box::new(ChannelSender::<T>::remote(conn.sender(id, capacity, bytes)))
                },
                |conn, id, capacity, bytes| {
                    let (rx, priority, credit) = conn.receiver::<T>(id, capacity, bytes);
                    Box::new(ChannelReceiver::<T>::remote(rx, priority, credit))
                },
            )),
            codec: Some(RecordCodec::postcard()),
            _type: PhantomData,
        }
    }
}

impl<T: Clone + Send + 'static> Port<T> {
    /// Combines typed outputs into one.
    pub fn combine(outputs: Vec<AnyBox>) -> Result<Box<dyn ChainOutput<T>>> {
        let mut typed: Vec<Box<dyn ChainOutput<T>>> = outputs
            .into_iter()
            .map(|o| downcast::<Box<dyn ChainOutput<T>>>(o, "chain output"))
            .collect::<Result<_>>()?;
        Ok(match typed.len() {
            0 => Box::new(NullOutput::<T>::default()),
            1 => typed
                .pop()
                .unwrap_or_else(|| Box::new(NullOutput::<T>::default())),
            _ => Box::new(FanOut::new(typed)),
        })
    }
}

impl<T: Clone + Send + 'static> DataPort for Port<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn channel(&self, capacity: usize) -> (AnySendBox, AnySendBox) {
        let (tx, rx) = local_channel::<T>(capacity);
        (Box::new(tx), Box::new(rx))
    }

    fn writer(
        &self,
        senders: Vec<AnySendBox>,
        partitioner: AnyBox,
        batch_size: usize,
        signals: Arc<TaskSignals>,
        dirty: Rc<Cell<bool>>,
    ) -> Result<AnyBox> {
        let senders = senders
            .into_iter()
            .map(|s| downcast_send::<ChannelSender<T>>(s, "channel sender"))
            .collect::<Result<Vec<_>>>()?;
        let partitioner = downcast::<Box<dyn Partitioner<T>>>(partitioner, "partitioner")?;
        let writer: Box<dyn ChainOutput<T>> = Box::new(RecordWriter::new(
            senders,
            partitioner,
            batch_size,
            signals,
            dirty,
        ));
        Ok(Box::new(writer))
    }

    fn gate(&self, receivers: Vec<AnySendBox>) -> Result<AnyBox> {
        let receivers = receivers
            .into_iter()
            .map(|r| downcast_send::<ChannelReceiver<T>>(r, "channel receiver"))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(InputGate::new(receivers).with_codec(self.codec)))
    }

    fn fanout(&self, outputs: Vec<AnyBox>) -> Result<AnyBox> {
        Ok(Box::new(Self::combine(outputs)?))
    }

    fn side_output(&self, outputs: Vec<AnyBox>) -> Result<Box<dyn SideOutput>> {
        Ok(Box::new(TypedSideOutput::new(Self::combine(outputs)?)))
    }

    fn batch_size(&self, segment_size: u64) -> usize {
        crate::exchange::batch_size_for::<T>(segment_size)
    }

    fn remote_sender(
        &self,
        conn: &Arc<DataConnection>,
        id: u64,
        capacity: usize,
        bytes: Arc<Counter>,
    ) -> Result<AnySendBox> {
        Ok(self.remote_ends()?.0(conn, id, capacity, bytes))
    }

    fn remote_receiver(
        &self,
        conn: &Arc<DataConnection>,
        id: u64,
        capacity: usize,
        bytes: Arc<Counter>,
    ) -> Result<AnySendBox> {
        Ok(self.remote_ends()?.1(conn, id, capacity, bytes))
    }
}

impl<T> Port<T> {
    fn remote_ends(&self) -> Result<(RemoteEnd, RemoteEnd)> {
        self.remote.ok_or_else(|| {
            RuntimeError::InvalidJob(format!(
                "records of type {} cannot cross processes (their port is not networked)",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// Creates the partitioner of one edge.
pub trait PartitionerFactory: Send + Sync {
    /// A `Box<dyn Partitioner<T>>` of the resolved `kind`, for a writer with `num_channels`
    /// channels feeding an operator with `target_max_parallelism` key groups.
    fn create(
        &self,
        kind: PartitionerKind,
        num_channels: usize,
        target_max_parallelism: u32,
    ) -> Result<AnyBox>;
}

/// Partitioners that need no user code: every kind but [`PartitionerKind::KeyGroup`].
pub struct StandardPartitioners<T>(PhantomData<fn(&T)>);

impl<T> Default for StandardPartitioners<T> {
    fn default() -> Self {
        StandardPartitioners(PhantomData)
    }
}

impl<T: 'static> StandardPartitioners<T> {
    /// The partitioner of `kind`.
    pub fn partitioner(
        kind: PartitionerKind,
        num_channels: usize,
    ) -> Result<Box<dyn Partitioner<T>>> {
        Ok(match kind {
            PartitionerKind::Forward | PartitionerKind::Global => Box::new(ForwardPartitioner),
            PartitionerKind::Rebalance | PartitionerKind::Rescale => {
                Box::new(RebalancePartitioner::new(num_channels))
            }
            PartitionerKind::Shuffle => Box::new(ShufflePartitioner::default()),
            PartitionerKind::Broadcast => Box::new(BroadcastPartitioner),
            PartitionerKind::KeyGroup => {
                return Err(RuntimeError::Internal(
                    "a key-group edge has no key selector".into(),
                ));
            }
        })
    }
}

impl<T: 'static> PartitionerFactory for StandardPartitioners<T> {
    fn create(&self, kind: PartitionerKind, num_channels: usize, _: u32) -> Result<AnyBox> {
        Ok(Box::new(Self::partitioner(kind, num_channels)?))
    }
}

/// Routes by the key group of a key extracted with a key selector; other kinds as standard.
pub struct KeyGroupPartitionerFactory<T, K> {
    key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
}

impl<T, K> KeyGroupPartitionerFactory<T, K> {
    /// A factory for edges keyed by `key_selector`.
    pub fn new(key_selector: Arc<dyn Fn(&T) -> K + Send + Sync>) -> Self {
        KeyGroupPartitionerFactory { key_selector }
    }
}

impl<T: 'static, K: Key> PartitionerFactory for KeyGroupPartitionerFactory<T, K> {
    fn create(
        &self,
        kind: PartitionerKind,
        num_channels: usize,
        target_max_parallelism: u32,
    ) -> Result<AnyBox> {
        let p: Box<dyn Partitioner<T>> = match kind {
            PartitionerKind::KeyGroup => Box::new(KeyGroupPartitioner::new(
                self.key_selector.clone(),
                target_max_parallelism,
            )),
            other => StandardPartitioners::<T>::partitioner(other, num_channels)?,
        };
        Ok(Box::new(p))
    }
}

/// The outputs an operator writes to, before they are combined for its output type.
pub struct OutputParts {
    /// Main-output consumers: chained links and network writers, each a
    /// `Box<dyn ChainOutput<OUT>>`.
    pub main: Vec<AnyBox>,
    /// Side outputs by tag.
    pub sides: Vec<(String, Box<dyn SideOutput>)>,
}

/// The input channels of a task, per logical input (0, and 1 for a second input).
pub struct TaskInputs {
    /// `InputGate<IN>` per input, as built by the input edges' ports.
    pub gates: Vec<AnyBox>,
}

/// What kind of operator a factory makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorKind {
    /// A source: the head of its task, no inputs.
    Source {
        /// Whether it ends.
        bounded: bool,
    },
    /// One input.
    OneInput,
    /// Two inputs.
    TwoInput,
}

/// Creates one operator per subtask; one per StreamGraph node.
pub trait OperatorFactory: Send + Sync {
    /// Source, one-input or two-input.
    fn kind(&self) -> OperatorKind;

    /// The element type this operator emits.
    fn output_port(&self) -> Arc<dyn DataPort>;

    /// Builds the operator as a chain link, returning a `Box<dyn ChainOutput<IN>>` that feeds it.
    fn create_link(&self, ctx: OperatorContext, output: OutputParts) -> Result<AnyBox>;

    /// Builds the operator as the head of a task reading `inputs`.
    fn create_task(
        &self,
        ctx: OperatorContext,
        env: TaskEnv,
        inputs: TaskInputs,
        output: OutputParts,
    ) -> Result<Box<dyn StreamTask>>;
}

/// The factories of one program's operators and edges.
#[derive(Default)]
pub struct UserCodeRegistry {
    operators: HashMap<OperatorId, Arc<dyn OperatorFactory>>,
    edges: HashMap<u32, EdgeCode>,
}

/// The user code behind one edge.
#[derive(Clone)]
pub struct EdgeCode {
    /// The element type.
    pub port: Arc<dyn DataPort>,
    /// The partitioner.
    pub partitioner: Arc<dyn PartitionerFactory>,
}

impl UserCodeRegistry {
    /// Registers an operator's factory.
    pub fn register_operator(&mut self, id: OperatorId, factory: Arc<dyn OperatorFactory>) {
        self.operators.insert(id, factory);
    }

    /// Registers an edge's port and partitioner.
    pub fn register_edge(&mut self, stream_edge_id: u32, code: EdgeCode) {
        self.edges.insert(stream_edge_id, code);
    }

    /// The factory of operator `id`.
    pub fn operator(&self, id: OperatorId) -> Result<&Arc<dyn OperatorFactory>> {
        self.operators.get(&id).ok_or_else(|| {
            RuntimeError::InvalidJob(format!(
                "no operator with id {id} in this program; was the job graph built by another \
                 program or version?"
            ))
        })
    }

    /// The code of stream edge `id`.
    pub fn edge(&self, id: u32) -> Result<&EdgeCode> {
        self.edges.get(&id).ok_or_else(|| {
            RuntimeError::InvalidJob(format!("no edge with id {id} in this program"))
        })
    }
}
