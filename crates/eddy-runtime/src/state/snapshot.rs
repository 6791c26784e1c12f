//! Keyed state on its way into and out of a checkpoint.
//!
//! A snapshot has a synchronous part, run by the task between two records, and an asynchronous
//! part, run on the checkpoint I/O pool while the task goes on. On the heap backend the
//! synchronous part encodes every entry (the task's state keeps changing afterwards); on the
//! LSM backend it writes cached changes into the tree and pins a consistent view of it, and
//! the asynchronous part reads that view. Either way the result is a [`KeyedSnapshotJob`] that
//! the asynchronous part turns into sections of a state file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use eddy_core::keys::KeyGroupRange;
use foldhash::fast::FixedState;
use hashbrown::HashMap;
use parking_lot::Mutex;

use super::key_bytes::KeyBytes;
use crate::checkpoint::format::{StateFileWriter, encode_entry, read_entries, section};
use crate::checkpoint::metadata::{
    KeyedFile, KeyedSection, KeyedSnapshot, KeyedStateInfo, KeyedStateKind, StateFile,
};
use crate::error::{Result, RuntimeError};

/// Raw entries of one state, per key group: encoded keys and encoded values.
pub(crate) type RawState = BTreeMap<u32, HashMap<KeyBytes, Vec<u8>, FixedState>>;

/// Collects a state's entries per key group, encoded, during the synchronous part.
pub struct GroupSink {
    start: u32,
    groups: Vec<Vec<u8>>,
}

impl GroupSink {
    pub(crate) fn new(range: KeyGroupRange) -> Self {
        GroupSink {
            start: range.start,
            groups: (0..range.len()).map(|_| Vec::new()).collect(),
        }
    }

    /// Adds an entry to `key_group`.
    #[inline]
    pub fn put(&mut self, key_group: u32, key: &[u8], value: &[u8]) -> Result<()> {
        let i = key_group
            .checked_sub(self.start)
            .filter(|i| (*i as usize) < self.groups.len())
            .ok_or_else(|| {
                RuntimeError::Internal(format!(
                    "state of key group {key_group} is held by a subtask that does not own it"
                ))
            })?;
        encode_entry(&mut self.groups[i as usize], key, Some(value))
    }

    pub(crate) fn into_groups(self) -> Vec<Vec<u8>> {
        self.groups
    }
}

/// The changed entries of one LSM state for an incremental snapshot, by tree key (key group
/// prefix, then composite key).
pub(crate) struct LsmDelta {
    /// Values taken from the table's cache in the synchronous part (`None`: removed).
    pub(crate) captured: Vec<(KeyBytes, Option<Vec<u8>>)>,
    /// Keys whose values are read from the pinned tree in the asynchronous part.
    pub(crate) from_tree: Vec<KeyBytes>,
}

/// A heap table's key groups, shared with the task until they are written (copy on write).
pub trait HeapSnapshot: Send {
    /// Appends the encoded entries of `key_group` to `out`.
    fn write_group(&self, key_group: u32, out: &mut Vec<u8>) -> Result<()>;
}

/// The heap part of one state in a snapshot.
pub(crate) enum HeapPart {
    /// Encoded in the synchronous part, per key group.
    Encoded(Vec<Vec<u8>>),
    /// Encoded in the asynchronous part.
    Shared(Box<dyn HeapSnapshot>),
}

/// An LSM state to write in the asynchronous part: all its entries, or its changes.
pub(crate) struct LsmStateJob {
    pub(crate) name: String,
    pub(crate) keyspace: fjall::Keyspace,
    pub(crate) delta: Option<LsmDelta>,
}

/// The LSM part of a snapshot.
pub(crate) struct LsmJob {
    pub(crate) snapshot: fjall::Snapshot,
    pub(crate) states: Vec<LsmStateJob>,
}

