//! Watermark strategies and generators (Flink's `WatermarkStrategy`, `WatermarkGenerator`).
//!
//! A strategy makes one generator per source split (or per subtask of an
//! `assign_timestamps_and_watermarks` operator). A generator sees every event's timestamp
//! (`on_event`) and is asked periodically for a watermark (`on_periodic_emit`, every
//! `pipeline.auto-watermark-interval`). A source subtask's watermark is the minimum over its
//! splits' watermarks; idle splits are left out, and when all are idle the subtask is idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_core::element::Watermark;

/// Where a generator emits watermarks and idleness.
#[derive(Debug, Default)]
pub struct WatermarkOutput {
    watermark: Option<i64>,
    idle: bool,
    changed: bool,
}

impl WatermarkOutput {
    /// Emits a watermark; only increases take effect.
    pub fn emit_watermark(&mut self, watermark: Watermark) {
        if self.watermark.is_none_or(|w| watermark.0 > w) {
            self.watermark = Some(watermark.0);
            self.changed = true;
        }
        if self.idle {
            self.idle = false;
            self.changed = true;
        }
    }

    /// Marks the output idle: it no longer holds back downstream watermarks.
    pub fn mark_idle(&mut self) {
        if !self.idle {
            self.idle = true;
            self.changed = true;
        }
    }

    /// Marks the output active again.
    pub fn mark_active(&mut self) {
        if self.idle {
            self.idle = false;
            self.changed = true;
        }
    }

    /// The last watermark emitted.
    pub fn current(&self) -> Option<i64> {
        self.watermark
    }

    /// Whether the output is idle.
    pub fn is_idle(&self) -> bool {
        self.idle
    }
}

/// Generates watermarks from events and periodically (Flink's `WatermarkGenerator`).
pub trait WatermarkGenerator<T> {
    /// Called for every event, after it was emitted.
    fn on_event(&mut self, event: &T, event_timestamp: i64, output: &mut WatermarkOutput);

    /// Called every `pipeline.auto-watermark-interval`.
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput);
}

/// Watermarks that trail the highest timestamp seen by a fixed bound: `max - bound - 1`
/// (Flink's `BoundedOutOfOrdernessWatermarks`).
#[derive(Clone, Debug)]
pub struct BoundedOutOfOrdernessWatermarks {
    max_timestamp: i64,
    out_of_orderness: i64,
}

impl BoundedOutOfOrdernessWatermarks {
    /// A generator allowing `out_of_orderness`.
    pub fn new(out_of_orderness: Duration) -> Self {
        let ooo = out_of_orderness.as_millis() as i64;
        BoundedOutOfOrdernessWatermarks {
            // As Flink: the first periodic watermark is Long.MIN_VALUE.
            max_timestamp: i64::MIN.saturating_add(ooo).saturating_add(1),
            out_of_orderness: ooo,
        }
    }
}

impl<T> WatermarkGenerator<T> for BoundedOutOfOrdernessWatermarks {
    fn on_event(&mut self, _: &T, ts: i64, _: &mut WatermarkOutput) {
        self.max_timestamp = self.max_timestamp.max(ts);
    }

    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        output.emit_watermark(Watermark(self.max_timestamp - self.out_of_orderness - 1));
    }
}

/// Emits no watermarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWatermarksGenerator;

impl<T> WatermarkGenerator<T> for NoWatermarksGenerator {
    fn on_event(&mut self, _: &T, _: i64, _: &mut WatermarkOutput) {}
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// Wraps a generator: marks the output idle when no event arrived for `timeout` of processing
/// time, and active again at the next event (Flink's `WatermarksWithIdleness`).
pub struct WatermarksWithIdleness<T> {
    inner: Box<dyn WatermarkGenerator<T>>,
    timeout: Duration,
    last_activity: Instant,
    idle: bool,
}

impl<T> WatermarkGenerator<T> for WatermarksWithIdleness<T> {
    fn on_event(&mut self, event: &T, ts: i64, output: &mut WatermarkOutput) {
        self.inner.on_event(event, ts, output);
        self.last_activity = Instant::now();
        if self.idle {
            self.idle = false;
            output.mark_active();
        }
    }

    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        if self.last_activity.elapsed() >= self.timeout {
            self.idle = true;
            output.mark_idle();
        } else {
            self.inner.on_periodic_emit(output);
        }
    }
}

/// Extracts an event timestamp from a record and the timestamp the source attached (or
/// `NO_TIMESTAMP`).
pub type TimestampAssigner<T> = Arc<dyn Fn(&T, i64) -> i64 + Send + Sync>;

/// Makes a generator.
pub type GeneratorFactory<T> = Arc<dyn Fn() -> Box<dyn WatermarkGenerator<T>> + Send + Sync>;

