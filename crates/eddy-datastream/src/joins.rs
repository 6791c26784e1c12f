//! Joins: window joins and co-groups of two streams, and interval joins of two keyed streams.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use eddy_core::element::{NO_TIMESTAMP, StreamRecord, Watermark};
use eddy_runtime::factories::TwoInputFactory;
use eddy_runtime::operator::{OperatorContext, Output, TwoInputOperator};
use eddy_runtime::state::{InternalTimerService, KeyedStateBackend, SharedStateTable};
use eddy_runtime::{Result, RuntimeError};
use serde::{Deserialize, Serialize};

use crate::functions::{
    Collector, FunctionResult, OutputTag, RuntimeContext, SideOutputs, user_error,
};
use crate::operators::KeySelector;
use crate::windowing::{Evictor, Trigger, Window, WindowAssigner, WindowedStream};
use crate::{Data, DataStream, Key, KeyedStream};

/// An element of either of two streams (Flink's `TaggedUnion`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TaggedUnion<A, B> {
    /// From the first stream.
    One(A),
    /// From the second stream.
    Two(B),
}

fn split<A, B>(elements: Vec<TaggedUnion<A, B>>) -> (Vec<A>, Vec<B>) {
    let mut lefts = Vec::new();
    let mut rights = Vec::new();
    for e in elements {
        match e {
            TaggedUnion::One(a) => lefts.push(a),
            TaggedUnion::Two(b) => rights.push(b),
        }
    }
    (lefts, rights)
}

/// The elements of both streams, tagged, keyed and windowed.
fn tagged_window<A: Data, B: Data, K: Key, W: Window>(
    a: DataStream<A>,
    b: DataStream<B>,
    ka: KeySelector<A, K>,
    kb: KeySelector<B, K>,
    assigner: impl WindowAssigner<TaggedUnion<A, B>, W>,
) -> WindowedStream<TaggedUnion<A, B>, K, W> {
    let left = a.map(TaggedUnion::One).name("Tag Left");
    let right = b.map(TaggedUnion::Two).name("Tag Right");
    left.union([right])
        .key_by(move |t: &TaggedUnion<A, B>| match t {
            TaggedUnion::One(a) => ka(a),
            TaggedUnion::Two(b) => kb(b),
        })
        .window(assigner)
}

macro_rules! two_stream_builder {
    ($start:ident, $where_:ident, $equal:ident, $windowed:ident, $doc:literal) => {
        #[doc = $doc]
        pub struct $start<A, B> {
            a: DataStream<A>,
            b: DataStream<B>,
        }

        impl<A: Data, B: Data> $start<A, B> {
            /// The key of the first stream's elements.
            pub fn where_<K: Key>(
                self,
                key: impl Fn(&A) -> K + Send + Sync + 'static,
            ) -> $where_<A, B, K> {
                $where_ {
                    a: self.a,
                    b: self.b,
                    ka: Arc::new(key),
                }
            }
        }

        /// The first stream's key is set; set the second's with `equal_to`.
        pub struct $where_<A, B, K> {
            a: DataStream<A>,
            b: DataStream<B>,
            ka: KeySelector<A, K>,
        }

        impl<A: Data, B: Data, K: Key> $where_<A, B, K> {
            /// The key of the second stream's elements, compared with the first's.
            pub fn equal_to(
                self,
                key: impl Fn(&B) -> K + Send + Sync + 'static,
            ) -> $equal<A, B, K> {
                $equal {
                    a: self.a,
                    b: self.b,
                    ka: self.ka,
                    kb: Arc::new(key),
                }
            }
        }

        /// Both keys are set; choose the windows with `window`.
        pub struct $equal<A, B, K> {
            a: DataStream<A>,
            b: DataStream<B>,
            ka: KeySelector<A, K>,
            kb: KeySelector<B, K>,
        }

        impl<A: Data, B: Data, K: Key> $equal<A, B, K> {
            /// Groups both streams' elements with equal keys into the windows of `assigner`.
            pub fn window<W: Window>(
                self,
                assigner: impl WindowAssigner<TaggedUnion<A, B>, W>,
            ) -> $windowed<A, B, K, W> {
                $windowed {
                    windowed: tagged_window(self.a, self.b, self.ka, self.kb, assigner),
                }
            }
        }

        /// Windows are set; optionally a trigger, evictor or lateness, then `apply`.
        pub struct $windowed<A, B, K, W: Window> {
            windowed: WindowedStream<TaggedUnion<A, B>, K, W>,
        }

        impl<A: Data, B: Data, K: Key, W: Window> $windowed<A, B, K, W> {
            /// Replaces the default trigger.
            pub fn trigger(self, trigger: impl Trigger<TaggedUnion<A, B>, W>) -> Self {
                $windowed {
                    windowed: self.windowed.trigger(trigger),
                }
            }

            /// Sets an evictor.
            pub fn evictor(self, evictor: impl Evictor<TaggedUnion<A, B>, W>) -> Self {
                $windowed {
                    windowed: self.windowed.evictor(evictor),
                }
            }

            /// Sets the allowed lateness.
            pub fn allowed_lateness(self, lateness: std::time::Duration) -> Self {
                $windowed {
                    windowed: self.windowed.allowed_lateness(lateness),
                }
            }
        }
    };
}

