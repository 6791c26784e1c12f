//! A sink that hands records back to the program (Flink's `collectAsync` / `executeAndCollect`).
//!
//! The records are kept in memory in this process, so this sink is for tests, examples and
//! small results.

use std::sync::Arc;

use eddy_core::element::StreamRecord;
use eddy_runtime::Result;
use eddy_runtime::sink::{Sink, SinkWriter, SinkWriterContext};
use parking_lot::Mutex;

/// Where the collected records end up; clone it to read them after the job.
pub struct CollectHandle<T> {
    records: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectHandle<T> {
    fn clone(&self) -> Self {
        CollectHandle {
            records: self.records.clone(),
        }
    }
}

impl<T> Default for CollectHandle<T> {
    fn default() -> Self {
        CollectHandle {
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T> CollectHandle<T> {
    /// Takes every record collected so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.records.lock())
    }

    /// Number of records collected so far.
    pub fn len(&self) -> usize {
        self.records.lock().len()
    }

    /// Whether nothing was collected yet.
    pub fn is_empty(&self) -> bool {
        self.records.lock().is_empty()
    }
}

/// Collects every record into a [`CollectHandle`].
pub struct CollectSink<T> {
    handle: CollectHandle<T>,
}

impl<T> CollectSink<T> {
    /// A sink and the handle to read its records.
    pub fn new() -> (Self, CollectHandle<T>) {
        let handle = CollectHandle::default();
        (
            CollectSink {
                handle: handle.clone(),
            },
            handle,
        )
    }
}

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    type Writer = CollectWriter<T>;

    fn create_writer(&self, _ctx: &SinkWriterContext) -> Result<CollectWriter<T>> {
        Ok(CollectWriter {
            handle: self.handle.clone(),
        })
    }
}

/// The writer of a [`CollectSink`].
pub struct CollectWriter<T> {
    handle: CollectHandle<T>,
}

impl<T> SinkWriter<T> for CollectWriter<T> {
    fn write(&mut self, value: T, _timestamp: Option<i64>) -> Result<()> {
        self.handle.records.lock().push(value);
        Ok(())
    }

    fn write_batch(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()> {
        self.handle
            .records
            .lock()
            .extend(batch.into_iter().map(|r| r.value));
        Ok(())
    }

    fn flush(&mut self, _end_of_input: bool) -> Result<()> {
        Ok(())
    }
}
