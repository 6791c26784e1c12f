//! Two connected streams: co-map, co-flat-map, co-process and keyed co-process functions, and
//! broadcast state (Flink's `ConnectedStreams`, `CoProcessFunction`, `KeyedCoProcessFunction`,
//! `BroadcastProcessFunction` and `KeyedBroadcastProcessFunction`).

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use eddy_core::element::{NO_TIMESTAMP, StreamRecord, Watermark};
use eddy_core::graph::PartitionerKind;
use eddy_runtime::Result;
use eddy_runtime::factories::TwoInputFactory;
use eddy_runtime::operator::{OperatorContext, Output, ProcessingTimeService, TwoInputOperator};
use eddy_runtime::registry::StandardPartitioners;
use eddy_runtime::state::{BroadcastState, MapStateDescriptor, OperatorStateStore};

use crate::functions::{
    Collector, FunctionResult, OutputTag, RuntimeContext, SideOutputs, user_error,
};
use crate::operators::KeySelector;
use crate::process::{Context, KeyedContext, KeyedRuntime, TimeDomain, not_open};
use crate::{Data, DataStream, Key, KeyedStream};

/// Adds a two-input operator reading `first` on input 1 and `second` on input 2.
fn two_input<A: Data, B: Data, O: Data, OP>(
    first: &DataStream<A>,
    second: &DataStream<B>,
    name: &str,
    make: impl Fn() -> OP + Send + Sync + 'static,
) -> DataStream<O>
where
    OP: TwoInputOperator<A, B, O> + 'static,
{
    let node = {
        let mut inner = first.env.inner.borrow_mut();
        let node = inner
            .graph
            .add_node(name, Arc::new(TwoInputFactory::new(make)));
        first.add_edges_to(&mut inner.graph, node, 0);
        second.add_edges_to(&mut inner.graph, node, 1);
        node
    };
    DataStream::from_node(first.env.clone(), node)
}

/// Two streams of possibly different types, processed together (Flink's `ConnectedStreams`).
pub struct ConnectedStreams<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

impl<A: Data> DataStream<A> {
    /// Connects this stream with `other`, keeping their types.
    pub fn connect<B: Data>(self, other: DataStream<B>) -> ConnectedStreams<A, B> {
        ConnectedStreams {
            first: self,
            second: other,
        }
    }
}

