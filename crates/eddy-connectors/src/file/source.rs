//! Text lines from a file or a directory (Flink's `FileSource` with `TextLineInputFormat`).
//!
//! Files are cut into splits of at most [`FileSource::DEFAULT_SPLIT_SIZE`] bytes (Flink's local
//! file system block size), so a large file is read by several subtasks. A split owns the lines
//! that *start* inside its byte range. Its checkpointed position is the offset of the next line.
//!
//! Lines are decoded as UTF-8; invalid bytes are replaced with U+FFFD, as Flink's decoder does.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use eddy_runtime::source::{
    Boundedness, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext, SourceSplit,
};
use eddy_runtime::{Result, RuntimeError};
use serde::{Deserialize, Serialize};

/// A bounded source of the text lines of a file, or of every file under a directory.
#[derive(Clone, Debug)]
pub struct FileSource {
    path: PathBuf,
    split_size: u64,
}

impl FileSource {
    /// Splits are at most this large: 32 MiB.
    pub const DEFAULT_SPLIT_SIZE: u64 = 32 << 20;

    /// The lines of `path`: a file, or a directory read recursively. Files whose names start with
    /// `.` or `_` are skipped, as Flink skips them.
    pub fn for_text_lines(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            split_size: Self::DEFAULT_SPLIT_SIZE,
        }
    }

    /// Uses splits of at most `bytes` bytes.
    pub fn with_split_size(mut self, bytes: u64) -> Self {
        self.split_size = bytes.max(1);
        self
    }

    fn list_files(&self) -> Result<Vec<(PathBuf, u64)>> {
        let meta = std::fs::metadata(&self.path).map_err(|e| {
            RuntimeError::io(
                format!("cannot read input path '{}'", self.path.display()),
                e,
            )
        })?;
        let mut files = Vec::new();
        if meta.is_dir() {
            collect_files(&self.path, &mut files)?;
        } else {
            files.push((self.path.clone(), meta.len()));
        }
        files.sort();
        Ok(files)
    }
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| RuntimeError::io(format!("cannot list directory '{}'", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            RuntimeError::io(format!("cannot list directory '{}'", dir.display()), e)
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path)
            .map_err(|e| RuntimeError::io(format!("cannot read '{}'", path.display()), e))?;
        if meta.is_dir() {
            collect_files(&path, out)?;
        } else if meta.is_file() {
            out.push((path, meta.len()));
        }
    }
    Ok(())
}

/// A byte range of one file. `offset` is where reading resumes; `aligned` says whether it is
/// known to be the start of a line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSplit {
    /// The file.
    pub path: PathBuf,
    /// Where reading resumes.
    pub offset: u64,
    /// The split owns lines that start before this offset.
    pub end: u64,
    /// Whether `offset` is the start of a line (otherwise the partial line is skipped).
    pub aligned: bool,
}

impl SourceSplit for FileSplit {
    fn split_id(&self) -> String {
        format!("{}:{}", self.path.display(), self.end)
    }
}

impl Source<String> for FileSource {
    type Split = FileSplit;
    type Reader = TextLineReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn enumerate_splits(&self, _parallelism: u32) -> Result<Vec<FileSplit>> {
        let mut splits = Vec::new();
        for (path, len) in self.list_files()? {
            let mut start = 0;
            loop {
                let end = (start + self.split_size).min(len);
                splits.push(FileSplit {
                    path: path.clone(),
                    offset: start,
                    end,
                    aligned: start == 0,
                });
                if end >= len {
                    break;
                }
                start = end;
            }
        }
        Ok(splits)
    }

    fn create_reader(&self, _ctx: &SourceReaderContext) -> Result<TextLineReader> {
        Ok(TextLineReader {
            pending: Vec::new(),
            current: None,
            line: Vec::new(),
        })
    }
}

struct OpenSplit {
    split: FileSplit,
    reader: BufReader<File>,
}

/// Reads [`FileSplit`]s line by line.
pub struct TextLineReader {
    pending: Vec<FileSplit>,
    current: Option<OpenSplit>,
    line: Vec<u8>,
}

