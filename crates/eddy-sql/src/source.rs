//! The filesystem connector's source: the file source's splits decoded into record batches.
//!
//! A subtask reads its files side by side, a batch from each in turn, and the splits of one file
//! in order; its watermark is the least of its files' watermarks, a file not yet opened counting
//! as the start of time. Files that each cover the same hours, as generated or exported data
//! often does, give no late rows however many a subtask reads, and a file's later parts do not
//! hold back the watermark of its earlier ones.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use eddy::WatermarkStrategy;
use eddy::connectors::file::{FileSource, FileSplit, TextLineReader};
use eddy::runtime::Result;
use eddy::runtime::source::{
    Boundedness, Emitted, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext,
};
use eddy::runtime::watermark::{WatermarkGenerator, WatermarkOutput};

use crate::batch::SqlBatch;
use crate::format::Decoder;

/// The watermark of a batch: the largest value of the table's watermark expression over it.
pub type BatchWatermark = Arc<dyn Fn(&RecordBatch) -> Option<i64> + Send + Sync>;

/// Watermarks for a table with `WATERMARK FOR … AS expr`: each batch's timestamp is its
/// largest `expr` value, and the watermark is the largest so far (Flink's SQL watermarks,
/// without the `- 1` of its DataStream generators).
pub fn strategy(watermark: BatchWatermark) -> WatermarkStrategy<SqlBatch> {
    WatermarkStrategy::for_generator(|| LargestSoFar(i64::MIN)).with_timestamp_assigner(
        move |batch: &SqlBatch, _| watermark(batch.batch()).unwrap_or(i64::MIN),
    )
}

/// Watermarks a source computes itself and gives as each batch's timestamp.
pub fn source_watermarks() -> WatermarkStrategy<SqlBatch> {
    WatermarkStrategy::for_generator(|| LargestSoFar(i64::MIN))
}

struct LargestSoFar(i64);

impl WatermarkGenerator<SqlBatch> for LargestSoFar {
    fn on_event(&mut self, _: &SqlBatch, timestamp: i64, output: &mut WatermarkOutput) {
        if timestamp > self.0 {
            self.0 = timestamp;
            output.emit_watermark(eddy::runtime::element::Watermark(timestamp));
        }
    }

    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// Lines decoded into one record batch: a batch is one record of the stream, so its size is
/// set here rather than by the runtime's record-counted batches.
const LINES_PER_BATCH: usize = 4096;

/// Files a subtask keeps open at once; the others wait (and hold the watermark back).
const MAX_OPEN_FILES: usize = 64;

/// Batches of rows decoded from the lines of files.
pub struct LinesSource {
    files: FileSource,
    decoder: Decoder,
    watermark: Option<BatchWatermark>,
}

impl LinesSource {
    /// The rows of the files under `files`, decoded by `decoder`; with `watermark`, each batch
    /// carries the subtask's watermark as its timestamp (use [`source_watermarks`]).
    pub fn new(files: FileSource, decoder: Decoder, watermark: Option<BatchWatermark>) -> Self {
        LinesSource {
            files,
            decoder,
            watermark,
        }
    }
}

impl Source<SqlBatch> for LinesSource {
    type Split = FileSplit;
    type Reader = LinesReader;

    fn boundedness(&self) -> Boundedness {
        Source::<String>::boundedness(&self.files)
    }

    fn enumerate_splits(&self, parallelism: u32) -> Result<Vec<FileSplit>> {
        self.files.enumerate_splits(parallelism)
    }