/// A function over the elements of two connected streams (Flink's `CoProcessFunction`).
pub trait CoProcessFunction<I1, I2, O>: 'static {
    /// Called once per subtask before the first element.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// An element of the first stream.
    fn process_element1(
        &mut self,
        value: I1,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult<()>;
    /// An element of the second stream.
    fn process_element2(
        &mut self,
        value: I2,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult<()>;
    /// Called once per subtask at the end.
    fn close(&mut self) -> FunctionResult<()> {
        Ok(())
    }
}

/// A function over two connected keyed streams, with keyed state and timers (Flink's
/// `KeyedCoProcessFunction`).
pub trait KeyedCoProcessFunction<K, I1, I2, O>: 'static {
    /// Called once per subtask before the first element.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// An element of the first stream.
    fn process_element1(
        &mut self,
        value: I1,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult<()>;
    /// An element of the second stream.
    fn process_element2(
        &mut self,
        value: I2,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult<()>;
    /// A timer of `ctx.get_current_key()` fired.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, K>,
        _out: &mut Collector<'_, O>,
    ) -> FunctionResult<()> {
        Ok(())
    }
    /// Called once per subtask at the end.
    fn close(&mut self) -> FunctionResult<()> {
        Ok(())
    }
}

/// Maps both inputs with their own closure.
struct CoMapOperator<F1, F2>(Arc<F1>, Arc<F2>);

impl<A, B, O, F1: Fn(A) -> O, F2: Fn(B) -> O> TwoInputOperator<A, B, O> for CoMapOperator<F1, F2> {
    fn process_batch1(
        &mut self,
        batch: Vec<StreamRecord<A>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let f = &*self.0;
        out.collect(
            batch
                .into_iter()
                .map(|r| StreamRecord {
                    value: f(r.value),
                    timestamp: r.timestamp,
                })
                .collect(),
        )
    }
    fn process_batch2(
        &mut self,
        batch: Vec<StreamRecord<B>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let f = &*self.1;
        out.collect(
            batch
                .into_iter()
                .map(|r| StreamRecord {
                    value: f(r.value),
                    timestamp: r.timestamp,
                })
                .collect(),
        )
    }
}

/// Flat-maps both inputs with their own closure.
struct CoFlatMapOperator<F1, F2>(Arc<F1>, Arc<F2>);

impl<A, B, O, F1, F2> TwoInputOperator<A, B, O> for CoFlatMapOperator<F1, F2>
where
    F1: Fn(A, &mut Collector<'_, O>),
    F2: Fn(B, &mut Collector<'_, O>),
{
    fn process_batch1(
        &mut self,
        batch: Vec<StreamRecord<A>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let mut emitted = Vec::new();
        for r in batch {
            (self.0)(r.value, &mut Collector::new(&mut emitted, r.timestamp));
        }
        if emitted.is_empty() {
            Ok(())
        } else {
            out.collect(emitted)
        }
    }
    fn process_batch2(
        &mut self,
        batch: Vec<StreamRecord<B>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let mut emitted = Vec::new();
        for r in batch {
            (self.1)(r.value, &mut Collector::new(&mut emitted, r.timestamp));
        }
        if emitted.is_empty() {
            Ok(())
        } else {
            out.collect(emitted)
        }
    }
}

/// Runs a [`CoProcessFunction`].
struct CoProcessOperator<F, A, B, O> {
    f: F,
    processing: ProcessingTimeService,
    watermark: i64,
    sides: SideOutputs,
    _t: PhantomData<fn(A, B) -> O>,
}

impl<F, A, B, O> CoProcessOperator<F, A, B, O>
where
    F: CoProcessFunction<A, B, O>,
{
    fn run<T>(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<O>,
        mut call: impl FnMut(&mut F, T, &mut Context<'_>, &mut Collector<'_, O>) -> FunctionResult<()>,
    ) -> Result<()> {
        let mut emitted = Vec::with_capacity(batch.len());
        for r in batch {
            let mut ctx = Context::new(
                r.timestamp,
                self.watermark,
                &self.processing,
                &mut self.sides,
            );
            let mut c = Collector::new(&mut emitted, r.timestamp);
            call(&mut self.f, r.value, &mut ctx, &mut c).map_err(user_error)?;
        }
        if !emitted.is_empty() {
            out.collect(emitted)?;
        }
        self.sides.flush(out)
    }
}

impl<A, B, O, F: CoProcessFunction<A, B, O>> TwoInputOperator<A, B, O>
    for CoProcessOperator<F, A, B, O>
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.processing = ctx.timer_service.clone();
        self.f.open(&RuntimeContext::new(ctx)).map_err(user_error)
    }
    fn process_batch1(
        &mut self,
        batch: Vec<StreamRecord<A>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        self.run(batch, out, |f, v, ctx, c| f.process_element1(v, ctx, c))
    }
    fn process_batch2(
        &mut self,
        batch: Vec<StreamRecord<B>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        self.run(batch, out, |f, v, ctx, c| f.process_element2(v, ctx, c))
    }
    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<O>) -> Result<()> {
        self.watermark = watermark.0;
        out.emit_watermark(watermark)
    }
    fn close(&mut self) -> Result<()> {
        self.f.close().map_err(user_error)
    }
}

/// Runs a [`KeyedCoProcessFunction`].
struct KeyedCoProcessOperator<F, K, A, B, O> {
    f: F,
    key1: KeySelector<A, K>,
    key2: KeySelector<B, K>,
    rt: Option<KeyedRuntime>,
    sides: SideOutputs,
    _t: PhantomData<fn(A, B) -> O>,
}

impl<F, K, A, B, O> KeyedCoProcessOperator<F, K, A, B, O>
where
    K: Key,
    F: KeyedCoProcessFunction<K, A, B, O>,
{
    fn run<T>(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        key_of: impl Fn(&T) -> K,
        out: &mut dyn Output<O>,
        mut call: impl FnMut(
            &mut F,
            T,
            &mut KeyedContext<'_, K>,
            &mut Collector<'_, O>,
        ) -> FunctionResult<()>,
    ) -> Result<()> {
        let rt = self.rt.as_ref().ok_or_else(not_open)?;
        let mut emitted = Vec::with_capacity(batch.len());
        for r in batch {
            let key = key_of(&r.value);
            rt.backend.set_current_key(&key)?;
            let mut ctx = rt.context(&key, r.timestamp, None, &mut self.sides);
            let mut c = Collector::new(&mut emitted, r.timestamp);
            call(&mut self.f, r.value, &mut ctx, &mut c).map_err(user_error)?;
        }
        if !emitted.is_empty() {
            out.collect(emitted)?;
        }
        self.sides.flush(out)
    }

    fn fire(&mut self, domain: TimeDomain, now: i64, out: &mut dyn Output<O>) -> Result<()> {
        let rt = self.rt.as_ref().ok_or_else(not_open)?;
        let mut emitted = Vec::new();
        let (f, sides) = (&mut self.f, &mut self.sides);
        rt.fire::<K>(domain, now, |ts, key, out_ts| {
            let mut ctx = rt.context(&key, ts, Some(domain), sides);
            f.on_timer(ts, &mut ctx, &mut Collector::new(&mut emitted, out_ts))
                .map_err(user_error)
        })?;
        if !emitted.is_empty() {
            out.collect(emitted)?;
        }
        self.sides.flush(out)
    }
}

