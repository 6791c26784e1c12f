//! A sink that hands records back to the program (Flink's `collectAsync` / `executeAndCollect`).
//!
//! The records are kept in memory in this process, so this sink is for tests, examples and
//! small results. With checkpoints it is exactly-once: records reach the handle when the
//! checkpoint after them completes, and a batch committed again after a failure is recognised
//! and skipped. Without checkpoints they reach it at once.

use std::collections::HashSet;
use std::sync::Arc;

use eddy_core::element::StreamRecord;
use eddy_runtime::Result;
use eddy_runtime::sink::{
    Committer, CommittingSinkWriter, SinkWriter, SinkWriterContext, TwoPhaseCommittingSink,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

struct Collected<T> {
    records: Vec<T>,
    /// Batches already committed.
    committed: HashSet<String>,
}

/// Where the collected records end up; clone it to read them after the job.
pub struct CollectHandle<T> {
    inner: Arc<Mutex<Collected<T>>>,
}

impl<T> Clone for CollectHandle<T> {
    fn clone(&self) -> Self {
        CollectHandle {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for CollectHandle<T> {
    fn default() -> Self {
        CollectHandle {
            inner: Arc::new(Mutex::new(Collected {
                records: Vec::new(),
                committed: HashSet::new(),
            })),
        }
    }
}

impl<T> CollectHandle<T> {
    /// Takes every record collected so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut self.inner.lock().records)
    }

    /// Number of records collected so far.
    pub fn len(&self) -> usize {
        self.inner.lock().records.len()
    }

    /// Whether nothing was collected yet.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().records.is_empty()
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

/// A batch of records pre-committed at a checkpoint: a unique id, and the records.
pub type CollectBatch<T> = (String, Vec<T>);

impl<T> TwoPhaseCommittingSink<T> for CollectSink<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    type Writer = CollectWriter<T>;
    type Committer = CollectCommitter<T>;

    fn create_writer(
        &self,
        ctx: &SinkWriterContext,
        _restored: &[CollectBatch<T>],
    ) -> Result<CollectWriter<T>> {
        Ok(CollectWriter {
            handle: self.handle.clone(),
            buffered: ctx.checkpointing.then(Vec::new),
        })
    }

    fn create_committer(&self, _ctx: &SinkWriterContext) -> Result<CollectCommitter<T>> {
        Ok(CollectCommitter {
            handle: self.handle.clone(),
        })
    }
}

/// The writer of a [`CollectSink`].
pub struct CollectWriter<T> {
    handle: CollectHandle<T>,
    /// Records waiting for the next checkpoint; `None` without checkpoints.
    buffered: Option<Vec<T>>,
}

impl<T> SinkWriter<T> for CollectWriter<T> {
    fn write(&mut self, value: T, _timestamp: Option<i64>) -> Result<()> {
        match &mut self.buffered {
            Some(b) => b.push(value),
            None => self.handle.inner.lock().records.push(value),
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: Vec<StreamRecord<T>>) -> Result<()> {
        let values = batch.into_iter().map(|r| r.value);
        match &mut self.buffered {
            Some(b) => b.extend(values),
            None => self.handle.inner.lock().records.extend(values),
        }
        Ok(())
    }

    fn flush(&mut self, _end_of_input: bool) -> Result<()> {
        Ok(())
    }
}

impl<T: Serialize + DeserializeOwned + Clone + Send + 'static> CommittingSinkWriter<T>
    for CollectWriter<T>
{
    type Committable = CollectBatch<T>;

    fn prepare_commit(&mut self) -> Result<Vec<CollectBatch<T>>> {
        match &mut self.buffered {
            Some(b) if !b.is_empty() => Ok(vec![(
                uuid::Uuid::new_v4().simple().to_string(),
                std::mem::take(b),
            )]),
            _ => Ok(Vec::new()),
        }
    }
}

/// Hands committed batches to the [`CollectHandle`], each once.
pub struct CollectCommitter<T> {
    handle: CollectHandle<T>,
}

impl<T> Committer<CollectBatch<T>> for CollectCommitter<T> {
    fn commit(&mut self, batches: Vec<CollectBatch<T>>) -> Result<()> {
        let mut inner = self.handle.inner.lock();
        for (id, records) in batches {
            if inner.committed.insert(id) {
                inner.records.extend(records);
            }
        }
        Ok(())
    }
}