/// How timestamps are assigned and watermarks generated (Flink's `WatermarkStrategy`).
pub struct WatermarkStrategy<T> {
    generator: Option<GeneratorFactory<T>>,
    assigner: Option<TimestampAssigner<T>>,
    idleness: Option<Duration>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            generator: self.generator.clone(),
            assigner: self.assigner.clone(),
            idleness: self.idleness,
        }
    }
}

impl<T: 'static> WatermarkStrategy<T> {
    /// No watermarks; records keep the timestamps their source gives them (processing-time
    /// programs).
    pub fn no_watermarks() -> Self {
        WatermarkStrategy {
            generator: None,
            assigner: None,
            idleness: None,
        }
    }

    /// Timestamps never decrease: the watermark is the highest timestamp seen, minus 1 ms.
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// Timestamps are out of order by at most `max_out_of_orderness`: the watermark is the
    /// highest timestamp seen minus the bound minus 1 ms.
    pub fn for_bounded_out_of_orderness(max_out_of_orderness: Duration) -> Self {
        Self::for_generator(move || BoundedOutOfOrdernessWatermarks::new(max_out_of_orderness))
    }

    /// A custom generator, made once per split or subtask by `make`.
    pub fn for_generator<G>(make: impl Fn() -> G + Send + Sync + 'static) -> Self
    where
        G: WatermarkGenerator<T> + 'static,
    {
        WatermarkStrategy {
            generator: Some(Arc::new(move || {
                Box::new(make()) as Box<dyn WatermarkGenerator<T>>
            })),
            assigner: None,
            idleness: None,
        }
    }

    /// Ingestion time: every record gets the wall-clock time at which the source read it, and
    /// watermarks follow it.
    pub fn for_ingestion_time() -> Self {
        Self::for_monotonous_timestamps()
            .with_timestamp_assigner(|_, _| eddy_core::time::now_millis())
    }

    /// Takes each record's event timestamp from `assigner(record, source_timestamp)`.
    pub fn with_timestamp_assigner(
        mut self,
        assigner: impl Fn(&T, i64) -> i64 + Send + Sync + 'static,
    ) -> Self {
        self.assigner = Some(Arc::new(assigner));
        self
    }

    /// Marks a split idle when it had no records for `timeout`, so that it does not hold back
    /// the watermark.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }

    /// Whether this strategy generates watermarks.
    pub fn generates_watermarks(&self) -> bool {
        self.generator.is_some()
    }

    /// Whether this strategy assigns timestamps.
    pub fn assigns_timestamps(&self) -> bool {
        self.assigner.is_some()
    }

    /// A new generator (wrapped for idleness if configured), if the strategy has one.
    pub fn create_generator(&self) -> Option<Box<dyn WatermarkGenerator<T>>> {
        let inner = (self.generator.as_ref()?)();
        Some(match self.idleness {
            Some(timeout) => Box::new(WatermarksWithIdleness {
                inner,
                timeout,
                last_activity: Instant::now(),
                idle: false,
            }),
            None => inner,
        })
    }

    /// The event timestamp of `value`, given the timestamp its source attached.
    #[inline]
    pub fn timestamp(&self, value: &T, source_timestamp: i64) -> i64 {
        match &self.assigner {
            Some(a) => a(value, source_timestamp),
            None => source_timestamp,
        }
    }
}

/// One generator and its output.
struct Tracked<T> {
    generator: Box<dyn WatermarkGenerator<T>>,
    output: WatermarkOutput,
}

/// What a combined watermark change means downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkEvent {
    /// A higher watermark.
    Watermark(Watermark),
    /// Every input is idle.
    Idle,
    /// An input became active again.
    Active,
}

/// The generators of one source subtask, one per split (Flink's `WatermarkOutputMultiplexer`).
pub struct SplitWatermarks<T> {
    strategy: WatermarkStrategy<T>,
    splits: Vec<(String, Tracked<T>)>,
    current: usize,
    combined: i64,
    idle: bool,
    started: Instant,
}