impl<F, K, A, B, O> TwoInputOperator<A, B, O> for KeyedCoProcessOperator<F, K, A, B, O>
where
    K: Key,
    F: KeyedCoProcessFunction<K, A, B, O>,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let rt = KeyedRuntime::open(ctx)?;
        self.f
            .open(&RuntimeContext::keyed(ctx, rt.backend.clone()))
            .map_err(user_error)?;
        self.rt = Some(rt);
        Ok(())
    }
    fn process_batch1(
        &mut self,
        batch: Vec<StreamRecord<A>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let key = self.key1.clone();
        self.run(
            batch,
            |v| key(v),
            out,
            |f, v, ctx, c| f.process_element1(v, ctx, c),
        )
    }
    fn process_batch2(
        &mut self,
        batch: Vec<StreamRecord<B>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let key = self.key2.clone();
        self.run(
            batch,
            |v| key(v),
            out,
            |f, v, ctx, c| f.process_element2(v, ctx, c),
        )
    }
    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<O>) -> Result<()> {
        self.rt
            .as_ref()
            .ok_or_else(not_open)?
            .timers
            .borrow_mut()
            .advance_watermark(watermark.0);
        self.fire(TimeDomain::EventTime, 0, out)?;
        out.emit_watermark(watermark)
    }
    fn on_processing_time(&mut self, time: i64, out: &mut dyn Output<O>) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, time, out)
    }
    fn close(&mut self) -> Result<()> {
        self.f.close().map_err(user_error)
    }
}

impl<A: Data, B: Data> ConnectedStreams<A, B> {
    /// Maps each input with its own function into one output type (Flink's `CoMapFunction`).
    pub fn map<O: Data>(
        self,
        f1: impl Fn(A) -> O + Send + Sync + 'static,
        f2: impl Fn(B) -> O + Send + Sync + 'static,
    ) -> DataStream<O> {
        let (f1, f2) = (Arc::new(f1), Arc::new(f2));
        two_input(&self.first, &self.second, "Co-Map", move || {
            CoMapOperator(f1.clone(), f2.clone())
        })
    }

