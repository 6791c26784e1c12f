//! Window assigners: which windows an element belongs to (Flink's `WindowAssigner`s).

use std::sync::Arc;
use std::time::Duration;

use eddy_core::element::NO_TIMESTAMP;

use super::triggers::{EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, Trigger};
use super::window::{GlobalWindow, TimeWindow, Window};

/// Assigns elements to windows.
pub trait WindowAssigner<T, W: Window>: Send + Sync + 'static {
    /// The windows of an element with `timestamp` (event time) when the wall clock reads
    /// `now` (processing time). An event-time assigner fails for an element without timestamp.
    fn assign_windows(&self, element: &T, timestamp: i64, now: i64) -> Result<Vec<W>, String>;

    /// The trigger used unless the program sets one.
    fn default_trigger(&self) -> Arc<dyn Trigger<T, W>>;

    /// Whether windows are in event time.
    fn is_event_time(&self) -> bool;

    /// For merging assigners (sessions): the groups of `windows` that merge, each with the
    /// window covering it. `None` for assigners whose windows never merge.
    fn merge_windows(&self, _windows: &[W]) -> Option<Vec<(Vec<W>, W)>> {
        None
    }

    /// Whether windows of this assigner merge.
    fn is_merging(&self) -> bool {
        false
    }

    /// For aligned event-time windows: `(size, slide, offset)` in ms. Such windows can share
    /// per-slide panes instead of copying each element into every window.
    fn aligned(&self) -> Option<(i64, i64, i64)> {
        None
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

fn require_timestamp(timestamp: i64) -> Result<(), String> {
    if timestamp == NO_TIMESTAMP {
        return Err(
            "the record has no timestamp (it carries the 'no timestamp' marker); \
                    assign timestamps with a WatermarkStrategy on the source or with \
                    assign_timestamps_and_watermarks() before an event-time window"
                .into(),
        );
    }
    Ok(())
}

/// Fixed-size, non-overlapping event-time windows.
#[derive(Clone, Copy, Debug)]
pub struct TumblingEventTimeWindows {
    size: i64,
    offset: i64,
}

impl TumblingEventTimeWindows {
    /// Windows of `size`.
    pub fn of(size: Duration) -> Self {
        TumblingEventTimeWindows {
            size: millis(size).max(1),
            offset: 0,
        }
    }

    /// Shifts window starts by `offset` (e.g. for time zones).
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = millis(offset) % self.size;
        self
    }
}

impl<T: 'static> WindowAssigner<T, TimeWindow> for TumblingEventTimeWindows {
    fn assign_windows(&self, _: &T, ts: i64, _: i64) -> Result<Vec<TimeWindow>, String> {
        require_timestamp(ts)?;
        let start = TimeWindow::window_start_with_offset(ts, self.offset, self.size);
        Ok(vec![TimeWindow::new(start, start + self.size)])
    }
    fn default_trigger(&self) -> Arc<dyn Trigger<T, TimeWindow>> {
        Arc::new(EventTimeTrigger)
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn aligned(&self) -> Option<(i64, i64, i64)> {
        Some((self.size, self.size, self.offset))
    }
}

/// Fixed-size, non-overlapping processing-time windows.
#[derive(Clone, Copy, Debug)]
pub struct TumblingProcessingTimeWindows {
    size: i64,
    offset: i64,
}

impl TumblingProcessingTimeWindows {
    /// Windows of `size`.
    pub fn of(size: Duration) -> Self {
        TumblingProcessingTimeWindows {
            size: millis(size).max(1),
            offset: 0,
        }
    }

    /// Shifts window starts by `offset`.
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = millis(offset) % self.size;
        self
    }
}

impl<T: 'static> WindowAssigner<T, TimeWindow> for TumblingProcessingTimeWindows {
    fn assign_windows(&self, _: &T, _: i64, now: i64) -> Result<Vec<TimeWindow>, String> {
        let start = TimeWindow::window_start_with_offset(now, self.offset, self.size);
        Ok(vec![TimeWindow::new(start, start + self.size)])
    }
    fn default_trigger(&self) -> Arc<dyn Trigger<T, TimeWindow>> {
        Arc::new(ProcessingTimeTrigger)
    }
    fn is_event_time(&self) -> bool {
        false
    }
}

fn sliding(ts: i64, size: i64, slide: i64, offset: i64) -> Vec<TimeWindow> {
    let last_start = TimeWindow::window_start_with_offset(ts, offset, slide);
    let mut windows = Vec::with_capacity((size / slide) as usize + 1);
    let mut start = last_start;
    while start > ts - size {
        windows.push(TimeWindow::new(start, start + size));
        start -= slide;
    }
    windows
}

/// Overlapping event-time windows of `size`, one starting every `slide`.
#[derive(Clone, Copy, Debug)]
pub struct SlidingEventTimeWindows {
    size: i64,
    slide: i64,
    offset: i64,
}

impl SlidingEventTimeWindows {
    /// Windows of `size`, every `slide`.
    pub fn of(size: Duration, slide: Duration) -> Self {
        SlidingEventTimeWindows {
            size: millis(size).max(1),
            slide: millis(slide).max(1),
            offset: 0,
        }
    }

    /// Shifts window starts by `offset`.
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = millis(offset) % self.slide;
        self
    }
}

