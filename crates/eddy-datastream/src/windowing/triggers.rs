//! Triggers: when a window is evaluated (Flink's `Trigger`s).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use eddy_runtime::state::{
    InternalTimerService, KeyedStateBackend, KeyedStateStore, ReducingStateDescriptor, Stamped,
    ValueStateDescriptor,
};
use eddy_runtime::{Result, RuntimeError};

use super::window::Window;
use crate::Data;

/// What a trigger decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing happens.
    Continue,
    /// The window is evaluated and its contents kept.
    Fire,
    /// The window's contents are discarded without evaluation.
    Purge,
    /// The window is evaluated, then its contents discarded.
    FireAndPurge,
}

impl TriggerResult {
    /// Whether the window is evaluated.
    pub fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }

    /// Whether the window's contents are discarded.
    pub fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// What a trigger can do: read the clocks, set timers for its window, and keep state per key
/// and window.
pub struct TriggerContext<'a, W: Window> {
    pub(crate) window: &'a W,
    pub(crate) timers: &'a RefCell<InternalTimerService<W>>,
    pub(crate) state: &'a KeyedStateStore,
    pub(crate) backend: &'a KeyedStateBackend,
    pub(crate) watermark: i64,
    pub(crate) processing_time: i64,
}

/// The prefix of trigger state names, keeping them apart from user state.
pub(crate) const TRIGGER_STATE_PREFIX: &str = "trigger:";

impl<W: Window> TriggerContext<'_, W> {
    /// The operator's current watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// The wall clock, in ms.
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }

    /// Calls `on_event_time` for this key and window once the watermark passes `time`.
    pub fn register_event_time_timer(&self, time: i64) {
        self.timers
            .borrow_mut()
            .register_event_time_timer(self.window.clone(), time);
    }

    /// Calls `on_processing_time` for this key and window at `time`.
    pub fn register_processing_time_timer(&self, time: i64) {
        self.timers
            .borrow_mut()
            .register_processing_time_timer(self.window.clone(), time);
    }

    /// Deletes an event-time timer of this key and window.
    pub fn delete_event_time_timer(&self, time: i64) {
        self.timers
            .borrow_mut()
            .delete_event_time_timer(self.window.clone(), time);
    }

    /// Deletes a processing-time timer of this key and window.
    pub fn delete_processing_time_timer(&self, time: i64) {
        self.timers
            .borrow_mut()
            .delete_processing_time_timer(self.window.clone(), time);
    }

    /// State scoped to this key and window.
    pub fn get_partitioned_state(&self) -> &KeyedStateStore {
        self.state
    }

    /// In `on_merge`: folds the reducing state of `merged` windows into this window's.
    pub fn merge_partitioned_state<V: Data>(
        &self,
        descriptor: &ReducingStateDescriptor<V>,
        merged: &[W],
    ) -> Result<()> {
        let table = self
            .backend
            .table::<Stamped<V>>(&format!("{TRIGGER_STATE_PREFIX}{}", descriptor.name))?;
        let mut table = table.borrow_mut();
        let kg = self.backend.current_key_group();
        let mut ns = Vec::new();
        let mut composite = Vec::new();
        let mut acc: Option<Stamped<V>> = None;
        let mut windows: Vec<&W> = merged.iter().collect();
        windows.push(self.window);
        for w in windows {
            ns.clear();
            w.encode(&mut ns);
            self.backend.composite_key(&ns, &mut composite);
            if let Some(v) = table.take(kg, &composite)? {
                acc = Some(match acc {
                    None => v,
                    Some(a) => Stamped {
                        value: (descriptor.reduce)(a.value, v.value),
                        stamp: a.stamp.max(v.stamp),
                    },
                });
            }
        }
        if let Some(v) = acc {
            ns.clear();
            self.window.encode(&mut ns);
            self.backend.composite_key(&ns, &mut composite);
            table.insert(kg, &composite, v)?;
        }
        Ok(())
    }
}

