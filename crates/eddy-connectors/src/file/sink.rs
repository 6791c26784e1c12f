//! A sink writing rows into part files, one series per subtask (Flink's `FileSink` with a row
//! format).
//!
//! Rows go to a hidden in-progress file, `.part-<run>-<subtask>-<n>.inprogress`, where `<run>`
//! names the job, its restart attempt and the process writing it. Readers only ever see complete part files under their
//! final name `part-<run>-<subtask>-<n>`:
//!
//! - **With checkpoints** the sink is exactly-once (two-phase commit). At each checkpoint
//!   barrier the current part file is closed and becomes *pending*; when the checkpoint
//!   completes, pending files are renamed to their final names. After a failure, the pending
//!   files of the restored checkpoint are renamed (again, harmlessly), and every other hidden
//!   file of earlier attempts — written after that checkpoint — is deleted, since its records
//!   are processed again.
//! - **Without checkpoints** a part file gets its final name as soon as it rolls (by size or
//!   age) or the input ends.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eddy_runtime::sink::{
    Committer, CommittingSinkWriter, SinkWriter, SinkWriterContext, TwoPhaseCommittingSink,
};
use eddy_runtime::{Result, RuntimeError};
use serde::{Deserialize, Serialize};

use super::encoder::Encoder;

/// When a part file is closed and a new one started (Flink's `DefaultRollingPolicy`).
#[derive(Clone, Copy, Debug)]
pub struct RollingPolicy {
    /// Roll when the part file reaches this size.
    pub max_part_size: u64,
    /// Roll when the part file is this old.
    pub rollover_interval: Duration,
}

impl Default for RollingPolicy {
    fn default() -> Self {
        RollingPolicy {
            max_part_size: 128 << 20,
            rollover_interval: Duration::from_secs(60),
        }
    }
}

/// Names of part files: `<prefix>-<run>-<subtask>-<n><suffix>`.
#[derive(Clone, Debug)]
pub struct OutputFileConfig {
    /// Defaults to `part`.
    pub part_prefix: String,
    /// Defaults to empty.
    pub part_suffix: String,
}

impl Default for OutputFileConfig {
    fn default() -> Self {
        OutputFileConfig {
            part_prefix: "part".into(),
            part_suffix: String::new(),
        }
    }
}

/// Writes records as rows into part files under a directory.
pub struct FileSink<T, E> {
    base_path: PathBuf,
    encoder: E,
    rolling: RollingPolicy,
    names: OutputFileConfig,
    _t: PhantomData<fn(&T)>,
}

impl<T, E: Encoder<T>> FileSink<T, E> {
    /// Rows encoded by `encoder`, in part files under `base_path` (created if missing).
    pub fn for_row_format(base_path: impl Into<PathBuf>, encoder: E) -> Self {
        FileSink {
            base_path: base_path.into(),
            encoder,
            rolling: RollingPolicy::default(),
            names: OutputFileConfig::default(),
            _t: PhantomData,
        }
    }

    /// Sets the rolling policy.
    pub fn with_rolling_policy(mut self, rolling: RollingPolicy) -> Self {
        self.rolling = rolling;
        self
    }

    /// Sets the part file names.
    pub fn with_output_file_config(mut self, names: OutputFileConfig) -> Self {
        self.names = names;
        self
    }
}

/// The run token in part file names: the job, its restart attempt, and a nonce of this
/// process. Attempt numbers start again when another JobManager takes a job over (high
/// availability), so the nonce keeps a new run from reusing, and overwriting, the names of
/// part files an earlier run committed.
fn run_token(ctx: &SinkWriterContext) -> String {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let nonce = NONCE.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_string());
    let job = ctx.task_info.job_id.to_string();
    format!(
        "{}a{}r{nonce}",
        &job[..12.min(job.len())],
        ctx.task_info.attempt_number
    )
}

/// A part file closed at a checkpoint, waiting to be renamed when it completes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingPart {
    /// The hidden file.
    pub in_progress: PathBuf,
    /// Its final name.
    pub finished: PathBuf,
}

impl<T: 'static, E: Encoder<T>> TwoPhaseCommittingSink<T> for FileSink<T, E> {
    type Writer = FileSinkWriter<T, E>;
    type Committer = FileCommitter;

    fn create_committer(&self, _ctx: &SinkWriterContext) -> Result<FileCommitter> {
        Ok(FileCommitter)
    }

    fn abort_leftovers(&self, ctx: &SinkWriterContext, restored: &[PendingPart]) -> Result<()> {
        let keep: std::collections::HashSet<&Path> =
            restored.iter().map(|p| p.in_progress.as_path()).collect();
        let current = format!("-{}-", run_token(ctx));
        let prefix = format!(".{}-", self.names.part_prefix);
        let entries = match std::fs::read_dir(&self.base_path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&self.base_path, "list", e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&self.base_path, "list", e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            // `.{part prefix}-{run}-{subtask}-{counter}{suffix}.inprogress`
            let subtask = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split('-').nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if subtask.is_some_and(|s| ctx.cleans_up_after(s))
                && name.ends_with(".inprogress")
                && !name.contains(&current)
                && !keep.contains(path.as_path())
            {
                tracing::info!(file = %path.display(), "deleting a part file of an aborted attempt");
                std::fs::remove_file(&path).map_err(|e| io_err(&path, "delete", e))?;
            }
        }
        Ok(())
    }

    fn create_writer(
        &self,
        ctx: &SinkWriterContext,
        _restored: &[PendingPart],
    ) -> Result<FileSinkWriter<T, E>> {
        std::fs::create_dir_all(&self.base_path).map_err(|e| {
            RuntimeError::io(
                format!(
                    "cannot create output directory '{}'",
                    self.base_path.display()
                ),
                e,
            )
        })?;
        Ok(FileSinkWriter {
            base_path: self.base_path.clone(),
            encoder: self.encoder.clone(),
            rolling: self.rolling,
            names: self.names.clone(),
            run: run_token(ctx),
            subtask: ctx.task_info.subtask_index,
            counter: 0,
            current: None,
            row: Vec::new(),
            two_phase: ctx.checkpointing,
            pending: Vec::new(),
            _t: PhantomData,
        })
    }
}

