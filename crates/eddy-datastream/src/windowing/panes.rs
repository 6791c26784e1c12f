//! Aligned event-time windows with shared panes.
//!
//! A sliding window of size `S` and slide `D` is the union of `S / G` panes of size
//! `G = gcd(S, D)`. Flink's window operator adds every element to each of its `S / D` windows;
//! here an element updates one pane, and a firing window combines its panes with the
//! accumulator's `merge`, so the cost per element does not grow with `S / D`. Tumbling windows
//! are the case `S = D` (one pane per window).
//!
//! State is one entry per key: its panes, a short vector sorted by start, small enough that an
//! entry fits a cache line. Instead of a timer per key and window, a time-ordered index lists
//! which keys fire (and which are cleaned up) when. The index is derived: a key has data in a
//! window if one of its panes lies in it, and the window's firing is pending if its end is past
//! the operator's watermark. So a snapshot needs only the panes and the watermark (which is the
//! same in every subtask at a checkpoint barrier, since all of them see the same watermarks
//! before it).
//!
//! Used for event-time tumbling and sliding windows with the default trigger, no evictor, and
//! an incremental function (`reduce`, `aggregate`, optionally with a process window function).
//! Firing, lateness, late side output and cleanup follow Flink's `WindowOperator`; the one
//! difference is the order in which a window's elements are combined: pane by pane, not in
//! arrival order. For the associative and commutative functions aggregations use (sum, count,
//! min, max, averages) the results are the same.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use eddy_core::element::{NO_TIMESTAMP, StreamRecord, Watermark};
use eddy_runtime::metrics::Counter;
use eddy_runtime::operator::{OneInputOperator, OperatorContext, Output, ProcessingTimeService};
use eddy_runtime::state::{KeyBytes, KeyedStateBackend, KeyedStateStore, SharedStateTable};
use eddy_runtime::{Result, RuntimeError};
use smallvec::SmallVec;

use super::functions::{ProcessWindowContext, WindowAccumulator, WindowEmitter};
use super::window::{TimeWindow, Window};
use crate::functions::{Collector, OutputTag, RuntimeContext, SideOutputs};
use crate::operators::KeySelector;
use crate::{Data, Key};

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The state of one key: `(pane start, accumulator)`, sorted by start. Two panes fit in the
/// entry itself, which saves a cache miss per element for tumbling windows.
type KeyPanes<ACC> = SmallVec<[(i64, ACC); 2]>;

/// Which keys to visit at a time.
type Index = BTreeMap<i64, Vec<(u32, KeyBytes)>>;

