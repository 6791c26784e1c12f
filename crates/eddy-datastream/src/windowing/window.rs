//! Windows: [`TimeWindow`] and [`GlobalWindow`].

use std::fmt::Debug;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A window: a group of elements that is evaluated together.
pub trait Window:
    Clone + Debug + PartialEq + Eq + Hash + Ord + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The largest timestamp that still belongs to the window.
    fn max_timestamp(&self) -> i64;

    /// Appends the window's encoding, used as the namespace of its state.
    fn encode(&self, buf: &mut Vec<u8>);
}

/// A window of time `[start, end)`, in ms (Flink's `TimeWindow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First timestamp in the window.
    pub start: i64,
    /// First timestamp after the window.
    pub end: i64,
}

impl TimeWindow {
    /// The window `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        TimeWindow { start, end }
    }

    /// Whether the windows overlap or touch (Flink merges touching session windows).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// The start of the window of `size` (shifted by `offset`) that contains `timestamp`
    /// (Flink's `getWindowStartWithOffset`, correct for negative timestamps too).
    pub fn window_start_with_offset(timestamp: i64, offset: i64, size: i64) -> i64 {
        let remainder = (timestamp - offset) % size;
        if remainder < 0 {
            timestamp - (remainder + size)
        } else {
            timestamp - remainder
        }
    }

    /// Groups overlapping windows: every group of more than one window, with the window that
    /// covers it (Flink's `TimeWindow.mergeWindows`).
    pub fn merge_windows(windows: &[TimeWindow]) -> Vec<(Vec<TimeWindow>, TimeWindow)> {
        let mut sorted: Vec<TimeWindow> = windows.to_vec();
        sorted.sort_by_key(|w| w.start);
        let mut groups: Vec<(TimeWindow, Vec<TimeWindow>)> = Vec::new();
        for w in sorted {
            match groups.last_mut() {
                Some((cover, members)) if cover.intersects(&w) => {
                    *cover = cover.cover(&w);
                    members.push(w);
                }
                _ => groups.push((w, vec![w])),
            }
        }
        groups
            .into_iter()
            .filter(|(_, members)| members.len() > 1)
            .map(|(cover, members)| (members, cover))
            .collect()
    }
}

impl Window for TimeWindow {
    fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.start.to_be_bytes());
        buf.extend_from_slice(&self.end.to_be_bytes());
    }
}

/// The one window that holds every element of a key (Flink's `GlobalWindow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GlobalWindow;

impl Window for GlobalWindow {
    fn max_timestamp(&self) -> i64 {
        i64::MAX
    }

    fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_like_flink() {
        assert_eq!(TimeWindow::window_start_with_offset(7, 0, 5), 5);
        assert_eq!(TimeWindow::window_start_with_offset(5, 0, 5), 5);
        assert_eq!(TimeWindow::window_start_with_offset(-1, 0, 5), -5);
        assert_eq!(TimeWindow::window_start_with_offset(7, 2, 5), 7);
        assert_eq!(TimeWindow::window_start_with_offset(6, 2, 5), 2);
    }

    #[test]
    fn touching_windows_merge() {
        let groups = TimeWindow::merge_windows(&[
            TimeWindow::new(10, 20),
            TimeWindow::new(0, 10),
            TimeWindow::new(30, 40),
            TimeWindow::new(15, 25),
        ]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].1, TimeWindow::new(0, 25));
        assert_eq!(groups[0].0.len(), 3);
    }
}