    /// Flat-maps each input with its own function (Flink's `CoFlatMapFunction`).
    pub fn flat_map<O: Data>(
        self,
        f1: impl Fn(A, &mut Collector<'_, O>) + Send + Sync + 'static,
        f2: impl Fn(B, &mut Collector<'_, O>) + Send + Sync + 'static,
    ) -> DataStream<O> {
        let (f1, f2) = (Arc::new(f1), Arc::new(f2));
        two_input(&self.first, &self.second, "Co-Flat Map", move || {
            CoFlatMapOperator(f1.clone(), f2.clone())
        })
    }

    /// Applies a [`CoProcessFunction`] made by `make` once per subtask.
    pub fn process<O: Data, F: CoProcessFunction<A, B, O>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> DataStream<O> {
        two_input(&self.first, &self.second, "Co-Process", move || {
            CoProcessOperator {
                f: make(),
                processing: ProcessingTimeService::default(),
                watermark: i64::MIN,
                sides: SideOutputs::default(),
                _t: PhantomData,
            }
        })
    }

    /// Keys both inputs, so that elements with equal keys meet in one subtask.
    pub fn key_by<K: Key>(
        self,
        key1: impl Fn(&A) -> K + Send + Sync + 'static,
        key2: impl Fn(&B) -> K + Send + Sync + 'static,
    ) -> KeyedConnectedStreams<A, B, K> {
        KeyedConnectedStreams {
            first: self.first.key_by(key1),
            second: self.second.key_by(key2),
        }
    }
}

/// Two connected streams keyed by the same key type.
pub struct KeyedConnectedStreams<A, B, K> {
    first: KeyedStream<A, K>,
    second: KeyedStream<B, K>,
}

impl<A: Data, K: Key> KeyedStream<A, K> {
    /// Connects two keyed streams with the same key type.
    pub fn connect<B: Data>(self, other: KeyedStream<B, K>) -> KeyedConnectedStreams<A, B, K> {
        KeyedConnectedStreams {
            first: self,
            second: other,
        }
    }
}

impl<A: Data, B: Data, K: Key> KeyedConnectedStreams<A, B, K> {
    /// Applies a [`KeyedCoProcessFunction`] made by `make` once per subtask.
    pub fn process<O: Data, F: KeyedCoProcessFunction<K, A, B, O>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> DataStream<O> {
        let (key1, key2) = (
            self.first.key_selector.clone(),
            self.second.key_selector.clone(),
        );
        two_input(
            &self.first.stream,
            &self.second.stream,
            "Keyed Co-Process",
            move || KeyedCoProcessOperator {
                f: make(),
                key1: key1.clone(),
                key2: key2.clone(),
                rt: None,
                sides: SideOutputs::default(),
                _t: PhantomData,
            },
        )
    }
}

/// A stream whose every element goes to every subtask of the operator it is connected to, where
/// it can update broadcast state (Flink's `BroadcastStream`).
pub struct BroadcastStream<B> {
    stream: DataStream<B>,
}

impl<B: Data> DataStream<B> {
    /// Broadcasts this stream for use with broadcast state described by `descriptor` (Flink's
    /// `broadcast(MapStateDescriptor)`).
    pub fn broadcast_with<MK, MV>(
        self,
        descriptor: &MapStateDescriptor<MK, MV>,
    ) -> BroadcastStream<B> {
        let _ = descriptor;
        BroadcastStream {
            stream: DataStream {
                env: self.env,
                inputs: self.inputs,
                partitioner: Some(PartitionerKind::Broadcast),
                partitioner_factory: Arc::new(StandardPartitioners::<B>::default()),
                node: None,
                _t: PhantomData,
            },
        }
    }
}

/// What a broadcast function sees while processing a broadcast element: writable broadcast
/// state.
pub struct BroadcastContext<'a> {
    timestamp: i64,
    store: &'a OperatorStateStore,
    sides: &'a mut SideOutputs,
}

impl BroadcastContext<'_> {
    /// The element's timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// The broadcast state described by `descriptor`, writable.
    pub fn get_broadcast_state<MK, MV>(
        &self,
        descriptor: &MapStateDescriptor<MK, MV>,
    ) -> Result<BroadcastState<MK, MV>>
    where
        MK: Data + Hash + Eq,
        MV: Data,
    {
        self.store.get_broadcast_state(descriptor)
    }

    /// Emits to a side output.
    pub fn output<X: 'static>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, value, self.timestamp);
    }
}

/// Broadcast state that can only be read (on the non-broadcast side).
pub struct ReadOnlyBroadcastState<MK, MV>(BroadcastState<MK, MV>);

impl<MK: Hash + Eq + Clone, MV: Clone> ReadOnlyBroadcastState<MK, MV> {
    /// The value for `key`.
    pub fn get(&self, key: &MK) -> Option<MV> {
        self.0.get(key)
    }
    /// Whether `key` has a value.
    pub fn contains(&self, key: &MK) -> bool {
        self.0.contains(key)
    }
    /// Every entry.
    pub fn entries(&self) -> Vec<(MK, MV)> {
        self.0.entries()
    }
}

/// What a broadcast function sees while processing a non-broadcast element.
pub struct ReadOnlyContext<'a, K> {
    inner: KeyedOrNot<'a, K>,
    store: &'a OperatorStateStore,
}