impl<T: 'static> SplitWatermarks<T> {
    /// Generators made by `strategy`; a default split collects events not attributed to one.
    pub fn new(strategy: WatermarkStrategy<T>) -> Self {
        SplitWatermarks {
            strategy,
            splits: Vec::new(),
            current: usize::MAX,
            combined: i64::MIN,
            idle: false,
            started: Instant::now(),
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> &WatermarkStrategy<T> {
        &self.strategy
    }

    fn index_of(&mut self, split: &str) -> Option<usize> {
        if let Some(i) = self.splits.iter().position(|(s, _)| s == split) {
            return Some(i);
        }
        let generator = self.strategy.create_generator()?;
        self.splits.push((
            split.to_string(),
            Tracked {
                generator,
                output: WatermarkOutput::default(),
            },
        ));
        Some(self.splits.len() - 1)
    }

    /// Attributes the following events to `split`.
    pub fn set_current_split(&mut self, split: &str) {
        self.current = self.index_of(split).unwrap_or(usize::MAX);
    }

    /// A split is done: it no longer holds back the watermark.
    pub fn release_split(&mut self, split: &str) -> Option<WatermarkEvent> {
        let i = self.splits.iter().position(|(s, _)| s == split)?;
        self.splits.remove(i);
        self.current = usize::MAX;
        self.combine()
    }

    /// An event: updates its split's generator; returns a combined change, if any.
    #[inline]
    pub fn on_event(&mut self, event: &T, timestamp: i64) -> Option<WatermarkEvent> {
        if self.current >= self.splits.len() {
            self.current = self.index_of("")?;
        }
        let t = &mut self.splits[self.current].1;
        t.generator.on_event(event, timestamp, &mut t.output);
        if !t.output.changed {
            return None;
        }
        t.output.changed = false;
        self.combine()
    }

    /// Periodic emission: asks every generator; returns a combined change, if any.
    pub fn on_periodic_emit(&mut self) -> Option<WatermarkEvent> {
        if self.splits.is_empty() {
            // Nothing was read yet: with idleness, a silent reader goes idle like a silent split.
            let idle_now = self
                .strategy
                .idleness
                .is_some_and(|t| self.started.elapsed() >= t);
            if idle_now && !self.idle {
                self.idle = true;
                return Some(WatermarkEvent::Idle);
            }
            return None;
        }
        let mut changed = false;
        for (_, t) in &mut self.splits {
            t.generator.on_periodic_emit(&mut t.output);
            changed |= std::mem::take(&mut t.output.changed);
        }
        if changed { self.combine() } else { None }
    }

    fn combine(&mut self) -> Option<WatermarkEvent> {
        let active: Vec<&Tracked<T>> = self
            .splits
            .iter()
            .map(|(_, t)| t)
            .filter(|t| !t.output.idle)
            .collect();
        if active.is_empty() {
            if !self.splits.is_empty() && !self.idle {
                self.idle = true;
                return Some(WatermarkEvent::Idle);
            }
            return None;
        }
        let was_idle = std::mem::replace(&mut self.idle, false);
        // Every active split must have produced a watermark before the minimum means anything.
        let min = active
            .iter()
            .map(|t| t.output.watermark.unwrap_or(i64::MIN))
            .min()
            .unwrap_or(i64::MIN);
        if min > self.combined {
            self.combined = min;
            return Some(WatermarkEvent::Watermark(Watermark(min)));
        }
        if was_idle {
            return Some(WatermarkEvent::Active);
        }
        None
    }
}

impl WatermarkOutput {
    /// What changed since the last call: a higher watermark, idleness, or activity.
    pub fn take_change(
        &mut self,
        last_emitted: &mut i64,
        was_idle: &mut bool,
    ) -> Option<WatermarkEvent> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        if self.idle {
            if !*was_idle {
                *was_idle = true;
                return Some(WatermarkEvent::Idle);
            }
            return None;
        }
        if let Some(w) = self.watermark
            && w > *last_emitted
        {
            *last_emitted = w;
            *was_idle = false;
            return Some(WatermarkEvent::Watermark(Watermark(w)));
        }
        if std::mem::take(was_idle) {
            return Some(WatermarkEvent::Active);
        }
        None
    }
}

/// Assigns timestamps and generates watermarks inside the stream (Flink's
/// `TimestampsAndWatermarksOperator`, behind `assign_timestamps_and_watermarks`). Watermarks from
/// upstream are dropped, except the final one that ends the input.
pub struct TimestampsAndWatermarksOperator<T> {
    strategy: WatermarkStrategy<T>,
    generator: Option<Box<dyn WatermarkGenerator<T>>>,
    output: WatermarkOutput,
    last_emitted: i64,
    idle: bool,
    interval: Option<Duration>,
    timers: Option<crate::operator::ProcessingTimeService>,
}

