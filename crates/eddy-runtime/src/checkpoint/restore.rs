//! Restoring a job from a checkpoint or savepoint: matching operators by id, and dealing their
//! state out to the new subtasks, whatever the new parallelism.
//!
//! - **Keyed state** follows key groups: a new subtask reads, from every old subtask whose key
//!   groups overlap its own, only the sections of the key groups it now owns.
//! - **List state** is split evenly (the old subtasks' elements, in order, cut into contiguous
//!   runs; unchanged when the parallelism is), **union** state goes whole to every subtask, and
//!   **broadcast** state is restored from one copy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use eddy_core::graph::JobGraph;
use eddy_core::ids::OperatorId;
use eddy_core::keys::KeyGroupRange;
use object_store::path::Path;

use super::format::{Span, section};
use super::metadata::{CheckpointMetadata, KeyedSection, OperatorSnapshot};
use super::storage::{StorageLocation, block_on};
use crate::error::{Result, RuntimeError};
use crate::state::{KeyedRestore, OperatorRestore, Redistribution, RestoreFile, RestoredList};

/// A completed checkpoint or savepoint to restore from.
pub struct RestoreSource {
    /// Its metadata, with file paths inside its store.
    pub metadata: CheckpointMetadata,
    /// The directory holding `_metadata`.
    pub location: StorageLocation,
    /// Whether this job run took it (a failover): incremental snapshots may build on its files.
    pub same_job: bool,
}

impl RestoreSource {
    /// Reads `_metadata` from `location` and checks every state file it lists.
    pub fn load(location: StorageLocation, same_job: bool) -> Result<Self> {
        let metadata = block_on(CheckpointMetadata::read(&location))?;
        block_on(metadata.verify(&location))?;
        Ok(RestoreSource {
            metadata,
            location,
            same_job,
        })
    }
}

struct OperatorPlan {
    snapshot: usize,
    new_parallelism: u32,
    lists: Vec<BTreeMap<String, RestoredList>>,
    finished: Vec<bool>,
}

/// What every operator subtask of a job restores.
pub struct RestorePlan {
    source: Arc<RestoreSource>,
    operators: HashMap<OperatorId, OperatorPlan>,
}

impl RestorePlan {
    /// Matches the snapshot's operators with `job`'s and redistributes operator state. State of
    /// an operator the job no longer has is an error unless `allow_non_restored_state`.
    pub fn new(
        source: Arc<RestoreSource>,
        job: &JobGraph,
        allow_non_restored_state: bool,
    ) -> Result<Self> {
        let mut targets: HashMap<OperatorId, (String, u32, u32)> = HashMap::new();
        for v in &job.vertices {
            for op in &v.operators {
                targets.insert(
                    op.operator_id,
                    (op.name.clone(), v.parallelism, v.max_parallelism),
                );
            }
        }
        let mut operators = HashMap::new();
        for (i, snap) in source.metadata.operators.iter().enumerate() {
            let Some((name, parallelism, max_parallelism)) = targets.get(&snap.operator_id) else {
                if snap.subtasks.iter().all(|s| s.is_empty()) || allow_non_restored_state {
                    tracing::warn!(operator = %snap.describe(), "state of an operator the job no longer has is not restored");
                    continue;
                }
                return Err(RuntimeError::Restore(format!(
                    "cannot restore: {} has state for operator {}, which this job does not have. Give the \
                     operator the same uid as before, or set \
                     execution.savepoint.ignore-unclaimed-state: true to skip its state",
                    source.location.display(),
                    snap.describe()
                )));
            };
            if *max_parallelism != snap.max_parallelism && has_keyed_state(snap) {
                return Err(RuntimeError::Restore(format!(
                    "cannot restore: operator '{name}' had max parallelism {} and now has {max_parallelism}; \
                     keyed state cannot be redistributed across a different number of key \
                     groups (set pipeline.max-parallelism: {})",
                    snap.max_parallelism, snap.max_parallelism
                )));
            }
            let lists = redistribute_lists(&source, snap, *parallelism)?;
            let finished = if *parallelism == snap.parallelism {
                snap.subtasks.iter().map(|s| s.finished).collect()
            } else {
                vec![snap.is_finished(); *parallelism as usize]
            };
            operators.insert(
                snap.operator_id,
                OperatorPlan {
                    snapshot: i,
                    new_parallelism: *parallelism,
                    lists,
                    finished,
                },
            );
        }
        Ok(RestorePlan { source, operators })
    }

