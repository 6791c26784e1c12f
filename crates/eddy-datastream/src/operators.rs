//! The operators behind the DataStream API's transformations.
//!
//! Each processes a whole batch in one call; closures are shared by all subtasks through an
//! `Arc`, rich functions are cloned per subtask.

use std::marker::PhantomData;
use std::sync::Arc;

use eddy_core::element::StreamRecord;
use eddy_core::graph::ExecutionMode;
use eddy_runtime::Result;
use eddy_runtime::operator::{OneInputOperator, OperatorContext, Output};
use eddy_runtime::state::{KeyedStateBackend, SharedStateTable};

use crate::functions::{
    Collector, FunctionResult, RichFilterFunction, RichFlatMapFunction, RichMapFunction,
    RuntimeContext, user_error,
};
use crate::{Data, Key};

/// `map` with a closure.
pub struct MapOperator<F>(pub Arc<F>);

impl<T, U, F: Fn(T) -> U> OneInputOperator<T, U> for MapOperator<F> {
    #[inline]
    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<U>,
    ) -> Result<()> {
        let f = &*self.0;
        out.collect(
            batch
                .into_iter()
                .map(|r| StreamRecord {
                    value: f(r.value),
                    timestamp: r.timestamp,
                })
                .collect(),
        )
    }
}

/// `try_map`: a closure that may fail the job with an error.
pub struct TryMapOperator<F>(pub Arc<F>);