two_stream_builder!(
    JoinedStreams,
    JoinWhere,
    JoinEqualTo,
    JoinWindowed,
    "Two streams to join on equal keys within windows (Flink's `JoinedStreams`)."
);
two_stream_builder!(
    CoGroupedStreams,
    CoGroupWhere,
    CoGroupEqualTo,
    CoGroupWindowed,
    "Two streams to co-group on equal keys within windows (Flink's `CoGroupedStreams`)."
);

impl<A: Data> DataStream<A> {
    /// Joins this stream with `other`: pairs of elements with equal keys in the same window.
    pub fn join<B: Data>(self, other: DataStream<B>) -> JoinedStreams<A, B> {
        JoinedStreams { a: self, b: other }
    }

    /// Co-groups this stream with `other`: per key and window, both groups of elements.
    pub fn co_group<B: Data>(self, other: DataStream<B>) -> CoGroupedStreams<A, B> {
        CoGroupedStreams { a: self, b: other }
    }
}

impl<A: Data, B: Data, K: Key, W: Window> JoinWindowed<A, B, K, W> {
    /// Emits `f(a, b)` for every pair with equal keys in a firing window (an inner join).
    pub fn apply<O: Data>(self, f: impl Fn(A, B) -> O + Send + Sync + 'static) -> DataStream<O> {
        self.flat_apply(move |a, b, out| out.collect(f(a, b)))
    }

    /// Calls `f(a, b, out)` for every pair (Flink's `FlatJoinFunction`).
    pub fn flat_apply<O: Data>(
        self,
        f: impl Fn(A, B, &mut Collector<'_, O>) + Send + Sync + 'static,
    ) -> DataStream<O> {
        self.windowed
            .apply(move |_: &K, _: &W, elements, out| {
                let (lefts, rights) = split(elements);
                for a in &lefts {
                    for b in &rights {
                        f(a.clone(), b.clone(), out);
                    }
                }
            })
            .name("Window Join")
    }
}

impl<A: Data, B: Data, K: Key, W: Window> CoGroupWindowed<A, B, K, W> {
    /// Calls `f(lefts, rights, out)` once per key and firing window.
    pub fn apply<O: Data>(
        self,
        f: impl Fn(Vec<A>, Vec<B>, &mut Collector<'_, O>) + Send + Sync + 'static,
    ) -> DataStream<O> {
        self.windowed
            .apply(move |_: &K, _: &W, elements, out| {
                let (lefts, rights) = split(elements);
                f(lefts, rights, out);
            })
            .name("Window CoGroup")
    }
}

/// What a [`ProcessJoinFunction`] sees of a joined pair.
pub struct JoinContext<'a> {
    left_timestamp: i64,
    right_timestamp: i64,
    sides: &'a mut SideOutputs,
}

impl JoinContext<'_> {
    /// The left element's timestamp.
    pub fn left_timestamp(&self) -> i64 {
        self.left_timestamp
    }
    /// The right element's timestamp.
    pub fn right_timestamp(&self) -> i64 {
        self.right_timestamp
    }
    /// The pair's timestamp: the larger of the two.
    pub fn timestamp(&self) -> i64 {
        self.left_timestamp.max(self.right_timestamp)
    }
    /// Emits to a side output.
    pub fn output<X: 'static>(&mut self, tag: &OutputTag<X>, value: X) {
        let ts = self.timestamp();
        self.sides.emit(tag, value, ts);
    }
}