    /// The snapshot restored from.
    pub fn source(&self) -> &Arc<RestoreSource> {
        &self.source
    }

    /// Where the snapshot is, for messages.
    pub fn location(&self) -> &StorageLocation {
        &self.source.location
    }

    /// The snapshot's id.
    pub fn checkpoint_id(&self) -> u64 {
        self.source.metadata.checkpoint_id
    }

    /// Whether operator `op` had finished in subtask `subtask`'s share of the snapshot.
    pub fn is_finished(&self, op: OperatorId, subtask: u32) -> bool {
        self.operators
            .get(&op)
            .and_then(|p| p.finished.get(subtask as usize).copied())
            .unwrap_or(false)
    }

    /// Whether the snapshot has operator `op`.
    pub fn has_operator(&self, op: OperatorId) -> bool {
        self.operators.contains_key(&op)
    }

    /// What subtask `subtask` (owning `range`) of operator `op` restores, with its keyed state
    /// read from storage; `None` if the snapshot has no such operator.
    pub fn restore_for(
        &self,
        op: OperatorId,
        subtask: u32,
        range: KeyGroupRange,
    ) -> Result<Option<OperatorRestore>> {
        let Some(plan) = self.operators.get(&op) else {
            return Ok(None);
        };
        let snap = &self.source.metadata.operators[plan.snapshot];
        let lists = plan
            .lists
            .get(subtask as usize)
            .cloned()
            .unwrap_or_default();
        let keyed = self.keyed_restore(snap, plan, subtask, range)?;
        Ok(Some(OperatorRestore { keyed, lists }))
    }

    fn keyed_restore(
        &self,
        snap: &OperatorSnapshot,
        plan: &OperatorPlan,
        subtask: u32,
        range: KeyGroupRange,
    ) -> Result<Option<KeyedRestore>> {
        let mut restore = KeyedRestore::default();
        let mut any = false;
        for (old, s) in snap.subtasks.iter().enumerate() {
            let Some(keyed) = &s.keyed else { continue };
            let old_range = KeyGroupRange::new(keyed.key_group_start, keyed.key_group_end);
            if old_range.end < range.start || old_range.start > range.end {
                continue;
            }
            any = true;
            for f in &keyed.files {
                let sections: Vec<&KeyedSection> = f
                    .sections
                    .iter()
                    .filter(|s| range.contains(s.key_group))
                    .collect();
                let path = Path::from(f.file.path.as_str());
                let shown = self.source.location.display_path(&path);
                let ranges: Vec<std::ops::Range<u64>> = sections
                    .iter()
                    .map(|s| s.span.offset..s.span.offset + s.span.len)
                    .collect();
                let parts = if ranges.is_empty() {
                    Vec::new()
                } else {
                    block_on(self.source.location.get_ranges(&path, &ranges))?
                };
                // The sections, back to back, with their spans moved accordingly.
                let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                let mut rebased = Vec::with_capacity(sections.len());
                for (s, part) in sections.iter().zip(&parts) {
                    if part.len() as u64 != s.span.len {
                        return Err(RuntimeError::storage(
                            format!("state file {shown} is corrupt"),
                            "it is shorter than its sections",
                        ));
                    }
                    let mut s = (*s).clone();
                    s.span = Span {
                        offset: bytes.len() as u64,
                        len: part.len() as u64,
                    };
                    bytes.extend_from_slice(part);
                    rebased.push(s);
                }
                restore.files.push(RestoreFile {
                    bytes: bytes.into(),
                    shown,
                    key_groups: (old_range.start, old_range.end),
                    states: f.states.clone(),
                    sections: rebased,
                });
            }
            if self.source.same_job
                && plan.new_parallelism == snap.parallelism
                && old as u32 == subtask
                && old_range == range
            {
                restore.chain = Some(keyed.files.clone());
            }
        }
        Ok(any.then_some(restore))
    }
}

