//! What a checkpoint is made of: the `_metadata` file and the state handles it lists.
//!
//! The same types travel from tasks to the coordinator (in acknowledgements, with paths inside
//! the checkpoint's store) and are written to `_metadata` (as JSON, with paths relative to the
//! metadata file, so that a savepoint directory can be moved or copied whole).

use std::collections::BTreeSet;

use eddy_core::ids::{JobId, OperatorId};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::format::{Span, check_header, checksum};
use super::storage::{StorageLocation, relative_path, resolve_path};
use crate::error::{Result, RuntimeError};
use crate::state::Redistribution;

/// The name of a checkpoint's metadata file.
pub const METADATA_FILE: &str = "_metadata";

/// Identifies the metadata format.
const FORMAT: &str = "eddy-checkpoint";
/// The current metadata version.
const VERSION: u32 = 1;

/// A state file: its path, size and checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// The path: inside the store in memory, relative to `_metadata` on disk.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// XXH3-64 of the bytes.
    pub checksum: u64,
}

/// How a keyed state is held, which decides where it goes on restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyedStateKind {
    /// A state table: values per (key, namespace). Goes into the backend's tables (the LSM
    /// tree on the LSM backend).
    Table,
    /// State kept in memory by an operator on every backend (timers, watermarks).
    Heap,
}

/// A keyed state of a subtask's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateInfo {
    /// The state's name.
    pub name: String,
    /// How it is held.
    pub kind: KeyedStateKind,
}

/// One section of keyed state: one state's entries of one key group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedSection {
    /// The key group.
    pub key_group: u32,
    /// Index into [`KeyedFile::states`].
    pub state: u32,
    /// Whether the section replaces the key group's earlier entries of this state (a full
    /// snapshot) or applies on top of them (an incremental one).
    pub full: bool,
    /// Where it lies.
    pub span: Span,
}

/// A file of keyed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedFile {
    /// The file.
    pub file: StateFile,
    /// The states its sections refer to.
    pub states: Vec<KeyedStateInfo>,
    /// Its sections.
    pub sections: Vec<KeyedSection>,
}

/// The keyed state of one subtask: a full snapshot followed by incremental ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedSnapshot {
    /// First key group.
    pub key_group_start: u32,
    /// Last key group (inclusive).
    pub key_group_end: u32,
    /// Files to apply in order.
    pub files: Vec<KeyedFile>,
}

/// One operator list (or broadcast) state of one subtask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListStateSnapshot {
    /// The state's name.
    pub name: String,
    /// How it is redistributed.
    pub mode: Redistribution,
    /// The file holding its elements.
    pub file: StateFile,
    /// Where the elements lie: a postcard list of byte strings.
    pub span: Span,
}

/// The state of one operator subtask.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSnapshot {
    /// Whether the subtask had finished (no more input, operators finished): it is not run
    /// again on restore, and it has no state.
    pub finished: bool,
    /// Keyed state, if the operator is keyed.
    pub keyed: Option<KeyedSnapshot>,
    /// Operator state.
    pub lists: Vec<ListStateSnapshot>,
}

impl SubtaskSnapshot {
    /// Whether there is no state at all.
    pub fn is_empty(&self) -> bool {
        self.keyed.is_none() && self.lists.is_empty()
    }

    fn files_mut(&mut self) -> impl Iterator<Item = &mut StateFile> {
        self.keyed
            .iter_mut()
            .flat_map(|k| k.files.iter_mut().map(|f| &mut f.file))
            .chain(self.lists.iter_mut().map(|l| &mut l.file))
    }

    fn files(&self) -> impl Iterator<Item = &StateFile> {
        self.keyed
            .iter()
            .flat_map(|k| k.files.iter().map(|f| &f.file))
            .chain(self.lists.iter().map(|l| &l.file))
    }
}

/// The state of one operator over all its subtasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// The operator's stable id.
    pub operator_id: OperatorId,
    /// Its name, for messages.
    pub name: String,
    /// Its uid, if it had one.
    pub uid: Option<String>,
    /// Parallelism when the snapshot was taken.
    pub parallelism: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Per subtask, by index.
    pub subtasks: Vec<SubtaskSnapshot>,
}

impl OperatorSnapshot {
    /// Whether every subtask had finished.
    pub fn is_finished(&self) -> bool {
        !self.subtasks.is_empty() && self.subtasks.iter().all(|s| s.finished)
    }

    /// How the operator is named in messages.
    pub fn describe(&self) -> String {
        match &self.uid {
            Some(uid) => format!("'{}' (uid '{uid}', id {})", self.name, self.operator_id),
            None => format!("'{}' (id {})", self.name, self.operator_id),
        }
    }
}

/// The contents of a `_metadata` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// Always `eddy-checkpoint`.
    pub format: String,
    /// The format version.
    pub version: u32,
    /// The job that took it.
    pub job_id: JobId,
    /// That job's name.
    pub job_name: String,
    /// The checkpoint's id.
    pub checkpoint_id: u64,
    /// When it was triggered (ms since the epoch).
    pub timestamp: i64,
    /// Whether it is a savepoint.
    pub savepoint: bool,
    /// Every operator's state.
    pub operators: Vec<OperatorSnapshot>,
}

impl CheckpointMetadata {
    /// Metadata for checkpoint `checkpoint_id` of a job.
    pub fn new(
        job_id: JobId,
        job_name: &str,
        checkpoint_id: u64,
        timestamp: i64,
        savepoint: bool,
    ) -> Self {
        CheckpointMetadata {
            format: FORMAT.into(),
            version: VERSION,
            job_id,
            job_name: job_name.to_string(),
            checkpoint_id,
            timestamp,
            savepoint,
            operators: Vec::new(),
        }
    }