/// Processes the pairs of an interval join (Flink's `ProcessJoinFunction`).
pub trait ProcessJoinFunction<A, B, O>: 'static {
    /// Called once per subtask before the first pair.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// A left and a right element with equal keys and timestamps within the bounds.
    fn process_element(
        &mut self,
        left: A,
        right: B,
        ctx: &mut JoinContext<'_>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult<()>;
}

/// An interval join in the making (Flink's `KeyedStream.IntervalJoin`).
pub struct IntervalJoin<A, B, K> {
    left: KeyedStream<A, K>,
    right: KeyedStream<B, K>,
}

impl<A: Data, K: Key> KeyedStream<A, K> {
    /// Joins with `other`: each left element `l` with every right element `r` of the same key
    /// with `l.ts + lower <= r.ts <= l.ts + upper`.
    pub fn interval_join<B: Data>(self, other: KeyedStream<B, K>) -> IntervalJoin<A, B, K> {
        IntervalJoin {
            left: self,
            right: other,
        }
    }
}

impl<A: Data, B: Data, K: Key> IntervalJoin<A, B, K> {
    /// The bounds, in ms, relative to the left element's timestamp (inclusive; may be
    /// negative).
    pub fn between(self, lower_ms: i64, upper_ms: i64) -> IntervalJoined<A, B, K> {
        IntervalJoined {
            join: self,
            lower: lower_ms,
            upper: upper_ms,
        }
    }
}

/// An interval join with bounds.
pub struct IntervalJoined<A, B, K> {
    join: IntervalJoin<A, B, K>,
    lower: i64,
    upper: i64,
}

impl<A: Data, B: Data, K: Key> IntervalJoined<A, B, K> {
    /// Excludes the lower bound.
    pub fn lower_bound_exclusive(mut self) -> Self {
        self.lower += 1;
        self
    }

    /// Excludes the upper bound.
    pub fn upper_bound_exclusive(mut self) -> Self {
        self.upper -= 1;
        self
    }

    /// Processes every joined pair with the function `make` creates once per subtask.
    pub fn process<O: Data, F: ProcessJoinFunction<A, B, O>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> DataStream<O> {
        let (lower, upper) = (self.lower, self.upper);
        if lower > upper {
            self.join.left.stream.env.record_error(format!(
                "interval join: the lower bound {lower} is greater than the upper bound {upper}"
            ));
        }
        let (ka, kb) = (
            self.join.left.key_selector.clone(),
            self.join.right.key_selector.clone(),
        );
        let first = &self.join.left.stream;
        let second = &self.join.right.stream;
        let node = {
            let mut inner = first.env.inner.borrow_mut();
            let node = inner.graph.add_node(
                "Interval Join",
                Arc::new(TwoInputFactory::new(move || IntervalJoinOperator {
                    f: make(),
                    ka: ka.clone(),
                    kb: kb.clone(),
                    lower,
                    upper,
                    rt: None,
                    sides: SideOutputs::default(),
                    emitted: Vec::new(),
                    _t: PhantomData,
                })),
            );
            first.add_edges_to(&mut inner.graph, node, 0);
            second.add_edges_to(&mut inner.graph, node, 1);
            node
        };
        DataStream::from_node(first.env.clone(), node)
    }
}

