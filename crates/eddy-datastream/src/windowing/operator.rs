//! The window operator (Flink's `WindowOperator` and `EvictingWindowOperator`).
//!
//! For every element: assign windows; skip windows that are already late (their cleanup time
//! has passed the watermark); add the element to each window's state; ask the trigger; fire
//! and/or purge; register the window's cleanup timer at `max_timestamp + allowed_lateness`. An
//! element that fits no window and is itself late goes to the late side output (or is counted
//! in `numLateRecordsDropped`). Merging assigners (sessions) keep a per-key mapping from
//! windows to the window their state lives under, as Flink's `MergingWindowSet` does, so that a
//! merge only merges accumulators.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use eddy_core::element::{StreamRecord, Watermark};
use eddy_runtime::metrics::Counter;
use eddy_runtime::operator::{OneInputOperator, OperatorContext, Output, ProcessingTimeService};
use eddy_runtime::state::{
    InternalTimerService, KeyedStateBackend, KeyedStateStore, SharedStateTable, Timer,
};
use eddy_runtime::{Result, RuntimeError};

use super::assigners::WindowAssigner;
use super::functions::{ProcessWindowContext, WindowAccumulator, WindowEmitter};
use super::triggers::{TRIGGER_STATE_PREFIX, Trigger, TriggerContext, TriggerResult};
use super::window::Window;
use crate::functions::{Collector, OutputTag, RuntimeContext, SideOutputs};
use crate::operators::KeySelector;
use crate::process::TimeDomain;
use crate::{Data, Key};

/// A merge performed while adding a window to a merging window set.
struct MergeAction<W> {
    result: W,
    merged: Vec<W>,
    state_result: W,
    merged_state: Vec<W>,
}

fn lookup<'a, W: PartialEq>(mapping: &'a [(W, W)], w: &W) -> Option<&'a W> {
    mapping.iter().find(|(k, _)| k == w).map(|(_, s)| s)
}

fn remove<W: PartialEq>(mapping: &mut Vec<(W, W)>, w: &W) -> Option<W> {
    let i = mapping.iter().position(|(k, _)| k == w)?;
    Some(mapping.remove(i).1)
}

fn put<W: PartialEq>(mapping: &mut Vec<(W, W)>, w: W, state: W) {
    match mapping.iter_mut().find(|(k, _)| *k == w) {
        Some(entry) => entry.1 = state,
        None => mapping.push((w, state)),
    }
}

/// Adds `new` to the merging window set `mapping` (window → state window): a port of Flink's
/// `MergingWindowSet.addWindow`. Returns the window `new` ended up in and the merges to perform.
fn add_window<W: Window>(
    mapping: &mut Vec<(W, W)>,
    new: &W,
    merge: impl Fn(&[W]) -> Vec<(Vec<W>, W)>,
) -> (W, Vec<MergeAction<W>>) {
    let mut windows: Vec<W> = mapping.iter().map(|(w, _)| w.clone()).collect();
    windows.push(new.clone());
    let results = merge(&windows);
    let no_merges = results.is_empty();
    let mut result_window = new.clone();
    let mut merged_new = false;
    let mut actions = Vec::new();
    for (mut merged, merge_result) in results {
        // Merge groups are sets.
        merged.sort();
        merged.dedup();
        if let Some(pos) = merged.iter().position(|w| w == new) {
            merged.remove(pos);
            merged_new = true;
            result_window = merge_result.clone();
        }
        let Some(first) = merged.first() else {
            continue;
        };
        let Some(state_window) = lookup(mapping, first).cloned() else {
            continue;
        };
        let mut merged_state: Vec<W> = merged.iter().filter_map(|w| remove(mapping, w)).collect();
        put(mapping, merge_result.clone(), state_window.clone());
        merged_state.retain(|w| *w != state_window);
        if !(merged.len() == 1 && merged[0] == merge_result) {
            actions.push(MergeAction {
                result: merge_result,
                merged,
                state_result: state_window,
                merged_state,
            });
        }
    }
    if (no_merges || (result_window == *new && !merged_new))
        && lookup(mapping, &result_window).is_none()
    {
        // A new, self-contained window. (Flink would also overwrite an identical existing
        // window's state window here, orphaning its state; Eddy keeps the existing mapping.)
        put(mapping, result_window.clone(), result_window.clone());
    }
    (result_window, actions)
}