/// Decides when a window fires (Flink's `Trigger`). Triggers are shared by all subtasks; keep
/// per-window data in the context's partitioned state.
pub trait Trigger<T, W: Window>: Send + Sync + 'static {
    /// An element was added to `window`.
    fn on_element(
        &self,
        element: &T,
        timestamp: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult>;

    /// An event-time timer set through the context fired.
    fn on_event_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult>;

    /// A processing-time timer set through the context fired.
    fn on_processing_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult>;

    /// Whether the trigger supports merging windows.
    fn can_merge(&self) -> bool {
        false
    }

    /// `merged` windows were merged into `window`.
    fn on_merge(&self, _window: &W, _merged: &[W], _ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        Err(RuntimeError::user(
            "this trigger does not support merging windows",
        ))
    }

    /// The window is removed: delete its timers and state.
    fn clear(&self, window: &W, ctx: &mut TriggerContext<'_, W>) -> Result<()>;
}

/// Fires when the watermark passes the window's end (Flink's `EventTimeTrigger`).
#[derive(Clone, Copy, Debug, Default)]
pub struct EventTimeTrigger;

impl<T, W: Window> Trigger<T, W> for EventTimeTrigger {
    fn on_element(
        &self,
        _: &T,
        _: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        if w.max_timestamp() <= ctx.current_watermark() {
            // A late element within the allowed lateness: fire at once.
            return Ok(TriggerResult::Fire);
        }
        ctx.register_event_time_timer(w.max_timestamp());
        Ok(TriggerResult::Continue)
    }
    fn on_event_time(
        &self,
        time: i64,
        w: &W,
        _: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        Ok(if time == w.max_timestamp() {
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        })
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, w: &W, _: &[W], ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        // Only if the watermark has not passed the merged window: otherwise on_element fires it,
        // and a timer here would fire it twice.
        if w.max_timestamp() > ctx.current_watermark() {
            ctx.register_event_time_timer(w.max_timestamp());
        }
        Ok(())
    }
    fn clear(&self, w: &W, ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        ctx.delete_event_time_timer(w.max_timestamp());
        Ok(())
    }
}

/// Fires when the wall clock passes the window's end (Flink's `ProcessingTimeTrigger`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessingTimeTrigger;

impl<T, W: Window> Trigger<T, W> for ProcessingTimeTrigger {
    fn on_element(
        &self,
        _: &T,
        _: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        ctx.register_processing_time_timer(w.max_timestamp());
        Ok(TriggerResult::Continue)
    }
    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, W>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        Ok(TriggerResult::Fire)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, w: &W, _: &[W], ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        if w.max_timestamp() > ctx.current_processing_time() {
            ctx.register_processing_time_timer(w.max_timestamp());
        }
        Ok(())
    }
    fn clear(&self, w: &W, ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        ctx.delete_processing_time_timer(w.max_timestamp());
        Ok(())
    }
}

/// Never fires: the default of global windows.
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverTrigger;

impl<T, W: Window> Trigger<T, W> for NeverTrigger {
    fn on_element(
        &self,
        _: &T,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, W>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, _: &W, _: &[W], _: &mut TriggerContext<'_, W>) -> Result<()> {
        Ok(())
    }
    fn clear(&self, _: &W, _: &mut TriggerContext<'_, W>) -> Result<()> {
        Ok(())
    }
}

fn sum(a: i64, b: i64) -> i64 {
    a + b
}

/// Fires every `max_count` elements (Flink's `CountTrigger`).
#[derive(Clone)]
pub struct CountTrigger {
    max_count: i64,
    count: ReducingStateDescriptor<i64>,
}

impl CountTrigger {
    /// Fires when the window has `max_count` elements since it last fired.
    pub fn of(max_count: u64) -> Self {
        CountTrigger {
            max_count: max_count as i64,
            count: ReducingStateDescriptor::new("count", sum),
        }
    }
}

impl<T, W: Window> Trigger<T, W> for CountTrigger {
    fn on_element(
        &self,
        _: &T,
        _: i64,
        _: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        let count = ctx
            .get_partitioned_state()
            .get_reducing_state(&self.count)?;
        count.add(1)?;
        if count.get()?.unwrap_or(0) >= self.max_count {
            count.clear()?;
            return Ok(TriggerResult::Fire);
        }
        Ok(TriggerResult::Continue)
    }
    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, W>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, _: &W, merged: &[W], ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        ctx.merge_partitioned_state(&self.count, merged)
    }
    fn clear(&self, _: &W, ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        ctx.get_partitioned_state()
            .get_reducing_state(&self.count)?
            .clear()
    }
}

