//! [`WindowedStream`] and [`AllWindowedStream`]: the API of windows on keyed and non-keyed
//! streams.

use std::any::Any;
use std::marker::PhantomData;
use std::ops::Add;
use std::sync::Arc;
use std::time::Duration;

use eddy_core::element::StreamRecord;
use eddy_runtime::state::AggregateFunction;

use super::assigners::{GlobalWindows, WindowAssigner};
use super::evictors::{CountEvictor, Evictor};
use super::functions::{
    AggregateAccumulator, DirectEmitter, EvictingEmitter, ListAccumulator, ProcessEmitter,
    ProcessWindowContext, ProcessWindowFunction, ReduceAccumulator, WindowAccumulator,
    WindowEmitter, WindowFunctionAdapter,
};
use super::operator::{WindowOperator, WindowSpec};
use super::panes::{PaneSpec, PaneWindowOperator};
use super::triggers::{CountTrigger, PurgingTrigger, Trigger};
use super::window::{GlobalWindow, TimeWindow, Window};
use crate::functions::{Collector, FunctionResult, OutputTag, RuntimeContext};
use crate::{Data, DataStream, Key, KeyedStream};

type EmitterFactory<K, W, ACC, OUT> =
    Arc<dyn Fn() -> Box<dyn WindowEmitter<K, W, ACC, OUT>> + Send + Sync>;

/// A keyed stream cut into windows (Flink's `WindowedStream`).
pub struct WindowedStream<T, K, W: Window> {
    keyed: KeyedStream<T, K>,
    assigner: Arc<dyn WindowAssigner<T, W>>,
    trigger: Option<Arc<dyn Trigger<T, W>>>,
    evictor: Option<Arc<dyn Evictor<T, W>>>,
    allowed_lateness: i64,
    late_tag: Option<OutputTag<T>>,
    non_parallel: bool,
}

impl<T: Data, K: Key> KeyedStream<T, K> {
    /// Groups each key's elements into the windows of `assigner`.
    pub fn window<W: Window>(self, assigner: impl WindowAssigner<T, W>) -> WindowedStream<T, K, W> {
        WindowedStream {
            keyed: self,
            assigner: Arc::new(assigner),
            trigger: None,
            evictor: None,
            allowed_lateness: 0,
            late_tag: None,
            non_parallel: false,
        }
    }

    /// Windows of `size` elements per key (Flink's `countWindow(size)`): global windows that
    /// fire and purge every `size` elements.
    pub fn count_window(self, size: u64) -> WindowedStream<T, K, GlobalWindow> {
        self.window(GlobalWindows::create())
            .trigger(PurgingTrigger::of(CountTrigger::of(size)))
    }

    /// Sliding count windows (Flink's `countWindow(size, slide)`): every `slide` elements, the
    /// last `size` elements.
    pub fn count_window_slide(self, size: u64, slide: u64) -> WindowedStream<T, K, GlobalWindow> {
        self.window(GlobalWindows::create())
            .evictor(CountEvictor::of(size as usize))
            .trigger(CountTrigger::of(slide))
    }
}

fn reduce_all<T: Clone>(
    f: &(impl Fn(T, T) -> T + ?Sized),
    elements: &[StreamRecord<T>],
) -> Option<T> {
    let mut iter = elements.iter().map(|r| r.value.clone());
    let first = iter.next()?;
    Some(iter.fold(first, f))
}

fn aggregate_all<T: Clone + 'static, A: 'static, R: 'static>(
    agg: &dyn AggregateFunction<T, A, R>,
    elements: &[StreamRecord<T>],
) -> R {
    let mut acc = agg.create_accumulator();
    for e in elements {
        agg.add(e.value.clone(), &mut acc);
    }
    agg.get_result(&acc)
}

impl<T: Data, K: Key, W: Window> WindowedStream<T, K, W> {
    /// Replaces the assigner's default trigger.
    pub fn trigger(mut self, trigger: impl Trigger<T, W>) -> Self {
        self.trigger = Some(Arc::new(trigger));
        self
    }

    /// Evicts elements before or after evaluation; the window then keeps all its elements.
    pub fn evictor(mut self, evictor: impl Evictor<T, W>) -> Self {
        self.evictor = Some(Arc::new(evictor));
        self
    }

