//! Process functions: the lowest-level user functions, with access to timestamps, timers,
//! side outputs and (on keyed streams) keyed state (Flink's `ProcessFunction` and
//! `KeyedProcessFunction`).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use eddy_core::element::{NO_TIMESTAMP, StreamRecord, Watermark};
use eddy_runtime::operator::{OneInputOperator, OperatorContext, Output, ProcessingTimeService};
use eddy_runtime::state::{InternalTimerService, KeyedStateBackend};
use eddy_runtime::{Result, RuntimeError};

use crate::functions::{
    Collector, FunctionResult, OutputTag, RuntimeContext, SideOutputs, user_error,
};
use crate::operators::KeySelector;
use crate::{Data, Key};

/// Which clock a timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// Event time (watermarks).
    EventTime,
    /// Processing time (the wall clock).
    ProcessingTime,
}

/// The timers of the current key (Flink's `TimerService`). On non-keyed streams only the clocks
/// can be read; registering a timer is an error there.
pub struct TimerService<'a> {
    timers: Option<&'a RefCell<InternalTimerService<()>>>,
    watermark: i64,
    processing: &'a ProcessingTimeService,
}

impl TimerService<'_> {
    /// The current wall-clock time, in ms.
    pub fn current_processing_time(&self) -> i64 {
        self.processing.current_processing_time()
    }

    /// The operator's current watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    fn keyed(&self) -> FunctionResult<&RefCell<InternalTimerService<()>>> {
        self.timers
            .ok_or_else(|| "timers can only be set on a keyed stream (after key_by)".into())
    }

    /// Calls `on_timer` for the current key once the watermark passes `time`. Registering the
    /// same time twice for one key registers one timer.
    pub fn register_event_time_timer(&self, time: i64) -> FunctionResult<()> {
        self.keyed()?
            .borrow_mut()
            .register_event_time_timer((), time);
        Ok(())
    }

    /// Calls `on_timer` for the current key once the wall clock reaches `time`.
    pub fn register_processing_time_timer(&self, time: i64) -> FunctionResult<()> {
        self.keyed()?
            .borrow_mut()
            .register_processing_time_timer((), time);
        Ok(())
    }

    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&self, time: i64) -> FunctionResult<()> {
        self.keyed()?.borrow_mut().delete_event_time_timer((), time);
        Ok(())
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&self, time: i64) -> FunctionResult<()> {
        self.keyed()?
            .borrow_mut()
            .delete_processing_time_timer((), time);
        Ok(())
    }
}

/// What a process function sees of the element it processes (Flink's `ProcessFunction.Context`).
pub struct Context<'a> {
    timestamp: i64,
    timer_service: TimerService<'a>,
    sides: &'a mut SideOutputs,
}

impl<'a> Context<'a> {
    /// A context for a non-keyed operator.
    pub(crate) fn new(
        timestamp: i64,
        watermark: i64,
        processing: &'a ProcessingTimeService,
        sides: &'a mut SideOutputs,
    ) -> Self {
        Context {
            timestamp,
            timer_service: TimerService {
                timers: None,
                watermark,
                processing,
            },
            sides,
        }
    }

    /// The element's event timestamp, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// Clocks and timers.
    pub fn timer_service(&self) -> &TimerService<'_> {
        &self.timer_service
    }

    /// Emits `value` to a side output, with the element's timestamp.
    pub fn output<X: 'static>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, value, self.timestamp);
    }
}

/// A function over every element of a (non-keyed) stream (Flink's `ProcessFunction`).
pub trait ProcessFunction<I, O>: 'static {
    /// Called once per subtask before the first element.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// Processes one element.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult<()>;
    /// Called once per subtask at the end.
    fn close(&mut self) -> FunctionResult<()> {
        Ok(())
    }
}

/// What a keyed process function sees of the element or timer it handles.
pub struct KeyedContext<'a, K> {
    key: &'a K,
    timestamp: i64,
    time_domain: Option<TimeDomain>,
    timer_service: TimerService<'a>,
    sides: &'a mut SideOutputs,
}

impl<K> KeyedContext<'_, K> {
    /// The key of the element or timer.
    pub fn get_current_key(&self) -> &K {
        self.key
    }

    /// The element's timestamp, or the timer's time.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// In `on_timer`: which clock fired.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.time_domain
    }

    /// Clocks and timers of the current key.
    pub fn timer_service(&self) -> &TimerService<'_> {
        &self.timer_service
    }

    /// Emits `value` to a side output.
    pub fn output<X: 'static>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, value, self.timestamp);
    }
}