/// Buffered elements of one side, by timestamp.
type Buffer<T> = BTreeMap<i64, Vec<T>>;

struct JoinRuntime<A, B> {
    backend: KeyedStateBackend,
    timers: InternalTimerService<u8>,
    left: SharedStateTable<Buffer<A>>,
    right: SharedStateTable<Buffer<B>>,
    late: std::sync::Arc<eddy_runtime::metrics::Counter>,
}

const LEFT: u8 = 0;
const RIGHT: u8 = 1;

/// Flink's `IntervalJoinOperator`: each side buffers its elements per key and timestamp until
/// the watermark passes the last time the other side could still join them.
struct IntervalJoinOperator<F, K, A, B, O> {
    f: F,
    ka: KeySelector<A, K>,
    kb: KeySelector<B, K>,
    lower: i64,
    upper: i64,
    rt: Option<JoinRuntime<A, B>>,
    sides: SideOutputs,
    emitted: Vec<StreamRecord<O>>,
    _t: PhantomData<fn() -> O>,
}

impl<F, K, A, B, O> IntervalJoinOperator<F, K, A, B, O>
where
    F: ProcessJoinFunction<A, B, O>,
    K: Key,
    A: Data,
    B: Data,
{
    fn rt(&mut self) -> Result<&mut JoinRuntime<A, B>> {
        self.rt
            .as_mut()
            .ok_or_else(|| RuntimeError::Internal("interval join used before open".into()))
    }

    /// Whether an element at `ts` arrives after the watermark and must be dropped.
    fn is_late(&mut self, ts: i64) -> Result<bool> {
        let wm = self.rt()?.timers.current_watermark();
        Ok(wm != i64::MIN && ts < wm)
    }
}

fn require_timestamp<T: Serialize>(value: &T, ts: i64) -> Result<()> {
    if ts == NO_TIMESTAMP {
        return Err(RuntimeError::user(format!(
            "record {} of an interval join has no timestamp; assign timestamps with a \
             WatermarkStrategy",
            crate::functions::describe(value)
        )));
    }
    Ok(())
}

