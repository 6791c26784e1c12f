//! Accumulators: values that user functions add to on every subtask, merged when the job ends
//! and returned in the job's result (Flink's `IntCounter`/`LongCounter`, `DoubleCounter`,
//! `Histogram` and `ListAccumulator`).
//!
//! A function asks its runtime context for a typed handle once (in `open`) and updates it per
//! record; an update is an atomic add, or a short lock for histograms and lists.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// An accumulator's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AccumulatorValue {
    /// A sum of integers (Flink's `IntCounter` / `LongCounter`).
    Long(i64),
    /// A sum of floats (Flink's `DoubleCounter`).
    Double(f64),
    /// Counts per integer value (Flink's `Histogram` accumulator).
    Histogram(BTreeMap<i64, u64>),
    /// All values added, in no particular order across subtasks (Flink's `ListAccumulator`).
    List(Vec<serde_json::Value>),
}

impl AccumulatorValue {
    fn kind(&self) -> &'static str {
        match self {
            AccumulatorValue::Long(_) => "long counter",
            AccumulatorValue::Double(_) => "double counter",
            AccumulatorValue::Histogram(_) => "histogram",
            AccumulatorValue::List(_) => "list",
        }
    }

    /// Merges `other` into `self`; both must be of the same kind.
    pub fn merge(&mut self, name: &str, other: &AccumulatorValue) -> Result<()> {
        match (self, other) {
            (AccumulatorValue::Long(a), AccumulatorValue::Long(b)) => *a += b,
            (AccumulatorValue::Double(a), AccumulatorValue::Double(b)) => *a += b,
            (AccumulatorValue::Histogram(a), AccumulatorValue::Histogram(b)) => {
                for (k, v) in b {
                    *a.entry(*k).or_default() += v;
                }
            }
            (AccumulatorValue::List(a), AccumulatorValue::List(b)) => a.extend(b.iter().cloned()),
            (a, b) => {
                return Err(RuntimeError::user(format!(
                    "accumulator '{name}' is used as a {} and as a {}",
                    a.kind(),
                    b.kind()
                )));
            }
        }
        Ok(())
    }

    /// The value as an integer, if it is a long counter.
    pub fn as_long(&self) -> Option<i64> {
        match self {
            AccumulatorValue::Long(v) => Some(*v),
            _ => None,
        }
    }
}

/// A sum of integers.
#[derive(Clone, Debug, Default)]
pub struct LongCounter(Arc<AtomicI64>);