enum KeyedOrNot<'a, K> {
    Keyed(KeyedContext<'a, K>),
    Plain(Context<'a>),
}

impl<K> ReadOnlyContext<'_, K> {
    /// The broadcast state described by `descriptor`, read-only.
    pub fn get_broadcast_state<MK, MV>(
        &self,
        descriptor: &MapStateDescriptor<MK, MV>,
    ) -> Result<ReadOnlyBroadcastState<MK, MV>>
    where
        MK: Data + Hash + Eq,
        MV: Data,
    {
        Ok(ReadOnlyBroadcastState(
            self.store.get_broadcast_state(descriptor)?,
        ))
    }

    /// The element's timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        match &self.inner {
            KeyedOrNot::Keyed(c) => c.timestamp(),
            KeyedOrNot::Plain(c) => c.timestamp(),
        }
    }

    /// The current key, on a keyed stream.
    pub fn get_current_key(&self) -> Option<&K> {
        match &self.inner {
            KeyedOrNot::Keyed(c) => Some(c.get_current_key()),
            KeyedOrNot::Plain(_) => None,
        }
    }

    /// Clocks and timers (timers only on a keyed stream).
    pub fn timer_service(&self) -> &crate::process::TimerService<'_> {
        match &self.inner {
            KeyedOrNot::Keyed(c) => c.timer_service(),
            KeyedOrNot::Plain(c) => c.timer_service(),
        }
    }

    /// Emits to a side output.
    pub fn output<X: 'static>(&mut self, tag: &OutputTag<X>, value: X) {
        match &mut self.inner {
            KeyedOrNot::Keyed(c) => c.output(tag, value),
            KeyedOrNot::Plain(c) => c.output(tag, value),
        }
    }
}

/// A function over a stream connected with a broadcast stream (Flink's
/// `BroadcastProcessFunction` and, for keyed streams, `KeyedBroadcastProcessFunction`; `K` is
/// `()` on non-keyed streams).
pub trait BroadcastProcessFunction<K, I1, I2, O>: 'static {
    /// Called once per subtask before the first element.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// An element of the non-broadcast stream; broadcast state is read-only here.
    fn process_element(
        &mut self,
        value: I1,
        ctx: &mut ReadOnlyContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult<()>;
    /// An element of the broadcast stream; every subtask sees it and may update broadcast state.
    fn process_broadcast_element(
        &mut self,
        value: I2,
        ctx: &mut BroadcastContext<'_>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult<()>;
    /// A timer fired (keyed streams only).
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, K>,
        _out: &mut Collector<'_, O>,
    ) -> FunctionResult<()> {
        Ok(())
    }
    /// Called once per subtask at the end.
    fn close(&mut self) -> FunctionResult<()> {
        Ok(())
    }
}

/// Runs a [`BroadcastProcessFunction`], keyed or not.
struct BroadcastOperator<F, K, A, B, O> {
    f: F,
    key: Option<KeySelector<A, K>>,
    rt: Option<KeyedRuntime>,
    store: OperatorStateStore,
    processing: ProcessingTimeService,
    watermark: i64,
    sides: SideOutputs,
    _t: PhantomData<fn(A, B) -> O>,
}

impl<F, K, A, B, O> TwoInputOperator<A, B, O> for BroadcastOperator<F, K, A, B, O>
where
    K: Key,
    F: BroadcastProcessFunction<K, A, B, O>,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.store = ctx.state.operator_state().clone();
        self.processing = ctx.timer_service.clone();
        let rc = if self.key.is_some() {
            let rt = KeyedRuntime::open(ctx)?;
            let rc = RuntimeContext::keyed(ctx, rt.backend.clone());
            self.rt = Some(rt);
            rc
        } else {
            RuntimeContext::new(ctx)
        };
        self.f.open(&rc).map_err(user_error)
    }

    fn process_batch1(
        &mut self,
        batch: Vec<StreamRecord<A>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let mut emitted = Vec::with_capacity(batch.len());
        for r in batch {
            let mut c = Collector::new(&mut emitted, r.timestamp);
            match (&self.key, &self.rt) {
                (Some(key_of), Some(rt)) => {
                    let key = key_of(&r.value);
                    rt.backend.set_current_key(&key)?;
                    let mut ctx = ReadOnlyContext {
                        inner: KeyedOrNot::Keyed(rt.context(
                            &key,
                            r.timestamp,
                            None,
                            &mut self.sides,
                        )),
                        store: &self.store,
                    };
                    self.f
                        .process_element(r.value, &mut ctx, &mut c)
                        .map_err(user_error)?;
                }
                _ => {
                    let mut ctx: ReadOnlyContext<'_, K> = ReadOnlyContext {
                        inner: KeyedOrNot::Plain(Context::new(
                            r.timestamp,
                            self.watermark,
                            &self.processing,
                            &mut self.sides,
                        )),
                        store: &self.store,
                    };
                    self.f
                        .process_element(r.value, &mut ctx, &mut c)
                        .map_err(user_error)?;
                }
            }
        }
        if !emitted.is_empty() {
            out.collect(emitted)?;
        }
        self.sides.flush(out)
    }

    fn process_batch2(
        &mut self,
        batch: Vec<StreamRecord<B>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let mut emitted = Vec::new();
        for r in batch {
            let mut ctx = BroadcastContext {
                timestamp: r.timestamp,
                store: &self.store,
                sides: &mut self.sides,
            };
            let mut c = Collector::new(&mut emitted, r.timestamp);
            self.f
                .process_broadcast_element(r.value, &mut ctx, &mut c)
                .map_err(user_error)?;
        }
        if !emitted.is_empty() {
            out.collect(emitted)?;
        }
        self.sides.flush(out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<O>) -> Result<()> {
        self.watermark = watermark.0;
        if let Some(rt) = &self.rt {
            rt.timers.borrow_mut().advance_watermark(watermark.0);
            self.fire(TimeDomain::EventTime, 0, out)?;
        }
        out.emit_watermark(watermark)
    }

    fn on_processing_time(&mut self, time: i64, out: &mut dyn Output<O>) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, time, out)
    }

    fn close(&mut self) -> Result<()> {
        self.f.close().map_err(user_error)
    }
}

