//! The checkpoint coordinator: triggers checkpoints and savepoints, collects acknowledgements,
//! writes `_metadata` when every task has acknowledged, notifies tasks, keeps the last *n*
//! completed checkpoints and deletes the files nothing refers to any more.
//!
//! It lives in the job master thread and is driven by it: [`CheckpointCoordinator::tick`] on a
//! timer, and the `on_*` methods when tasks report. It sends messages to tasks through a
//! [`TaskMessenger`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use eddy_core::config::{
    CheckpointingModeOption, Configuration, ExternalizedCheckpointRetention, StateBackendType,
    options,
};
use eddy_core::element::{CheckpointBarrier, CheckpointingMode, SnapshotKind};
use eddy_core::graph::JobGraph;
use eddy_core::ids::OperatorId;
use object_store::path::Path;
use parking_lot::Mutex;
use serde::Serialize;

use super::metadata::{CheckpointMetadata, OperatorSnapshot, SubtaskSnapshot};
use super::storage::{StorageLocation, block_on};
use super::store::{CheckpointPointer, CompletedCheckpointStore};
use crate::error::{Result, RuntimeError};
use crate::state::{BackendConfig, BackendKind, LsmOptions};
use crate::task::{SnapshotTargets, SubtaskCheckpointStats, TaskMessage};

/// A subtask: (vertex index, subtask index).
pub type TaskKey = (usize, u32);

/// How a job checkpoints, from its configuration.
#[derive(Clone, Debug)]
pub struct CheckpointSettings {
    /// Periodic checkpoint interval; `None` disables periodic checkpoints.
    pub interval: Option<Duration>,
    /// Exactly-once or at-least-once.
    pub mode: CheckpointingMode,
    /// With unaligned checkpoints (exactly-once only), the aligned-checkpoint timeout after
    /// which a task stops aligning (zero: barriers are unaligned from the start).
    pub unaligned: Option<Duration>,
    /// A checkpoint not complete after this long is aborted.
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the start of the next.
    pub min_pause: Duration,
    /// Checkpoints in progress at once.
    pub max_concurrent: u32,
    /// Consecutive failed checkpoints tolerated before the job fails over.
    pub tolerable_failures: u32,
    /// Completed checkpoints kept.
    pub num_retained: u32,
    /// What happens to checkpoints when the job ends.
    pub retention: ExternalizedCheckpointRetention,
    /// Where checkpoints go (`<dir>/<job id>/chk-<n>`).
    pub checkpoints_dir: String,
    /// Default savepoint directory.
    pub savepoints_dir: Option<String>,
    /// Keyed state backend.
    pub backend: BackendConfig,
    /// Checkpoints whose statistics are kept (`web.checkpoints.history`).
    pub history: usize,
}

