//! Timers of keyed operators: event-time and processing-time timers per (key, namespace,
//! timestamp), deduplicated, fired in timestamp order (Flink's `InternalTimerService`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use std::hash::Hash;

use std::cell::RefCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::backend::{KeyedParticipant, KeyedStateBackend, RawStateEntries};
use super::snapshot::GroupSink;
use crate::checkpoint::metadata::KeyedStateKind;
use crate::error::{Result, RuntimeError};
use crate::operator::ProcessingTimeService;

/// One registered timer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timer<N> {
    /// When it fires, in ms.
    pub timestamp: i64,
    /// The key's group.
    pub key_group: u32,
    /// The key, length-prefixed as the backend stores it.
    pub key: super::KeyBytes,
    /// The namespace (a window, or `()`).
    pub namespace: N,
}

/// A heap entry: ordered by time, then by registration order, so that heap operations compare
/// integers only (many timers share one timestamp: every key's window ends at the same time).
#[derive(Debug)]
struct Entry<N> {
    timestamp: i64,
    seq: u64,
    timer: Timer<N>,
}

impl<N> PartialEq for Entry<N> {
    fn eq(&self, other: &Self) -> bool {
        (self.timestamp, self.seq) == (other.timestamp, other.seq)
    }
}

impl<N> Eq for Entry<N> {}

impl<N> PartialOrd for Entry<N> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<N> Ord for Entry<N> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.timestamp, self.seq).cmp(&(other.timestamp, other.seq))
    }
}

/// Timers ordered by time, with deletion and deduplication: a heap of registrations plus a set
/// of the live ones (Flink's `HeapPriorityQueueSet`).
#[derive(Debug)]
pub struct TimerQueue<N: Ord + Hash> {
    heap: BinaryHeap<Reverse<Entry<N>>>,
    /// Live timers, with the sequence number of their heap entry.
    live: HashMap<Timer<N>, u64, FixedState>,
    next_seq: u64,
}

impl<N: Ord + Hash + Clone> Default for TimerQueue<N> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            live: HashMap::default(),
            next_seq: 0,
        }
    }
}

impl<N: Ord + Hash + Clone> TimerQueue<N> {
    /// Adds a timer; returns false if the same timer was already registered.
    pub fn register(&mut self, timer: Timer<N>) -> bool {
        if self.live.contains_key(&timer) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry {
            timestamp: timer.timestamp,
            seq,
            timer: timer.clone(),
        }));
        self.live.insert(timer, seq);
        true
    }

    /// Removes a timer, if registered.
    pub fn delete(&mut self, timer: &Timer<N>) {
        self.live.remove(timer);
    }

    fn skip_deleted(&mut self) {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.live.get(&top.timer) == Some(&top.seq) {
                break;
            }
            self.heap.pop();
        }
    }

    /// The earliest registered timestamp.
    pub fn next_timestamp(&mut self) -> Option<i64> {
        self.skip_deleted();
        self.heap.peek().map(|Reverse(e)| e.timestamp)
    }

    /// Removes and returns the earliest timer if it is due at `time`.
    pub fn poll(&mut self, time: i64) -> Option<Timer<N>> {
        self.skip_deleted();
        match self.heap.peek() {
            Some(Reverse(e)) if e.timestamp <= time => {
                let Reverse(e) = self.heap.pop()?;
                self.live.remove(&e.timer);
                Some(e.timer)
            }
            _ => None,
        }
    }

    /// Number of registered timers.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Every registered timer, in firing order.
    pub fn timers(&self) -> Vec<Timer<N>> {
        let mut all: Vec<(u64, &Timer<N>)> = self.live.iter().map(|(t, s)| (*s, t)).collect();
        all.sort_by_key(|(seq, t)| (t.timestamp, *seq));
        all.into_iter().map(|(_, t)| t.clone()).collect()
    }
}

/// The timers and event time of one keyed operator: what its timer service snapshots.
struct TimerState<N: Ord + Hash> {
    event: TimerQueue<N>,
    processing: TimerQueue<N>,
    watermark: i64,
    range: eddy_core::keys::KeyGroupRange,
}