impl<T, U, F: Fn(T) -> FunctionResult<U>> OneInputOperator<T, U> for TryMapOperator<F> {
    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<U>,
    ) -> Result<()> {
        let f = &*self.0;
        let mapped = batch
            .into_iter()
            .map(|r| {
                Ok(StreamRecord {
                    value: f(r.value).map_err(user_error)?,
                    timestamp: r.timestamp,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.collect(mapped)
    }
}

/// `filter` with a closure.
pub struct FilterOperator<F>(pub Arc<F>);

impl<T, F: Fn(&T) -> bool> OneInputOperator<T, T> for FilterOperator<F> {
    #[inline]
    fn process_batch(
        &mut self,
        mut batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<T>,
    ) -> Result<()> {
        let f = &*self.0;
        batch.retain(|r| f(&r.value));
        if batch.is_empty() {
            return Ok(());
        }
        out.collect(batch)
    }
}

/// `flat_map` with a closure.
pub struct FlatMapOperator<F, U> {
    f: Arc<F>,
    _u: PhantomData<fn() -> U>,
}

impl<F, U> FlatMapOperator<F, U> {
    /// Wraps the shared closure.
    pub fn new(f: Arc<F>) -> Self {
        FlatMapOperator { f, _u: PhantomData }
    }
}

impl<T, U, F> OneInputOperator<T, U> for FlatMapOperator<F, U>
where
    F: Fn(T, &mut Collector<'_, U>),
{
    #[inline]
    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<U>,
    ) -> Result<()> {
        let mut emitted = Vec::with_capacity(batch.len());
        for r in batch {
            let mut c = Collector {
                out: &mut emitted,
                timestamp: r.timestamp,
            };
            (self.f)(r.value, &mut c);
        }
        if emitted.is_empty() {
            return Ok(());
        }
        out.collect(emitted)
    }
}

/// `rich_map`.
pub struct RichMapOperator<R>(pub R);

impl<T, U, R: RichMapFunction<T, U>> OneInputOperator<T, U> for RichMapOperator<R> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.0.open(&RuntimeContext::new(ctx)).map_err(user_error)
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<U>,
    ) -> Result<()> {
        let mut mapped = Vec::with_capacity(batch.len());
        for r in batch {
            mapped.push(StreamRecord {
                value: self.0.map(r.value).map_err(user_error)?,
                timestamp: r.timestamp,
            });
        }
        out.collect(mapped)
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<()> {
        self.0.snapshot_state(checkpoint_id).map_err(user_error)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.0
            .notify_checkpoint_complete(checkpoint_id)
            .map_err(user_error)
    }

    fn close(&mut self) -> Result<()> {
        self.0.close().map_err(user_error)
    }
}

/// `rich_flat_map`.
pub struct RichFlatMapOperator<R, U> {
    f: R,
    _u: PhantomData<fn() -> U>,
}

impl<R, U> RichFlatMapOperator<R, U> {
    /// Wraps this subtask's clone of the function.
    pub fn new(f: R) -> Self {
        RichFlatMapOperator { f, _u: PhantomData }
    }
}

impl<T, U, R: RichFlatMapFunction<T, U>> OneInputOperator<T, U> for RichFlatMapOperator<R, U> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.f.open(&RuntimeContext::new(ctx)).map_err(user_error)
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<U>,
    ) -> Result<()> {
        let mut emitted = Vec::with_capacity(batch.len());
        for r in batch {
            let mut c = Collector {
                out: &mut emitted,
                timestamp: r.timestamp,
            };
            self.f.flat_map(r.value, &mut c).map_err(user_error)?;
        }
        if emitted.is_empty() {
            return Ok(());
        }
        out.collect(emitted)
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<()> {
        self.f.snapshot_state(checkpoint_id).map_err(user_error)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.f
            .notify_checkpoint_complete(checkpoint_id)
            .map_err(user_error)
    }

    fn close(&mut self) -> Result<()> {
        self.f.close().map_err(user_error)
    }
}

/// `rich_filter`.
pub struct RichFilterOperator<R>(pub R);

impl<T, R: RichFilterFunction<T>> OneInputOperator<T, T> for RichFilterOperator<R> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.0.open(&RuntimeContext::new(ctx)).map_err(user_error)
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<T>,
    ) -> Result<()> {
        let mut kept = Vec::with_capacity(batch.len());
        for r in batch {
            if self.0.filter(&r.value).map_err(user_error)? {
                kept.push(r);
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        out.collect(kept)
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<()> {
        self.0.snapshot_state(checkpoint_id).map_err(user_error)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.0
            .notify_checkpoint_complete(checkpoint_id)
            .map_err(user_error)
    }

    fn close(&mut self) -> Result<()> {
        self.0.close().map_err(user_error)
    }
}

/// The shared key selector of a keyed stream.
pub type KeySelector<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// A rolling reduce per key (Flink's `StreamGroupedReduceOperator`). In STREAMING mode every
/// input record emits the key's new value; in BATCH mode only the final value per key is
/// emitted, at the end of input.
pub struct KeyedReduceOperator<T, K, F> {
    key_selector: KeySelector<T, K>,
    reduce: Arc<F>,
    backend: Option<KeyedStateBackend>,
    table: Option<SharedStateTable<Option<T>>>,
    emit_updates: bool,
}

impl<T, K, F> KeyedReduceOperator<T, K, F> {
    /// A reduce over keys selected by `key_selector`.
    pub fn new(key_selector: KeySelector<T, K>, reduce: Arc<F>) -> Self {
        KeyedReduceOperator {
            key_selector,
            reduce,
            backend: None,
            table: None,
            emit_updates: true,
        }
    }
}

/// The name of the reduce operator's keyed state.
const REDUCE_STATE: &str = "_reduce";

impl<T, K, F> OneInputOperator<T, T> for KeyedReduceOperator<T, K, F>
where
    T: Data,
    K: Key,
    F: Fn(T, T) -> T,
{
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let backend = ctx.state.keyed_backend()?;
        self.table = Some(backend.table::<Option<T>>(REDUCE_STATE)?);
        self.backend = Some(backend);
        self.emit_updates = ctx.execution_mode == ExecutionMode::Streaming;
        Ok(())
    }

    fn process_batch(
        &mut self,
        batch: Vec<StreamRecord<T>>,
        out: &mut dyn Output<T>,
    ) -> Result<()> {
        let (Some(backend), Some(table)) = (&self.backend, &self.table) else {
            return Err(eddy_runtime::RuntimeError::Internal(
                "reduce used before open".into(),
            ));
        };
        let mut table = table.borrow_mut();
        let mut emitted = Vec::with_capacity(if self.emit_updates { batch.len() } else { 0 });
        for r in batch {
            let kg = backend.set_current_key(&(self.key_selector)(&r.value))?;
            let key = backend.current_key_bytes();
            let slot = table.get_or_insert_with(kg, &key, || None)?;
            let new = match slot.take() {
                Some(old) => (self.reduce)(old, r.value),
                None => r.value,
            };
            if self.emit_updates {
                emitted.push(StreamRecord {
                    value: new.clone(),
                    timestamp: r.timestamp,
                });
            }
            *slot = Some(new);
        }
        if emitted.is_empty() {
            return Ok(());
        }
        out.collect(emitted)
    }

    fn finish(&mut self, out: &mut dyn Output<T>) -> Result<()> {
        if self.emit_updates {
            return Ok(());
        }
        let Some(table) = &self.table else {
            return Ok(());
        };
        let finals: Vec<StreamRecord<T>> = table
            .borrow_mut()
            .take_all()?
            .into_iter()
            .filter_map(|(_, v)| v.map(StreamRecord::new))
            .collect();
        let mut finals = finals.into_iter();
        loop {
            let chunk: Vec<_> = finals.by_ref().take(1024).collect();
            if chunk.is_empty() {
                return Ok(());
            }
            out.collect(chunk)?;
        }
    }
}