/// Where an incremental snapshot reports its file, so that the backend can build the next one
/// on it once the checkpoint completes.
#[derive(Clone, Default)]
pub(crate) struct IncrementReport {
    /// The files of the finished snapshot: what the next incremental snapshot builds on.
    pub(crate) files: Arc<Mutex<Option<Vec<KeyedFile>>>>,
    /// Set when writing failed: the next snapshot must be full.
    pub(crate) failed: Arc<AtomicBool>,
}

/// What the synchronous part of a keyed snapshot captured.
pub struct KeyedSnapshotJob {
    pub(crate) range: KeyGroupRange,
    pub(crate) heap: Vec<(KeyedStateInfo, HeapPart)>,
    pub(crate) lsm: Option<LsmJob>,
    /// Earlier files this snapshot builds on (incremental snapshots only).
    pub(crate) base: Vec<KeyedFile>,
    pub(crate) report: Option<IncrementReport>,
}

/// The sections a job wrote into a file, before the file's path and checksum are known.
pub struct WrittenKeyedState {
    range: KeyGroupRange,
    states: Vec<KeyedStateInfo>,
    sections: Vec<KeyedSection>,
    base: Vec<KeyedFile>,
    report: Option<IncrementReport>,
}

impl KeyedSnapshotJob {
    /// Writes the job's sections into `w` (run in the asynchronous part: it may read the LSM
    /// tree).
    pub fn write(self, w: &mut StateFileWriter) -> Result<WrittenKeyedState> {
        let result = self.write_sections(w);
        if result.is_err()
            && let Some(r) = &self.report
        {
            r.failed.store(true, Ordering::Release);
        }
        let (states, sections) = result?;
        Ok(WrittenKeyedState {
            range: self.range,
            states,
            sections,
            base: self.base,
            report: self.report,
        })
    }

    fn write_sections(
        &self,
        w: &mut StateFileWriter,
    ) -> Result<(Vec<KeyedStateInfo>, Vec<KeyedSection>)> {
        let mut states = Vec::new();
        let mut sections = Vec::new();
        let mut buf = Vec::new();
        for (info, part) in &self.heap {
            let idx = states.len() as u32;
            states.push(info.clone());
            for kg in self.range.start..=self.range.end {
                let bytes = match part {
                    HeapPart::Encoded(groups) => &groups[(kg - self.range.start) as usize],
                    HeapPart::Shared(table) => {
                        buf.clear();
                        table.write_group(kg, &mut buf)?;
                        &buf
                    }
                };
                if bytes.is_empty() {
                    continue;
                }
                w.begin_section();
                w.put_raw(bytes)?;
                sections.push(KeyedSection {
                    key_group: kg,
                    state: idx,
                    full: true,
                    span: w.end_section(),
                });
            }
        }
        let Some(lsm) = &self.lsm else {
            return Ok((states, sections));
        };
        let lsm_err = |e: fjall::Error| RuntimeError::StateBackend(e.to_string());
        use fjall::Readable;
        for job in &lsm.states {
            let idx = states.len() as u32;
            states.push(KeyedStateInfo {
                name: job.name.clone(),
                kind: KeyedStateKind::Table,
            });
            match &job.delta {
                None => {
                    for kg in self.range.start..=self.range.end {
                        let prefix = (kg as u16).to_be_bytes();
                        let mut started = false;
                        for guard in lsm.snapshot.prefix(&job.keyspace, prefix) {
                            let (k, v) = guard.into_inner().map_err(lsm_err)?;
                            if !started {
                                w.begin_section();
                                started = true;
                            }
                            w.put_entry(&k[2..], Some(&v))?;
                        }
                        if started {
                            sections.push(KeyedSection {
                                key_group: kg,
                                state: idx,
                                full: true,
                                span: w.end_section(),
                            });
                        }
                    }
                }
                Some(delta) => {
                    // Both lists merged in key order: each key group's keys are contiguous.
                    enum Source<'a> {
                        Captured(Option<&'a [u8]>),
                        Tree,
                    }
                    let mut all: Vec<(&KeyBytes, Source<'_>)> = delta
                        .captured
                        .iter()
                        .map(|(k, v)| (k, Source::Captured(v.as_deref())))
                        .chain(delta.from_tree.iter().map(|k| (k, Source::Tree)))
                        .collect();
                    all.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    let group = |k: &KeyBytes| u16::from_be_bytes([k[0], k[1]]) as u32;
                    let mut i = 0;
                    while i < all.len() {
                        let kg = group(all[i].0);
                        w.begin_section();
                        while i < all.len() && group(all[i].0) == kg {
                            let (key, source) = &all[i];
                            match source {
                                Source::Captured(v) => w.put_entry(&key[2..], *v)?,
                                Source::Tree => {
                                    let value = lsm
                                        .snapshot
                                        .get(&job.keyspace, &***key)
                                        .map_err(lsm_err)?;
                                    w.put_entry(&key[2..], value.as_deref())?;
                                }
                            }
                            i += 1;
                        }
                        sections.push(KeyedSection {
                            key_group: kg,
                            state: idx,
                            full: false,
                            span: w.end_section(),
                        });
                    }
                }
            }
        }
        // A state without sections in a full snapshot is empty; one without sections in an
        // incremental snapshot is unchanged.
        Ok((states, sections))
    }
}

impl WrittenKeyedState {
    /// Whether nothing was written (and no earlier file is needed).
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty() && self.base.is_empty()
    }