impl TextLineReader {
    fn open(mut split: FileSplit) -> Result<OpenSplit> {
        let ctx = || format!("cannot read input file '{}'", split.path.display());
        let file = File::open(&split.path).map_err(|e| RuntimeError::io(ctx(), e))?;
        let mut reader = BufReader::with_capacity(64 << 10, file);
        if !split.aligned {
            // The line that straddles `offset` belongs to the previous split: skip to the byte
            // after the next newline, starting one byte early so that a split starting exactly at
            // a line start keeps that line.
            reader
                .seek(SeekFrom::Start(split.offset - 1))
                .map_err(|e| RuntimeError::io(ctx(), e))?;
            let mut skipped = Vec::new();
            let n = reader
                .read_until(b'\n', &mut skipped)
                .map_err(|e| RuntimeError::io(ctx(), e))?;
            split.offset = split.offset - 1 + n as u64;
            split.aligned = true;
        } else if split.offset > 0 {
            reader
                .seek(SeekFrom::Start(split.offset))
                .map_err(|e| RuntimeError::io(ctx(), e))?;
        }
        Ok(OpenSplit { split, reader })
    }
}

impl SourceReader<String> for TextLineReader {
    type Split = FileSplit;

    fn add_splits(&mut self, splits: Vec<FileSplit>) -> Result<()> {
        self.pending.extend(splits);
        Ok(())
    }

    fn poll_next(&mut self, output: &mut ReaderOutput<String>) -> Result<InputStatus> {
        loop {
            if self.current.is_none() {
                if self.pending.is_empty() {
                    return Ok(InputStatus::EndOfInput);
                }
                let split = self.pending.remove(0);
                output.set_current_split(&split.split_id());
                self.current = Some(Self::open(split)?);
            }
            let Some(open) = self.current.as_mut() else {
                continue;
            };
            while !output.is_full() {
                if open.split.offset >= open.split.end {
                    break;
                }
                self.line.clear();
                let n = open.reader.read_until(b'\n', &mut self.line).map_err(|e| {
                    RuntimeError::io(
                        format!(
                            "cannot read input file '{}' at byte {}",
                            open.split.path.display(),
                            open.split.offset
                        ),
                        e,
                    )
                })?;
                if n == 0 {
                    open.split.offset = open.split.end;
                    break;
                }
                open.split.offset += n as u64;
                let mut bytes = self.line.as_slice();
                if let Some(b) = bytes.strip_suffix(b"\n") {
                    bytes = b;
                }
                if let Some(b) = bytes.strip_suffix(b"\r") {
                    bytes = b;
                }
                output.collect(String::from_utf8_lossy(bytes).into_owned());
            }
            if open.split.offset >= open.split.end {
                output.release_split(&open.split.split_id());
                self.current = None;
            }
            if output.is_full() {
                return Ok(InputStatus::MoreAvailable);
            }
        }
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<FileSplit>> {
        let mut state: Vec<FileSplit> = self.current.iter().map(|o| o.split.clone()).collect();
        state.extend(self.pending.iter().cloned());
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(source: &FileSource) -> Vec<String> {
        let mut lines = Vec::new();
        for split in source.enumerate_splits(1).unwrap() {
            let mut r = TextLineReader {
                pending: vec![split],
                current: None,
                line: Vec::new(),
            };
            let mut out = ReaderOutput::new(3);
            loop {
                let status = r.poll_next(&mut out).unwrap();
                lines.extend(out.take_records().into_iter().map(|r| r.value));
                if status == InputStatus::EndOfInput {
                    break;
                }
            }
        }
        lines
    }

    #[test]
    fn every_line_read_once_whatever_the_split_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let mut f = std::fs::File::create(&path).unwrap();
        let expected: Vec<String> = (0..200).map(|i| "x".repeat(i % 13)).collect();
        for l in &expected {
            writeln!(f, "{l}").unwrap();
        }
        write!(f, "last line without newline").unwrap();
        let mut expected = expected;
        expected.push("last line without newline".into());
        for split_size in [1, 2, 3, 7, 64, 1000, 1 << 20] {
            let lines = read_all(&FileSource::for_text_lines(&path).with_split_size(split_size));
            assert_eq!(lines, expected, "split size {split_size}");
        }
    }

    #[test]
    fn missing_path_names_the_path() {
        let err = FileSource::for_text_lines("/no/such/input.txt")
            .enumerate_splits(1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/input.txt"), "{err}");
    }

    #[test]
    fn directories_skip_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.txt"), "b\r\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "h\n").unwrap();
        std::fs::write(dir.path().join("_SUCCESS"), "s\n").unwrap();
        let lines = read_all(&FileSource::for_text_lines(dir.path()));
        assert_eq!(lines, vec!["a", "b"]);
    }
}
