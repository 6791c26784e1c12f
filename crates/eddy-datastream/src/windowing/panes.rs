//! Aligned event-time windows with shared panes.
//!
//! A sliding window of size `S` and slide `D` is the union of `S / G` panes of size
//! `G = gcd(S, D)`. Flink's window operator adds every element to each of its `S / D` windows;
//! here an element updates one pane, and a firing window combines its panes with the
//! accumulator's `merge`. The cost per element no longer grows with `S / D`. Tumbling windows
//! are the case `S = D` (one pane per window).
//!
//! Used for event-time tumbling and sliding windows with the default trigger, no evictor, and
//! an incremental function (`reduce`, `aggregate`, optionally with a process window function).
//! Firing, lateness, late side output and cleanup follow Flink's `WindowOperator` exactly; the
//! one difference is the order in which a window's elements are combined: pane by pane, not in
//! arrival order. For the associative and commutative functions aggregations use (sum, count,
//! min, max, averages) the results are the same.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use eddy_core::element::{StreamRecord, Watermark};
use eddy_runtime::metrics::Counter;
use eddy_runtime::operator::{OneInputOperator, OperatorContext, Output, ProcessingTimeService};
use eddy_runtime::state::{
    InternalTimerService, KeyedStateBackend, KeyedStateStore, SharedStateTable,
};
use eddy_runtime::{Result, RuntimeError};

use super::functions::{ProcessWindowContext, WindowAccumulator, WindowEmitter};
use super::window::{TimeWindow, Window};
use crate::functions::{Collector, OutputTag, RuntimeContext, SideOutputs};
use crate::operators::KeySelector;
use crate::{Data, Key};

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

struct Runtime<ACC> {
    backend: KeyedStateBackend,
    timers: Rc<RefCell<InternalTimerService<TimeWindow>>>,
    panes: SharedStateTable<ACC>,
    window_ns: Rc<RefCell<Vec<u8>>>,
    window_store: KeyedStateStore,
    global_store: KeyedStateStore,
    processing: ProcessingTimeService,
    late_dropped: Arc<Counter>,
}

/// The pane-sharing window operator.
pub(crate) struct PaneWindowOperator<K, T, ACC, OUT> {
    key_selector: KeySelector<T, K>,
    size: i64,
    slide: i64,
    offset: i64,
    pane: i64,
    allowed_lateness: i64,
    late_tag: Option<OutputTag<T>>,
    accumulator: Arc<dyn WindowAccumulator<T, ACC>>,
    emitter: Box<dyn WindowEmitter<K, TimeWindow, ACC, OUT>>,
    rt: Option<Runtime<ACC>>,
    sides: SideOutputs,
    emitted: Vec<StreamRecord<OUT>>,
    composite: Vec<u8>,
}

/// The shared configuration of a pane window operator.
pub(crate) struct PaneSpec<K, T, ACC> {
    pub(crate) key_selector: KeySelector<T, K>,
    pub(crate) size: i64,
    pub(crate) slide: i64,
    pub(crate) offset: i64,
    pub(crate) allowed_lateness: i64,
    pub(crate) late_tag: Option<OutputTag<T>>,
    pub(crate) accumulator: Arc<dyn WindowAccumulator<T, ACC>>,
}

impl<K, T, ACC> Clone for PaneSpec<K, T, ACC> {
    fn clone(&self) -> Self {
        PaneSpec {
            key_selector: self.key_selector.clone(),
            size: self.size,
            slide: self.slide,
            offset: self.offset,
            allowed_lateness: self.allowed_lateness,
            late_tag: self.late_tag.clone(),
            accumulator: self.accumulator.clone(),
        }
    }
}

