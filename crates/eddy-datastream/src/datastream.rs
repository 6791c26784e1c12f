//! [`DataStream`]: a typed stream and its transformations.

use std::marker::PhantomData;
use std::sync::Arc;

use eddy_connectors::collect::{CollectHandle, CollectSink};
use eddy_connectors::print::PrintSink;
use eddy_core::graph::PartitionerKind;
use eddy_runtime::factories::OneInputFactory;
use eddy_runtime::graph::{ChainingStrategy, StreamNode};
use eddy_runtime::operator::OneInputOperator;
use eddy_runtime::registry::{
    EdgeCode, KeyGroupPartitionerFactory, OperatorFactory, PartitionerFactory, Port,
    StandardPartitioners,
};
use eddy_runtime::sink::SinkOperatorFactory;

use crate::environment::StreamExecutionEnvironment;
use crate::error::Result;
use crate::functions::{
    Collector, FunctionResult, RichFilterFunction, RichFlatMapFunction, RichMapFunction,
};
use crate::keyed::KeyedStream;
use crate::operators::{
    FilterOperator, FlatMapOperator, MapOperator, RichFilterOperator, RichFlatMapOperator,
    RichMapOperator, TryMapOperator,
};
use crate::{Data, Key};

/// One operator output a stream reads from.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    pub(crate) node: u32,
    pub(crate) side_output: Option<String>,
}

/// A typed stream of records (Flink's `DataStream`).
///
/// Transformations consume the stream and return a new one; clone a stream to feed it to several
/// operators. The operator settings ([`name`](Self::name), [`uid`](Self::uid),
/// [`set_parallelism`](Self::set_parallelism), ...) apply to the operator that produced the
/// stream, as on Flink's `SingleOutputStreamOperator`.
pub struct DataStream<T> {
    pub(crate) env: StreamExecutionEnvironment,
    pub(crate) inputs: Vec<Upstream>,
    pub(crate) partitioner: Option<PartitionerKind>,
    pub(crate) partitioner_factory: Arc<dyn PartitionerFactory>,
    /// The operator this stream is the main output of, if it is exactly one.
    pub(crate) node: Option<u32>,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream {
            env: self.env.clone(),
            inputs: self.inputs.clone(),
            partitioner: self.partitioner,
            partitioner_factory: self.partitioner_factory.clone(),
            node: self.node,
            _t: PhantomData,
        }
    }
}

/// Setters shared by streams and sinks: they configure the operator that produced them.
macro_rules! operator_settings {
    () => {
        fn configure(self, what: &str, f: impl FnOnce(&mut StreamNode)) -> Self {
            match self.node {
                Some(node) => {
                    if let Some(n) = self.env.inner.borrow_mut().graph.node_mut(node) {
                        f(n);
                    }
                }
                None => self.env.record_error(format!(
                    "{what} must be called on an operator's output, not on a union or a \
                     partitioned stream"
                )),
            }
            self
        }

        /// Names the operator (shown in logs, metrics and the web UI).
        pub fn name(self, name: &str) -> Self {
            let name = name.to_string();
            self.configure("name()", |n| n.name = name)
        }

        /// Gives the operator a stable id, which savepoints use to match state to operators.
        pub fn uid(self, uid: &str) -> Self {
            let uid = uid.to_string();
            self.configure("uid()", |n| n.uid = Some(uid))
        }

        /// Sets the operator's parallelism.
        pub fn set_parallelism(self, parallelism: u32) -> Self {
            let env = self.env.clone();
            let node = self.node;
            let is_non_parallel =
                node.is_some_and(|n| env.inner.borrow().non_parallel.contains(&n));
            if is_non_parallel && parallelism != 1 {
                env.record_error(format!(
                    "set_parallelism({parallelism}) on a non-parallel source; it can only run \
                     with parallelism 1"
                ));
                return self;
            }
            if parallelism == 0 {
                env.record_error("set_parallelism(0): parallelism must be at least 1".into());
                return self;
            }
            self.configure("set_parallelism()", |n| n.parallelism = Some(parallelism))
        }

        /// Sets the operator's number of key groups.
        pub fn set_max_parallelism(self, max_parallelism: u32) -> Self {
            self.configure("set_max_parallelism()", |n| {
                n.max_parallelism = Some(max_parallelism)
            })
        }

        /// Puts the operator in a slot sharing group.
        pub fn slot_sharing_group(self, group: &str) -> Self {
            let group = group.to_string();
            self.configure("slot_sharing_group()", |n| {
                n.slot_sharing_group = Some(group)
            })
        }

        /// Keeps the operator out of any chain.
        pub fn disable_chaining(self) -> Self {
            self.configure("disable_chaining()", |n| {
                n.chaining = ChainingStrategy::Never
            })
        }

        /// Starts a new chain at this operator.
        pub fn start_new_chain(self) -> Self {
            self.configure("start_new_chain()", |n| n.chaining = ChainingStrategy::Head)
        }
    };
}