/// Everything the operator builds in `open`.
struct Runtime<W: Window, ACC> {
    backend: KeyedStateBackend,
    timers: Rc<RefCell<InternalTimerService<W>>>,
    contents: SharedStateTable<ACC>,
    merging: Option<SharedStateTable<Vec<(W, W)>>>,
    trigger_ns: Rc<RefCell<Vec<u8>>>,
    trigger_store: KeyedStateStore,
    window_ns: Rc<RefCell<Vec<u8>>>,
    window_store: KeyedStateStore,
    global_store: KeyedStateStore,
    processing: ProcessingTimeService,
    late_dropped: Arc<Counter>,
}

/// The window operator.
pub(crate) struct WindowOperator<K, T, W: Window, ACC, OUT> {
    key_selector: KeySelector<T, K>,
    assigner: Arc<dyn WindowAssigner<T, W>>,
    trigger: Arc<dyn Trigger<T, W>>,
    accumulator: Arc<dyn WindowAccumulator<T, ACC>>,
    emitter: Box<dyn WindowEmitter<K, W, ACC, OUT>>,
    allowed_lateness: i64,
    late_tag: Option<OutputTag<T>>,
    rt: Option<Runtime<W, ACC>>,
    sides: SideOutputs,
    emitted: Vec<StreamRecord<OUT>>,
    composite: Vec<u8>,
}

/// The configuration of a window operator, shared by all its subtasks.
pub(crate) struct WindowSpec<K, T, W: Window, ACC> {
    pub(crate) key_selector: KeySelector<T, K>,
    pub(crate) assigner: Arc<dyn WindowAssigner<T, W>>,
    pub(crate) trigger: Arc<dyn Trigger<T, W>>,
    pub(crate) accumulator: Arc<dyn WindowAccumulator<T, ACC>>,
    pub(crate) allowed_lateness: i64,
    pub(crate) late_tag: Option<OutputTag<T>>,
}

impl<K, T, W: Window, ACC> Clone for WindowSpec<K, T, W, ACC> {
    fn clone(&self) -> Self {
        WindowSpec {
            key_selector: self.key_selector.clone(),
            assigner: self.assigner.clone(),
            trigger: self.trigger.clone(),
            accumulator: self.accumulator.clone(),
            allowed_lateness: self.allowed_lateness,
            late_tag: self.late_tag.clone(),
        }
    }
}