/// Turns every `Fire` of the wrapped trigger into `FireAndPurge` (Flink's `PurgingTrigger`).
pub struct PurgingTrigger<T, W> {
    inner: Arc<dyn Trigger<T, W>>,
}

impl<T, W: Window> PurgingTrigger<T, W> {
    /// Purges after every firing of `trigger`.
    pub fn of(trigger: impl Trigger<T, W>) -> Self {
        PurgingTrigger {
            inner: Arc::new(trigger),
        }
    }
}

fn purging(r: TriggerResult) -> TriggerResult {
    if r.is_fire() {
        TriggerResult::FireAndPurge
    } else {
        r
    }
}

impl<T: 'static, W: Window> Trigger<T, W> for PurgingTrigger<T, W> {
    fn on_element(
        &self,
        e: &T,
        ts: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        self.inner.on_element(e, ts, w, ctx).map(purging)
    }
    fn on_event_time(
        &self,
        time: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        self.inner.on_event_time(time, w, ctx).map(purging)
    }
    fn on_processing_time(
        &self,
        time: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        self.inner.on_processing_time(time, w, ctx).map(purging)
    }
    fn can_merge(&self) -> bool {
        self.inner.can_merge()
    }
    fn on_merge(&self, w: &W, merged: &[W], ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        self.inner.on_merge(w, merged, ctx)
    }
    fn clear(&self, w: &W, ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        self.inner.clear(w, ctx)
    }
}

fn min(a: i64, b: i64) -> i64 {
    a.min(b)
}

/// Fires periodically in event time while the window is open, and at its end (Flink's
/// `ContinuousEventTimeTrigger`).
#[derive(Clone)]
pub struct ContinuousEventTimeTrigger {
    interval: i64,
    fire_time: ReducingStateDescriptor<i64>,
}

impl ContinuousEventTimeTrigger {
    /// Fires every `interval` of event time.
    pub fn of(interval: Duration) -> Self {
        ContinuousEventTimeTrigger {
            interval: (interval.as_millis() as i64).max(1),
            fire_time: ReducingStateDescriptor::new("fire-time", min),
        }
    }

    fn register_next<W: Window>(
        &self,
        time: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<()> {
        let next = (time + self.interval).min(w.max_timestamp());
        ctx.get_partitioned_state()
            .get_reducing_state(&self.fire_time)?
            .add(next)?;
        ctx.register_event_time_timer(next);
        Ok(())
    }
}

impl<T, W: Window> Trigger<T, W> for ContinuousEventTimeTrigger {
    fn on_element(
        &self,
        _: &T,
        ts: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        if w.max_timestamp() <= ctx.current_watermark() {
            return Ok(TriggerResult::Fire);
        }
        ctx.register_event_time_timer(w.max_timestamp());
        let fire = ctx
            .get_partitioned_state()
            .get_reducing_state(&self.fire_time)?;
        if fire.get()?.is_none() {
            self.register_next(ts - ts.rem_euclid(self.interval), w, ctx)?;
        }
        Ok(TriggerResult::Continue)
    }
    fn on_event_time(
        &self,
        time: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        if time == w.max_timestamp() {
            return Ok(TriggerResult::Fire);
        }
        let fire = ctx
            .get_partitioned_state()
            .get_reducing_state(&self.fire_time)?;
        if fire.get()? == Some(time) {
            fire.clear()?;
            self.register_next(time, w, ctx)?;
            return Ok(TriggerResult::Fire);
        }
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, w: &W, merged: &[W], ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        ctx.merge_partitioned_state(&self.fire_time, merged)?;
        if let Some(next) = ctx
            .get_partitioned_state()
            .get_reducing_state(&self.fire_time)?
            .get()?
        {
            ctx.register_event_time_timer(next);
        }
        if w.max_timestamp() > ctx.current_watermark() {
            ctx.register_event_time_timer(w.max_timestamp());
        }
        Ok(())
    }
    fn clear(&self, w: &W, ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        let fire = ctx
            .get_partitioned_state()
            .get_reducing_state(&self.fire_time)?;
        if let Some(t) = fire.get()? {
            ctx.delete_event_time_timer(t);
        }
        fire.clear()?;
        ctx.delete_event_time_timer(w.max_timestamp());
        Ok(())
    }
}

/// Fires periodically in processing time (Flink's `ContinuousProcessingTimeTrigger`).
#[derive(Clone)]
pub struct ContinuousProcessingTimeTrigger {
    interval: i64,
    fire_time: ReducingStateDescriptor<i64>,
}

impl ContinuousProcessingTimeTrigger {
    /// Fires every `interval` of processing time.
    pub fn of(interval: Duration) -> Self {
        ContinuousProcessingTimeTrigger {
            interval: (interval.as_millis() as i64).max(1),
            fire_time: ReducingStateDescriptor::new("fire-time", min),
        }
    }

