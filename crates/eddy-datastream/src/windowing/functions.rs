//! Window functions and how window contents accumulate.

use std::marker::PhantomData;
use std::sync::Arc;

use eddy_core::element::StreamRecord;
use eddy_runtime::Result;
use eddy_runtime::state::{AggregateFunction, KeyedStateStore};

use super::evictors::Evictor;
use super::window::Window;
use crate::functions::{
    Collector, FunctionResult, OutputTag, RuntimeContext, SideOutputs, user_error,
};

/// What a [`ProcessWindowFunction`] sees of the window it evaluates.
pub struct ProcessWindowContext<'a, W> {
    pub(crate) window: &'a W,
    pub(crate) watermark: i64,
    pub(crate) processing_time: i64,
    pub(crate) window_state: &'a KeyedStateStore,
    pub(crate) global_state: &'a KeyedStateStore,
    pub(crate) sides: &'a mut SideOutputs,
}

impl<W: Window> ProcessWindowContext<'_, W> {
    /// The window being evaluated.
    pub fn window(&self) -> &W {
        self.window
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// The wall clock, in ms.
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }

    /// State scoped to the key and this window; clear it in `clear`.
    pub fn window_state(&self) -> &KeyedStateStore {
        self.window_state
    }

    /// State scoped to the key, shared by all its windows.
    pub fn global_state(&self) -> &KeyedStateStore {
        self.global_state
    }

    /// Emits `value` to a side output, stamped with the window's max timestamp.
    pub fn output<X: 'static>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, value, self.window.max_timestamp());
    }
}

/// Evaluates a window with all its elements, or with the result of an incremental aggregation
/// (Flink's `ProcessWindowFunction`).
pub trait ProcessWindowFunction<IN, OUT, K, W: Window>: 'static {
    /// Called once per subtask before the first window.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }

    /// Evaluates a firing window. Emitted records get the window's max timestamp.
    fn process(
        &mut self,
        key: &K,
        context: &mut ProcessWindowContext<'_, W>,
        elements: Vec<IN>,
        out: &mut Collector<'_, OUT>,
    ) -> FunctionResult<()>;

    /// The window is removed: clear its per-window state.
    fn clear(&mut self, _context: &mut ProcessWindowContext<'_, W>) -> FunctionResult<()> {
        Ok(())
    }

    /// Called once per subtask at the end.
    fn close(&mut self) -> FunctionResult<()> {
        Ok(())
    }
}

/// A closure `(key, window, elements, out)` as a [`ProcessWindowFunction`] (Flink's
/// `WindowFunction`, used by `apply`).
pub struct WindowFunctionAdapter<F, IN, OUT> {
    f: Arc<F>,
    _t: PhantomData<fn(IN) -> OUT>,
}

impl<F, IN, OUT> WindowFunctionAdapter<F, IN, OUT> {
    pub(crate) fn new(f: Arc<F>) -> Self {
        WindowFunctionAdapter { f, _t: PhantomData }
    }
}

impl<F, IN, OUT, K, W> ProcessWindowFunction<IN, OUT, K, W> for WindowFunctionAdapter<F, IN, OUT>
where
    F: Fn(&K, &W, Vec<IN>, &mut Collector<'_, OUT>) + 'static,
    IN: 'static,
    OUT: 'static,
    W: Window,
{
    fn process(
        &mut self,
        key: &K,
        context: &mut ProcessWindowContext<'_, W>,
        elements: Vec<IN>,
        out: &mut Collector<'_, OUT>,
    ) -> FunctionResult<()> {
        (self.f)(key, context.window, elements, out);
        Ok(())
    }
}

/// How elements accumulate in a window's state.
pub(crate) trait WindowAccumulator<T, ACC>: Send + Sync + 'static {
    /// The state of a window with its first element.
    fn create(&self, value: T, timestamp: i64) -> ACC;
    /// Adds an element.
    fn add(&self, acc: &mut ACC, value: T, timestamp: i64);
    /// Merges the states of two windows (sessions, panes).
    fn merge(&self, a: ACC, b: ACC) -> ACC;
}

/// Keeps the reduce of the elements (`None` only transiently).
pub(crate) struct ReduceAccumulator<F>(pub(crate) Arc<F>);

impl<T, F: Fn(T, T) -> T + Send + Sync + 'static> WindowAccumulator<T, Option<T>>
    for ReduceAccumulator<F>
{
    #[inline]
    fn create(&self, value: T, _: i64) -> Option<T> {
        Some(value)
    }
    #[inline]
    fn add(&self, acc: &mut Option<T>, value: T, _: i64) {
        *acc = Some(match acc.take() {
            Some(a) => (self.0)(a, value),
            None => value,
        });
    }
    fn merge(&self, a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some((self.0)(a, b)),
            (a, b) => a.or(b),
        }
    }
}

/// Keeps an aggregate function's accumulator.
pub(crate) struct AggregateAccumulator<T, ACC, R>(pub(crate) Arc<dyn AggregateFunction<T, ACC, R>>);