    /// Every distinct state file, with its path inside the store.
    pub fn files(&self) -> Vec<StateFile> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for op in &self.operators {
            for s in &op.subtasks {
                for f in s.files() {
                    if seen.insert(f.path.clone()) {
                        out.push(f.clone());
                    }
                }
            }
        }
        out
    }

    fn map_paths(&mut self, mut f: impl FnMut(&str) -> Result<String>) -> Result<()> {
        for op in &mut self.operators {
            for s in &mut op.subtasks {
                for file in s.files_mut() {
                    file.path = f(&file.path)?;
                }
            }
        }
        Ok(())
    }

    /// Writes `_metadata` into `dir`, with file paths relative to it. Returns its path.
    pub async fn write(&self, dir: &StorageLocation) -> Result<Path> {
        let mut relative = self.clone();
        relative.map_paths(|p| Ok(relative_path(dir.root(), &Path::from(p))))?;
        let json = serde_json::to_vec_pretty(&relative)
            .map_err(|e| RuntimeError::Serialization(e.to_string()))?;
        let path = dir.file(METADATA_FILE);
        dir.put(&path, json).await?;
        Ok(path)
    }

    /// Reads the `_metadata` of the checkpoint or savepoint directory `dir`, with file paths
    /// resolved inside its store.
    pub async fn read(dir: &StorageLocation) -> Result<Self> {
        let path = dir.file(METADATA_FILE);
        let shown = dir.display_path(&path);
        let bytes = dir.get(&path).await.map_err(|e| match e {
            RuntimeError::Storage { reason, .. } if reason.contains("does not exist") => {
                RuntimeError::storage(
                    format!("cannot read {shown}"),
                    "no such file: the directory is not a completed checkpoint or savepoint",
                )
            }
            e => e,
        })?;
        let mut meta: CheckpointMetadata = serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::storage(format!("{shown} is corrupt"), e.to_string()))?;
        if meta.format != FORMAT {
            return Err(RuntimeError::storage(
                format!("{shown} is not an Eddy checkpoint"),
                format!("format '{}'", meta.format),
            ));
        }
        if meta.version > VERSION {
            return Err(RuntimeError::storage(
                format!("{shown} was written by a newer Eddy"),
                format!(
                    "metadata version {} (this build reads up to {VERSION})",
                    meta.version
                ),
            ));
        }
        let root = dir.root().clone();
        meta.map_paths(|p| Ok(resolve_path(&root, p)?.to_string()))?;
        Ok(meta)
    }

    /// Checks that every state file exists and has the size and checksum recorded for it.
    pub async fn verify(&self, dir: &StorageLocation) -> Result<()> {
        for f in self.files() {
            let path = Path::from(f.path.as_str());
            let shown = dir.display_path(&path);
            let bytes = dir.get(&path).await?;
            if bytes.len() as u64 != f.size {
                return Err(RuntimeError::storage(
                    format!("state file {shown} is corrupt"),
                    format!("{} bytes, expected {}", bytes.len(), f.size),
                ));
            }
            if checksum(&bytes) != f.checksum {
                return Err(RuntimeError::storage(
                    format!("state file {shown} is corrupt"),
                    "checksum mismatch",
                ));
            }
            check_header(&bytes, &shown)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::storage::block_on;

    #[test]
    fn metadata_round_trips_with_relative_paths_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let root = StorageLocation::parse(dir.path().to_str().unwrap()).unwrap();
        let shared = root.child("shared");
        let chk = root.child("chk-3");
        let mut w = super::super::format::StateFileWriter::new();
        w.begin_section();
        w.put_raw(b"abc").unwrap();
        let span = w.end_section();
        let bytes = w.into_bytes();
        let file_path = shared.file("f1");
        block_on(shared.put(&file_path, bytes.clone())).unwrap();
        let mut meta = CheckpointMetadata::new(JobId::random(), "job", 3, 42, false);
        meta.operators.push(OperatorSnapshot {
            operator_id: OperatorId(7),
            name: "op".into(),
            uid: Some("u".into()),
            parallelism: 1,
            max_parallelism: 128,
            subtasks: vec![SubtaskSnapshot {
                finished: false,
                keyed: None,
                lists: vec![ListStateSnapshot {
                    name: "l".into(),
                    mode: Redistribution::EvenSplit,
                    file: StateFile {
                        path: file_path.to_string(),
                        size: bytes.len() as u64,
                        checksum: checksum(&bytes),
                    },
                    span,
                }],
            }],
        });
        block_on(meta.write(&chk)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("chk-3/_metadata")).unwrap();
        assert!(text.contains("\"../shared/f1\""), "{text}");
        let back = block_on(CheckpointMetadata::read(&chk)).unwrap();
        assert_eq!(back, meta);
        block_on(back.verify(&chk)).unwrap();

        // Corrupt the state file: verification names it.
        std::fs::write(dir.path().join("shared/f1"), b"EDDYST01xyz").unwrap();
        let err = block_on(back.verify(&chk)).unwrap_err().to_string();
        assert!(
            err.contains("shared/f1") && err.contains("checksum"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("shared/f1")).unwrap();
        let err = block_on(back.verify(&chk)).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");

        // A directory without metadata.
        let err = block_on(CheckpointMetadata::read(&root.child("nothing")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a completed checkpoint"), "{err}");
        std::fs::write(dir.path().join("chk-3/_metadata"), b"{ broken").unwrap();
        let err = block_on(CheckpointMetadata::read(&chk))
            .unwrap_err()
            .to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
