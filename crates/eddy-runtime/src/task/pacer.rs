//! Batches sized by time, so that a task answers its mailbox and flushes its buffers within a
//! bounded time however slow its chain is per record.
//!
//! Records move down a chain a batch at a time, and a task looks at its mailbox (checkpoint
//! triggers, cancellation) and its flush timer only between batches. With a chained operator
//! that takes milliseconds per record, a batch of a thousand records would hold a barrier, a
//! cancellation and every buffered record for seconds. The pacer measures how long the chain
//! takes per batch — without the time it spent blocked on back pressure, which says nothing
//! about the chain — and keeps each batch to about [`BATCH_TIME`]: a source reader is asked
//! for that many records, and an input batch is handed down in chunks of that size with the
//! mailbox and the flush timer checked in between. A fast chain gets full batches: the limit
//! doubles whenever a full batch took less than half the target.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::TimeGauge;

/// About the longest one batch may keep a task from its mailbox.
pub(crate) const BATCH_TIME: Duration = Duration::from_millis(1);

/// The largest chunk an input batch is cut into: input batches are as large as their sender
/// made them, and a fast chain takes them whole.
pub(crate) const MAX_INPUT_CHUNK: usize = 1 << 20;

/// Sizes the batches of one task by the time its chain takes per record.
pub(crate) struct BatchPacer {
    limit: usize,
    max: usize,
    back_pressured: Arc<TimeGauge>,
}

impl BatchPacer {
    /// A pacer whose batches hold at most `max` records; time spent blocked on full output
    /// channels (`back_pressured`) is not held against the chain.
    pub(crate) fn new(max: usize, back_pressured: Arc<TimeGauge>) -> Self {
        BatchPacer {
            limit: 1,
            max: max.max(1),
            back_pressured,
        }
    }

    /// Records the next batch should hold at most.
    #[inline]
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Runs `f`, which hands `records` records down the chain, and adapts the limit to the
    /// time it took.
    #[inline]
    pub(crate) fn timed<R>(&mut self, records: usize, f: impl FnOnce() -> R) -> R {
        let blocked = self.back_pressured.total();
        let start = Instant::now();
        let result = f();
        let busy = start
            .elapsed()
            .saturating_sub(self.back_pressured.total().saturating_sub(blocked));
        self.observe(records, busy);
        result
    }

    fn observe(&mut self, records: usize, busy: Duration) {
        if records == 0 {
            return;
        }
        if busy > BATCH_TIME {
            let per_record = (busy.as_nanos() / records as u128).max(1);
            self.limit = ((BATCH_TIME.as_nanos() / per_record) as usize).clamp(1, self.max);
        } else if records >= self.limit && busy < BATCH_TIME / 2 {
            self.limit = self.limit.saturating_mul(2).min(self.max);
        }
    }
}

/// The next `n` records of `rest`.
pub(crate) fn next_chunk<T>(rest: &mut VecDeque<T>, n: usize) -> Vec<T> {
    rest.drain(..n.min(rest.len())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(max: usize) -> BatchPacer {
        BatchPacer::new(max, Arc::new(TimeGauge::default()))
    }

    #[test]
    fn a_fast_chain_grows_to_full_batches() {
        let mut p = pacer(1024);
        for _ in 0..20 {
            let n = p.limit();
            p.observe(n, Duration::from_micros(10));
        }
        assert_eq!(p.limit(), 1024);
    }

    #[test]
    fn a_slow_chain_gets_batches_that_fit_the_target() {
        let mut p = pacer(1024);
        p.limit = 1024;
        // 5 ms per record: one record per batch.
        p.observe(1024, Duration::from_millis(5 * 1024));
        assert_eq!(p.limit(), 1);
        // 10 µs per record: 100 records per millisecond.
        let mut p = pacer(1024);
        p.limit = 1024;
        p.observe(1024, Duration::from_micros(10 * 1024));
        assert_eq!(p.limit(), 100);
    }

    #[test]
    fn a_batch_smaller_than_the_limit_does_not_grow_it() {
        let mut p = pacer(1024);
        p.limit = 8;
        p.observe(3, Duration::from_micros(1));
        assert_eq!(p.limit(), 8);
    }

    #[test]
    fn time_blocked_on_back_pressure_does_not_count() {
        let gauge = Arc::new(TimeGauge::default());
        let mut p = BatchPacer::new(1024, gauge.clone());
        p.limit = 64;
        p.timed(64, || {
            let start = Instant::now();
            std::thread::sleep(Duration::from_millis(20));
            gauge.add(start.elapsed());
        });
        assert_eq!(p.limit(), 128);
    }
}