const EVENT: u8 = 0;
const PROCESSING: u8 = 1;
const WATERMARK: u8 = 2;

impl<N> KeyedParticipant for RefCell<TimerState<N>>
where
    N: Ord + Hash + Clone + Serialize + DeserializeOwned,
{
    fn kind(&self) -> KeyedStateKind {
        KeyedStateKind::Heap
    }

    fn snapshot_heap(&self, sink: &mut GroupSink) -> Result<()> {
        let state = self.borrow();
        let mut key = Vec::new();
        for (tag, queue) in [(EVENT, &state.event), (PROCESSING, &state.processing)] {
            for timer in queue.live.keys() {
                key.clear();
                postcard::to_io(&(tag, timer), &mut key)
                    .map_err(|e| RuntimeError::Serialization(e.to_string()))?;
                sink.put(timer.key_group, &key, &[])?;
            }
        }
        // Event time, per key group, so that it follows the key groups when rescaled.
        let wm = state.watermark.to_be_bytes();
        for kg in state.range.start..=state.range.end {
            sink.put(kg, &[WATERMARK], &wm)?;
        }
        Ok(())
    }

    fn restore_raw(&self, raw: RawStateEntries) -> Result<()> {
        let mut state = self.borrow_mut();
        let mut watermark: Option<i64> = None;
        for (_, key, value) in raw.iter() {
            match key.first() {
                Some(&WATERMARK) => {
                    let bytes: [u8; 8] = value.try_into().map_err(|_| {
                        RuntimeError::Serialization("corrupt restored watermark".into())
                    })?;
                    let w = i64::from_be_bytes(bytes);
                    watermark = Some(watermark.map_or(w, |m| m.min(w)));
                }
                _ => {
                    let (tag, timer): (u8, Timer<N>) = postcard::from_bytes(key).map_err(|e| {
                        RuntimeError::Serialization(format!("corrupt restored timer: {e}"))
                    })?;
                    if tag == PROCESSING {
                        state.processing.register(timer);
                    } else {
                        state.event.register(timer);
                    }
                }
            }
        }
        if let Some(w) = watermark {
            state.watermark = state.watermark.max(w);
        }
        Ok(())
    }
}

/// The timer service of one keyed operator, for namespace type `N`.
pub struct InternalTimerService<N: Ord + Hash> {
    backend: KeyedStateBackend,
    state: Rc<RefCell<TimerState<N>>>,
    task_timers: ProcessingTimeService,
    scheduled: Option<i64>,
}

impl<N> InternalTimerService<N>
where
    N: Ord + Hash + Clone + Serialize + DeserializeOwned + 'static,
{
    /// A timer service over `backend`'s current key; processing-time timers wake the task
    /// through `task_timers`. Its timers and event time are part of the backend's snapshots
    /// under `name`, and are restored from them.
    pub fn create(
        backend: KeyedStateBackend,
        task_timers: ProcessingTimeService,
        name: &str,
    ) -> Result<Self> {
        let state = Rc::new(RefCell::new(TimerState {
            event: TimerQueue::default(),
            processing: TimerQueue::default(),
            watermark: i64::MIN,
            range: backend.key_group_range(),
        }));
        backend.register_participant(&format!("_timers/{name}"), state.clone())?;
        let mut service = InternalTimerService {
            backend,
            state,
            task_timers,
            scheduled: None,
        };
        service.reschedule_processing();
        Ok(service)
    }
}

impl<N: Ord + Hash + Clone> InternalTimerService<N> {
    fn timer(&self, namespace: N, timestamp: i64) -> Timer<N> {
        Timer {
            timestamp,
            key_group: self.backend.current_key_group(),
            key: super::KeyBytes::new(&self.backend.current_key_bytes()),
            namespace,
        }
    }

    /// The operator's current event time.
    pub fn current_watermark(&self) -> i64 {
        self.state.borrow().watermark
    }

    /// The wall clock, in ms.
    pub fn current_processing_time(&self) -> i64 {
        self.task_timers.current_processing_time()
    }

