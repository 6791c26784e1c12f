//! A bounded source over a `Vec` (Flink's `fromCollection`).

use std::sync::Arc;

use eddy_runtime::Result;
use eddy_runtime::source::{
    Boundedness, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext, SourceSplit,
};
use serde::{Deserialize, Serialize};

/// Emits the elements of a collection, in order, from one split.
pub struct CollectionSource<T> {
    items: Arc<Vec<T>>,
}

impl<T> CollectionSource<T> {
    /// A source over `items`.
    pub fn new(items: Vec<T>) -> Self {
        CollectionSource {
            items: Arc::new(items),
        }
    }
}

/// The single split of a collection: the position of the next element.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectionSplit {
    /// Index of the next element to emit.
    pub position: usize,
}

impl SourceSplit for CollectionSplit {
    fn split_id(&self) -> String {
        "collection".into()
    }
}

impl<T: Clone + Send + Sync + 'static> Source<T> for CollectionSource<T> {
    type Split = CollectionSplit;
    type Reader = CollectionReader<T>;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn enumerate_splits(&self, _parallelism: u32) -> Result<Vec<CollectionSplit>> {
        Ok(vec![CollectionSplit { position: 0 }])
    }

    fn create_reader(&self, _ctx: &SourceReaderContext) -> Result<CollectionReader<T>> {
        Ok(CollectionReader {
            items: self.items.clone(),
            split: None,
        })
    }
}

/// Reads a [`CollectionSource`].
pub struct CollectionReader<T> {
    items: Arc<Vec<T>>,
    split: Option<CollectionSplit>,
}

impl<T: Clone + 'static> SourceReader<T> for CollectionReader<T> {
    type Split = CollectionSplit;

    fn add_splits(&mut self, splits: Vec<CollectionSplit>) -> Result<()> {
        if let Some(s) = splits.into_iter().next() {
            self.split = Some(s);
        }
        Ok(())
    }

    fn poll_next(&mut self, output: &mut ReaderOutput<T>) -> Result<InputStatus> {
        let Some(split) = self.split.as_mut() else {
            return Ok(InputStatus::EndOfInput);
        };
        let end = (split.position + output.remaining().max(1)).min(self.items.len());
        for item in &self.items[split.position..end] {
            output.collect(item.clone());
        }
        split.position = end;
        if end >= self.items.len() {
            self.split = None;
            return Ok(InputStatus::EndOfInput);
        }
        Ok(InputStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<CollectionSplit>> {
        Ok(self.split.iter().cloned().collect())
    }
}