/// A function over every element of a keyed stream, with keyed state and timers (Flink's
/// `KeyedProcessFunction`).
pub trait KeyedProcessFunction<K, I, O>: 'static {
    /// Called once per subtask before the first element; create state handles here.
    fn open(&mut self, _ctx: &RuntimeContext) -> FunctionResult<()> {
        Ok(())
    }
    /// Processes one element; state handles are scoped to its key.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> FunctionResult<()>;
    /// A timer of `ctx.get_current_key()` fired at `timestamp`.
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

/// Runs a [`ProcessFunction`].
pub struct ProcessOperator<F, I, O> {
    f: F,
    timers: ProcessingTimeService,
    watermark: i64,
    sides: SideOutputs,
    _t: PhantomData<fn(I) -> O>,
}

impl<F, I, O> ProcessOperator<F, I, O> {
    /// This subtask's clone of `f`.
    pub fn new(f: F) -> Self {
        ProcessOperator {
            f,
            timers: ProcessingTimeService::default(),
            watermark: i64::MIN,
            sides: SideOutputs::default(),
            _t: PhantomData,
        }
    }
}

impl<I, O, F: ProcessFunction<I, O>> OneInputOperator<I, O> for ProcessOperator<F, I, O> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.timers = ctx.timer_service.clone();
        self.f.open(&RuntimeContext::new(ctx)).map_err(user_error)
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<I>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let mut emitted = Vec::with_capacity(batch.len());
        for r in batch {
            let mut ctx = Context {
                timestamp: r.timestamp,
                timer_service: TimerService {
                    timers: None,
                    watermark: self.watermark,
                    processing: &self.timers,
                },
                sides: &mut self.sides,
            };
            let mut c = Collector::new(&mut emitted, r.timestamp);
            self.f
                .process_element(r.value, &mut ctx, &mut c)
                .map_err(user_error)?;
        }
        if !emitted.is_empty() {
            out.collect(emitted)?;
        }
        self.sides.flush(out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<O>) -> Result<()> {
        self.watermark = watermark.0;
        out.emit_watermark(watermark)
    }

    fn close(&mut self) -> Result<()> {
        self.f.close().map_err(user_error)
    }
}

/// The keyed state backend and timer service of a keyed operator, with the contexts user
/// functions see. Shared by the keyed process, co-process and broadcast operators.
pub(crate) struct KeyedRuntime {
    pub(crate) backend: KeyedStateBackend,
    pub(crate) timers: Rc<RefCell<InternalTimerService<()>>>,
    pub(crate) processing: ProcessingTimeService,
}

impl KeyedRuntime {
    /// Creates the backend and timers of the operator described by `ctx`.
    pub(crate) fn open(ctx: &OperatorContext) -> Result<Self> {
        let backend = ctx.state.keyed_backend()?;
        Ok(KeyedRuntime {
            timers: Rc::new(RefCell::new(InternalTimerService::create(
                backend.clone(),
                ctx.timer_service.clone(),
                "user",
            )?)),
            processing: ctx.timer_service.clone(),
            backend,
        })
    }

    pub(crate) fn watermark(&self) -> i64 {
        self.timers.borrow().current_watermark()
    }

    /// A context for `key` at `timestamp`.
    pub(crate) fn context<'a, K>(
        &'a self,
        key: &'a K,
        timestamp: i64,
        time_domain: Option<TimeDomain>,
        sides: &'a mut SideOutputs,
    ) -> KeyedContext<'a, K> {
        KeyedContext {
            key,
            timestamp,
            time_domain,
            timer_service: TimerService {
                timers: Some(&self.timers),
                watermark: self.watermark(),
                processing: &self.processing,
            },
            sides,
        }
    }

    /// The next due timer of `domain`, with its key made current and decoded.
    pub(crate) fn poll<K: Key>(&self, domain: TimeDomain, now: i64) -> Result<Option<(i64, K)>> {
        let timer = {
            let mut t = self.timers.borrow_mut();
            match domain {
                TimeDomain::EventTime => t.poll_event_timer(),
                TimeDomain::ProcessingTime => t.poll_processing_timer(now),
            }
        };
        match timer {
            Some(t) => Ok(Some((t.timestamp, self.backend.current_key()?))),
            None => Ok(None),
        }
    }

    /// Fires every due timer of `domain` through `on_timer(timestamp, key, output timestamp)`.
    pub(crate) fn fire<K: Key>(
        &self,
        domain: TimeDomain,
        now: i64,
        mut on_timer: impl FnMut(i64, K, i64) -> Result<()>,
    ) -> Result<()> {
        while let Some((ts, key)) = self.poll::<K>(domain, now)? {
            // Event-time timers stamp their output with the timer's time; processing-time
            // timers leave it without a timestamp, as in Flink.
            let out_ts = match domain {
                TimeDomain::EventTime => ts,
                TimeDomain::ProcessingTime => NO_TIMESTAMP,
            };
            on_timer(ts, key, out_ts)?;
        }
        if domain == TimeDomain::ProcessingTime {
            self.timers.borrow_mut().reschedule_processing();
        }
        Ok(())
    }
}