impl<T: 'static, ACC: 'static, R: 'static> WindowAccumulator<T, ACC>
    for AggregateAccumulator<T, ACC, R>
{
    #[inline]
    fn create(&self, value: T, _: i64) -> ACC {
        let mut a = self.0.create_accumulator();
        self.0.add(value, &mut a);
        a
    }
    #[inline]
    fn add(&self, acc: &mut ACC, value: T, _: i64) {
        self.0.add(value, acc);
    }
    fn merge(&self, a: ACC, b: ACC) -> ACC {
        self.0.merge(a, b)
    }
}

/// Keeps every element with its timestamp.
pub(crate) struct ListAccumulator;

impl<T: 'static> WindowAccumulator<T, Vec<StreamRecord<T>>> for ListAccumulator {
    #[inline]
    fn create(&self, value: T, timestamp: i64) -> Vec<StreamRecord<T>> {
        vec![StreamRecord { value, timestamp }]
    }
    #[inline]
    fn add(&self, acc: &mut Vec<StreamRecord<T>>, value: T, timestamp: i64) {
        acc.push(StreamRecord { value, timestamp });
    }
    fn merge(&self, mut a: Vec<StreamRecord<T>>, b: Vec<StreamRecord<T>>) -> Vec<StreamRecord<T>> {
        a.extend(b);
        a
    }
}

/// What a firing window emits.
pub(crate) trait WindowEmitter<K, W: Window, ACC, OUT> {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn emit(
        &mut self,
        key: &K,
        acc: &mut ACC,
        ctx: &mut ProcessWindowContext<'_, W>,
        out: &mut Collector<'_, OUT>,
    ) -> Result<()>;
    fn clear(&mut self, _ctx: &mut ProcessWindowContext<'_, W>) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Emits a value computed from the accumulator (reduce: the value; aggregate: its result).
pub(crate) struct DirectEmitter<F>(pub(crate) F);

impl<K, W: Window, ACC, OUT, F: Fn(&ACC) -> Option<OUT>> WindowEmitter<K, W, ACC, OUT>
    for DirectEmitter<F>
{
    #[inline]
    fn emit(
        &mut self,
        _: &K,
        acc: &mut ACC,
        _: &mut ProcessWindowContext<'_, W>,
        out: &mut Collector<'_, OUT>,
    ) -> Result<()> {
        if let Some(v) = (self.0)(acc) {
            out.collect(v);
        }
        Ok(())
    }
}

/// Hands the window's elements (or its aggregate) to a process window function.
pub(crate) struct ProcessEmitter<P, F, IN> {
    pub(crate) function: P,
    pub(crate) elements: F,
    pub(crate) _in: PhantomData<fn() -> IN>,
}

impl<K, W, ACC, IN, OUT, P, F> WindowEmitter<K, W, ACC, OUT> for ProcessEmitter<P, F, IN>
where
    W: Window,
    P: ProcessWindowFunction<IN, OUT, K, W>,
    F: Fn(&ACC) -> Vec<IN>,
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.function.open(ctx).map_err(user_error)
    }
    fn emit(
        &mut self,
        key: &K,
        acc: &mut ACC,
        ctx: &mut ProcessWindowContext<'_, W>,
        out: &mut Collector<'_, OUT>,
    ) -> Result<()> {
        let elements = (self.elements)(acc);
        self.function
            .process(key, ctx, elements, out)
            .map_err(user_error)
    }
    fn clear(&mut self, ctx: &mut ProcessWindowContext<'_, W>) -> Result<()> {
        self.function.clear(ctx).map_err(user_error)
    }
    fn close(&mut self) -> Result<()> {
        self.function.close().map_err(user_error)
    }
}

/// Evicts elements around an inner emitter (Flink's `EvictingWindowOperator`).
pub(crate) struct EvictingEmitter<T, W: Window, I> {
    pub(crate) evictor: Arc<dyn Evictor<T, W>>,
    pub(crate) inner: I,
}

impl<K, T: 'static, W, OUT, I> WindowEmitter<K, W, Vec<StreamRecord<T>>, OUT>
    for EvictingEmitter<T, W, I>
where
    W: Window,
    I: WindowEmitter<K, W, Vec<StreamRecord<T>>, OUT>,
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.inner.open(ctx)
    }
    fn emit(
        &mut self,
        key: &K,
        acc: &mut Vec<StreamRecord<T>>,
        ctx: &mut ProcessWindowContext<'_, W>,
        out: &mut Collector<'_, OUT>,
    ) -> Result<()> {
        self.evictor.evict_before(acc, ctx.window);
        self.inner.emit(key, acc, ctx, out)?;
        self.evictor.evict_after(acc, ctx.window);
        Ok(())
    }
    fn clear(&mut self, ctx: &mut ProcessWindowContext<'_, W>) -> Result<()> {
        self.inner.clear(ctx)
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
}