impl<F, K, A, B, O> TwoInputOperator<A, B, O> for IntervalJoinOperator<F, K, A, B, O>
where
    F: ProcessJoinFunction<A, B, O>,
    K: Key,
    A: Data,
    B: Data,
    O: 'static,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let backend = ctx.state.keyed_backend()?;
        self.f
            .open(&RuntimeContext::keyed(ctx, backend.clone()))
            .map_err(user_error)?;
        self.rt = Some(JoinRuntime {
            timers: InternalTimerService::create(
                backend.clone(),
                ctx.timer_service.clone(),
                "interval-join",
            )?,
            left: backend.table("_join-left")?,
            right: backend.table("_join-right")?,
            late: ctx.metrics.counter("numLateRecordsDropped"),
            backend,
        });
        Ok(())
    }

    fn process_batch1(
        &mut self,
        batch: Vec<StreamRecord<A>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        for r in batch {
            require_timestamp(&r.value, r.timestamp)?;
            let key = (self.ka)(&r.value);
            if self.is_late(r.timestamp)? {
                self.rt()?.late.inc();
                continue;
            }
            let (lower, upper) = (self.lower, self.upper);
            let Some(rt) = self.rt.as_mut() else { continue };
            let kg = rt.backend.set_current_key(&key)?;
            let composite = rt.backend.current_key_bytes().clone();
            let ts = r.timestamp;
            let candidates: Vec<(i64, B)> = rt
                .right
                .borrow_mut()
                .get(kg, &composite)?
                .map(|buf| {
                    buf.range(ts.saturating_add(lower)..=ts.saturating_add(upper))
                        .flat_map(|(t, bs)| bs.iter().map(move |b| (*t, b.clone())))
                        .collect()
                })
                .unwrap_or_default();
            rt.left
                .borrow_mut()
                .get_or_insert_with(kg, &composite, BTreeMap::new)?
                .entry(ts)
                .or_default()
                .push(r.value.clone());
            let cleanup = if upper > 0 {
                ts.saturating_add(upper)
            } else {
                ts
            };
            rt.timers.register_event_time_timer(LEFT, cleanup);
            for (rts, b) in candidates {
                let mut ctx = JoinContext {
                    left_timestamp: ts,
                    right_timestamp: rts,
                    sides: &mut self.sides,
                };
                let mut c = Collector::new(&mut self.emitted, ts.max(rts));
                self.f
                    .process_element(r.value.clone(), b, &mut ctx, &mut c)
                    .map_err(user_error)?;
            }
        }
        if !self.emitted.is_empty() {
            out.collect(std::mem::take(&mut self.emitted))?;
        }
        self.sides.flush(out)
    }

    fn process_batch2(
        &mut self,
        batch: Vec<StreamRecord<B>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        for r in batch {
            require_timestamp(&r.value, r.timestamp)?;
            let key = (self.kb)(&r.value);
            if self.is_late(r.timestamp)? {
                self.rt()?.late.inc();
                continue;
            }
            // Relative to the right element, the bounds are [-upper, -lower].
            let (rel_lower, rel_upper) = (-self.upper, -self.lower);
            let Some(rt) = self.rt.as_mut() else { continue };
            let kg = rt.backend.set_current_key(&key)?;
            let composite = rt.backend.current_key_bytes().clone();
            let ts = r.timestamp;
            let candidates: Vec<(i64, A)> = rt
                .left
                .borrow_mut()
                .get(kg, &composite)?
                .map(|buf| {
                    buf.range(ts.saturating_add(rel_lower)..=ts.saturating_add(rel_upper))
                        .flat_map(|(t, as_)| as_.iter().map(move |a| (*t, a.clone())))
                        .collect()
                })
                .unwrap_or_default();
            rt.right
                .borrow_mut()
                .get_or_insert_with(kg, &composite, BTreeMap::new)?
                .entry(ts)
                .or_default()
                .push(r.value.clone());
            let cleanup = if rel_upper > 0 {
                ts.saturating_add(rel_upper)
            } else {
                ts
            };
            rt.timers.register_event_time_timer(RIGHT, cleanup);
            for (lts, a) in candidates {
                let mut ctx = JoinContext {
                    left_timestamp: lts,
                    right_timestamp: ts,
                    sides: &mut self.sides,
                };
                let mut c = Collector::new(&mut self.emitted, ts.max(lts));
                self.f
                    .process_element(a, r.value.clone(), &mut ctx, &mut c)
                    .map_err(user_error)?;
            }
        }
        if !self.emitted.is_empty() {
            out.collect(std::mem::take(&mut self.emitted))?;
        }
        self.sides.flush(out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<O>) -> Result<()> {
        let (lower, upper) = (self.lower, self.upper);
        let rt = self.rt()?;
        rt.timers.advance_watermark(watermark.0);
        while let Some(timer) = rt.timers.poll_event_timer() {
            let kg = timer.key_group;
            let t = timer.timestamp;
            if timer.namespace == LEFT {
                let bucket = if upper <= 0 { t } else { t - upper };
                let mut left = rt.left.borrow_mut();
                let now_empty = match left.get_mut(kg, &timer.key)? {
                    Some(buf) => {
                        buf.remove(&bucket);
                        buf.is_empty()
                    }
                    None => false,
                };
                if now_empty {
                    left.remove(kg, &timer.key)?;
                }
            } else {
                let bucket = if lower <= 0 { t + lower } else { t };
                let mut right = rt.right.borrow_mut();
                let now_empty = match right.get_mut(kg, &timer.key)? {
                    Some(buf) => {
                        buf.remove(&bucket);
                        buf.is_empty()
                    }
                    None => false,
                };
                if now_empty {
                    right.remove(kg, &timer.key)?;
                }
            }
        }
        out.emit_watermark(watermark)
    }
}