impl CheckpointSettings {
    /// Reads the settings from a job's configuration; errors name the key at fault.
    pub fn from_config(conf: &Configuration) -> Result<Self> {
        let interval = conf
            .get_optional(&options::CHECKPOINTING_INTERVAL)?
            .filter(|d| !d.is_zero());
        let mode = match conf.get(&options::CHECKPOINTING_MODE)? {
            CheckpointingModeOption::ExactlyOnce => CheckpointingMode::ExactlyOnce,
            CheckpointingModeOption::AtLeastOnce => CheckpointingMode::AtLeastOnce,
        };
        // As in Flink, unaligned checkpoints apply to exactly-once only: at-least-once does
        // not align anyway.
        let unaligned = conf.get(&options::CHECKPOINTING_UNALIGNED)?;
        if unaligned && mode == CheckpointingMode::AtLeastOnce {
            tracing::warn!(
                "execution.checkpointing.unaligned.enabled is ignored with execution.checkpointing.mode: AT_LEAST_ONCE"
            );
        }
        let unaligned = (unaligned && mode == CheckpointingMode::ExactlyOnce)
            .then(|| conf.get(&options::CHECKPOINTING_ALIGNED_TIMEOUT))
            .transpose()?;
        let tmp_base = conf
            .get_optional(&options::IO_TMP_DIRS)?
            .and_then(|d| d.split([';', ',']).next().map(str::to_string))
            .filter(|d| !d.trim().is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let checkpoints_dir = match conf.get_optional(&options::CHECKPOINTS_DIR)? {
            Some(d) => d,
            None => tmp_base.join("eddy-checkpoints").display().to_string(),
        };
        let checkpointing = interval.is_some();
        let incremental = conf.get(&options::CHECKPOINTING_INCREMENTAL)?;
        let kind = match conf.get(&options::STATE_BACKEND)? {
            StateBackendType::HashMap => BackendKind::HashMap,
            StateBackendType::Lsm => BackendKind::Lsm(LsmOptions {
                base_dir: tmp_base,
                cache_entries: conf.get(&options::LSM_CACHE_ENTRIES)? as usize,
                memtable_size: conf.get(&options::LSM_MEMTABLE_SIZE)?.0,
                block_cache_size: conf.get(&options::LSM_BLOCK_CACHE_SIZE)?.0,
                track_changes: incremental && checkpointing,
            }),
        };
        Ok(CheckpointSettings {
            interval,
            mode,
            unaligned,
            timeout: conf.get(&options::CHECKPOINTING_TIMEOUT)?,
            min_pause: conf.get(&options::CHECKPOINTING_MIN_PAUSE)?,
            max_concurrent: conf.get(&options::CHECKPOINTING_MAX_CONCURRENT)?.max(1),
            tolerable_failures: conf.get(&options::CHECKPOINTING_TOLERABLE_FAILURES)?,
            num_retained: conf.get(&options::CHECKPOINTING_NUM_RETAINED)?.max(1),
            retention: conf.get(&options::CHECKPOINTING_EXTERNALIZED)?,
            checkpoints_dir,
            savepoints_dir: conf.get_optional(&options::SAVEPOINTS_DIR)?,
            backend: BackendConfig {
                kind,
                incremental,
                max_deltas: conf.get(&options::LSM_MAX_DELTAS)?,
            },
            history: conf.get(&options::WEB_CHECKPOINTS_HISTORY)?.max(1) as usize,
        })
    }

    /// Whether periodic checkpoints are on.
    pub fn enabled(&self) -> bool {
        self.interval.is_some()
    }
}

/// Where a checkpoint stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckpointStatus {
    /// Waiting for acknowledgements.
    InProgress,
    /// Every task acknowledged; `_metadata` is written.
    Completed,
    /// Aborted.
    Failed,
}

/// One subtask's part in a checkpoint.
#[derive(Clone, Debug, Serialize)]
pub struct SubtaskStats {
    /// The task's name.
    pub task: String,
    /// The task's vertex, by index in the JobGraph.
    pub vertex: usize,
    /// The subtask's index.
    pub subtask: u32,
    /// When its acknowledgement arrived (ms since the epoch).
    pub ack_timestamp: i64,
    /// Timings and size.
    #[serde(flatten)]
    pub stats: SubtaskCheckpointStats,
}

/// Statistics of one checkpoint or savepoint.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointStats {
    /// The checkpoint's id.
    pub id: u64,
    /// Its status.
    pub status: CheckpointStatus,
    /// Whether it is a savepoint.
    pub is_savepoint: bool,
    /// When it was triggered (ms since the epoch).
    pub trigger_timestamp: i64,
    /// From trigger to completion (or to now, while in progress), in ms.
    pub end_to_end_duration_ms: u64,
    /// Bytes written by all subtasks.
    pub state_size: u64,
    /// Bytes of in-flight data in it (unaligned checkpoints).
    pub persisted_data: u64,
    /// Whether some subtask took it unaligned.
    pub unaligned: bool,
    /// Subtasks that take part.
    pub num_subtasks: usize,
    /// Subtasks that acknowledged.
    pub num_acknowledged_subtasks: usize,
    /// Where `_metadata` was written, once completed.
    pub external_path: Option<String>,
    /// Why it failed.
    pub failure_message: Option<String>,
    /// Per subtask, in acknowledgement order.
    pub subtasks: Vec<SubtaskStats>,
}

/// Counts and recent history of a job's checkpoints (what Flink's REST API reports).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckpointingStatistics {
    /// Checkpoints triggered.
    pub triggered: u64,
    /// In progress now.
    pub in_progress: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Times the job restored from a checkpoint or savepoint.
    pub restored: u64,
    /// The most recent checkpoints, newest last.
    pub history: VecDeque<CheckpointStats>,
    /// The last completed one.
    pub latest_completed: Option<CheckpointStats>,
    /// The last failed one.
    pub latest_failed: Option<CheckpointStats>,
    /// The last restore: checkpoint id and path.
    pub latest_restored: Option<(u64, String)>,
}

/// How the coordinator reaches tasks.
pub trait TaskMessenger {
    /// Sends `msg` to a subtask; false if it is gone.
    fn send(&self, task: TaskKey, msg: TaskMessage) -> bool;
    /// Every subtask of the current attempt.
    fn tasks(&self) -> Vec<TaskKey>;
}