struct Runtime<ACC> {
    backend: KeyedStateBackend,
    keys: SharedStateTable<KeyPanes<ACC>>,
    window_ns: Rc<RefCell<Vec<u8>>>,
    window_store: KeyedStateStore,
    global_store: KeyedStateStore,
    processing: ProcessingTimeService,
    late_dropped: Arc<Counter>,
    /// The operator's event time, snapshotted with the keyed state.
    event_time: Rc<Cell<i64>>,
    watermark: i64,
    /// Window max timestamp → keys whose window fires then.
    fires: Index,
    /// Window cleanup time → keys whose window is cleaned up then.
    cleanups: Index,
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

fn not_open() -> RuntimeError {
    RuntimeError::Internal("window operator used before open".into())
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
        }
    }

    fn window(&self, start: i64) -> TimeWindow {
        TimeWindow::new(start, start + self.size)
    }

    fn process_element(&mut self, value: T, ts: i64) -> Result<()> {
        if ts == NO_TIMESTAMP {
            return Err(RuntimeError::User(format!(
                "cannot assign windows to record {}: it has no timestamp; assign timestamps \
                 with a WatermarkStrategy before an event-time window",
                crate::functions::describe(&value)
            )));
        }
        let rt = self.rt.as_mut().ok_or_else(not_open)?;
        let watermark = rt.watermark;
        // The windows containing `ts` start at `last_start`, `last_start - slide`, ... down to
        // above `ts - size`. A window is live until its cleanup time; the earlier a window, the
        // sooner it is cleaned up, so the live ones are the latest few: starts above `lowest`.
        let last_start = TimeWindow::window_start_with_offset(ts, self.offset, self.slide);
        let lowest = (ts - self.size).max(
            watermark
                .saturating_sub(self.allowed_lateness)
                .saturating_sub(self.size)
                .saturating_add(1),
        );
        let live = (0..)
            .map(|i| last_start - i * self.slide)
            .take_while(|start| *start > lowest);
        if last_start <= lowest {
            if ts.saturating_add(self.allowed_lateness) <= watermark {
                match &self.late_tag {
                    Some(tag) => self.sides.emit(tag, value, ts),
                    None => rt.late_dropped.inc(),
                }
            }
            return Ok(());
        }
        let pane_start = TimeWindow::window_start_with_offset(ts, self.offset, self.pane);
        let kg = rt.backend.current_key_group();
        let mut to_fire: SmallVec<[i64; 4]> = SmallVec::new();
        {
            let mut keys = rt.keys.borrow_mut();
            let key = rt.backend.current_key_bytes();
            let panes = keys.get_or_insert_with(kg, &key, SmallVec::new)?;
            // The latest pane is the usual one.
            let created = match panes.last_mut() {
                Some((s, acc)) if *s == pane_start => {
                    self.accumulator.add(acc, value, ts);
                    false
                }
                _ => match panes.binary_search_by_key(&pane_start, |(s, _)| *s) {
                    Ok(i) => {
                        self.accumulator.add(&mut panes[i].1, value, ts);
                        false
                    }
                    Err(i) => {
                        let acc = self.accumulator.create(value, ts);
                        panes.insert(i, (pane_start, acc));
                        true
                    }
                },
            };
            for start in live {
                let max = start + self.size - 1;
                if max <= watermark {
                    // Late, but within the allowed lateness: fires at once.
                    to_fire.push(start);
                }
                // The window is new for this key if the new pane is its only one; an existing
                // pane's windows were registered when it was created.
                let window_is_new = created
                    && panes
                        .iter()
                        .filter(|(s, _)| *s >= start && *s < start + self.size)
                        .count()
                        == 1;
                if window_is_new {
                    let key_bytes = KeyBytes::new(&key);
                    if self.allowed_lateness == 0 {
                        // Cleanup is due with the firing, which does it.
                        rt.fires.entry(max).or_default().push((kg, key_bytes));
                    } else {
                        if max > watermark {
                            rt.fires
                                .entry(max)
                                .or_default()
                                .push((kg, key_bytes.clone()));
                        }
                        rt.cleanups
                            .entry(max.saturating_add(self.allowed_lateness))
                            .or_default()
                            .push((kg, key_bytes));
                    }
                }
            }
        }
        if !to_fire.is_empty() {
            let key: K = rt.backend.current_key()?;
            for start in to_fire {
                self.fire(&key, start)?;
            }
        }
        Ok(())
    }

    /// Combines the current key's panes of window `start` and emits the result.
    fn fire(&mut self, key: &K, start: i64) -> Result<()> {
        let w = self.window(start);
        let rt = self.rt.as_mut().ok_or_else(not_open)?;
        let kg = rt.backend.current_key_group();
        let mut combined: Option<ACC> = None;
        {
            let mut keys = rt.keys.borrow_mut();
            let Some(panes) = keys.get(kg, &rt.backend.current_key_bytes())? else {
                return Ok(());
            };
            for (pane_start, acc) in panes {
                if *pane_start >= w.end {
                    break;
                }
                if *pane_start >= w.start {
                    combined = Some(match combined {
                        None => acc.clone(),
                        Some(c) => self.accumulator.merge(c, acc.clone()),
                    });
                }
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
            window: &w,
            watermark: rt.watermark,
            processing_time: rt.processing.current_processing_time(),
            window_state: &rt.window_store,
            global_state: &rt.global_store,
            sides: &mut self.sides,
        };
        let mut out = Collector::new(&mut self.emitted, w.max_timestamp());
        self.emitter.emit(key, &mut acc, &mut ctx, &mut out)
    }

    /// Cleans up the current key's window `start`: its per-window state, and the panes no later
    /// window needs.
    fn clean(&mut self, start: i64) -> Result<()> {
        let w = self.window(start);
        let rt = self.rt.as_mut().ok_or_else(not_open)?;
        let kg = rt.backend.current_key_group();
        {
            let mut keys = rt.keys.borrow_mut();
            let key = rt.backend.current_key_bytes();
            let now_empty = match keys.get_mut(kg, &key)? {
                Some(panes) => {
                    // Panes in [start, start + slide) belong to no window that starts later.
                    let drop_end = (start + self.slide).min(w.end);
                    panes.retain(|(s, _)| *s < start || *s >= drop_end);
                    panes.is_empty()
                }
                None => false,
            };
            if now_empty {
                keys.remove(kg, &key)?;
            }
        }
        {
            let mut ns = rt.window_ns.borrow_mut();
            ns.clear();
            w.encode(&mut ns);
        }
        let mut ctx = ProcessWindowContext {
            window: &w,
            watermark: rt.watermark,
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

    /// Rebuilds the firing and cleanup index from restored panes: a key's window is pending
    /// if one of its panes lies in it and its end (or cleanup time) is past the watermark.
    fn rebuild_index(&mut self) -> Result<()> {
        let (size, slide, offset, lateness) =
            (self.size, self.slide, self.offset, self.allowed_lateness);
        let rt = self.rt.as_mut().ok_or_else(not_open)?;
        let watermark = rt.watermark;
        let (mut fires, mut cleanups) = (Index::new(), Index::new());
        rt.keys.borrow_mut().for_each(|kg, key, panes| {
            let mut starts: SmallVec<[i64; 8]> = SmallVec::new();
            for (pane, _) in panes {
                let last = TimeWindow::window_start_with_offset(*pane, offset, slide);
                let mut start = last;
                while start > pane - size {
                    starts.push(start);
                    start -= slide;
                }
            }
            starts.sort_unstable();
            starts.dedup();
            for start in starts {
                let max = start + size - 1;
                if max > watermark {
                    fires.entry(max).or_default().push((kg, KeyBytes::new(key)));
                }
                let cleanup = max.saturating_add(lateness);
                if lateness > 0 && cleanup > watermark {
                    cleanups
                        .entry(cleanup)
                        .or_default()
                        .push((kg, KeyBytes::new(key)));
                }
            }
            Ok(())
        })?;
        rt.fires = fires;
        rt.cleanups = cleanups;
        Ok(())
    }

    /// Takes the index entries due at `watermark`.
    fn due(index: &mut Index, watermark: i64) -> Vec<(i64, Vec<(u32, KeyBytes)>)> {
        let later = match watermark.checked_add(1) {
            Some(next) => index.split_off(&next),
            None => Index::new(),
        };
        std::mem::replace(index, later).into_iter().collect()
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
        let backend = ctx.state.keyed_backend()?;
        let window_ns = Rc::new(RefCell::new(Vec::new()));
        let event_time = backend.event_time_state("_window-panes-time")?;
        let watermark = event_time.get();
        self.rt = Some(Runtime {
            keys: backend.table::<KeyPanes<ACC>>("_window-panes")?,
            window_store: KeyedStateStore::with_namespace(
                backend.clone(),
                window_ns.clone(),
                "window:",
            ),
            window_ns,
            global_store: KeyedStateStore::new(backend.clone()),
            processing: ctx.timer_service.clone(),
            late_dropped: ctx.metrics.counter("numLateRecordsDropped"),
            event_time,
            watermark,
            fires: Index::new(),
            cleanups: Index::new(),
            backend: backend.clone(),
        });
        self.rebuild_index()?;
        self.emitter.open(&RuntimeContext::keyed(ctx, backend))
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<OUT>,
    ) -> Result<()> {
        for r in batch {
            let key = (self.key_selector)(&r.value);
            self.rt
                .as_ref()
                .ok_or_else(not_open)?
                .backend
                .set_current_key(&key)?;
            self.process_element(r.value, r.timestamp)?;
        }
        self.flush(out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut dyn Output<OUT>) -> Result<()> {
        let rt = self.rt.as_mut().ok_or_else(not_open)?;
        rt.watermark = rt.watermark.max(watermark.0);
        rt.event_time.set(rt.watermark);
        let wm = rt.watermark;
        // All firings due at this watermark, then all cleanups: a cleanup only drops panes that
        // no window firing at the same or a later time needs.
        let fires = Self::due(&mut rt.fires, wm);
        for (max, keys) in fires {
            let start = max + 1 - self.size;
            for (kg, key) in keys {
                let rt = self.rt.as_ref().ok_or_else(not_open)?;
                rt.backend.set_current_key_bytes(&key, kg);
                let k: K = rt.backend.current_key()?;
                self.fire(&k, start)?;
                if self.allowed_lateness == 0 {
                    self.clean(start)?;
                }
                if self.emitted.len() >= 1024 {
                    self.flush(out)?;
                }
            }
        }
        let rt = self.rt.as_mut().ok_or_else(not_open)?;
        let cleanups = Self::due(&mut rt.cleanups, wm);
        for (time, keys) in cleanups {
            let start = time.saturating_sub(self.allowed_lateness) + 1 - self.size;
            for (kg, key) in keys {
                self.rt
                    .as_ref()
                    .ok_or_else(not_open)?
                    .backend
                    .set_current_key_bytes(&key, kg);
                self.clean(start)?;
            }
        }
        self.flush(out)?;
        out.emit_watermark(watermark)
    }

    fn close(&mut self) -> Result<()> {
        self.emitter.close()
    }
}