impl<K, T, ACC, OUT> PaneWindowOperator<K, T, ACC, OUT>
where
    K: Key,
    T: Data,
    ACC: Data,
    OUT: 'static,
{
    pub(crate) fn new(
        spec: PaneSpec<K, T, ACC>,
        emitter: Box<dyn WindowEmitter<K, TimeWindow, ACC, OUT>>,
    ) -> Self {
        PaneWindowOperator {
            key_selector: spec.key_selector,
            size: spec.size,
            slide: spec.slide,
            offset: spec.offset,
            pane: gcd(spec.size, spec.slide),
            allowed_lateness: spec.allowed_lateness,
            late_tag: spec.late_tag,
            accumulator: spec.accumulator,
            emitter,
            rt: None,
            sides: SideOutputs::default(),
            emitted: Vec::new(),
            composite: Vec::with_capacity(48),
        }
    }

    fn rt(&self) -> Result<&Runtime<ACC>> {
        self.rt
            .as_ref()
            .ok_or_else(|| RuntimeError::Internal("window operator used before open".into()))
    }

    fn cleanup_time(&self, w: &TimeWindow) -> i64 {
        w.max_timestamp().saturating_add(self.allowed_lateness)
    }

    /// The windows containing `ts`, latest first (as Flink's sliding assigner lists them).
    fn windows_of(&self, ts: i64) -> impl Iterator<Item = TimeWindow> + use<K, T, ACC, OUT> {
        let last_start = TimeWindow::window_start_with_offset(ts, self.offset, self.slide);
        let (size, slide) = (self.size, self.slide);
        (0..)
            .map(move |i| last_start - i * slide)
            .take_while(move |start| *start > ts - size)
            .map(move |start| TimeWindow::new(start, start + size))
    }

    fn pane_composite(backend: &KeyedStateBackend, pane_start: i64, buf: &mut Vec<u8>) {
        backend.composite_key(&pane_start.to_be_bytes(), buf);
    }

    fn process_element(&mut self, key: &K, value: T, ts: i64) -> Result<()> {
        if ts == eddy_core::element::NO_TIMESTAMP {
            return Err(RuntimeError::User(
                "cannot assign windows: the record has no timestamp; assign timestamps with a \
                 WatermarkStrategy before an event-time window"
                    .into(),
            ));
        }
        let Some(rt) = self.rt.as_ref() else {
            return Err(RuntimeError::Internal(
                "window operator used before open".into(),
            ));
        };
        let watermark = rt.timers.borrow().current_watermark();
        let mut any_live = false;
        let mut to_fire = Vec::new();
        for w in self.windows_of(ts) {
            if self.cleanup_time(&w) <= watermark {
                continue;
            }
            any_live = true;
            if w.max_timestamp() <= watermark {
                // Late but within the allowed lateness: fires at once with the new element.
                to_fire.push(w);
            }
        }
        if !any_live {
            if ts.saturating_add(self.allowed_lateness) <= watermark {
                match &self.late_tag {
                    Some(tag) => self.sides.emit(tag, value, ts),
                    None => rt.late_dropped.inc(),
                }
            }
            return Ok(());
        }
        let pane_start = TimeWindow::window_start_with_offset(ts, self.offset, self.pane);
        Self::pane_composite(&rt.backend, pane_start, &mut self.composite);
        let kg = rt.backend.current_key_group();
        let created = {
            let mut panes = rt.panes.borrow_mut();
            match panes.get_mut(kg, &self.composite) {
                Some(acc) => {
                    self.accumulator.add(acc, value, ts);
                    false
                }
                None => {
                    let acc = self.accumulator.create(value, ts);
                    panes.insert(kg, &self.composite, acc);
                    true
                }
            }
        };
        if created {
            // The first element of this pane for this key: every live window containing the
            // pane needs its firing and cleanup timers.
            let pane_end = pane_start + self.pane;
            let mut timers = rt.timers.borrow_mut();
            for w in self.windows_of(pane_start) {
                if w.end < pane_end || self.cleanup_time(&w) <= watermark {
                    continue;
                }
                if w.max_timestamp() > watermark {
                    timers.register_event_time_timer(w, w.max_timestamp());
                }
                timers.register_event_time_timer(w, self.cleanup_time(&w));
            }
        }
        for w in to_fire {
            self.fire(key, &w)?;
        }
        Ok(())
    }

    /// Combines the panes of `w` and emits the result.
    fn fire(&mut self, key: &K, w: &TimeWindow) -> Result<()> {
        let Some(rt) = self.rt.as_ref() else {
            return Err(RuntimeError::Internal(
                "window operator used before open".into(),
            ));
        };
        let kg = rt.backend.current_key_group();
        let mut combined: Option<ACC> = None;
        {
            let panes = rt.panes.borrow();
            let mut start = w.start;
            while start < w.end {
                Self::pane_composite(&rt.backend, start, &mut self.composite);
                if let Some(acc) = panes.get(kg, &self.composite) {
                    combined = Some(match combined {
                        None => acc.clone(),
                        Some(c) => self.accumulator.merge(c, acc.clone()),
                    });
                }
                start += self.pane;
            }
        }
        let Some(mut acc) = combined else {
            return Ok(());
        };
        {
            let mut ns = rt.window_ns.borrow_mut();
            ns.clear();
            w.encode(&mut ns);
        }
        let mut ctx = ProcessWindowContext {
            window: w,
            watermark: rt.timers.borrow().current_watermark(),
            processing_time: rt.processing.current_processing_time(),
            window_state: &rt.window_store,
            global_state: &rt.global_store,
            sides: &mut self.sides,
        };
        let mut out = Collector::new(&mut self.emitted, w.max_timestamp());
        self.emitter.emit(key, &mut acc, &mut ctx, &mut out)
    }

    /// Cleans up window `w`: its per-window state, and the panes no later window needs.
    fn clean(&mut self, w: &TimeWindow) -> Result<()> {
        let Some(rt) = self.rt.as_ref() else {
            return Err(RuntimeError::Internal(
                "window operator used before open".into(),
            ));
        };
        let kg = rt.backend.current_key_group();
        {
            let mut panes = rt.panes.borrow_mut();
            // Panes in [start, start + slide) belong to no window that starts later.
            let mut start = w.start;
            while start < (w.start + self.slide).min(w.end) {
                Self::pane_composite(&rt.backend, start, &mut self.composite);
                panes.remove(kg, &self.composite);
                start += self.pane;
            }
        }
        {
            let mut ns = rt.window_ns.borrow_mut();
            ns.clear();
            w.encode(&mut ns);
        }
        let mut ctx = ProcessWindowContext {
            window: w,
            watermark: rt.timers.borrow().current_watermark(),
            processing_time: rt.processing.current_processing_time(),
            window_state: &rt.window_store,
            global_state: &rt.global_store,
            sides: &mut self.sides,
        };
        self.emitter.clear(&mut ctx)
    }

    fn flush(&mut self, out: &mut dyn Output<OUT>) -> Result<()> {
        if !self.emitted.is_empty() {
            out.collect(std::mem::take(&mut self.emitted))?;
        }
        self.sides.flush(out)
    }
}