/// A request for a savepoint, answered when it completes or fails.
pub type SavepointReply = Sender<std::result::Result<String, String>>;

struct Pending {
    kind: SnapshotKind,
    timestamp: i64,
    started: Instant,
    /// Directory of `_metadata` (and of state files, for savepoints).
    dir: StorageLocation,
    acks: HashMap<TaskKey, Vec<(OperatorId, SubtaskSnapshot)>>,
    waiting: HashSet<TaskKey>,
    stats: CheckpointStats,
    reply: Option<SavepointReply>,
}

/// A completed checkpoint kept for recovery.
#[derive(Clone)]
pub struct CompletedCheckpoint {
    /// Its id.
    pub id: u64,
    /// Directory of its `_metadata`.
    pub dir: StorageLocation,
    /// Whether it is a savepoint (owned by the user: never deleted).
    pub savepoint: bool,
    /// Every task's state.
    tasks: HashMap<TaskKey, Vec<(OperatorId, SubtaskSnapshot)>>,
    /// Every state file it refers to.
    files: BTreeSet<String>,
}

/// Triggers and completes the checkpoints of one job.
pub struct CheckpointCoordinator {
    settings: CheckpointSettings,
    job: Arc<JobGraph>,
    /// `<checkpoints dir>/<job id>`.
    root: StorageLocation,
    shared: StorageLocation,
    targets: SnapshotTargets,
    /// Where completed checkpoints are recorded and ids come from.
    store: Box<dyn CompletedCheckpointStore>,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    completed: VecDeque<CompletedCheckpoint>,
    latest_savepoint: Option<CompletedCheckpoint>,
    last_end: Option<Instant>,
    next_periodic: Option<Instant>,
    consecutive_failures: u32,
    /// Subtasks that have ended and exited, with their last state.
    exited: HashMap<TaskKey, Vec<(OperatorId, SubtaskSnapshot)>>,
    /// Subtasks of source vertices whose input has ended.
    sources_ended: HashSet<TaskKey>,
    /// Trigger a checkpoint as soon as possible: every source has ended.
    final_requested: bool,
    /// Files no retained checkpoint refers to, deletable once every checkpoint triggered
    /// before they were released has ended.
    graveyard: Vec<(u64, Vec<String>)>,
    stats: Arc<Mutex<CheckpointingStatistics>>,
    /// Stop-with-savepoint requests that failed, with the reason.
    failed_stops: HashMap<u64, String>,
}