    fn register_next<W: Window>(
        &self,
        time: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<()> {
        let next = (time + self.interval).min(w.max_timestamp());
        ctx.get_partitioned_state()
            .get_reducing_state(&self.fire_time)?
            .add(next)?;
        ctx.register_processing_time_timer(next);
        Ok(())
    }
}

impl<T, W: Window> Trigger<T, W> for ContinuousProcessingTimeTrigger {
    fn on_element(
        &self,
        _: &T,
        _: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        let now = ctx.current_processing_time();
        let fire = ctx
            .get_partitioned_state()
            .get_reducing_state(&self.fire_time)?;
        if fire.get()?.is_none() {
            self.register_next(now - now.rem_euclid(self.interval), w, ctx)?;
        }
        Ok(TriggerResult::Continue)
    }
    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, W>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(
        &self,
        time: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        let fire = ctx
            .get_partitioned_state()
            .get_reducing_state(&self.fire_time)?;
        if fire.get()? == Some(time) {
            fire.clear()?;
            self.register_next(time, w, ctx)?;
            return Ok(TriggerResult::Fire);
        }
        Ok(TriggerResult::Continue)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, _: &W, merged: &[W], ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        ctx.merge_partitioned_state(&self.fire_time, merged)?;
        if let Some(next) = ctx
            .get_partitioned_state()
            .get_reducing_state(&self.fire_time)?
            .get()?
        {
            ctx.register_processing_time_timer(next);
        }
        Ok(())
    }
    fn clear(&self, _: &W, ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        let fire = ctx
            .get_partitioned_state()
            .get_reducing_state(&self.fire_time)?;
        if let Some(t) = fire.get()? {
            ctx.delete_processing_time_timer(t);
        }
        fire.clear()
    }
}

/// The distance between two elements, for delta triggers and evictors.
pub type DeltaFunction<T> = Arc<dyn Fn(&T, &T) -> f64 + Send + Sync>;

/// Fires when an element differs from the last element that fired by more than a threshold
/// (Flink's `DeltaTrigger`).
pub struct DeltaTrigger<T> {
    threshold: f64,
    delta: DeltaFunction<T>,
    last: ValueStateDescriptor<T>,
}

impl<T> DeltaTrigger<T> {
    /// Fires when `delta(last_fired, element) > threshold`.
    pub fn of(threshold: f64, delta: impl Fn(&T, &T) -> f64 + Send + Sync + 'static) -> Self {
        DeltaTrigger {
            threshold,
            delta: Arc::new(delta),
            last: ValueStateDescriptor::new("last-element"),
        }
    }
}

impl<T: Data, W: Window> Trigger<T, W> for DeltaTrigger<T> {
    fn on_element(
        &self,
        e: &T,
        _: i64,
        _: &W,
        ctx: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        let last = ctx.get_partitioned_state().get_state(&self.last)?;
        match last.value()? {
            None => {
                last.update(e.clone())?;
                Ok(TriggerResult::Continue)
            }
            Some(prev) if (self.delta)(&prev, e) > self.threshold => {
                last.update(e.clone())?;
                Ok(TriggerResult::Fire)
            }
            Some(_) => Ok(TriggerResult::Continue),
        }
    }
    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, W>) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W>,
    ) -> Result<TriggerResult> {
        Ok(TriggerResult::Continue)
    }
    fn clear(&self, _: &W, ctx: &mut TriggerContext<'_, W>) -> Result<()> {
        ctx.get_partitioned_state().get_state(&self.last)?.clear()
    }
}
