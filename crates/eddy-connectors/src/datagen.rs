//! Generated records (Flink's `DataGeneratorSource`): `generator(i)` for every index `i` below
//! the record count, split across subtasks, optionally rate-limited.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_runtime::Result;
use eddy_runtime::source::{
    Boundedness, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext, SourceSplit,
};
use serde::{Deserialize, Serialize};

use crate::sequence::split_range;

/// The generator function: index → record.
pub type GeneratorFunction<T> = Arc<dyn Fn(u64) -> T + Send + Sync>;

/// A source of `count` generated records; `count == u64::MAX` makes it unbounded.
pub struct DataGeneratorSource<T> {
    generator: GeneratorFunction<T>,
    count: u64,
    records_per_second: Option<f64>,
}

impl<T> DataGeneratorSource<T> {
    /// `count` records produced by `generator` (use `u64::MAX` for an unbounded source).
    pub fn new(generator: impl Fn(u64) -> T + Send + Sync + 'static, count: u64) -> Self {
        DataGeneratorSource {
            generator: Arc::new(generator),
            count,
            records_per_second: None,
        }
    }

    /// Limits the source to `records_per_second` over all its subtasks (Flink's
    /// `RateLimiterStrategy.perSecond`).
    pub fn with_rate_limit(mut self, records_per_second: f64) -> Self {
        self.records_per_second = Some(records_per_second);
        self
    }
}

/// A range of generator indices; `next` is the next index to generate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataGenSplit {
    /// Split number.
    pub id: u32,
    /// The next index.
    pub next: u64,
    /// The last index (inclusive).
    pub last: u64,
}

impl SourceSplit for DataGenSplit {
    fn split_id(&self) -> String {
        self.id.to_string()
    }
}

impl<T: Send + 'static> Source<T> for DataGeneratorSource<T> {
    type Split = DataGenSplit;
    type Reader = DataGenReader<T>;

    fn boundedness(&self) -> Boundedness {
        if self.count == u64::MAX {
            Boundedness::ContinuousUnbounded
        } else {
            Boundedness::Bounded
        }
    }

    fn enumerate_splits(&self, parallelism: u32) -> Result<Vec<DataGenSplit>> {
        if self.count == 0 {
            return Ok(Vec::new());
        }
        // Indices are non-negative; split them as a sequence shifted into i64's range.
        let last = self.count - 1;
        let shift = |v: u64| (v as i128 + i64::MIN as i128) as i64;
        let unshift = |v: i64| (v as i128 - i64::MIN as i128) as u64;
        Ok(split_range(shift(0), shift(last), parallelism)
            .into_iter()
            .enumerate()
            .map(|(i, (a, b))| DataGenSplit {
                id: i as u32,
                next: unshift(a),
                last: unshift(b),
            })
            .collect())
    }

    fn create_reader(&self, ctx: &SourceReaderContext) -> Result<DataGenReader<T>> {
        let per_subtask = self
            .records_per_second
            .map(|r| r / f64::from(ctx.task_info.parallelism.max(1)));
        Ok(DataGenReader {
            generator: self.generator.clone(),
            splits: Vec::new(),
            rate: per_subtask,
            started: Instant::now(),
            emitted: 0,
        })
    }
}

/// Reads [`DataGenSplit`]s.
pub struct DataGenReader<T> {
    generator: GeneratorFunction<T>,
    splits: Vec<DataGenSplit>,
    rate: Option<f64>,
    started: Instant,
    emitted: u64,
}

impl<T> DataGenReader<T> {
    /// How many records the rate limit allows right now.
    fn allowance(&self) -> u64 {
        match self.rate {
            None => u64::MAX,
            Some(rate) => {
                let due = (self.started.elapsed().as_secs_f64() * rate) as u64;
                due.saturating_sub(self.emitted)
            }
        }
    }
}

impl<T: 'static> SourceReader<T> for DataGenReader<T> {
    type Split = DataGenSplit;

    fn start(&mut self) -> Result<()> {
        self.started = Instant::now();
        Ok(())
    }

    fn add_splits(&mut self, splits: Vec<DataGenSplit>) -> Result<()> {
        self.splits.extend(splits);
        Ok(())
    }

    fn poll_next(&mut self, output: &mut ReaderOutput<T>) -> Result<InputStatus> {
        if self.splits.is_empty() {
            return Ok(InputStatus::EndOfInput);
        }
        let budget = (output.remaining().max(1) as u64).min(self.allowance());
        if budget == 0 {
            return Ok(InputStatus::NothingAvailable);
        }
        let split = &mut self.splits[0];
        let end = split.next.saturating_add(budget - 1).min(split.last);
        output.set_current_split(&split.split_id());
        for i in split.next..=end {
            output.collect((self.generator)(i));
        }
        self.emitted += end - split.next + 1;
        if end >= split.last {
            output.release_split(&split.split_id());
            self.splits.remove(0);
            if self.splits.is_empty() {
                return Ok(InputStatus::EndOfInput);
            }
        } else {
            split.next = end + 1;
        }
        Ok(InputStatus::MoreAvailable)
    }

    fn wait_available(&mut self, timeout: Duration) {
        if let Some(rate) = self.rate {
            let next_due = Duration::from_secs_f64((self.emitted + 1) as f64 / rate);
            let wait = next_due.saturating_sub(self.started.elapsed());
            std::thread::sleep(wait.min(timeout));
        }
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<DataGenSplit>> {
        Ok(self.splits.clone())
    }
}