impl<F, K, A, B, O> BroadcastOperator<F, K, A, B, O>
where
    K: Key,
    F: BroadcastProcessFunction<K, A, B, O>,
{
    fn fire(&mut self, domain: TimeDomain, now: i64, out: &mut dyn Output<O>) -> Result<()> {
        let Some(rt) = self.rt.as_ref() else {
            return Ok(());
        };
        let mut emitted = Vec::new();
        let (f, sides) = (&mut self.f, &mut self.sides);
        rt.fire::<K>(domain, now, |ts, key, out_ts| {
            let mut ctx = rt.context(&key, ts, Some(domain), sides);
            f.on_timer(ts, &mut ctx, &mut Collector::new(&mut emitted, out_ts))
                .map_err(user_error)
        })?;
        if !emitted.is_empty() {
            out.collect(emitted)?;
        }
        self.sides.flush(out)
    }
}

fn broadcast_operator<F, K, A, B, O>(
    f: F,
    key: Option<KeySelector<A, K>>,
) -> BroadcastOperator<F, K, A, B, O> {
    BroadcastOperator {
        f,
        key,
        rt: None,
        store: OperatorStateStore::default(),
        processing: ProcessingTimeService::default(),
        watermark: i64::MIN,
        sides: SideOutputs::default(),
        _t: PhantomData,
    }
}

impl<A: Data> DataStream<A> {
    /// Connects this stream with a broadcast stream (Flink's `connect(BroadcastStream)`).
    pub fn connect_broadcast<B: Data>(
        self,
        broadcast: BroadcastStream<B>,
    ) -> BroadcastConnectedStream<A, B> {
        BroadcastConnectedStream {
            first: self,
            second: broadcast.stream,
        }
    }
}

impl<A: Data, K: Key> KeyedStream<A, K> {
    /// Connects this keyed stream with a broadcast stream.
    pub fn connect_broadcast<B: Data>(
        self,
        broadcast: BroadcastStream<B>,
    ) -> KeyedBroadcastConnectedStream<A, B, K> {
        KeyedBroadcastConnectedStream {
            first: self,
            second: broadcast.stream,
        }
    }
}

/// A stream connected with a broadcast stream.
pub struct BroadcastConnectedStream<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

impl<A: Data, B: Data> BroadcastConnectedStream<A, B> {
    /// Applies a [`BroadcastProcessFunction`] (with key type `()`) made by `make` once per
    /// subtask.
    pub fn process<O: Data, F: BroadcastProcessFunction<(), A, B, O>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> DataStream<O> {
        two_input(&self.first, &self.second, "Broadcast Process", move || {
            broadcast_operator::<_, (), A, B, O>(make(), None)
        })
    }
}

/// A keyed stream connected with a broadcast stream.
pub struct KeyedBroadcastConnectedStream<A, B, K> {
    first: KeyedStream<A, K>,
    second: DataStream<B>,
}

impl<A: Data, B: Data, K: Key> KeyedBroadcastConnectedStream<A, B, K> {
    /// Applies a keyed [`BroadcastProcessFunction`] made by `make` once per subtask: keyed
    /// state and timers on the keyed side.
    pub fn process<O: Data, F: BroadcastProcessFunction<K, A, B, O>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> DataStream<O> {
        let key = self.first.key_selector.clone();
        two_input(
            &self.first.stream,
            &self.second,
            "Keyed Broadcast Process",
            move || broadcast_operator::<_, K, A, B, O>(make(), Some(key.clone())),
        )
    }
}