struct PartFile {
    in_progress: PathBuf,
    finished: PathBuf,
    out: BufWriter<File>,
    size: u64,
    opened: Instant,
}

/// Writes one subtask's part files.
pub struct FileSinkWriter<T, E> {
    base_path: PathBuf,
    encoder: E,
    rolling: RollingPolicy,
    names: OutputFileConfig,
    run: String,
    subtask: u32,
    counter: u64,
    current: Option<PartFile>,
    row: Vec<u8>,
    /// Whether closed part files wait for a checkpoint before they get their final names.
    two_phase: bool,
    /// Closed part files not yet handed to a checkpoint.
    pending: Vec<PendingPart>,
    _t: PhantomData<fn(&T)>,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::io(format!("cannot {what} '{}'", path.display()), e)
}

impl<T, E: Encoder<T>> FileSinkWriter<T, E> {
    fn open_part(&mut self) -> Result<&mut PartFile> {
        if self.current.is_none() {
            let name = format!(
                "{}-{}-{}-{}{}",
                self.names.part_prefix,
                self.run,
                self.subtask,
                self.counter,
                self.names.part_suffix
            );
            self.counter += 1;
            let finished = self.base_path.join(&name);
            let in_progress = self.base_path.join(format!(".{name}.inprogress"));
            let file = File::create(&in_progress).map_err(|e| io_err(&in_progress, "create", e))?;
            self.current = Some(PartFile {
                in_progress,
                finished,
                out: BufWriter::with_capacity(64 << 10, file),
                size: 0,
                opened: Instant::now(),
            });
        }
        self.current
            .as_mut()
            .ok_or_else(|| RuntimeError::Internal("part file vanished".into()))
    }

    /// Closes the current part file: it becomes pending (with checkpoints) or gets its final
    /// name.
    fn roll(&mut self) -> Result<()> {
        if let Some(mut part) = self.current.take() {
            part.out
                .flush()
                .map_err(|e| io_err(&part.in_progress, "write", e))?;
            let file = part
                .out
                .into_inner()
                .map_err(|e| io_err(&part.in_progress, "write", e.into_error()))?;
            file.sync_all()
                .map_err(|e| io_err(&part.in_progress, "sync", e))?;
            let done = PendingPart {
                in_progress: part.in_progress,
                finished: part.finished,
            };
            if self.two_phase {
                self.pending.push(done);
            } else {
                FileCommitter.commit(vec![done])?;
            }
        }
        Ok(())
    }
}

impl<T, E: Encoder<T>> CommittingSinkWriter<T> for FileSinkWriter<T, E> {
    type Committable = PendingPart;

    fn prepare_commit(&mut self) -> Result<Vec<PendingPart>> {
        self.roll()?;
        Ok(std::mem::take(&mut self.pending))
    }
}

/// Renames pending part files to their final names.
pub struct FileCommitter;

impl Committer<PendingPart> for FileCommitter {
    fn commit(&mut self, parts: Vec<PendingPart>) -> Result<()> {
        for p in parts {
            match std::fs::rename(&p.in_progress, &p.finished) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !p.finished.exists() {
                        tracing::warn!(file = %p.finished.display(), "a committed part file is missing");
                    }
                }
                Err(e) => return Err(io_err(&p.finished, "finish part file", e)),
            }
        }
        Ok(())
    }
}

impl<T, E: Encoder<T>> SinkWriter<T> for FileSinkWriter<T, E> {
    fn write(&mut self, value: T, _timestamp: Option<i64>) -> Result<()> {
        self.row.clear();
        self.encoder.encode(&value, &mut self.row)?;
        let rolling = self.rolling;
        let row = std::mem::take(&mut self.row);
        let part = self.open_part()?;
        part.out
            .write_all(&row)
            .map_err(|e| io_err(&part.in_progress, "write", e))?;
        part.size += row.len() as u64;
        let roll = part.size >= rolling.max_part_size
            || part.opened.elapsed() >= rolling.rollover_interval;
        self.row = row;
        if roll {
            self.roll()?;
        }
        Ok(())
    }

    fn flush(&mut self, end_of_input: bool) -> Result<()> {
        if end_of_input {
            return self.roll();
        }
        if let Some(part) = self.current.as_mut() {
            part.out
                .flush()
                .map_err(|e| io_err(&part.in_progress, "write", e))?;
        }
        Ok(())
    }
}
