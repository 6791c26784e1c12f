//! [`KeyedStream`]: a stream partitioned by key, with per-key aggregations.

use std::ops::Add;
use std::sync::Arc;

use crate::datastream::DataStream;
use crate::operators::{KeySelector, KeyedReduceOperator};
use crate::{Data, Key};

/// A stream partitioned by key (Flink's `KeyedStream`). Records with the same key are processed
/// by the same subtask, which keeps state per key.
///
/// The aggregations are *rolling*: in STREAMING mode each input record emits its key's updated
/// result; in BATCH mode only the final result per key is emitted.
pub struct KeyedStream<T, K> {
    pub(crate) stream: DataStream<T>,
    pub(crate) key_selector: KeySelector<T, K>,
}

/// `sum` as a reduce function over a field accessor.
pub(crate) fn sum_reducer<T, N: Add<Output = N> + Copy>(
    field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
) -> impl Fn(T, T) -> T + Send + Sync + 'static {
    move |mut acc, mut v| {
        let add = *field(&mut v);
        let slot = field(&mut acc);
        *slot = *slot + add;
        acc
    }
}

/// `min` as a reduce function: the field's minimum, other fields from the first record.
pub(crate) fn min_reducer<T, N: PartialOrd + Copy>(
    field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
) -> impl Fn(T, T) -> T + Send + Sync + 'static {
    move |mut acc, mut v| {
        let candidate = *field(&mut v);
        let slot = field(&mut acc);
        if candidate < *slot {
            *slot = candidate;
        }
        acc
    }
}

/// `max` as a reduce function.
pub(crate) fn max_reducer<T, N: PartialOrd + Copy>(
    field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
) -> impl Fn(T, T) -> T + Send + Sync + 'static {
    move |mut acc, mut v| {
        let candidate = *field(&mut v);
        let slot = field(&mut acc);
        if candidate > *slot {
            *slot = candidate;
        }
        acc
    }
}

impl<T: Data, K: Key> KeyedStream<T, K> {
    pub(crate) fn new(stream: DataStream<T>, key_selector: KeySelector<T, K>) -> Self {
        KeyedStream {
            stream,
            key_selector,
        }
    }

    /// One output record per input record, after the exchange by key (Flink's
    /// `keyBy(...).map(...)`). The result is not keyed.
    pub fn map<U: Data>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> DataStream<U> {
        self.stream.map(f)
    }

    /// Any number of output records per input record, after the exchange by key.
    pub fn flat_map<U: Data>(
        self,
        f: impl Fn(T, &mut crate::Collector<'_, U>) + Send + Sync + 'static,
    ) -> DataStream<U> {
        self.stream.flat_map(f)
    }

    /// The records for which `f` holds, after the exchange by key.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> DataStream<T> {
        self.stream.filter(f)
    }

    /// The key selector.
    pub fn get_key_selector(&self) -> &KeySelector<T, K> {
        &self.key_selector
    }

    fn keyed_reduce(
        self,
        name: &str,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
    ) -> DataStream<T> {
        let selector = self.key_selector;
        let f = Arc::new(f);
        self.stream.transform(name, move || {
            KeyedReduceOperator::new(selector.clone(), f.clone())
        })
    }

    /// Combines each record with its key's previous result (Flink's `reduce`).
    pub fn reduce(self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> DataStream<T> {
        self.keyed_reduce("Keyed Reduce", f)
    }

    /// The running sum of a numeric field, per key. The other fields are those of the key's
    /// first record, as in Flink.
    ///
    /// The field is given by an accessor: `sum(|t: &mut (String, i64)| &mut t.1)`.
    pub fn sum<N>(
        self,
        field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
    ) -> DataStream<T>
    where
        N: Add<Output = N> + Copy,
    {
        self.keyed_reduce("Keyed Aggregation", sum_reducer(field))
    }

    /// The running minimum of a field, per key; the other fields are those of the key's first
    /// record (Flink's `min`; use [`min_by`](Self::min_by) for the whole minimal record).
    pub fn min<N>(
        self,
        field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
    ) -> DataStream<T>
    where
        N: PartialOrd + Copy,
    {
        self.keyed_reduce("Keyed Aggregation", min_reducer(field))
    }

    /// The running maximum of a field, per key (Flink's `max`).
    pub fn max<N>(
        self,
        field: impl for<'a> Fn(&'a mut T) -> &'a mut N + Send + Sync + 'static,
    ) -> DataStream<T>
    where
        N: PartialOrd + Copy,
    {
        self.keyed_reduce("Keyed Aggregation", max_reducer(field))
    }

    /// The record with the smallest field value so far, per key; on ties the earlier record
    /// (Flink's `minBy`).
    pub fn min_by<N: PartialOrd>(
        self,
        field: impl Fn(&T) -> N + Send + Sync + 'static,
    ) -> DataStream<T> {
        self.keyed_reduce("Keyed Aggregation", move |acc, v| {
            if field(&v) < field(&acc) { v } else { acc }
        })
    }

    /// The record with the largest field value so far, per key; on ties the earlier record
    /// (Flink's `maxBy`).
    pub fn max_by<N: PartialOrd>(
        self,
        field: impl Fn(&T) -> N + Send + Sync + 'static,
    ) -> DataStream<T> {
        self.keyed_reduce("Keyed Aggregation", move |acc, v| {
            if field(&v) > field(&acc) { v } else { acc }
        })
    }
}