impl<T: Data> DataStream<T> {
    pub(crate) fn from_node(env: StreamExecutionEnvironment, node: u32) -> Self {
        DataStream {
            env,
            inputs: vec![Upstream {
                node,
                side_output: None,
            }],
            partitioner: None,
            partitioner_factory: Arc::new(StandardPartitioners::<T>::default()),
            node: Some(node),
            _t: PhantomData,
        }
    }

    operator_settings!();

    /// The environment this stream belongs to.
    pub fn get_execution_environment(&self) -> &StreamExecutionEnvironment {
        &self.env
    }

    /// Adds `factory` as a new operator reading this stream on input `input`; returns its id.
    pub(crate) fn add_operator(
        &self,
        name: &str,
        factory: Arc<dyn OperatorFactory>,
        input: u8,
    ) -> u32 {
        let mut inner = self.env.inner.borrow_mut();
        let node = inner.graph.add_node(name, factory);
        self.add_edges_to(&mut inner.graph, node, input);
        node
    }

    pub(crate) fn add_edges_to(
        &self,
        graph: &mut eddy_runtime::graph::StreamGraph,
        node: u32,
        input: u8,
    ) {
        for up in &self.inputs {
            graph.add_edge(
                up.node,
                node,
                input,
                self.partitioner,
                up.side_output.clone(),
                EdgeCode {
                    port: Arc::new(Port::<T>::networked()),
                    partitioner: self.partitioner_factory.clone(),
                },
            );
        }
    }

    /// Applies a custom operator, created once per subtask by `make` (Flink's `transform`).
    pub fn transform<OUT, OP>(
        self,
        name: &str,
        make: impl Fn() -> OP + Send + Sync + 'static,
    ) -> DataStream<OUT>
    where
        OUT: Data,
        OP: OneInputOperator<T, OUT> + 'static,
    {
        let node = self.add_operator(name, Arc::new(OneInputFactory::new(make)), 0);
        DataStream::from_node(self.env.clone(), node)
    }

    /// One output record per input record.
    pub fn map<U: Data>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> DataStream<U> {
        let f = Arc::new(f);
        self.transform("Map", move || MapOperator(f.clone()))
    }

    /// Like [`map`](Self::map), but the function may fail; an error fails the job with a
    /// message naming the operator and subtask.
    pub fn try_map<U: Data>(
        self,
        f: impl Fn(T) -> FunctionResult<U> + Send + Sync + 'static,
    ) -> DataStream<U> {
        let f = Arc::new(f);
        self.transform("Map", move || TryMapOperator(f.clone()))
    }

    /// Any number of output records per input record, emitted into a [`Collector`].
    pub fn flat_map<U: Data>(
        self,
        f: impl Fn(T, &mut Collector<'_, U>) + Send + Sync + 'static,
    ) -> DataStream<U> {
        let f = Arc::new(f);
        self.transform("Flat Map", move || FlatMapOperator::new(f.clone()))
    }

    /// Keeps the records for which `f` returns true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> DataStream<T> {
        let f = Arc::new(f);
        self.transform("Filter", move || FilterOperator(f.clone()))
    }

    /// `map` with a rich function, made by `make` once per subtask: per-subtask state and
    /// `open` / `close`.
    pub fn rich_map<U: Data, F: RichMapFunction<T, U>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> DataStream<U> {
        self.transform("Map", move || RichMapOperator(make()))
    }

    /// `flat_map` with a rich function made by `make` once per subtask.
    pub fn rich_flat_map<U: Data, F: RichFlatMapFunction<T, U>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> DataStream<U> {
        self.transform("Flat Map", move || RichFlatMapOperator::new(make()))
    }

    /// `filter` with a rich function made by `make` once per subtask.
    pub fn rich_filter<F: RichFilterFunction<T>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> DataStream<T> {
        self.transform("Filter", move || RichFilterOperator(make()))
    }

    /// Assigns event timestamps and generates watermarks inside the stream (Flink's
    /// `assignTimestampsAndWatermarks`). Watermarks from upstream are replaced by this
    /// operator's, except the final one at the end of bounded input.
    pub fn assign_timestamps_and_watermarks(
        self,
        strategy: crate::watermark::WatermarkStrategy<T>,
    ) -> DataStream<T> {
        self.transform("Timestamps/Watermarks", move || {
            eddy_runtime::watermark::TimestampsAndWatermarksOperator::new(strategy.clone())
        })
    }

