//! Evictors: remove elements from a window before or after it is evaluated (Flink's
//! `Evictor`s). A window with an evictor keeps every element.

use eddy_core::element::{NO_TIMESTAMP, StreamRecord};

use super::triggers::DeltaFunction;
use super::window::Window;

/// Removes elements from a firing window.
pub trait Evictor<T, W: Window>: Send + Sync + 'static {
    /// Before the window function runs.
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, window: &W);
    /// After the window function ran.
    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, window: &W);
}

/// Keeps at most `max_count` elements, the latest ones (Flink's `CountEvictor`).
#[derive(Clone, Copy, Debug)]
pub struct CountEvictor {
    max_count: usize,
    after: bool,
}

impl CountEvictor {
    /// Evicts before the window function.
    pub fn of(max_count: usize) -> Self {
        CountEvictor {
            max_count,
            after: false,
        }
    }

    /// Evicts after the window function when `do_evict_after`.
    pub fn of_after(max_count: usize, do_evict_after: bool) -> Self {
        CountEvictor {
            max_count,
            after: do_evict_after,
        }
    }

    fn evict<T>(&self, elements: &mut Vec<StreamRecord<T>>) {
        if elements.len() > self.max_count {
            let excess = elements.len() - self.max_count;
            elements.drain(..excess);
        }
    }
}

impl<T, W: Window> Evictor<T, W> for CountEvictor {
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, _: &W) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, _: &W) {
        if self.after {
            self.evict(elements);
        }
    }
}

/// Keeps the elements within `window_size` of the newest element (Flink's `TimeEvictor`).
#[derive(Clone, Copy, Debug)]
pub struct TimeEvictor {
    window_size: i64,
    after: bool,
}

impl TimeEvictor {
    /// Evicts before the window function.
    pub fn of(window_size: std::time::Duration) -> Self {
        TimeEvictor {
            window_size: window_size.as_millis() as i64,
            after: false,
        }
    }

    /// Evicts after the window function when `do_evict_after`.
    pub fn of_after(window_size: std::time::Duration, do_evict_after: bool) -> Self {
        TimeEvictor {
            window_size: window_size.as_millis() as i64,
            after: do_evict_after,
        }
    }

    fn evict<T>(&self, elements: &mut Vec<StreamRecord<T>>) {
        // As Flink: nothing to do unless elements carry timestamps.
        if elements.first().is_none_or(|e| e.timestamp == NO_TIMESTAMP) {
            return;
        }
        let newest = elements
            .iter()
            .map(|e| e.timestamp)
            .max()
            .unwrap_or(i64::MIN);
        let cutoff = newest - self.window_size;
        elements.retain(|e| e.timestamp > cutoff);
    }
}

impl<T, W: Window> Evictor<T, W> for TimeEvictor {
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, _: &W) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, _: &W) {
        if self.after {
            self.evict(elements);
        }
    }
}

/// Evicts elements whose delta to the last element is at least a threshold (Flink's
/// `DeltaEvictor`).
pub struct DeltaEvictor<T> {
    threshold: f64,
    delta: DeltaFunction<T>,
    after: bool,
}

impl<T> DeltaEvictor<T> {
    /// Evicts before the window function.
    pub fn of(threshold: f64, delta: impl Fn(&T, &T) -> f64 + Send + Sync + 'static) -> Self {
        DeltaEvictor {
            threshold,
            delta: std::sync::Arc::new(delta),
            after: false,
        }
    }

    /// Evicts after the window function instead.
    pub fn evicting_after(mut self) -> Self {
        self.after = true;
        self
    }

    fn evict(&self, elements: &mut Vec<StreamRecord<T>>) {
        let n = elements.len();
        if n == 0 {
            return;
        }
        let keep: Vec<bool> = (0..n)
            .map(|i| (self.delta)(&elements[i].value, &elements[n - 1].value) < self.threshold)
            .collect();
        let mut i = 0;
        elements.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
    }
}

impl<T: 'static, W: Window> Evictor<T, W> for DeltaEvictor<T> {
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, _: &W) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, _: &W) {
        if self.after {
            self.evict(elements);
        }
    }
}