impl CheckpointCoordinator {
    /// A coordinator for `job`, continuing checkpoint ids after `first_id - 1`, that records its
    /// checkpoints in `store` and takes their ids from it.
    pub fn new(
        settings: CheckpointSettings,
        job: Arc<JobGraph>,
        targets: SnapshotTargets,
        stats: Arc<Mutex<CheckpointingStatistics>>,
        first_id: u64,
        store: Box<dyn CompletedCheckpointStore>,
    ) -> Result<Self> {
        let root =
            StorageLocation::parse(&settings.checkpoints_dir)?.child(&job.job_id.to_string());
        let shared = root.child("shared");
        let next_periodic = settings.interval.map(|i| Instant::now() + i);
        Ok(CheckpointCoordinator {
            settings,
            job,
            shared,
            root,
            targets,
            store,
            next_id: first_id.max(1),
            pending: BTreeMap::new(),
            completed: VecDeque::new(),
            latest_savepoint: None,
            last_end: None,
            next_periodic,
            consecutive_failures: 0,
            exited: HashMap::new(),
            sources_ended: HashSet::new(),
            final_requested: false,
            graveyard: Vec::new(),
            stats,
            failed_stops: HashMap::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &CheckpointSettings {
        &self.settings
    }

    /// The job's checkpoint directory.
    pub fn root(&self) -> &StorageLocation {
        &self.root
    }

    /// When [`Self::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self
            .pending
            .values()
            .map(|p| p.started + self.settings.timeout)
            .min();
        let trigger = if self.pending.len() >= self.settings.max_concurrent as usize {
            // The completion (or abort) of a pending checkpoint comes with an event.
            None
        } else if self.final_requested {
            Some(Instant::now())
        } else {
            self.next_periodic
        };
        let trigger = match (trigger, self.last_end) {
            (Some(t), Some(end)) => Some(t.max(end + self.settings.min_pause)),
            (t, _) => t,
        };
        match (timeout, trigger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Triggers a periodic checkpoint when due and aborts expired ones. An error means the job
    /// has failed too many checkpoints in a row and must fail over.
    pub fn tick(&mut self, tasks: &dyn TaskMessenger) -> Result<()> {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.started + self.settings.timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let timeout = self.settings.timeout;
            self.abort(
                id,
                &format!(
                    "it did not complete within execution.checkpointing.timeout ({timeout:?})"
                ),
                tasks,
                true,
            )?;
        }
        let due = self.final_requested || self.next_periodic.is_some_and(|t| now >= t);
        if due && self.can_trigger_periodic(now) {
            self.final_requested = false;
            match self.trigger(SnapshotKind::Checkpoint, None, None, tasks) {
                Ok(_) => {}
                // No id from the store (ZooKeeper unreachable for a moment): the next periodic
                // checkpoint tries again (and serves as the final one, if this was).
                Err(RuntimeError::HighAvailability(reason)) => {
                    tracing::warn!(job = %self.job.name, reason, "cannot start a checkpoint");
                }
                Err(e) => return Err(e),
            }
            self.next_periodic = self.settings.interval.map(|i| now + i);
        }
        Ok(())
    }

    fn can_trigger_periodic(&self, now: Instant) -> bool {
        if self.pending.len() >= self.settings.max_concurrent as usize {
            return false;
        }
        match self.last_end {
            Some(end) => now >= end + self.settings.min_pause,
            None => true,
        }
    }

    /// Triggers a checkpoint or savepoint now. Savepoints go to `dir` (or the configured
    /// savepoint directory); `reply` learns their path when they complete.
    pub fn trigger(
        &mut self,
        kind: SnapshotKind,
        dir: Option<String>,
        reply: Option<SavepointReply>,
        tasks: &dyn TaskMessenger,
    ) -> Result<u64> {
        let id = self.store.next_checkpoint_id(self.next_id)?;
        self.next_id = id + 1;
        let (meta_dir, files_dir) = if kind.is_savepoint() {
            let base = dir
                .or_else(|| self.settings.savepoints_dir.clone())
                .ok_or_else(|| {
                    RuntimeError::user(
                        "no savepoint directory: pass one, or set execution.checkpointing.savepoint-dir",
                    )
                })?;
            let job = self.job.job_id.to_string();
            let name = format!(
                "savepoint-{}-{}",
                &job[..6.min(job.len())],
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            let d = StorageLocation::parse(&base)?.child(&name);
            (d.clone(), d)
        } else {
            (self.root.child(&format!("chk-{id}")), self.shared.clone())
        };
        self.targets.insert(id, files_dir);
        let timestamp = eddy_core::time::now_millis();
        // Savepoints are always aligned, as in Flink.
        let checkpoint = kind == SnapshotKind::Checkpoint;
        let barrier = CheckpointBarrier {
            id,
            timestamp,
            kind,
            unaligned: checkpoint && self.settings.unaligned.is_some_and(|t| t.is_zero()),
            announce: checkpoint && self.settings.unaligned.is_some_and(|t| !t.is_zero()),
        };
        let all = tasks.tasks();
        let mut pending = Pending {
            kind,
            timestamp,
            started: Instant::now(),
            dir: meta_dir,
            acks: HashMap::new(),
            waiting: HashSet::new(),
            stats: CheckpointStats {
                id,
                status: CheckpointStatus::InProgress,
                is_savepoint: kind.is_savepoint(),
                trigger_timestamp: timestamp,
                end_to_end_duration_ms: 0,
                state_size: 0,
                persisted_data: 0,
                unaligned: barrier.unaligned,
                num_subtasks: all.len(),
                num_acknowledged_subtasks: 0,
                external_path: None,
                failure_message: None,
                subtasks: Vec::new(),
            },
            reply,
        };
        for t in &all {
            match self.exited.get(t) {
                Some(state) => {
                    pending.acks.insert(*t, state.clone());
                    pending.stats.num_acknowledged_subtasks += 1;
                }
                None => {
                    pending.waiting.insert(*t);
                }
            }
        }
        tracing::info!(job = %self.job.name, checkpoint = id, ?kind, "triggering checkpoint");
        {
            let mut s = self.stats.lock();
            s.triggered += 1;
            s.in_progress += 1;
        }
        self.pending.insert(id, pending);
        for t in all {
            if self.job.vertices[t.0].is_source && !self.exited.contains_key(&t) {
                tasks.send(t, TaskMessage::TriggerCheckpoint(barrier));
            }
        }
        self.maybe_complete(id, tasks)?;
        Ok(id)
    }

    /// A subtask acknowledged checkpoint `id` with its state.
    pub fn on_ack(
        &mut self,
        id: u64,
        task: TaskKey,
        states: Vec<(OperatorId, SubtaskSnapshot)>,
        stats: SubtaskCheckpointStats,
        tasks: &dyn TaskMessenger,
    ) -> Result<()> {
        let Some(p) = self.pending.get_mut(&id) else {
            return Ok(());
        };
        if !p.waiting.remove(&task) {
            return Ok(());
        }
        p.acks.insert(task, states);
        p.stats.num_acknowledged_subtasks += 1;
        p.stats.state_size += stats.state_size;
        p.stats.persisted_data += stats.persisted_data;
        p.stats.unaligned |= stats.unaligned;
        p.stats.subtasks.push(SubtaskStats {
            task: self.job.vertices[task.0].name.clone(),
            vertex: task.0,
            subtask: task.1,
            ack_timestamp: eddy_core::time::now_millis(),
            stats,
        });
        self.maybe_complete(id, tasks)
    }

    /// A subtask declined checkpoint `id`. A decline because the task is ending (`task_ending`)
    /// aborts the checkpoint without counting against `tolerable-failed-checkpoints`, as Flink
    /// does for a task failure: the task's own end reports the cause.
    pub fn on_decline(
        &mut self,
        id: u64,
        task: TaskKey,
        reason: &str,
        task_ending: bool,
        tasks: &dyn TaskMessenger,
    ) -> Result<()> {
        if !self.pending.contains_key(&id) {
            return Ok(());
        }
        let name = &self.job.vertices[task.0].name;
        let reason = format!("task '{name}' ({}) declined it: {reason}", task.1 + 1);
        self.abort(id, &reason, tasks, !task_ending)
    }

    /// A source subtask's input ended. Once every source has, a checkpoint is taken at once,
    /// so that the job can finish without waiting for the next interval.
    pub fn on_end_of_data(&mut self, task: TaskKey) {
        if !self.job.vertices[task.0].is_source {
            return;
        }
        self.sources_ended.insert(task);
        let sources: usize = self
            .job
            .vertices
            .iter()
            .filter(|v| v.is_source)
            .map(|v| v.parallelism as usize)
            .sum();
        if self.settings.enabled() && self.sources_ended.len() == sources {
            self.final_requested = true;
        }
    }

    /// A subtask exited after its final checkpoint; later checkpoints record it as finished,
    /// with the state it had then.
    pub fn on_task_exited(&mut self, task: TaskKey, tasks: &dyn TaskMessenger) -> Result<()> {
        let state = self
            .completed
            .iter()
            .chain(self.latest_savepoint.iter())
            .max_by_key(|c| c.id)
            .and_then(|c| c.tasks.get(&task).cloned())
            .unwrap_or_default();
        self.exited.insert(task, state.clone());
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.pending.get_mut(&id)
                && p.waiting.remove(&task)
            {
                p.acks.insert(task, state.clone());
                p.stats.num_acknowledged_subtasks += 1;
                self.maybe_complete(id, tasks)?;
            }
        }
        Ok(())
    }

    fn maybe_complete(&mut self, id: u64, tasks: &dyn TaskMessenger) -> Result<()> {
        if !self.pending.get(&id).is_some_and(|p| p.waiting.is_empty()) {
            return Ok(());
        }
        let Some(mut p) = self.pending.remove(&id) else {
            return Ok(());
        };
        let recorded = self.finalize(id, &p).and_then(|completed| {
            match self.store.add_checkpoint(&self.pointers_with(&completed)) {
                Ok(()) => Ok(completed),
                Err(e) => {
                    // Not completed: its metadata must not make it look so to a reader of the
                    // directory. (Its id is this JobManager's alone, from the store's counter.)
                    let meta = completed.dir.file(super::metadata::METADATA_FILE);
                    if let Err(d) = block_on(completed.dir.delete(&meta)) {
                        tracing::warn!(error = %d, "cannot delete an unrecorded checkpoint's metadata");
                    }
                    Err(e)
                }
            }
        });
        match recorded {
            Ok(completed) => {
                let path = completed.dir.display().to_string();
                p.stats.status = CheckpointStatus::Completed;
                p.stats.end_to_end_duration_ms = p.started.elapsed().as_millis() as u64;
                p.stats.external_path = Some(path.clone());
                tracing::info!(
                    job = %self.job.name,
                    checkpoint = id,
                    duration_ms = p.stats.end_to_end_duration_ms,
                    bytes = p.stats.state_size,
                    path = %path,
                    "checkpoint completed"
                );
                self.targets.remove(id);
                self.consecutive_failures = 0;
                self.last_end = Some(Instant::now());
                if completed.savepoint {
                    self.latest_savepoint = Some(completed);
                } else {
                    self.completed.push_back(completed);
                }
                {
                    let mut s = self.stats.lock();
                    s.in_progress = s.in_progress.saturating_sub(1);
                    s.completed += 1;
                    s.latest_completed = Some(p.stats.clone());
                    push_history(&mut s, p.stats.clone(), self.settings.history);
                }
                for t in tasks.tasks() {
                    if !self.exited.contains_key(&t) {
                        tasks.send(t, TaskMessage::NotifyCheckpointComplete(id));
                    }
                }
                // Older checkpoints still in progress are subsumed.
                let older: Vec<u64> = self.pending.range(..id).map(|(k, _)| *k).collect();
                for old in older {
                    self.abort(old, "a newer checkpoint completed first", tasks, false)?;
                }
                self.apply_retention();
                self.collect_garbage();
                if let Some(reply) = p.reply {
                    let _ = reply.send(Ok(path));
                }
                Ok(())
            }
            Err(e) => {
                self.pending.insert(id, p);
                self.abort(id, &format!("it could not be recorded: {e}"), tasks, true)
            }
        }
    }

    /// The checkpoints a restore may use once `new` has completed, newest first: the newest
    /// `num_retained` checkpoints and the latest savepoint.
    fn pointers_with(&self, new: &CompletedCheckpoint) -> Vec<CheckpointPointer> {
        let mut checkpoints: Vec<&CompletedCheckpoint> = self.completed.iter().collect();
        let mut savepoint = self.latest_savepoint.as_ref();
        if new.savepoint {
            savepoint = Some(new);
        } else {
            checkpoints.push(new);
        }
        let skip = checkpoints
            .len()
            .saturating_sub(self.settings.num_retained as usize);
        let mut all: Vec<&CompletedCheckpoint> = checkpoints
            .into_iter()
            .skip(skip)
            .chain(savepoint)
            .collect();
        all.sort_by_key(|c| std::cmp::Reverse(c.id));
        all.into_iter()
            .map(|c| CheckpointPointer {
                id: c.id,
                path: c.dir.display().to_string(),
            })
            .collect()
    }

    /// Builds and writes `_metadata` for a checkpoint every task acknowledged.
    fn finalize(&self, id: u64, p: &Pending) -> Result<CompletedCheckpoint> {
        let savepoint = p.kind.is_savepoint();
        let mut meta =
            CheckpointMetadata::new(self.job.job_id, &self.job.name, id, p.timestamp, savepoint);
        let mut by_op: BTreeMap<OperatorId, OperatorSnapshot> = BTreeMap::new();
        for (vi, v) in self.job.vertices.iter().enumerate() {
            for op in &v.operators {
                by_op.insert(
                    op.operator_id,
                    OperatorSnapshot {
                        operator_id: op.operator_id,
                        name: op.name.clone(),
                        uid: op.uid.clone(),
                        parallelism: v.parallelism,
                        max_parallelism: v.max_parallelism,
                        subtasks: vec![SubtaskSnapshot::default(); v.parallelism as usize],
                    },
                );
            }
            for s in 0..v.parallelism {
                if let Some(states) = p.acks.get(&(vi, s)) {
                    for (op, snap) in states {
                        if let Some(o) = by_op.get_mut(op) {
                            o.subtasks[s as usize] = snap.clone();
                        }
                    }
                }
            }
        }
        meta.operators = by_op.into_values().collect();
        if savepoint {
            self.make_self_contained(&mut meta, &p.dir)?;
        }
        block_on(meta.write(&p.dir))?;
        let files = meta.files().into_iter().map(|f| f.path).collect();
        Ok(CompletedCheckpoint {
            id,
            dir: p.dir.clone(),
            savepoint,
            tasks: p.acks.clone(),
            files,
        })
    }

    /// Copies state files that live outside the savepoint directory (state of subtasks that
    /// finished earlier) into it.
    fn make_self_contained(
        &self,
        meta: &mut CheckpointMetadata,
        dir: &StorageLocation,
    ) -> Result<()> {
        let root = dir.root().clone();
        let mut copied: HashMap<String, String> = HashMap::new();
        for f in meta.files() {
            let path = Path::from(f.path.as_str());
            if path.prefix_matches(&root) {
                continue;
            }
            let name = path.filename().unwrap_or("state").to_string();
            let target = dir.file(&format!("finished-{name}"));
            let bytes = block_on(self.shared.get(&path))?;
            block_on(dir.put(&target, bytes.to_vec()))?;
            copied.insert(f.path.clone(), target.to_string());
        }
        if copied.is_empty() {
            return Ok(());
        }
        for op in &mut meta.operators {
            for s in &mut op.subtasks {
                if let Some(k) = &mut s.keyed {
                    for f in &mut k.files {
                        if let Some(p) = copied.get(&f.file.path) {
                            f.file.path = p.clone();
                        }
                    }
                }
                for l in &mut s.lists {
                    if let Some(p) = copied.get(&l.file.path) {
                        l.file.path = p.clone();
                    }
                }
            }
        }
        Ok(())
    }

    /// Aborts checkpoint `id`; with `counts`, it counts towards the tolerable failures, and
    /// exceeding them is an error.
    fn abort(
        &mut self,
        id: u64,
        reason: &str,
        tasks: &dyn TaskMessenger,
        counts: bool,
    ) -> Result<()> {
        let Some(mut p) = self.pending.remove(&id) else {
            return Ok(());
        };
        tracing::warn!(job = %self.job.name, checkpoint = id, reason, "checkpoint aborted");
        self.targets.remove(id);
        self.last_end = Some(Instant::now());
        for t in tasks.tasks() {
            if !self.exited.contains_key(&t) {
                tasks.send(t, TaskMessage::NotifyCheckpointAborted(id));
            }
        }
        // Files the aborted checkpoint wrote are garbage once nothing started before now
        // can refer to them.
        let written: Vec<String> = p
            .acks
            .values()
            .flatten()
            .flat_map(|(_, s)| {
                s.keyed
                    .iter()
                    .flat_map(|k| k.files.iter().map(|f| f.file.path.clone()))
                    .chain(s.lists.iter().map(|l| l.file.path.clone()))
            })
            .collect();
        if !p.kind.is_savepoint() {
            self.graveyard.push((self.next_id, written));
        }
        p.stats.status = CheckpointStatus::Failed;
        p.stats.end_to_end_duration_ms = p.started.elapsed().as_millis() as u64;
        p.stats.failure_message = Some(reason.to_string());
        {
            let mut s = self.stats.lock();
            s.in_progress = s.in_progress.saturating_sub(1);
            s.failed += 1;
            s.latest_failed = Some(p.stats.clone());
            push_history(&mut s, p.stats.clone(), self.settings.history);
        }
        if let Some(reply) = p.reply.take() {
            let _ = reply.send(Err(format!("savepoint {id} failed: {reason}")));
        }
        if p.kind.stop_mode().is_some() {
            self.failed_stops.insert(id, reason.to_string());
        }
        if counts && !p.kind.is_savepoint() {
            self.consecutive_failures += 1;
            if self.consecutive_failures > self.settings.tolerable_failures {
                return Err(RuntimeError::CheckpointAborted {
                    id,
                    reason: format!(
                        "{reason}; {} checkpoint(s) failed in a row, more than \
                         execution.checkpointing.tolerable-failed-checkpoints ({})",
                        self.consecutive_failures, self.settings.tolerable_failures
                    ),
                });
            }
        }
        Ok(())
    }

    /// Why stop-with-savepoint `id` failed, if it did.
    pub fn take_failed_stop(&mut self, id: u64) -> Option<String> {
        self.failed_stops.remove(&id)
    }

    /// Aborts every checkpoint in progress (the job is failing over or stopping).
    pub fn abort_all(&mut self, reason: &str, tasks: &dyn TaskMessenger) {
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for id in ids {
            let _ = self.abort(id, reason, tasks, false);
        }
    }

    /// Forgets the subtasks of the previous attempt after a restart: all of them, or those in
    /// `only` (restarted pipelined regions).
    pub fn reset_tasks(&mut self, only: Option<&HashSet<TaskKey>>) {
        match only {
            None => {
                self.exited.clear();
                self.sources_ended.clear();
            }
            Some(tasks) => {
                self.exited.retain(|t, _| !tasks.contains(t));
                self.sources_ended.retain(|t| !tasks.contains(t));
            }
        }
        self.final_requested = false;
        self.next_periodic = self.settings.interval.map(|i| Instant::now() + i);
    }

    /// Keeps the last `num_retained` checkpoints; older ones are deleted (their `_metadata` at
    /// once, their state files when nothing can refer to them any more).
    fn apply_retention(&mut self) {
        while self.completed.len() > self.settings.num_retained as usize {
            let Some(old) = self.completed.pop_front() else {
                break;
            };
            let meta = old.dir.file(super::metadata::METADATA_FILE);
            if let Err(e) = block_on(old.dir.delete(&meta)) {
                tracing::warn!(error = %e, "cannot delete a subsumed checkpoint's metadata");
            }
            self.graveyard
                .push((self.next_id, old.files.into_iter().collect()));
        }
    }

    /// Deletes released files that no retained checkpoint refers to and that no checkpoint in
    /// progress can refer to.
    fn collect_garbage(&mut self) {
        let oldest_pending = self.pending.keys().next().copied().unwrap_or(u64::MAX);
        let referenced: HashSet<&String> = self
            .completed
            .iter()
            .flat_map(|c| c.files.iter())
            .chain(self.exited.values().flatten().flat_map(|(_, s)| {
                s.keyed
                    .iter()
                    .flat_map(|k| k.files.iter().map(|f| &f.file.path))
                    .chain(s.lists.iter().map(|l| &l.file.path))
            }))
            .collect();
        let shared_root = self.shared.root().clone();
        let mut keep = Vec::new();
        for (threshold, files) in std::mem::take(&mut self.graveyard) {
            if threshold > oldest_pending {
                keep.push((threshold, files));
                continue;
            }
            for f in files {
                let path = Path::from(f.as_str());
                if referenced.contains(&f) || !path.prefix_matches(&shared_root) {
                    continue;
                }
                if let Err(e) = block_on(self.shared.delete(&path)) {
                    tracing::warn!(error = %e, "cannot delete an unused state file");
                }
            }
        }
        self.graveyard = keep;
    }

    /// The newest completed checkpoint or savepoint, newest first, then older ones: what a
    /// failover restores from (falling back to older ones if a newer one is unreadable).
    pub fn restore_candidates(&self) -> Vec<CompletedCheckpoint> {
        let mut all: Vec<CompletedCheckpoint> = self.completed.iter().cloned().collect();
        if let Some(s) = &self.latest_savepoint {
            all.push(s.clone());
        }
        all.sort_by_key(|c| std::cmp::Reverse(c.id));
        all
    }

    /// Forgets a completed checkpoint that turned out to be unreadable.
    pub fn discard_unreadable(&mut self, id: u64) {
        self.completed.retain(|c| c.id != id);
        if self.latest_savepoint.as_ref().is_some_and(|s| s.id == id) {
            self.latest_savepoint = None;
        }
    }

    /// Records that the job restored from checkpoint `id` at `path`.
    pub fn record_restore(&self, id: u64, path: &str) {
        let mut s = self.stats.lock();
        s.restored += 1;
        s.latest_restored = Some((id, path.to_string()));
    }

    /// Cleans up as the job ends: checkpoints are deleted unless the job failed or was
    /// cancelled with checkpoints retained.
    pub fn shutdown(&mut self, outcome: JobOutcome, tasks: &dyn TaskMessenger) {
        self.abort_all("the job ended", tasks);
        if let Err(e) = self.store.shutdown(outcome) {
            tracing::warn!(job = %self.job.name, error = %e, "the job's checkpoints are kept");
            return;
        }
        let keep = match outcome {
            JobOutcome::Finished => false,
            JobOutcome::Cancelled => {
                self.settings.retention == ExternalizedCheckpointRetention::RetainOnCancellation
            }
            JobOutcome::Failed => {
                self.settings.retention
                    != ExternalizedCheckpointRetention::NoExternalizedCheckpoints
            }
        };
        if keep {
            if let Some(c) = self.completed.back() {
                tracing::info!(path = %c.dir.display(), "the latest checkpoint is retained");
            }
            return;
        }
        if self.completed.is_empty() && self.graveyard.is_empty() {
            return;
        }
        if let Err(e) = block_on(self.root.delete_all()) {
            tracing::warn!(error = %e, "cannot delete the job's checkpoints");
        }
    }
}

/// How a job ended, for checkpoint retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every task finished.
    Finished,
    /// Cancelled by the user.
    Cancelled,
    /// Failed for good.
    Failed,
}

fn push_history(s: &mut CheckpointingStatistics, stats: CheckpointStats, keep: usize) {
    if let Some(existing) = s.history.iter_mut().find(|h| h.id == stats.id) {
        *existing = stats;
        return;
    }
    s.history.push_back(stats);
    while s.history.len() > keep {
        s.history.pop_front();
    }
}

impl CompletedCheckpoint {
    /// How the job names it in messages.
    pub fn describe(&self) -> String {
        format!("checkpoint {} at {}", self.id, self.dir.display())
    }
}
