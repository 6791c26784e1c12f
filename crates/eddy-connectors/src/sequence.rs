//! A bounded, parallel source of the numbers `from..=to` (Flink's `fromSequence`).

use eddy_runtime::Result;
use eddy_runtime::source::{
    Boundedness, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext, SourceSplit,
};
use serde::{Deserialize, Serialize};

/// The numbers from `from` to `to`, inclusive, in as many splits as the source has subtasks.
#[derive(Clone, Debug)]
pub struct NumberSequenceSource {
    from: i64,
    to: i64,
}

impl NumberSequenceSource {
    /// The numbers `from..=to`. Empty when `to < from`.
    pub fn new(from: i64, to: i64) -> Self {
        NumberSequenceSource { from, to }
    }
}

/// A contiguous part of the sequence; `current` is the next number to emit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SequenceSplit {
    /// Split number.
    pub id: u32,
    /// The next number to emit.
    pub current: i64,
    /// The last number of the split (inclusive).
    pub to: i64,
}

impl SourceSplit for SequenceSplit {
    fn split_id(&self) -> String {
        self.id.to_string()
    }
}

/// Splits `from..=to` into at most `n` contiguous ranges of nearly equal size.
pub(crate) fn split_range(from: i64, to: i64, n: u32) -> Vec<(i64, i64)> {
    if to < from {
        return Vec::new();
    }
    let total = (to as i128 - from as i128 + 1) as u128;
    let n = u128::from(n.max(1)).min(total);
    (0..n)
        .map(|i| {
            let start = from as i128 + (total * i / n) as i128;
            let end = from as i128 + (total * (i + 1) / n) as i128 - 1;
            (start as i64, end as i64)
        })
        .collect()
}

impl Source<i64> for NumberSequenceSource {
    type Split = SequenceSplit;
    type Reader = SequenceReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn enumerate_splits(&self, parallelism: u32) -> Result<Vec<SequenceSplit>> {
        Ok(split_range(self.from, self.to, parallelism)
            .into_iter()
            .enumerate()
            .map(|(i, (a, b))| SequenceSplit {
                id: i as u32,
                current: a,
                to: b,
            })
            .collect())
    }

    fn create_reader(&self, _ctx: &SourceReaderContext) -> Result<SequenceReader> {
        Ok(SequenceReader { splits: Vec::new() })
    }
}

/// Reads [`SequenceSplit`]s.
pub struct SequenceReader {
    splits: Vec<SequenceSplit>,
}

impl SourceReader<i64> for SequenceReader {
    type Split = SequenceSplit;

    fn add_splits(&mut self, splits: Vec<SequenceSplit>) -> Result<()> {
        self.splits.extend(splits);
        Ok(())
    }

    fn poll_next(&mut self, output: &mut ReaderOutput<i64>) -> Result<InputStatus> {
        let Some(split) = self.splits.first_mut() else {
            return Ok(InputStatus::EndOfInput);
        };
        let n = output.remaining().max(1) as i64;
        let end = split.current.saturating_add(n - 1).min(split.to);
        output.set_current_split(&split.split_id());
        for v in split.current..=end {
            output.collect(v);
        }
        if end >= split.to {
            output.release_split(&split.split_id());
            self.splits.remove(0);
        } else {
            split.current = end + 1;
        }
        Ok(if self.splits.is_empty() {
            InputStatus::EndOfInput
        } else {
            InputStatus::MoreAvailable
        })
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<SequenceSplit>> {
        Ok(self.splits.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_once() {
        for (from, to, n) in [(0, 9, 3), (1, 1, 4), (-5, 5, 2), (0, 1_000_000, 7)] {
            let r = split_range(from, to, n);
            assert_eq!(r.first().unwrap().0, from);
            assert_eq!(r.last().unwrap().1, to);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
        }
        assert!(split_range(5, 4, 2).is_empty());
        assert_eq!(split_range(i64::MIN, i64::MAX, 2).len(), 2);
    }
}