    fn create_reader(&self, ctx: &SourceReaderContext) -> Result<LinesReader> {
        Ok(LinesReader {
            files: self.files.clone(),
            ctx: ctx.clone(),
            decoder: self.decoder.clone(),
            watermark: self.watermark.clone(),
            pending: VecDeque::new(),
            open: Vec::new(),
            next: 0,
        })
    }
}

struct OpenFile {
    path: std::path::PathBuf,
    /// The reader of the file's current split.
    reader: TextLineReader,
    /// The largest watermark value of the file's rows so far.
    watermark: i64,
}

/// Reads a subtask's files side by side, one line reader each.
pub struct LinesReader {
    files: FileSource,
    ctx: SourceReaderContext,
    decoder: Decoder,
    watermark: Option<BatchWatermark>,
    pending: VecDeque<FileSplit>,
    open: Vec<OpenFile>,
    /// The open split to read from next.
    next: usize,
}

impl LinesReader {
    /// The least watermark of the unfinished files.
    fn watermark(&self) -> i64 {
        let unopened = self
            .pending
            .iter()
            .any(|split| self.open.iter().all(|f| f.path != split.path));
        if unopened {
            return i64::MIN;
        }
        self.open
            .iter()
            .map(|f| f.watermark)
            .min()
            .unwrap_or(i64::MIN)
    }

    /// A reader of the next pending split of `path` (of a file not open, for `None`).
    fn next_split_of(&mut self, path: Option<&std::path::Path>) -> Result<Option<TextLineReader>> {
        let position = self.pending.iter().position(|split| match path {
            Some(p) => split.path == p,
            None => self.open.iter().all(|f| f.path != split.path),
        });
        let Some(split) = position.and_then(|i| self.pending.remove(i)) else {
            return Ok(None);
        };
        let mut reader = self.files.create_reader(&self.ctx)?;
        reader.add_splits(vec![split])?;
        Ok(Some(reader))
    }
}

impl SourceReader<SqlBatch> for LinesReader {
    type Split = FileSplit;

    fn add_splits(&mut self, splits: Vec<FileSplit>) -> Result<()> {
        self.pending.extend(splits);
        Ok(())
    }

    fn poll_next(&mut self, output: &mut ReaderOutput<SqlBatch>) -> Result<InputStatus> {
        while self.open.len() < MAX_OPEN_FILES {
            let Some(path) = self
                .pending
                .iter()
                .find(|split| self.open.iter().all(|f| f.path != split.path))
                .map(|split| split.path.clone())
            else {
                break;
            };
            let Some(reader) = self.next_split_of(None)? else {
                break;
            };
            self.open.push(OpenFile {
                path,
                reader,
                watermark: i64::MIN,
            });
        }
        if self.open.is_empty() {
            return Ok(InputStatus::EndOfInput);
        }
        let index = self.next % self.open.len();
        let mut lines = ReaderOutput::<String>::new(LINES_PER_BATCH);
        let status = self.open[index].reader.poll_next(&mut lines)?;
        let text: Vec<String> = lines
            .drain()
            .into_iter()
            .flat_map(|e| match e {
                Emitted::Records(records) => records.into_iter().map(|r| r.value).collect(),
                Emitted::Watermark(_) => Vec::new(),
            })
            .collect();
        let text: Vec<&str> = text
            .iter()
            .map(String::as_str)
            .filter(|l| !l.trim().is_empty())
            .collect();
        let batches: Vec<RecordBatch> = self
            .decoder
            .decode(&text)?
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .collect();
        if let Some(watermark) = &self.watermark {
            let split = &mut self.open[index];
            for batch in &batches {
                if let Some(w) = watermark(batch) {
                    split.watermark = split.watermark.max(w);
                }
            }
        }
        if matches!(status, InputStatus::EndOfInput) {
            // The file's next split, in order, or the file is done.
            let path = self.open[index].path.clone();
            match self.next_split_of(Some(&path))? {
                Some(reader) => self.open[index].reader = reader,
                None => {
                    self.open.remove(index);
                }
            }
        } else {
            self.next = index + 1;
        }
        let watermark = self.watermark();
        for batch in batches {
            output.collect_with_timestamp(SqlBatch(batch), watermark);
        }
        if self.open.is_empty() && self.pending.is_empty() {
            return Ok(InputStatus::EndOfInput);
        }
        Ok(InputStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Vec<FileSplit>> {
        let mut state = Vec::new();
        for file in &mut self.open {
            state.extend(file.reader.snapshot_state(checkpoint_id)?);
        }
        state.extend(self.pending.iter().cloned());
        Ok(state)
    }
}