impl<K, T, ACC, OUT> OneInputOperator<T, OUT> for PaneWindowOperator<K, T, ACC, OUT>
where
    K: Key,
    T: Data,
    ACC: Data,
    OUT: 'static,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let backend = ctx.state.keyed_backend();
        let window_ns = Rc::new(RefCell::new(Vec::new()));
        self.rt = Some(Runtime {
            timers: Rc::new(RefCell::new(InternalTimerService::new(
                backend.clone(),
                ctx.timer_service.clone(),
            ))),
            panes: backend.table::<ACC>("_window-panes")?,
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
        });
        self.emitter.open(&RuntimeContext::keyed(ctx, backend))
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<OUT>,
    ) -> Result<()> {
        for r in batch {
            let key = (self.key_selector)(&r.value);
            self.rt()?.backend.set_current_key(&key)?;
            self.process_element(&key, r.value, r.timestamp)?;
        }
        self.flush(out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<OUT>) -> Result<()> {
        self.rt()?
            .timers
            .borrow_mut()
            .advance_watermark(watermark.0);
        loop {
            let timer = self.rt()?.timers.borrow_mut().poll_event_timer();
            let Some(timer) = timer else { break };
            let key: K = self.rt()?.backend.current_key()?;
            let w = timer.namespace;
            if timer.timestamp == w.max_timestamp() {
                self.fire(&key, &w)?;
            }
            if timer.timestamp == self.cleanup_time(&w) {
                self.clean(&w)?;
            }
            if self.emitted.len() >= 1024 {
                self.flush(out)?;
            }
        }
        self.flush(out)?;
        out.emit_watermark(watermark)
    }

    fn close(&mut self) -> Result<()> {
        self.emitter.close()
    }
}