    /// Registers an event-time timer for the current key.
    pub fn register_event_time_timer(&mut self, namespace: N, timestamp: i64) {
        let t = self.timer(namespace, timestamp);
        self.state.borrow_mut().event.register(t);
    }

    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, namespace: N, timestamp: i64) {
        let t = self.timer(namespace, timestamp);
        self.state.borrow_mut().event.delete(&t);
    }

    /// Registers a processing-time timer for the current key.
    pub fn register_processing_time_timer(&mut self, namespace: N, timestamp: i64) {
        let t = self.timer(namespace, timestamp);
        if self.state.borrow_mut().processing.register(t)
            && self.scheduled.is_none_or(|s| timestamp < s)
        {
            self.task_timers.register_timer(timestamp);
            self.scheduled = Some(timestamp);
        }
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, namespace: N, timestamp: i64) {
        let t = self.timer(namespace, timestamp);
        self.state.borrow_mut().processing.delete(&t);
    }

    /// Moves event time forward; due timers are then taken with [`Self::poll_event_timer`].
    pub fn advance_watermark(&mut self, watermark: i64) {
        let mut s = self.state.borrow_mut();
        s.watermark = s.watermark.max(watermark);
    }

    /// The next event-time timer due at the current watermark, with its key made current.
    pub fn poll_event_timer(&mut self) -> Option<Timer<N>> {
        let t = {
            let mut s = self.state.borrow_mut();
            let wm = s.watermark;
            s.event.poll(wm)?
        };
        self.backend.set_current_key_bytes(&t.key, t.key_group);
        Some(t)
    }

    /// The next processing-time timer due at `now`, with its key made current.
    pub fn poll_processing_timer(&mut self, now: i64) -> Option<Timer<N>> {
        let t = self.state.borrow_mut().processing.poll(now)?;
        self.backend.set_current_key_bytes(&t.key, t.key_group);
        Some(t)
    }

    /// After processing-time timers fired: asks the task to wake for the next one.
    pub fn reschedule_processing(&mut self) {
        self.scheduled = self.state.borrow_mut().processing.next_timestamp();
        if let Some(next) = self.scheduled {
            self.task_timers.register_timer(next);
        }
    }

    /// Number of event-time and processing-time timers.
    pub fn num_timers(&self) -> (usize, usize) {
        let s = self.state.borrow();
        (s.event.len(), s.processing.len())
    }

    /// Every registered timer: event-time, then processing-time.
    pub fn timers(&self) -> (Vec<Timer<N>>, Vec<Timer<N>>) {
        let s = self.state.borrow();
        (s.event.timers(), s.processing.timers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::keys::KeyGroupRange;

    #[test]
    fn timers_fire_in_order_once_and_deleted_ones_never() {
        let backend = KeyedStateBackend::new(KeyGroupRange::new(0, 127), 128);
        let mut svc = InternalTimerService::<()>::create(
            backend.clone(),
            ProcessingTimeService::default(),
            "t",
        )
        .unwrap();
        for (key, ts) in [
            ("a", 30),
            ("b", 10),
            ("a", 10),
            ("a", 30),
            ("c", 20),
            ("b", 10),
        ] {
            backend.set_current_key(key).unwrap();
            svc.register_event_time_timer((), ts);
        }
        backend.set_current_key("c").unwrap();
        svc.delete_event_time_timer((), 20);
        assert_eq!(svc.num_timers().0, 3, "duplicates are registered once");
        svc.advance_watermark(25);
        let mut fired = Vec::new();
        while let Some(t) = svc.poll_event_timer() {
            fired.push((backend.current_key::<String>().unwrap(), t.timestamp));
        }
        fired.sort();
        assert_eq!(fired, vec![("a".into(), 10), ("b".into(), 10)]);
        svc.advance_watermark(i64::MAX);
        let t = svc.poll_event_timer().unwrap();
        assert_eq!(
            (backend.current_key::<String>().unwrap(), t.timestamp),
            ("a".into(), 30)
        );
        assert!(svc.poll_event_timer().is_none());
    }
}