impl<T: 'static> TimestampsAndWatermarksOperator<T> {
    /// The operator for `strategy`.
    pub fn new(strategy: WatermarkStrategy<T>) -> Self {
        TimestampsAndWatermarksOperator {
            strategy,
            generator: None,
            output: WatermarkOutput::default(),
            last_emitted: i64::MIN,
            idle: false,
            interval: None,
            timers: None,
        }
    }

    fn emit_change(
        &mut self,
        pending: &mut Vec<eddy_core::element::StreamRecord<T>>,
        out: &mut dyn crate::operator::Output<T>,
    ) -> crate::Result<()> {
        let Some(change) = self
            .output
            .take_change(&mut self.last_emitted, &mut self.idle)
        else {
            return Ok(());
        };
        if !pending.is_empty() {
            out.collect(std::mem::take(pending))?;
        }
        match change {
            WatermarkEvent::Watermark(w) => out.emit_watermark(w),
            WatermarkEvent::Idle => {
                out.emit_watermark_status(eddy_core::element::WatermarkStatus::Idle)
            }
            WatermarkEvent::Active => {
                out.emit_watermark_status(eddy_core::element::WatermarkStatus::Active)
            }
        }
    }
}

impl<T: 'static> crate::operator::OneInputOperator<T, T> for TimestampsAndWatermarksOperator<T> {
    fn open(&mut self, ctx: &mut crate::operator::OperatorContext) -> crate::Result<()> {
        self.generator = self.strategy.create_generator();
        self.interval = ctx
            .config
            .get(&eddy_core::config::options::AUTO_WATERMARK_INTERVAL)?
            .into();
        self.interval = self.interval.filter(|d| !d.is_zero());
        if let Some(interval) = self.interval {
            let now = ctx.timer_service.current_processing_time();
            ctx.timer_service
                .register_timer(now + interval.as_millis() as i64);
        }
        self.timers = Some(ctx.timer_service.clone());
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: Vec<eddy_core::element::StreamRecord<T>>,
        out: &mut dyn crate::operator::Output<T>,
    ) -> crate::Result<()> {
        let mut pending = Vec::with_capacity(batch.len());
        for mut r in batch {
            r.timestamp = self.strategy.timestamp(&r.value, r.timestamp);
            if let Some(g) = self.generator.as_mut() {
                g.on_event(&r.value, r.timestamp, &mut self.output);
                pending.push(r);
                self.emit_change(&mut pending, out)?;
            } else {
                pending.push(r);
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        out.collect(pending)
    }

    fn process_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut dyn crate::operator::Output<T>,
    ) -> crate::Result<()> {
        if watermark == Watermark::MAX {
            return out.emit_watermark(watermark);
        }
        Ok(())
    }

    fn process_watermark_status(
        &mut self,
        _: eddy_core::element::WatermarkStatus,
        _: &mut dyn crate::operator::Output<T>,
    ) -> crate::Result<()> {
        Ok(())
    }

    fn on_processing_time(
        &mut self,
        time: i64,
        out: &mut dyn crate::operator::Output<T>,
    ) -> crate::Result<()> {
        if let Some(g) = self.generator.as_mut() {
            g.on_periodic_emit(&mut self.output);
            self.emit_change(&mut Vec::new(), out)?;
        }
        if let (Some(interval), Some(timers)) = (self.interval, &self.timers) {
            timers.register_timer(time + interval.as_millis() as i64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_is_max_minus_bound_minus_one() {
        let mut g = BoundedOutOfOrdernessWatermarks::new(Duration::from_millis(5));
        let mut out = WatermarkOutput::default();
        WatermarkGenerator::<()>::on_periodic_emit(&mut g, &mut out);
        assert_eq!(out.current(), Some(i64::MIN));
        for ts in [10, 30, 20] {
            WatermarkGenerator::<()>::on_event(&mut g, &(), ts, &mut out);
        }
        WatermarkGenerator::<()>::on_periodic_emit(&mut g, &mut out);
        assert_eq!(out.current(), Some(24));
    }

    #[test]
    fn split_watermark_is_the_minimum_over_active_splits() {
        let mut w = SplitWatermarks::<i64>::new(WatermarkStrategy::for_monotonous_timestamps());
        w.set_current_split("a");
        assert_eq!(w.on_event(&0, 100), None);
        w.set_current_split("b");
        assert_eq!(w.on_event(&0, 50), None);
        assert_eq!(
            w.on_periodic_emit(),
            Some(WatermarkEvent::Watermark(Watermark(49)))
        );
        w.set_current_split("b");
        w.on_event(&0, 200);
        assert_eq!(
            w.on_periodic_emit(),
            Some(WatermarkEvent::Watermark(Watermark(99)))
        );
        assert_eq!(
            w.release_split("a"),
            Some(WatermarkEvent::Watermark(Watermark(199)))
        );
    }

    #[test]
    fn idle_splits_are_left_out() {
        let mut w = SplitWatermarks::<i64>::new(
            WatermarkStrategy::for_monotonous_timestamps().with_idleness(Duration::ZERO),
        );
        w.set_current_split("a");
        w.on_event(&0, 10);
        assert_eq!(w.on_periodic_emit(), Some(WatermarkEvent::Idle));
    }
}