impl<K, T, W, ACC, OUT> WindowOperator<K, T, W, ACC, OUT>
where
    K: Key,
    T: Data,
    W: Window,
    ACC: Data,
    OUT: 'static,
{
    pub(crate) fn new(
        spec: WindowSpec<K, T, W, ACC>,
        emitter: Box<dyn WindowEmitter<K, W, ACC, OUT>>,
    ) -> Self {
        WindowOperator {
            key_selector: spec.key_selector,
            assigner: spec.assigner,
            trigger: spec.trigger,
            accumulator: spec.accumulator,
            emitter,
            allowed_lateness: spec.allowed_lateness,
            late_tag: spec.late_tag,
            rt: None,
            sides: SideOutputs::default(),
            emitted: Vec::new(),
            composite: Vec::with_capacity(64),
        }
    }

    fn rt(&self) -> Result<&Runtime<W, ACC>> {
        self.rt
            .as_ref()
            .ok_or_else(|| RuntimeError::Internal("window operator used before open".into()))
    }

    fn cleanup_time(&self, w: &W) -> i64 {
        if self.assigner.is_event_time() {
            w.max_timestamp().saturating_add(self.allowed_lateness)
        } else {
            w.max_timestamp()
        }
    }

    fn is_window_late(&self, w: &W, watermark: i64) -> bool {
        self.assigner.is_event_time() && self.cleanup_time(w) <= watermark
    }

    fn is_element_late(&self, ts: i64, watermark: i64) -> bool {
        self.assigner.is_event_time() && ts.saturating_add(self.allowed_lateness) <= watermark
    }

    fn register_cleanup_timer(rt: &Runtime<W, ACC>, event_time: bool, w: &W, cleanup: i64) {
        if cleanup == i64::MAX {
            // No timer for the end of time.
            return;
        }
        let mut t = rt.timers.borrow_mut();
        if event_time {
            t.register_event_time_timer(w.clone(), cleanup);
        } else {
            t.register_processing_time_timer(w.clone(), cleanup);
        }
    }

    fn delete_cleanup_timer(rt: &Runtime<W, ACC>, event_time: bool, w: &W, cleanup: i64) {
        if cleanup == i64::MAX {
            return;
        }
        let mut t = rt.timers.borrow_mut();
        if event_time {
            t.delete_event_time_timer(w.clone(), cleanup);
        } else {
            t.delete_processing_time_timer(w.clone(), cleanup);
        }
    }

    /// Runs `f` with a trigger context for `window`.
    fn with_trigger<R>(
        rt: &Runtime<W, ACC>,
        window: &W,
        now: i64,
        f: impl FnOnce(&mut TriggerContext<'_, W>) -> Result<R>,
    ) -> Result<R> {
        {
            let mut ns = rt.trigger_ns.borrow_mut();
            ns.clear();
            window.encode(&mut ns);
        }
        let watermark = rt.timers.borrow().current_watermark();
        let mut ctx = TriggerContext {
            window,
            timers: &rt.timers,
            state: &rt.trigger_store,
            backend: &rt.backend,
            watermark,
            processing_time: now,
        };
        f(&mut ctx)
    }

    fn composite_of(rt: &Runtime<W, ACC>, w: &W, buf: &mut Vec<u8>) {
        let mut ns = Vec::with_capacity(16);
        w.encode(&mut ns);
        rt.backend.composite_key(&ns, buf);
    }

    /// Emits the contents of `window` (stored under `state_window`).
    fn emit(&mut self, key: &K, window: &W, state_window: &W, now: i64) -> Result<()> {
        let Some(rt) = self.rt.as_ref() else {
            return Err(RuntimeError::Internal(
                "window operator used before open".into(),
            ));
        };
        Self::composite_of(rt, state_window, &mut self.composite);
        let kg = rt.backend.current_key_group();
        let mut table = rt.contents.borrow_mut();
        let Some(acc) = table.get_mut(kg, &self.composite)? else {
            return Ok(());
        };
        {
            let mut ns = rt.window_ns.borrow_mut();
            ns.clear();
            window.encode(&mut ns);
        }
        let mut ctx = ProcessWindowContext {
            window,
            watermark: rt.timers.borrow().current_watermark(),
            processing_time: now,
            window_state: &rt.window_store,
            global_state: &rt.global_store,
            sides: &mut self.sides,
        };
        let mut out = Collector::new(&mut self.emitted, window.max_timestamp());
        self.emitter.emit(key, acc, &mut ctx, &mut out)
    }

    fn purge(&mut self, state_window: &W) -> Result<()> {
        let rt = self.rt()?;
        let mut buf = Vec::new();
        Self::composite_of(rt, state_window, &mut buf);
        let kg = rt.backend.current_key_group();
        rt.contents.borrow_mut().remove(kg, &buf)
    }

    fn load_mapping(&self) -> Result<Vec<(W, W)>> {
        let rt = self.rt()?;
        let Some(m) = &rt.merging else {
            return Ok(Vec::new());
        };
        let kg = rt.backend.current_key_group();
        let key = rt.backend.current_key_bytes();
        let mapping = m.borrow_mut().get(kg, &key)?.cloned();
        Ok(mapping.unwrap_or_default())
    }

    fn store_mapping(&self, mapping: Vec<(W, W)>) -> Result<()> {
        let rt = self.rt()?;
        if let Some(m) = &rt.merging {
            let kg = rt.backend.current_key_group();
            let key = rt.backend.current_key_bytes();
            if mapping.is_empty() {
                m.borrow_mut().remove(kg, &key)?;
            } else {
                m.borrow_mut().insert(kg, &key, mapping)?;
            }
        }
        Ok(())
    }

    /// Removes everything of `window`: contents, trigger state, per-window state.
    fn clear_all_state(&mut self, window: &W, state_window: &W, now: i64) -> Result<()> {
        self.purge(state_window)?;
        let Some(rt) = self.rt.as_ref() else {
            return Err(RuntimeError::Internal(
                "window operator used before open".into(),
            ));
        };
        Self::with_trigger(rt, window, now, |ctx| self.trigger.clear(window, ctx))?;
        {
            let mut ns = rt.window_ns.borrow_mut();
            ns.clear();
            window.encode(&mut ns);
        }
        let mut ctx = ProcessWindowContext {
            window,
            watermark: rt.timers.borrow().current_watermark(),
            processing_time: now,
            window_state: &rt.window_store,
            global_state: &rt.global_store,
            sides: &mut self.sides,
        };
        self.emitter.clear(&mut ctx)
    }

    fn add_to_window(&mut self, state_window: &W, value: T, ts: i64) -> Result<()> {
        let Some(rt) = self.rt.as_ref() else {
            return Err(RuntimeError::Internal(
                "window operator used before open".into(),
            ));
        };
        Self::composite_of(rt, state_window, &mut self.composite);
        let kg = rt.backend.current_key_group();
        let mut table = rt.contents.borrow_mut();
        match table.get_mut(kg, &self.composite)? {
            Some(acc) => self.accumulator.add(acc, value, ts),
            None => {
                let acc = self.accumulator.create(value, ts);
                table.insert(kg, &self.composite, acc)?;
            }
        }
        Ok(())
    }

    fn process_element(&mut self, key: &K, value: T, ts: i64, now: i64) -> Result<()> {
        let windows = self
            .assigner
            .assign_windows(&value, ts, now)
            .map_err(|e| RuntimeError::User(format!("cannot assign windows: {e}")))?;
        let watermark = self.rt()?.timers.borrow().current_watermark();
        let event_time = self.assigner.is_event_time();
        let mut skipped = true;
        if self.assigner.is_merging() {
            let mut mapping = self.load_mapping()?;
            for window in windows {
                let assigner = self.assigner.clone();
                let (actual, merges) = add_window(&mut mapping, &window, |ws| {
                    assigner.merge_windows(ws).unwrap_or_default()
                });
                for m in merges {
                    if event_time
                        && m.result
                            .max_timestamp()
                            .saturating_add(self.allowed_lateness)
                            <= watermark
                    {
                        return Err(RuntimeError::Internal(format!(
                            "the end of event-time window {:?} cannot become earlier than the \
                             current watermark {watermark} by merging",
                            m.result
                        )));
                    }
                    let rt = self.rt()?;
                    Self::with_trigger(rt, &m.result, now, |ctx| {
                        self.trigger.on_merge(&m.result, &m.merged, ctx)
                    })?;
                    for w in &m.merged {
                        Self::with_trigger(rt, w, now, |ctx| self.trigger.clear(w, ctx))?;
                        Self::delete_cleanup_timer(rt, event_time, w, self.cleanup_time(w));
                    }
                    self.merge_contents(&m.state_result, &m.merged_state)?;
                }
                if self.is_window_late(&actual, watermark) {
                    remove(&mut mapping, &actual);
                    continue;
                }
                skipped = false;
                let state_window = lookup(&mapping, &actual).cloned().ok_or_else(|| {
                    RuntimeError::Internal(format!(
                        "window {actual:?} is not in the merging window set"
                    ))
                })?;
                let rt = self.rt()?;
                let result = Self::with_trigger(rt, &actual, now, |ctx| {
                    self.trigger.on_element(&value, ts, &actual, ctx)
                })?;
                self.add_to_window(&state_window, value.clone(), ts)?;
                self.after_trigger(key, &actual, &state_window, result, now)?;
                let rt = self.rt()?;
                Self::register_cleanup_timer(rt, event_time, &actual, self.cleanup_time(&actual));
            }
            self.store_mapping(mapping)?;
        } else {
            let live: Vec<W> = windows
                .into_iter()
                .filter(|w| !self.is_window_late(w, watermark))
                .collect();
            skipped = live.is_empty();
            let n = live.len();
            let mut value = Some(value);
            for (i, window) in live.into_iter().enumerate() {
                let rt = self.rt()?;
                let v = value
                    .as_ref()
                    .ok_or_else(|| RuntimeError::Internal("value moved".into()))?;
                let result = Self::with_trigger(rt, &window, now, |ctx| {
                    self.trigger.on_element(v, ts, &window, ctx)
                })?;
                let element = if i + 1 == n {
                    value
                        .take()
                        .ok_or_else(|| RuntimeError::Internal("value moved".into()))?
                } else {
                    v.clone()
                };
                self.add_to_window(&window, element, ts)?;
                self.after_trigger(key, &window, &window, result, now)?;
                let rt = self.rt()?;
                Self::register_cleanup_timer(rt, event_time, &window, self.cleanup_time(&window));
            }
            if let Some(v) = value
                && skipped
                && self.is_element_late(ts, watermark)
            {
                self.late(v, ts)?;
            }
            return Ok(());
        }
        if skipped && self.is_element_late(ts, watermark) {
            self.late(value, ts)?;
        }
        Ok(())
    }

    fn late(&mut self, value: T, ts: i64) -> Result<()> {
        match &self.late_tag {
            Some(tag) => self.sides.emit(tag, value, ts),
            None => self.rt()?.late_dropped.inc(),
        }
        Ok(())
    }

    fn merge_contents(&mut self, target: &W, sources: &[W]) -> Result<()> {
        if sources.is_empty() {
            return Ok(());
        }
        let rt = self.rt()?;
        let kg = rt.backend.current_key_group();
        let mut table = rt.contents.borrow_mut();
        let mut buf = Vec::new();
        Self::composite_of(rt, target, &mut buf);
        let mut acc = table.take(kg, &buf)?;
        for s in sources {
            Self::composite_of(rt, s, &mut buf);
            if let Some(other) = table.take(kg, &buf)? {
                acc = Some(match acc {
                    Some(a) => self.accumulator.merge(a, other),
                    None => other,
                });
            }
        }
        if let Some(acc) = acc {
            Self::composite_of(rt, target, &mut buf);
            table.insert(kg, &buf, acc)?;
        }
        Ok(())
    }

    fn after_trigger(
        &mut self,
        key: &K,
        window: &W,
        state_window: &W,
        result: TriggerResult,
        now: i64,
    ) -> Result<()> {
        if result.is_fire() {
            self.emit(key, window, state_window, now)?;
        }
        if result.is_purge() {
            self.purge(state_window)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer<W>, domain: TimeDomain, now: i64) -> Result<()> {
        let key: K = self.rt()?.backend.current_key()?;
        let window = timer.namespace;
        let mut mapping = Vec::new();
        let state_window = if self.assigner.is_merging() {
            mapping = self.load_mapping()?;
            match lookup(&mapping, &window) {
                Some(s) => s.clone(),
                // The window was merged away or already cleaned up.
                None => return Ok(()),
            }
        } else {
            window.clone()
        };
        let rt = self.rt()?;
        let result = Self::with_trigger(rt, &window, now, |ctx| match domain {
            TimeDomain::EventTime => self.trigger.on_event_time(timer.timestamp, &window, ctx),
            TimeDomain::ProcessingTime => {
                self.trigger
                    .on_processing_time(timer.timestamp, &window, ctx)
            }
        })?;
        self.after_trigger(&key, &window, &state_window, result, now)?;
        let cleanup_domain = if self.assigner.is_event_time() {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        };
        if domain == cleanup_domain && timer.timestamp == self.cleanup_time(&window) {
            self.clear_all_state(&window, &state_window, now)?;
            if self.assigner.is_merging() {
                remove(&mut mapping, &window);
            }
        }
        if self.assigner.is_merging() {
            self.store_mapping(mapping)?;
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut dyn Output<OUT>) -> Result<()> {
        if !self.emitted.is_empty() {
            out.collect(std::mem::take(&mut self.emitted))?;
        }
        self.sides.flush(out)
    }

    fn fire_timers(
        &mut self,
        domain: TimeDomain,
        now: i64,
        out: &mut dyn Output<OUT>,
    ) -> Result<()> {
        loop {
            let timer = {
                let rt = self.rt()?;
                let mut t = rt.timers.borrow_mut();
                match domain {
                    TimeDomain::EventTime => t.poll_event_timer(),
                    TimeDomain::ProcessingTime => t.poll_processing_timer(now),
                }
            };
            let Some(timer) = timer else { break };
            self.on_timer(timer, domain, now)?;
            if self.emitted.len() >= 1024 {
                self.flush(out)?;
            }
        }
        if domain == TimeDomain::ProcessingTime {
            self.rt()?.timers.borrow_mut().reschedule_processing();
        }
        self.flush(out)
    }
}

impl<K, T, W, ACC, OUT> OneInputOperator<T, OUT> for WindowOperator<K, T, W, ACC, OUT>
where
    K: Key,
    T: Data,
    W: Window,
    ACC: Data,
    OUT: 'static,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let backend = ctx.state.keyed_backend()?;
        let trigger_ns = Rc::new(RefCell::new(Vec::new()));
        let window_ns = Rc::new(RefCell::new(Vec::new()));
        if self.assigner.is_merging() && !self.trigger.can_merge() {
            return Err(RuntimeError::user(
                "the trigger does not support merging windows, which the window assigner creates",
            ));
        }
        let rt = Runtime {
            timers: Rc::new(RefCell::new(InternalTimerService::create(
                backend.clone(),
                ctx.timer_service.clone(),
                "window",
            )?)),
            contents: backend.table::<ACC>("_window-contents")?,
            merging: if self.assigner.is_merging() {
                Some(backend.table::<Vec<(W, W)>>("_merging-windows")?)
            } else {
                None
            },
            trigger_store: KeyedStateStore::with_namespace(
                backend.clone(),
                trigger_ns.clone(),
                TRIGGER_STATE_PREFIX,
            ),
            trigger_ns,
            window_store: KeyedStateStore::with_namespace(
                backend.clone(),
                window_ns.clone(),
                "window:",
            ),
            window_ns,
            global_store: KeyedStateStore::new(backend.clone()),
            processing: ctx.timer_service.clone(),
            late_dropped: ctx.metrics.counter("numLateRecordsDropped"),
            backend: backend.clone(),
        };
        self.rt = Some(rt);
        self.emitter.open(&RuntimeContext::keyed(ctx, backend))
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<OUT>,
    ) -> Result<()> {
        let now = self.rt()?.processing.current_processing_time();
        for r in batch {
            let key = (self.key_selector)(&r.value);
            self.rt()?.backend.set_current_key(&key)?;
            self.process_element(&key, r.value, r.timestamp, now)?;
        }
        self.flush(out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<OUT>) -> Result<()> {
        self.rt()?
            .timers
            .borrow_mut()
            .advance_watermark(watermark.0);
        let now = self.rt()?.processing.current_processing_time();
        self.fire_timers(TimeDomain::EventTime, now, out)?;
        out.emit_watermark(watermark)
    }

    fn on_processing_time(&mut self, time: i64, out: &mut dyn Output<OUT>) -> Result<()> {
        self.fire_timers(TimeDomain::ProcessingTime, time, out)
    }

    fn close(&mut self) -> Result<()> {
        self.emitter.close()
    }
}