impl LongCounter {
    /// Adds `v`.
    #[inline]
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }

    /// The local (this subtask's) value.
    pub fn local_value(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A sum of floats.
#[derive(Clone, Debug, Default)]
pub struct DoubleCounter(Arc<AtomicU64>);

impl DoubleCounter {
    /// Adds `v`.
    pub fn add(&self, v: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// The local value.
    pub fn local_value(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Counts of integer values.
#[derive(Clone, Debug, Default)]
pub struct HistogramAccumulator(Arc<Mutex<BTreeMap<i64, u64>>>);

impl HistogramAccumulator {
    /// Counts one occurrence of `v`.
    pub fn add(&self, v: i64) {
        *self.0.lock().entry(v).or_default() += 1;
    }
}

/// A list of values.
#[derive(Clone, Debug, Default)]
pub struct ListAccumulator(Arc<Mutex<Vec<serde_json::Value>>>);

impl ListAccumulator {
    /// Appends `v`.
    pub fn add(&self, v: serde_json::Value) {
        self.0.lock().push(v);
    }
}

#[derive(Clone, Debug)]
enum Handle {
    Long(LongCounter),
    Double(DoubleCounter),
    Histogram(HistogramAccumulator),
    List(ListAccumulator),
}

impl Handle {
    fn kind(&self) -> &'static str {
        match self {
            Handle::Long(_) => "long counter",
            Handle::Double(_) => "double counter",
            Handle::Histogram(_) => "histogram",
            Handle::List(_) => "list",
        }
    }

    fn value(&self) -> AccumulatorValue {
        match self {
            Handle::Long(c) => AccumulatorValue::Long(c.local_value()),
            Handle::Double(c) => AccumulatorValue::Double(c.local_value()),
            Handle::Histogram(h) => AccumulatorValue::Histogram(h.0.lock().clone()),
            Handle::List(l) => AccumulatorValue::List(l.0.lock().clone()),
        }
    }
}

/// The accumulators of one subtask, shared by all its operators; also used by the job master to
/// merge the final values of all subtasks.
#[derive(Clone, Debug, Default)]
pub struct Accumulators {
    handles: Arc<Mutex<BTreeMap<String, Handle>>>,
    merged: Arc<Mutex<BTreeMap<String, AccumulatorValue>>>,
}

macro_rules! accessor {
    ($(#[$doc:meta])* $fn:ident, $variant:ident, $ty:ident) => {
        $(#[$doc])*
        pub fn $fn(&self, name: &str) -> Result<$ty> {
            let mut handles = self.handles.lock();
            match handles.get(name) {
                Some(Handle::$variant(h)) => Ok(h.clone()),
                Some(other) => Err(RuntimeError::user(format!(
                    "accumulator '{name}' is already a {}",
                    other.kind()
                ))),
                None => {
                    let h = $ty::default();
                    handles.insert(name.to_string(), Handle::$variant(h.clone()));
                    Ok(h)
                }
            }
        }
    };
}

impl Accumulators {
    accessor!(
        /// The long counter named `name`, created on first use.
        long_counter, Long, LongCounter
    );
    accessor!(
        /// The double counter named `name`, created on first use.
        double_counter, Double, DoubleCounter
    );
    accessor!(
        /// The histogram named `name`, created on first use.
        histogram, Histogram, HistogramAccumulator
    );
    accessor!(
        /// The list accumulator named `name`, created on first use.
        list, List, ListAccumulator
    );

    /// Every accumulator's value: this subtask's handles merged with whatever was merged in.
    pub fn snapshot(&self) -> BTreeMap<String, AccumulatorValue> {
        let mut out = self.merged.lock().clone();
        for (name, h) in self.handles.lock().iter() {
            let v = h.value();
            match out.get_mut(name) {
                Some(existing) => {
                    // Kinds were checked when merging; a mismatch here cannot happen.
                    let _ = existing.merge(name, &v);
                }
                None => {
                    out.insert(name.clone(), v);
                }
            }
        }
        out
    }

    /// Merges another subtask's final values into these.
    pub fn merge_all(&self, other: &BTreeMap<String, AccumulatorValue>) -> Result<()> {
        let mut merged = self.merged.lock();
        for (k, v) in other {
            match merged.get_mut(k) {
                Some(existing) => existing.merge(k, v)?,
                None => {
                    merged.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_across_subtasks() {
        let a = Accumulators::default();
        let b = Accumulators::default();
        a.long_counter("lines").unwrap().add(3);
        b.long_counter("lines").unwrap().add(4);
        a.histogram("len").unwrap().add(2);
        b.histogram("len").unwrap().add(2);
        b.double_counter("sum").unwrap().add(0.5);
        let job = Accumulators::default();
        job.merge_all(&a.snapshot()).unwrap();
        job.merge_all(&b.snapshot()).unwrap();
        let s = job.snapshot();
        assert_eq!(s["lines"], AccumulatorValue::Long(7));
        assert_eq!(
            s["len"],
            AccumulatorValue::Histogram(BTreeMap::from([(2, 2)]))
        );
        assert_eq!(s["sum"], AccumulatorValue::Double(0.5));
        let err = a.double_counter("lines").unwrap_err().to_string();
        assert!(err.contains("'lines'"), "{err}");
        let mut bad = BTreeMap::new();
        bad.insert("lines".to_string(), AccumulatorValue::Double(1.0));
        assert!(job.merge_all(&bad).is_err());
    }
}
