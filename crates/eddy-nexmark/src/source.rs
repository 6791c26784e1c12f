//! The generator as a parallel, checkpointed source: subtask `i` of `p` makes event numbers
//! `i, i + p, i + 2p, ...`, so every subtask's events are in timestamp order and all subtasks
//! advance through event time together.

use std::sync::Arc;

use eddy::runtime::Result;
use eddy::runtime::source::{
    Boundedness, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext, SourceSplit,
};
use serde::{Deserialize, Serialize};

use crate::generator::GeneratorConfig;
use crate::model::Event;

/// A bounded source of `events` generated events.
#[derive(Clone, Debug)]
pub struct NexmarkSource {
    config: Arc<GeneratorConfig>,
    events: u64,
}

impl NexmarkSource {
    /// The first `events` events of `config`.
    pub fn new(config: GeneratorConfig, events: u64) -> Self {
        NexmarkSource {
            config: Arc::new(config),
            events,
        }
    }
}

/// Every `stride`-th event number from `next` below `end`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NexmarkSplit {
    /// The split's number.
    pub id: u32,
    /// The next event number to make.
    pub next: u64,
    /// Distance between this split's event numbers.
    pub stride: u64,
    /// One past the last event number of the whole stream.
    pub end: u64,
}

impl SourceSplit for NexmarkSplit {
    fn split_id(&self) -> String {
        self.id.to_string()
    }
}

impl Source<Event> for NexmarkSource {
    type Split = NexmarkSplit;
    type Reader = NexmarkReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn enumerate_splits(&self, parallelism: u32) -> Result<Vec<NexmarkSplit>> {
        let p = u64::from(parallelism.max(1));
        Ok((0..p)
            .map(|i| NexmarkSplit {
                id: i as u32,
                next: i,
                stride: p,
                end: self.events,
            })
            .collect())
    }

    fn create_reader(&self, _ctx: &SourceReaderContext) -> Result<NexmarkReader> {
        Ok(NexmarkReader {
            config: self.config.clone(),
            splits: Vec::new(),
        })
    }
}

/// Makes the events of its splits.
pub struct NexmarkReader {
    config: Arc<GeneratorConfig>,
    splits: Vec<NexmarkSplit>,
}

impl SourceReader<Event> for NexmarkReader {
    type Split = NexmarkSplit;

    fn add_splits(&mut self, splits: Vec<NexmarkSplit>) -> Result<()> {
        self.splits.extend(splits);
        Ok(())
    }

    fn poll_next(&mut self, output: &mut ReaderOutput<Event>) -> Result<InputStatus> {
        let Some(split) = self.splits.first_mut() else {
            return Ok(InputStatus::EndOfInput);
        };
        output.set_current_split(&split.split_id());
        let mut budget = output.remaining().max(1);
        while budget > 0 && split.next < split.end {
            output.collect(self.config.event(split.next));
            split.next += split.stride;
            budget -= 1;
        }
        if split.next >= split.end {
            output.release_split(&split.split_id());
            self.splits.remove(0);
            if self.splits.is_empty() {
                return Ok(InputStatus::EndOfInput);
            }
        }
        Ok(InputStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<NexmarkSplit>> {
        Ok(self.splits.clone())
    }
}