    /// The keyed snapshot, once the file is stored as `file`.
    pub fn finish(self, file: &StateFile) -> KeyedSnapshot {
        let this = KeyedFile {
            file: file.clone(),
            states: self.states,
            sections: self.sections,
        };
        let mut files = self.base;
        if !this.sections.is_empty() {
            files.push(this);
        }
        if let Some(r) = &self.report {
            *r.files.lock() = Some(files.clone());
        }
        KeyedSnapshot {
            key_group_start: self.range.start,
            key_group_end: self.range.end,
            files,
        }
    }
}

/// A state file read for restore, with the sections of the key groups a subtask owns.
pub struct RestoreFile {
    /// The file's bytes.
    pub bytes: Bytes,
    /// How the file is named in messages.
    pub shown: String,
    /// The key groups of the snapshot the file belongs to.
    pub key_groups: (u32, u32),
    /// Its states.
    pub states: Vec<KeyedStateInfo>,
    /// Its sections of the subtask's key groups, in file order.
    pub sections: Vec<KeyedSection>,
}

/// The keyed state one subtask restores: files to apply in order.
#[derive(Default)]
pub struct KeyedRestore {
    /// The files, oldest first.
    pub files: Vec<RestoreFile>,
    /// When the subtask owns exactly the key groups of one earlier subtask of the same job, the
    /// files of that subtask's snapshot: incremental snapshots can go on building on them.
    pub chain: Option<Vec<KeyedFile>>,
}

impl KeyedRestore {
    /// Calls `f(state, kind, key_group, full, entries)` for every section, in order.
    pub(crate) fn for_each_section(
        &self,
        mut f: impl FnMut(&str, KeyedStateKind, u32, bool, &[u8]) -> Result<()>,
    ) -> Result<()> {
        for file in &self.files {
            for s in &file.sections {
                let info = file.states.get(s.state as usize).ok_or_else(|| {
                    RuntimeError::storage(
                        format!("state file {}", file.shown),
                        format!("section refers to unknown state {}", s.state),
                    )
                })?;
                let bytes = section(&file.bytes, s.span, &file.shown)?;
                f(&info.name, info.kind, s.key_group, s.full, bytes)?;
            }
        }
        Ok(())
    }
}

/// Applies a section's entries to raw state.
pub(crate) fn apply_raw(
    raw: &mut RawState,
    key_group: u32,
    full: bool,
    bytes: &[u8],
) -> Result<()> {
    let group = raw.entry(key_group).or_default();
    if full {
        group.clear();
    }
    read_entries(bytes, |k, v| {
        match v {
            Some(v) => {
                group.insert(KeyBytes::new(k), v.to_vec());
            }
            None => {
                group.remove(k);
            }
        }
        Ok(())
    })
}