impl<T: 'static> WindowAssigner<T, TimeWindow> for SlidingEventTimeWindows {
    fn assign_windows(&self, _: &T, ts: i64, _: i64) -> Result<Vec<TimeWindow>, String> {
        require_timestamp(ts)?;
        Ok(sliding(ts, self.size, self.slide, self.offset))
    }
    fn default_trigger(&self) -> Arc<dyn Trigger<T, TimeWindow>> {
        Arc::new(EventTimeTrigger)
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn aligned(&self) -> Option<(i64, i64, i64)> {
        Some((self.size, self.slide, self.offset))
    }
}

/// Overlapping processing-time windows.
#[derive(Clone, Copy, Debug)]
pub struct SlidingProcessingTimeWindows {
    size: i64,
    slide: i64,
    offset: i64,
}

impl SlidingProcessingTimeWindows {
    /// Windows of `size`, every `slide`.
    pub fn of(size: Duration, slide: Duration) -> Self {
        SlidingProcessingTimeWindows {
            size: millis(size).max(1),
            slide: millis(slide).max(1),
            offset: 0,
        }
    }

    /// Shifts window starts by `offset`.
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = millis(offset) % self.slide;
        self
    }
}

impl<T: 'static> WindowAssigner<T, TimeWindow> for SlidingProcessingTimeWindows {
    fn assign_windows(&self, _: &T, _: i64, now: i64) -> Result<Vec<TimeWindow>, String> {
        Ok(sliding(now, self.size, self.slide, self.offset))
    }
    fn default_trigger(&self) -> Arc<dyn Trigger<T, TimeWindow>> {
        Arc::new(ProcessingTimeTrigger)
    }
    fn is_event_time(&self) -> bool {
        false
    }
}

/// The session gap of an element.
pub type SessionGap<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// Event-time sessions: an element opens the window `[ts, ts + gap)`, and overlapping (or
/// touching) windows of a key merge.
#[derive(Clone)]
pub struct EventTimeSessionWindows<T> {
    gap: SessionGap<T>,
}

impl<T> EventTimeSessionWindows<T> {
    /// Sessions that end after `gap` without elements.
    pub fn with_gap(gap: Duration) -> Self {
        let g = millis(gap).max(1);
        EventTimeSessionWindows {
            gap: Arc::new(move |_| g),
        }
    }

    /// Sessions whose gap depends on the element (Flink's `withDynamicGap`).
    pub fn with_dynamic_gap(gap: impl Fn(&T) -> Duration + Send + Sync + 'static) -> Self {
        EventTimeSessionWindows {
            gap: Arc::new(move |e| millis(gap(e)).max(1)),
        }
    }
}

impl<T: 'static> WindowAssigner<T, TimeWindow> for EventTimeSessionWindows<T> {
    fn assign_windows(&self, e: &T, ts: i64, _: i64) -> Result<Vec<TimeWindow>, String> {
        require_timestamp(ts)?;
        Ok(vec![TimeWindow::new(ts, ts + (self.gap)(e))])
    }
    fn default_trigger(&self) -> Arc<dyn Trigger<T, TimeWindow>> {
        Arc::new(EventTimeTrigger)
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn merge_windows(&self, windows: &[TimeWindow]) -> Option<Vec<(Vec<TimeWindow>, TimeWindow)>> {
        Some(TimeWindow::merge_windows(windows))
    }
    fn is_merging(&self) -> bool {
        true
    }
}

/// Processing-time sessions.
#[derive(Clone)]
pub struct ProcessingTimeSessionWindows<T> {
    gap: SessionGap<T>,
}

impl<T> ProcessingTimeSessionWindows<T> {
    /// Sessions that end after `gap` without elements.
    pub fn with_gap(gap: Duration) -> Self {
        let g = millis(gap).max(1);
        ProcessingTimeSessionWindows {
            gap: Arc::new(move |_| g),
        }
    }
}

impl<T: 'static> WindowAssigner<T, TimeWindow> for ProcessingTimeSessionWindows<T> {
    fn assign_windows(&self, e: &T, _: i64, now: i64) -> Result<Vec<TimeWindow>, String> {
        Ok(vec![TimeWindow::new(now, now + (self.gap)(e))])
    }
    fn default_trigger(&self) -> Arc<dyn Trigger<T, TimeWindow>> {
        Arc::new(ProcessingTimeTrigger)
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn merge_windows(&self, windows: &[TimeWindow]) -> Option<Vec<(Vec<TimeWindow>, TimeWindow)>> {
        Some(TimeWindow::merge_windows(windows))
    }
    fn is_merging(&self) -> bool {
        true
    }
}

/// One window per key holding every element; it only fires with a custom trigger.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalWindows;

impl GlobalWindows {
    /// The global windows assigner (Flink's `GlobalWindows.create()`).
    pub fn create() -> Self {
        GlobalWindows
    }
}

impl<T: 'static> WindowAssigner<T, GlobalWindow> for GlobalWindows {
    fn assign_windows(&self, _: &T, _: i64, _: i64) -> Result<Vec<GlobalWindow>, String> {
        Ok(vec![GlobalWindow])
    }
    fn default_trigger(&self) -> Arc<dyn Trigger<T, GlobalWindow>> {
        Arc::new(NeverTrigger)
    }
    fn is_event_time(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_like_flink() {
        let a = SlidingEventTimeWindows::of(Duration::from_millis(10), Duration::from_millis(5));
        let w = WindowAssigner::<(), _>::assign_windows(&a, &(), 12, 0).unwrap();
        assert_eq!(w, vec![TimeWindow::new(10, 20), TimeWindow::new(5, 15)]);
        let t = TumblingEventTimeWindows::of(Duration::from_millis(10));
        assert!(WindowAssigner::<(), _>::assign_windows(&t, &(), NO_TIMESTAMP, 0).is_err());
    }
}