    /// Keeps windows (and fires them again on late elements) until the watermark passes
    /// `max_timestamp + lateness`. Default 0.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness.as_millis() as i64;
        self
    }

    /// Sends elements that arrive after their windows were cleaned up to a side output, instead
    /// of dropping them.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.clone());
        self
    }

    /// Builds the operator: the pane-sharing operator when it applies, else the general one.
    fn build<ACC: Data, OUT: Data>(
        self,
        name: &str,
        accumulator: Arc<dyn WindowAccumulator<T, ACC>>,
        emitter: EmitterFactory<K, W, ACC, OUT>,
        incremental: bool,
    ) -> DataStream<OUT> {
        let selector = self.keyed.key_selector.clone();
        let panes = match self.assigner.aligned() {
            Some((size, slide, offset))
                if incremental
                    && self.trigger.is_none()
                    && self.evictor.is_none()
                    && self.assigner.is_event_time()
                    && std::any::TypeId::of::<W>() == std::any::TypeId::of::<TimeWindow>() =>
            {
                Some(PaneSpec {
                    key_selector: selector.clone(),
                    size,
                    slide,
                    offset,
                    allowed_lateness: self.allowed_lateness,
                    late_tag: self.late_tag.clone(),
                    accumulator: accumulator.clone(),
                })
            }
            _ => None,
        };
        let non_parallel = self.non_parallel;
        let stream = match panes {
            Some(spec) => self.keyed.stream.transform(name, move || {
                let boxed: Box<dyn Any> = Box::new(emitter());
                let emitter =
                    match boxed.downcast::<Box<dyn WindowEmitter<K, TimeWindow, ACC, OUT>>>() {
                        Ok(e) => *e,
                        Err(_) => unreachable!("aligned windows are TimeWindows"),
                    };
                PaneWindowOperator::new(spec.clone(), emitter)
            }),
            None => {
                let spec = WindowSpec {
                    key_selector: selector,
                    trigger: self
                        .trigger
                        .clone()
                        .unwrap_or_else(|| self.assigner.default_trigger()),
                    assigner: self.assigner.clone(),
                    accumulator,
                    allowed_lateness: self.allowed_lateness,
                    late_tag: self.late_tag.clone(),
                };
                self.keyed
                    .stream
                    .transform(name, move || WindowOperator::new(spec.clone(), emitter()))
            }
        };
        if non_parallel {
            stream.set_parallelism(1)
        } else {
            stream
        }
    }

    fn evicting<OUT: Data, I>(
        &self,
        inner: impl Fn() -> I + Send + Sync + 'static,
    ) -> EmitterFactory<K, W, Vec<StreamRecord<T>>, OUT>
    where
        I: WindowEmitter<K, W, Vec<StreamRecord<T>>, OUT> + 'static,
    {
        let evictor = self.evictor.clone();
        Arc::new(move || match &evictor {
            Some(e) => Box::new(EvictingEmitter {
                evictor: e.clone(),
                inner: inner(),
            }),
            None => Box::new(inner()),
        })
    }

    /// Reduces each window's elements incrementally (Flink's `reduce`).
    pub fn reduce(self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> DataStream<T> {
        let f = Arc::new(f);
        if self.evictor.is_some() {
            let emitter = self.evicting(move || {
                let f = f.clone();
                DirectEmitter(move |els: &Vec<StreamRecord<T>>| reduce_all(&*f, els))
            });
            return self.build("Window(Reduce)", Arc::new(ListAccumulator), emitter, false);
        }
        let emitter: EmitterFactory<K, W, Option<T>, T> =
            Arc::new(|| Box::new(DirectEmitter(|acc: &Option<T>| acc.clone())));
        self.build(
            "Window(Reduce)",
            Arc::new(ReduceAccumulator(f)),
            emitter,
            true,
        )
    }

    /// Reduces incrementally, then hands the result with its window to the function `make`
    /// creates once per subtask.
    pub fn reduce_with<OUT: Data, P: ProcessWindowFunction<T, OUT, K, W>>(
        self,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> DataStream<OUT> {
        let make = Arc::new(make);
        let f = Arc::new(f);
        if self.evictor.is_some() {
            let emitter = self.evicting(move || {
                let f = f.clone();
                ProcessEmitter {
                    function: make(),
                    elements: move |els: &Vec<StreamRecord<T>>| {
                        reduce_all(&*f, els).into_iter().collect()
                    },
                    _in: PhantomData,
                }
            });
            return self.build(
                "Window(Reduce, Process)",
                Arc::new(ListAccumulator),
                emitter,
                false,
            );
        }
        let emitter: EmitterFactory<K, W, Option<T>, OUT> = Arc::new(move || {
            Box::new(ProcessEmitter {
                function: make(),
                elements: |acc: &Option<T>| acc.iter().cloned().collect(),
                _in: PhantomData,
            })
        });
        self.build(
            "Window(Reduce, Process)",
            Arc::new(ReduceAccumulator(f)),
            emitter,
            true,
        )
    }

    /// Aggregates each window incrementally with an accumulator (Flink's `aggregate`).
    pub fn aggregate<ACC: Data, R: Data>(
        self,
        agg: impl AggregateFunction<T, ACC, R>,
    ) -> DataStream<R> {
        let agg: Arc<dyn AggregateFunction<T, ACC, R>> = Arc::new(agg);
        if self.evictor.is_some() {
            let emitter = self.evicting(move || {
                let agg = agg.clone();
                DirectEmitter(move |els: &Vec<StreamRecord<T>>| Some(aggregate_all(&*agg, els)))
            });
            return self.build(
                "Window(Aggregate)",
                Arc::new(ListAccumulator),
                emitter,
                false,
            );
        }
        let a = agg.clone();
        let emitter: EmitterFactory<K, W, ACC, R> = Arc::new(move || {
            let a = a.clone();
            Box::new(DirectEmitter(move |acc: &ACC| Some(a.get_result(acc))))
        });
        self.build(
            "Window(Aggregate)",
            Arc::new(AggregateAccumulator(agg)),
            emitter,
            true,
        )
    }

    /// Aggregates incrementally, then hands the result with its window to the function `make`
    /// creates once per subtask.
    pub fn aggregate_with<ACC: Data, R: Data, OUT: Data, P: ProcessWindowFunction<R, OUT, K, W>>(
        self,
        agg: impl AggregateFunction<T, ACC, R>,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> DataStream<OUT> {
        let make = Arc::new(make);
        let agg: Arc<dyn AggregateFunction<T, ACC, R>> = Arc::new(agg);
        if self.evictor.is_some() {
            let emitter = self.evicting(move || {
                let agg = agg.clone();
                ProcessEmitter {
                    function: make(),
                    elements: move |els: &Vec<StreamRecord<T>>| vec![aggregate_all(&*agg, els)],
                    _in: PhantomData,
                }
            });
            return self.build(
                "Window(Aggregate, Process)",
                Arc::new(ListAccumulator),
                emitter,
                false,
            );
        }
        let a = agg.clone();
        let emitter: EmitterFactory<K, W, ACC, OUT> = Arc::new(move || {
            let a = a.clone();
            Box::new(ProcessEmitter {
                function: make(),
                elements: move |acc: &ACC| vec![a.get_result(acc)],
                _in: PhantomData,
            })
        });
        self.build(
            "Window(Aggregate, Process)",
            Arc::new(AggregateAccumulator(agg)),
            emitter,
            true,
        )
    }

    /// Evaluates each window with all its elements, with the function `make` creates once per
    /// subtask (Flink's `process`).
    pub fn process<OUT: Data, P: ProcessWindowFunction<T, OUT, K, W>>(
        self,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> DataStream<OUT> {
        let emitter = self.evicting(move || ProcessEmitter {
            function: make(),
            elements: |els: &Vec<StreamRecord<T>>| els.iter().map(|r| r.value.clone()).collect(),
            _in: PhantomData,
        });
        self.build("Window(Process)", Arc::new(ListAccumulator), emitter, false)
    }

    /// Evaluates each window with a closure `(key, window, elements, out)` (Flink's `apply`).
    pub fn apply<OUT: Data>(
        self,
        f: impl Fn(&K, &W, Vec<T>, &mut Collector<'_, OUT>) + Send + Sync + 'static,
    ) -> DataStream<OUT> {
        let f = Arc::new(f);
        self.process(move || WindowFunctionAdapter::new(f.clone()))
    }

    /// The sum of a numeric field per window; other fields from the first element.
    pub fn sum<N>(
        self,
        field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
    ) -> DataStream<T>
    where
        N: Add<Output = N> + Copy,
    {
        self.reduce(crate::keyed::sum_reducer(field))
    }

    /// The minimum of a field per window; other fields from the first element.
    pub fn min<N>(
        self,
        field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
    ) -> DataStream<T>
    where
        N: PartialOrd + Copy,
    {
        self.reduce(crate::keyed::min_reducer(field))
    }

    /// The maximum of a field per window; other fields from the first element.
    pub fn max<N>(
        self,
        field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
    ) -> DataStream<T>
    where
        N: PartialOrd + Copy,
    {
        self.reduce(crate::keyed::max_reducer(field))
    }

    /// The element with the smallest field value per window (the earliest on ties).
    pub fn min_by<N: PartialOrd>(
        self,
        field: impl Fn(&T) -> N + Send + Sync + 'static,
    ) -> DataStream<T> {
        self.reduce(move |a, b| if field(&b) < field(&a) { b } else { a })
    }

    /// The element with the largest field value per window (the earliest on ties).
    pub fn max_by<N: PartialOrd>(
        self,
        field: impl Fn(&T) -> N + Send + Sync + 'static,
    ) -> DataStream<T> {
        self.reduce(move |a, b| if field(&b) > field(&a) { b } else { a })
    }
}

/// Evaluates a window of a non-keyed stream (Flink's `ProcessAllWindowFunction`).
pub trait ProcessAllWindowFunction<IN, OUT, W: Window>: 'static {
    /// Called once before the first window.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// Evaluates a firing window.
    fn process(
        &mut self,
        context: &mut ProcessWindowContext<'_, W>,
        elements: Vec<IN>,
        out: &mut Collector<'_, OUT>,
    ) -> FunctionResult<()>;
    /// The window is removed.
    fn clear(&mut self, _context: &mut ProcessWindowContext<'_, W>) -> FunctionResult<()> {
        Ok(())
    }
}

/// Runs a [`ProcessAllWindowFunction`] as a keyed one with the unit key.
struct AllAdapter<P>(P);

impl<IN, OUT, W: Window, P: ProcessAllWindowFunction<IN, OUT, W>>
    ProcessWindowFunction<IN, OUT, (), W> for AllAdapter<P>
{
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.0.open(ctx)
    }
    fn process(
        &mut self,
        _: &(),
        context: &mut ProcessWindowContext<'_, W>,
        elements: Vec<IN>,
        out: &mut Collector<'_, OUT>,
    ) -> FunctionResult<()> {
        self.0.process(context, elements, out)
    }
    fn clear(&mut self, context: &mut ProcessWindowContext<'_, W>) -> FunctionResult<()> {
        self.0.clear(context)
    }
}

/// A non-keyed stream cut into windows (Flink's `AllWindowedStream`); runs with parallelism 1.
pub struct AllWindowedStream<T, W: Window>(WindowedStream<T, (), W>);

impl<T: Data> DataStream<T> {
    /// Groups all elements into the windows of `assigner`, evaluated by one subtask.
    pub fn window_all<W: Window>(
        self,
        assigner: impl WindowAssigner<T, W>,
    ) -> AllWindowedStream<T, W> {
        let mut w = self.key_by(|_| ()).window(assigner);
        w.non_parallel = true;
        AllWindowedStream(w)
    }

    /// Windows of `size` elements over the whole stream.
    pub fn count_window_all(self, size: u64) -> AllWindowedStream<T, GlobalWindow> {
        self.window_all(GlobalWindows::create())
            .trigger(PurgingTrigger::of(CountTrigger::of(size)))
    }
}

impl<T: Data, W: Window> AllWindowedStream<T, W> {
    /// Replaces the default trigger.
    pub fn trigger(self, trigger: impl Trigger<T, W>) -> Self {
        AllWindowedStream(self.0.trigger(trigger))
    }

    /// Sets an evictor.
    pub fn evictor(self, evictor: impl Evictor<T, W>) -> Self {
        AllWindowedStream(self.0.evictor(evictor))
    }

    /// Sets the allowed lateness.
    pub fn allowed_lateness(self, lateness: Duration) -> Self {
        AllWindowedStream(self.0.allowed_lateness(lateness))
    }

    /// Sends late elements to a side output.
    pub fn side_output_late_data(self, tag: &OutputTag<T>) -> Self {
        AllWindowedStream(self.0.side_output_late_data(tag))
    }

    /// Reduces each window.
    pub fn reduce(self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> DataStream<T> {
        self.0.reduce(f)
    }

    /// Aggregates each window.
    pub fn aggregate<ACC: Data, R: Data>(
        self,
        agg: impl AggregateFunction<T, ACC, R>,
    ) -> DataStream<R> {
        self.0.aggregate(agg)
    }

    /// Evaluates each window with all its elements.
    pub fn process<OUT: Data, P: ProcessAllWindowFunction<T, OUT, W>>(
        self,
        make: impl Fn() -> P + Send + Sync + 'static,
    ) -> DataStream<OUT> {
        self.0.process(move || AllAdapter(make()))
    }

    /// Evaluates each window with a closure `(window, elements, out)`.
    pub fn apply<OUT: Data>(
        self,
        f: impl Fn(&W, Vec<T>, &mut Collector<'_, OUT>) + Send + Sync + 'static,
    ) -> DataStream<OUT> {
        self.0
            .apply(move |_: &(), w: &W, els: Vec<T>, out: &mut Collector<'_, OUT>| f(w, els, out))
    }

    /// The sum of a numeric field per window.
    pub fn sum<N>(
        self,
        field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
    ) -> DataStream<T>
    where
        N: Add<Output = N> + Copy,
    {
        self.0.sum(field)
    }

    /// The element with the largest field value per window.
    pub fn max_by<N: PartialOrd>(
        self,
        field: impl Fn(&T) -> N + Send + Sync + 'static,
    ) -> DataStream<T> {
        self.0.max_by(field)
    }

    /// The element with the smallest field value per window.
    pub fn min_by<N: PartialOrd>(
        self,
        field: impl Fn(&T) -> N + Send + Sync + 'static,
    ) -> DataStream<T> {
        self.0.min_by(field)
    }
}