/// Runs a [`KeyedProcessFunction`].
pub struct KeyedProcessOperator<F, K, I, O> {
    f: F,
    key_selector: KeySelector<I, K>,
    rt: Option<KeyedRuntime>,
    sides: SideOutputs,
    _t: PhantomData<fn(I) -> O>,
}

impl<F, K, I, O> KeyedProcessOperator<F, K, I, O> {
    /// This subtask's clone of `f`, for keys selected by `key_selector`.
    pub fn new(f: F, key_selector: KeySelector<I, K>) -> Self {
        KeyedProcessOperator {
            f,
            key_selector,
            rt: None,
            sides: SideOutputs::default(),
            _t: PhantomData,
        }
    }
}

pub(crate) fn not_open() -> RuntimeError {
    RuntimeError::Internal("keyed operator used before open".into())
}

impl<F, K, I, O> KeyedProcessOperator<F, K, I, O>
where
    K: Key,
    F: KeyedProcessFunction<K, I, O>,
{
    fn fire(&mut self, domain: TimeDomain, now: i64, out: &mut dyn Output<O>) -> Result<()> {
        let rt = self.rt.as_ref().ok_or_else(not_open)?;
        let mut emitted = Vec::new();
        let (f, sides) = (&mut self.f, &mut self.sides);
        rt.fire::<K>(domain, now, |ts, key, out_ts| {
            let mut ctx = rt.context(&key, ts, Some(domain), sides);
            let mut c = Collector::new(&mut emitted, out_ts);
            f.on_timer(ts, &mut ctx, &mut c).map_err(user_error)
        })?;
        if !emitted.is_empty() {
            out.collect(emitted)?;
        }
        self.sides.flush(out)
    }
}

impl<F, K, I, O> OneInputOperator<I, O> for KeyedProcessOperator<F, K, I, O>
where
    K: Key,
    F: KeyedProcessFunction<K, I, O>,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let rt = KeyedRuntime::open(ctx)?;
        self.f
            .open(&RuntimeContext::keyed(ctx, rt.backend.clone()))
            .map_err(user_error)?;
        self.rt = Some(rt);
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<I>>,
        out: &mut dyn Output<O>,
    ) -> Result<()> {
        let rt = self.rt.as_ref().ok_or_else(not_open)?;
        let mut emitted = Vec::with_capacity(batch.len());
        for r in batch {
            let key = (self.key_selector)(&r.value);
            rt.backend.set_current_key(&key)?;
            let mut ctx = rt.context(&key, r.timestamp, None, &mut self.sides);
            let mut c = Collector::new(&mut emitted, r.timestamp);
            self.f
                .process_element(r.value, &mut ctx, &mut c)
                .map_err(user_error)?;
        }
        if !emitted.is_empty() {
            out.collect(emitted)?;
        }
        self.sides.flush(out)
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

/// Shares one key selector between the partitioner and a keyed operator.
pub(crate) fn shared<T, K>(selector: &KeySelector<T, K>) -> KeySelector<T, K> {
    Arc::clone(selector)
}

impl<T: Data, K: Key> crate::KeyedStream<T, K> {
    /// Applies a [`KeyedProcessFunction`], made by `make` once per subtask: per-key state and
    /// timers.
    pub fn process<O: Data, F: KeyedProcessFunction<K, T, O>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> crate::DataStream<O> {
        let selector = shared(&self.key_selector);
        self.stream.transform("KeyedProcess", move || {
            KeyedProcessOperator::new(make(), selector.clone())
        })
    }
}

impl<T: Data> crate::DataStream<T> {
    /// Applies a [`ProcessFunction`], made by `make` once per subtask.
    pub fn process<O: Data, F: ProcessFunction<T, O>>(
        self,
        make: impl Fn() -> F + Send + Sync + 'static,
    ) -> crate::DataStream<O> {
        self.transform("Process", move || ProcessOperator::new(make()))
    }

    /// The records the operator that produced this stream emitted to the side output `tag`
    /// (Flink's `getSideOutput`).
    pub fn get_side_output<X: Data>(&self, tag: &OutputTag<X>) -> crate::DataStream<X> {
        if self.node.is_none() {
            self.env.record_error(format!(
                "get_side_output({}) must be called on an operator's output",
                tag.id()
            ));
        }
        crate::DataStream {
            env: self.env.clone(),
            inputs: self
                .node
                .map(|node| crate::datastream::Upstream {
                    node,
                    side_output: Some(tag.id().to_string()),
                })
                .into_iter()
                .collect(),
            partitioner: None,
            partitioner_factory: Arc::new(
                eddy_runtime::registry::StandardPartitioners::<X>::default(),
            ),
            node: None,
            _t: PhantomData,
        }
    }
}