fn has_keyed_state(snap: &OperatorSnapshot) -> bool {
    snap.subtasks.iter().any(|s| s.keyed.is_some())
}

/// The encoded elements of one list state of one subtask.
type Elements = Vec<Vec<u8>>;

/// Reads every list state of `snap` and deals it out to `parallelism` new subtasks.
fn redistribute_lists(
    source: &RestoreSource,
    snap: &OperatorSnapshot,
    parallelism: u32,
) -> Result<Vec<BTreeMap<String, RestoredList>>> {
    // name -> (mode, elements per old subtask)
    let mut states: BTreeMap<String, (Redistribution, Vec<Elements>)> = BTreeMap::new();
    let mut files: HashMap<String, bytes::Bytes> = HashMap::new();
    for (i, s) in snap.subtasks.iter().enumerate() {
        for l in &s.lists {
            let path = Path::from(l.file.path.as_str());
            let shown = source.location.display_path(&path);
            if !files.contains_key(&l.file.path) {
                let bytes = block_on(source.location.get(&path))?;
                files.insert(l.file.path.clone(), bytes);
            }
            let file = &files[&l.file.path];
            let elements: Vec<Vec<u8>> = postcard::from_bytes(section(file, l.span, &shown)?)
                .map_err(|e| {
                    RuntimeError::storage(
                        format!("state file {shown} is corrupt"),
                        format!("operator state '{}': {e}", l.name),
                    )
                })?;
            let entry = states
                .entry(l.name.clone())
                .or_insert_with(|| (l.mode, vec![Vec::new(); snap.subtasks.len()]));
            entry.1[i] = elements;
        }
    }
    let p = parallelism as usize;
    let mut out: Vec<BTreeMap<String, RestoredList>> = vec![BTreeMap::new(); p];
    for (name, (mode, per_old)) in states {
        let per_new: Vec<Elements> = match mode {
            Redistribution::EvenSplit if per_old.len() == p => per_old,
            Redistribution::EvenSplit => {
                let all: Vec<Vec<u8>> = per_old.into_iter().flatten().collect();
                split_evenly(all, p)
            }
            Redistribution::Union => {
                let all: Vec<Vec<u8>> = per_old.into_iter().flatten().collect();
                vec![all; p]
            }
            Redistribution::InFlight if per_old.len() == p => per_old,
            Redistribution::InFlight => {
                return Err(RuntimeError::Restore(format!(
                    "cannot restore: {} is an unaligned checkpoint holding in-flight data of \
                     '{}', taken at parallelism {}; the data belongs to those subtasks' \
                     channels, so restore it at parallelism {} (or rescale from a savepoint, \
                     which is always aligned)",
                    source.location.display(),
                    snap.describe(),
                    per_old.len(),
                    per_old.len()
                )));
            }
            Redistribution::Broadcast => {
                let first = per_old
                    .into_iter()
                    .find(|e| !e.is_empty())
                    .unwrap_or_default();
                vec![first; p]
            }
        };
        for (i, elements) in per_new.into_iter().enumerate() {
            out[i].insert(name.clone(), (mode, elements));
        }
    }
    Ok(out)
}

/// Cuts `all` into `n` contiguous runs whose lengths differ by at most one.
fn split_evenly<T>(all: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let len = all.len();
    let mut out: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    let mut iter = all.into_iter();
    for (i, part) in out.iter_mut().enumerate() {
        let size = len / n + usize::from(i < len % n);
        part.extend(iter.by_ref().take(size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_keeps_order_and_balances() {
        let parts = split_evenly((0..10).collect(), 4);
        assert_eq!(
            parts,
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7], vec![8, 9]]
        );
        let parts = split_evenly(vec![1], 3);
        assert_eq!(parts, vec![vec![1], vec![], vec![]]);
    }
}