    /// Partitions the stream by key: records with the same key go to the same subtask, and
    /// keyed operators keep state per key.
    pub fn key_by<K: Key>(
        self,
        key_selector: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> KeyedStream<T, K> {
        let selector: Arc<dyn Fn(&T) -> K + Send + Sync> = Arc::new(key_selector);
        let stream = DataStream {
            env: self.env,
            inputs: self.inputs,
            partitioner: Some(PartitionerKind::KeyGroup),
            partitioner_factory: Arc::new(KeyGroupPartitionerFactory::new(selector.clone())),
            node: None,
            _t: PhantomData,
        };
        KeyedStream::new(stream, selector)
    }

    /// Merges streams of the same type into one.
    pub fn union(self, others: impl IntoIterator<Item = DataStream<T>>) -> DataStream<T> {
        let mut inputs = self.inputs;
        for o in others {
            if o.partitioner.is_some() {
                self.env.record_error(
                    "union() of a partitioned stream: partition the union instead".into(),
                );
            }
            inputs.extend(o.inputs);
        }
        DataStream {
            env: self.env,
            inputs,
            partitioner: self.partitioner,
            partitioner_factory: self.partitioner_factory,
            node: None,
            _t: PhantomData,
        }
    }

    fn partition(self, kind: PartitionerKind) -> DataStream<T> {
        DataStream {
            env: self.env,
            inputs: self.inputs,
            partitioner: Some(kind),
            partitioner_factory: Arc::new(StandardPartitioners::<T>::default()),
            node: None,
            _t: PhantomData,
        }
    }

    /// Round-robin over all downstream subtasks.
    pub fn rebalance(self) -> DataStream<T> {
        self.partition(PartitionerKind::Rebalance)
    }

    /// Round-robin over a local subset of downstream subtasks.
    pub fn rescale(self) -> DataStream<T> {
        self.partition(PartitionerKind::Rescale)
    }

    /// A uniformly random downstream subtask per record.
    pub fn shuffle(self) -> DataStream<T> {
        self.partition(PartitionerKind::Shuffle)
    }

    /// Every record to every downstream subtask.
    pub fn broadcast(self) -> DataStream<T> {
        self.partition(PartitionerKind::Broadcast)
    }

    /// Subtask `i` to subtask `i`; both operators must have the same parallelism.
    pub fn forward(self) -> DataStream<T> {
        self.partition(PartitionerKind::Forward)
    }

    /// Every record to the first downstream subtask.
    pub fn global(self) -> DataStream<T> {
        self.partition(PartitionerKind::Global)
    }

    /// Writes the stream to `sink` (Flink's `sinkTo`): a [`Sink`](eddy_runtime::sink::Sink)
    /// (at-least-once) or a [`TwoPhaseCommittingSink`](eddy_runtime::sink::TwoPhaseCommittingSink)
    /// (exactly-once with checkpoints).
    pub fn sink_to<S, Kind>(self, sink: S) -> DataStreamSink
    where
        S: SinkOperatorFactory<T, Kind>,
    {
        let sink = Arc::new(sink);
        let factory = OneInputFactory::new(move || S::create_operator(&sink));
        let node = self.add_operator("Sink", Arc::new(factory), 0);
        DataStreamSink {
            env: self.env.clone(),
            node: Some(node),
        }
    }

    /// Prints every record to stdout, one per line, prefixed by `N> ` (the subtask) when the
    /// sink runs in parallel. Records are shown as Flink shows them: strings as they are, tuples
    /// as `(hello,1)`, structs as `Name{field=value}`; map to a `String` first for another form.
    pub fn print(self) -> DataStreamSink {
        self.sink_to(PrintSink::stdout()).name("Print to Std. Out")
    }

    /// Prints every record to stderr.
    pub fn print_to_err(self) -> DataStreamSink {
        self.sink_to(PrintSink::stderr()).name("Print to Std. Err")
    }

    /// Prints every record to stdout, each line prefixed by `identifier`.
    pub fn print_with_identifier(self, identifier: &str) -> DataStreamSink {
        self.sink_to(PrintSink::stdout().with_identifier(identifier))
            .name("Print to Std. Out")
    }

    /// Collects the records in this process; read them from the handle after the job ends.
    pub fn collect_async(self) -> CollectHandle<T> {
        let (sink, handle) = CollectSink::new();
        self.sink_to(sink).name("Collect Sink");
        handle
    }

    /// Runs the job and returns every record of this stream (Flink's `executeAndCollect`).
    pub fn execute_and_collect(self, job_name: &str) -> Result<Vec<T>> {
        let env = self.env.clone();
        let handle = self.collect_async();
        env.execute(job_name)?;
        Ok(handle.take())
    }
}

/// The end of a stream in a sink (Flink's `DataStreamSink`), with the sink's settings.
pub struct DataStreamSink {
    env: StreamExecutionEnvironment,
    node: Option<u32>,
}

impl DataStreamSink {
    operator_settings!();
}
