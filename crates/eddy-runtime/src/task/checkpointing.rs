//! A task's part in checkpoints: barrier alignment, snapshots, and how a task ends.
//!
//! **Alignment.** With exactly-once, a channel that has delivered the barrier of checkpoint
//! *n* is blocked until every other channel has delivered it too; then the task snapshots and
//! reads every channel again. Records behind the barrier therefore never reach the snapshot.
//! With at-least-once nothing is blocked: the task snapshots when the last barrier arrives,
//! and records that overtook it are replayed after a failure. A channel whose upstream has
//! finished counts as having delivered every barrier.
//!
//! **Snapshots.** The synchronous part (operators' `snapshot_state` hooks, the barrier sent
//! downstream, state captured) runs on the task thread between two records; the state file is
//! written on the checkpoint I/O pool, which then acknowledges the checkpoint to the job
//! master.
//!
//! **Ending.** When its input ends a task finishes its operators and sends end-of-data, but
//! with checkpointing on it stays alive — answering barriers — until a checkpoint taken after
//! that point completes, so that everything it emitted is committed (Flink's FLIP-147). Only
//! then does it send end-of-partition and exit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use eddy_core::element::{CheckpointBarrier, CheckpointingMode, StopMode};
use eddy_core::ids::OperatorId;
use parking_lot::Mutex;

use crate::checkpoint::format::{Span, StateFileWriter};
use crate::checkpoint::metadata::{ListStateSnapshot, StateFile, SubtaskSnapshot};
use crate::checkpoint::storage::{StorageLocation, block_on, runtime};
use crate::error::{Result, RuntimeError};
use crate::executor::TaskEvent;
use crate::operator::TaskInfo;
use crate::state::{OperatorSnapshotJob, Redistribution, StateContext, WrittenKeyedState};

/// Where the files of each checkpoint in progress go, set by the coordinator before it
/// triggers the checkpoint.
///
/// In a worker process the coordinator is in the JobManager, and the location arrives on the
/// control connection, which may be slower than the barrier on a data connection: there a task
/// waits up to `wait` for it.
#[derive(Clone, Default)]
pub struct SnapshotTargets {
    targets: Arc<Mutex<HashMap<u64, StorageLocation>>>,
    arrived: Arc<parking_lot::Condvar>,
    wait: Duration,
}

impl SnapshotTargets {
    /// Targets whose lookups wait up to `wait` for a location to arrive.
    pub fn waiting(wait: Duration) -> Self {
        SnapshotTargets {
            wait,
            ..Default::default()
        }
    }

    /// Sets the directory for checkpoint `id`'s state files.
    pub fn insert(&self, id: u64, location: StorageLocation) {
        self.targets.lock().insert(id, location);
        self.arrived.notify_all();
    }

    /// Forgets checkpoint `id`.
    pub fn remove(&self, id: u64) {
        self.targets.lock().remove(&id);
    }

    /// The directory for checkpoint `id`.
    pub fn get(&self, id: u64) -> Option<StorageLocation> {
        let mut targets = self.targets.lock();
        if self.wait.is_zero() {
            return targets.get(&id).cloned();
        }
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(l) = targets.get(&id) {
                return Some(l.clone());
            }
            if self.arrived.wait_until(&mut targets, deadline).timed_out() {
                return targets.get(&id).cloned();
            }
        }
    }
}

/// Timings and size of one subtask's part of a checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubtaskCheckpointStats {
    /// Time spent aligning barriers, in ms.
    pub alignment_ms: u64,
    /// Synchronous part, in ms.
    pub sync_ms: u64,
    /// Asynchronous part (writing the state file), in ms.
    pub async_ms: u64,
    /// Bytes written.
    pub state_size: u64,
    /// Bytes of in-flight data in the snapshot (unaligned checkpoints).
    #[serde(default)]
    pub persisted_data: u64,
    /// Whether the subtask took the checkpoint unaligned.
    #[serde(default)]
    pub unaligned: bool,
}

/// The name of the list state of a task's head operator that holds in-flight data of
/// `input` (1 or 2) in an unaligned checkpoint.
pub(crate) fn in_flight_state(input: u8) -> String {
    format!("_in-flight-input-{input}")
}

/// The synchronous part of a snapshot, waiting to be written.
pub struct CapturedSnapshot {
    id: u64,
    jobs: Vec<(OperatorId, OperatorSnapshotJob)>,
    sync: Duration,
    alignment: Duration,
    location: StorageLocation,
    file_name: String,
    finished: bool,
}

impl CapturedSnapshot {
    /// The checkpoint.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

/// A task's unaligned checkpoints: those whose snapshot has been taken and whose in-flight
/// data its gates are still recording.
pub(crate) struct UnalignedCheckpoints {
    /// The aligned-checkpoint timeout, when unaligned checkpoints are on.
    timeout: Option<Duration>,
    active: Vec<CapturedSnapshot>,
    /// The newest checkpoint taken unaligned.
    newest: u64,
    /// Aligned barriers announced on priority lanes: the barrier, the channel (over all of the
    /// task's inputs) and the barrier's position in it.
    announced: Vec<(CheckpointBarrier, usize, u64)>,
}

impl UnalignedCheckpoints {
    pub(crate) fn new(timeout: Option<Duration>) -> Self {
        UnalignedCheckpoints {
            timeout,
            active: Vec::new(),
            newest: 0,
            announced: Vec::new(),
        }
    }

    /// Whether unaligned checkpoints are on.
    pub(crate) fn enabled(&self) -> bool {
        self.timeout.is_some()
    }

    /// The newest checkpoint taken unaligned.
    pub(crate) fn newest(&self) -> u64 {
        self.newest
    }

    /// Whether checkpoint `id` has not been taken unaligned yet.
    pub(crate) fn is_new(&self, id: u64) -> bool {
        id > self.newest
    }

    /// Checkpoint `id` was taken unaligned; its in-flight data is recorded until complete.
    pub(crate) fn started(&mut self, id: u64, captured: Option<CapturedSnapshot>) {
        self.newest = self.newest.max(id);
        self.active.extend(captured);
    }

    /// The aligned `barrier` will be element `at` of `channel`.
    pub(crate) fn announce(&mut self, barrier: CheckpointBarrier, channel: usize, at: u64) {
        if self.is_new(barrier.id) {
            self.announced.push((barrier, channel, at));
        }
    }

    /// The oldest checkpoint announced and not yet taken.
    pub(crate) fn announced(&self) -> Option<CheckpointBarrier> {
        self.announced.iter().map(|a| a.0).min_by_key(|b| b.id)
    }

    /// Forgets the announcements of checkpoint `id` and older ones; returns where the barriers
    /// of `id` are, by channel.
    pub(crate) fn take_announcements(&mut self, id: u64) -> Vec<(usize, u64)> {
        let mine = self
            .announced
            .iter()
            .filter(|a| a.0.id == id)
            .map(|a| (a.1, a.2))
            .collect();
        self.announced.retain(|a| a.0.id > id);
        mine
    }

    /// Starts taking checkpoint `barrier` unaligned, if it is new: its alignment, or an older
    /// one's (declined), is given up. The caller then takes the snapshot, forwards the barrier,
    /// and starts recording, ending the channels the takeover names.
    pub(crate) fn take_over(
        &mut self,
        aligner: &mut BarrierAligner,
        checkpointing: &TaskCheckpointing,
        barrier: CheckpointBarrier,
    ) -> Option<Takeover> {
        if !self.is_new(barrier.id) || aligner.is_stale(barrier.id) {
            return None;
        }
        let (aborted, seen, alignment) = aligner.take_over(barrier.id);
        if let Some(old) = aborted {
            checkpointing.decline(
                old,
                "a newer checkpoint's barrier arrived before it aligned",
            );
        }
        Some(Takeover {
            barrier: CheckpointBarrier {
                unaligned: true,
                ..barrier
            },
            seen,
            announced: self.take_announcements(barrier.id),
            alignment,
        })
    }

    /// Whether in-flight data is being recorded.
    #[inline]
    pub(crate) fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Forgets checkpoint `id` and older ones (aborted).
    pub(crate) fn abort(&mut self, id: u64) {
        self.active.retain(|c| c.id > id);
        self.announced.retain(|a| a.0.id > id);
        self.newest = self.newest.max(id);
    }

    /// Takes the checkpoints whose in-flight data is complete.
    pub(crate) fn take_complete(
        &mut self,
        complete: impl Fn(u64) -> bool,
    ) -> Vec<CapturedSnapshot> {
        let (done, rest) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|c| complete(c.id));
        self.active = rest;
        done
    }

    /// Whether the aligned checkpoint `pending` should now be taken unaligned (it was triggered
    /// longer than the aligned-checkpoint timeout ago); if not yet, when it should.
    pub(crate) fn timed_out(&self, pending: Option<CheckpointBarrier>) -> (bool, Option<Instant>) {
        let (Some(timeout), Some(b)) = (self.timeout, pending) else {
            return (false, None);
        };
        if b.kind.is_savepoint() {
            return (false, None);
        }
        let age = eddy_core::time::now_millis()
            .saturating_sub(b.timestamp)
            .max(0) as u128;
        match timeout.as_millis().checked_sub(age) {
            Some(left) if left > 0 => (
                false,
                Some(Instant::now() + Duration::from_millis(left as u64)),
            ),
            _ => (true, None),
        }
    }
}

/// Checkpoint `barrier`, taken unaligned by a task that was aligning it or not.
pub(crate) struct Takeover {
    /// The barrier, marked unaligned.
    pub(crate) barrier: CheckpointBarrier,
    /// Channels (over all inputs) that had delivered it in-band: nothing of theirs is in flight.
    pub(crate) seen: Vec<usize>,
    /// Channels (over all inputs) where it was announced, with its position.
    pub(crate) announced: Vec<(usize, u64)>,
    /// Time spent aligning it.
    pub(crate) alignment: Duration,
}

/// How a task talks to its job master.
#[derive(Clone)]
pub struct TaskReporter {
    pub(crate) events: Sender<TaskEvent>,
    pub(crate) attempt: u32,
    pub(crate) vertex: usize,
    pub(crate) subtask: u32,
}

impl TaskReporter {
    /// A reporter sending on `events` for subtask `subtask` of `vertex` in `attempt`.
    pub(crate) fn new(
        events: Sender<TaskEvent>,
        attempt: u32,
        vertex: usize,
        subtask: u32,
    ) -> Self {
        TaskReporter {
            events,
            attempt,
            vertex,
            subtask,
        }
    }

    fn send(&self, event: TaskEvent) {
        // The job master outlives its tasks; a failed send means the job is already over.
        let _ = self.events.send(event);
    }

    /// The task's input has ended.
    pub(crate) fn end_of_data(&self) {
        self.send(TaskEvent::EndOfData {
            attempt: self.attempt,
            vertex: self.vertex,
            subtask: self.subtask,
        });
    }

    fn ack(
        &self,
        checkpoint_id: u64,
        states: Vec<(OperatorId, SubtaskSnapshot)>,
        stats: SubtaskCheckpointStats,
    ) {
        self.send(TaskEvent::Ack {
            attempt: self.attempt,
            vertex: self.vertex,
            subtask: self.subtask,
            checkpoint_id,
            states,
            stats,
        });
    }

    fn decline(&self, checkpoint_id: u64, reason: String, task_ending: bool) {
        self.send(TaskEvent::Decline {
            attempt: self.attempt,
            vertex: self.vertex,
            subtask: self.subtask,
            checkpoint_id,
            reason,
            task_ending,
        });
    }
}

/// What a task knows about checkpointing.
pub struct TaskCheckpointing {
    /// Whether the job checkpoints at all.
    pub enabled: bool,
    /// Exactly-once (aligned) or at-least-once.
    pub mode: CheckpointingMode,
    /// With unaligned checkpoints, the aligned-checkpoint timeout (zero: unaligned at once).
    pub unaligned: Option<Duration>,
    /// Reports to the job master.
    pub reporter: TaskReporter,
    /// Where state files go.
    pub targets: SnapshotTargets,
    /// The state of each operator of the chain, head first.
    pub operators: Vec<(OperatorId, StateContext)>,
    /// Whether the task had finished in the snapshot it was restored from: its operators are
    /// opened (to recommit and clean up) but not run or finished again.
    pub finished_on_restore: bool,
    /// How the task's input ended, once it has.
    ended: Option<StopMode>,
    /// The checkpoint after which the task may exit.
    final_checkpoint: Option<u64>,
    /// Whether that checkpoint completed.
    done: bool,
    /// A stop-with-savepoint is under way: the task waits for it even without periodic
    /// checkpoints.
    stopping: bool,
    /// Snapshots still being written.
    uploads: Vec<tokio::task::JoinHandle<()>>,
    /// Set when the task ends: snapshots still being written stop.
    abandoned: Arc<AtomicBool>,
}

impl Drop for TaskCheckpointing {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

impl TaskCheckpointing {
    /// Checkpointing as configured for one task.
    pub fn new(
        enabled: bool,
        mode: CheckpointingMode,
        unaligned: Option<Duration>,
        reporter: TaskReporter,
        targets: SnapshotTargets,
        finished_on_restore: bool,
    ) -> Self {
        TaskCheckpointing {
            enabled,
            mode,
            unaligned,
            reporter,
            targets,
            operators: Vec::new(),
            finished_on_restore,
            ended: None,
            final_checkpoint: None,
            done: false,
            stopping: false,
            uploads: Vec::new(),
            abandoned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A stop-with-savepoint is starting.
    pub fn prepare_stop(&mut self) {
        self.stopping = true;
    }

    /// Waits until every snapshot this task started has been written and acknowledged (or
    /// declined), so that the job master hears of it before the task's end.
    pub fn wait_for_uploads(&mut self) {
        for h in self.uploads.drain(..) {
            let _ = block_on(h);
        }
    }

    /// How the input ended, if it has.
    pub fn ended(&self) -> Option<StopMode> {
        self.ended
    }

    /// Records that the task's input ended (after its operators finished, with `Drain`).
    pub fn set_ended(&mut self, mode: StopMode) {
        if self.ended.is_none() {
            self.ended = Some(mode);
            self.reporter.end_of_data();
            if !self.enabled && !self.stopping {
                self.done = true;
            }
        }
    }

    /// Whether the task may send end-of-partition and exit.
    pub fn may_exit(&self) -> bool {
        self.done
    }

    /// Declines checkpoint `id` (an alignment that was overtaken by a newer checkpoint).
    pub(crate) fn decline(&self, id: u64, reason: &str) {
        self.reporter.decline(id, reason.to_string(), false);
    }

    /// A checkpoint completed.
    pub fn on_complete(&mut self, checkpoint_id: u64) {
        for (_, ctx) in &self.operators {
            ctx.notify_checkpoint_complete(checkpoint_id);
        }
        if self.final_checkpoint.is_some_and(|f| checkpoint_id >= f) {
            self.done = true;
        }
    }

    /// A checkpoint was aborted.
    pub fn on_abort(&mut self, checkpoint_id: u64) {
        if self.final_checkpoint == Some(checkpoint_id) {
            self.final_checkpoint = None;
        }
    }

    /// Takes the synchronous part of the snapshot for `barrier` and hands the rest to the I/O
    /// pool, which acknowledges (or declines) the checkpoint when done. Operators' hooks must
    /// have run (taking `hooks`) and the barrier must have been sent downstream already.
    pub fn snapshot(
        &mut self,
        info: &TaskInfo,
        barrier: CheckpointBarrier,
        alignment: Duration,
        hooks: Duration,
    ) -> Result<()> {
        if let Some(captured) = self.capture(info, barrier, alignment, hooks)? {
            self.write(captured, Vec::new());
        }
        Ok(())
    }

    /// The synchronous part of the snapshot for `barrier`, to be written by
    /// [`TaskCheckpointing::write`]; `None` if the checkpoint is no longer in progress (it has
    /// been declined).
    pub(crate) fn capture(
        &mut self,
        info: &TaskInfo,
        barrier: CheckpointBarrier,
        alignment: Duration,
        hooks: Duration,
    ) -> Result<Option<CapturedSnapshot>> {
        let started = Instant::now();
        let id = barrier.id;
        let savepoint = barrier.kind.is_savepoint();
        let finished = self.ended == Some(StopMode::Drain);
        if self.ended.is_some() && self.final_checkpoint.is_none() {
            self.final_checkpoint = Some(id);
        }
        let mut jobs = Vec::with_capacity(self.operators.len());
        for (op, ctx) in &self.operators {
            jobs.push((*op, ctx.snapshot(id, savepoint)?));
        }
        let sync = hooks + started.elapsed();
        let Some(location) = self.targets.get(id) else {
            // The coordinator already gave up on this checkpoint.
            self.reporter
                .decline(id, "the checkpoint is no longer in progress".into(), false);
            return Ok(None);
        };
        let file_name = format!(
            "{id}-{}-{}-{}",
            info.task_name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(24)
                .collect::<String>(),
            info.subtask_index,
            uuid::Uuid::new_v4().simple()
        );
        Ok(Some(CapturedSnapshot {
            id,
            jobs,
            sync,
            alignment,
            location,
            file_name,
            finished,
        }))
    }

    /// Writes `captured` on the I/O pool with `in_flight`, the in-flight data of each input
    /// (unaligned checkpoints), as list state of the head operator; the pool acknowledges (or
    /// declines) the checkpoint when done.
    pub(crate) fn write(
        &mut self,
        mut captured: CapturedSnapshot,
        in_flight: Vec<(u8, Vec<Vec<u8>>)>,
    ) {
        let unaligned = !in_flight.is_empty();
        let mut persisted_data = 0;
        for (input, batches) in in_flight {
            persisted_data += batches.iter().map(|b| b.len() as u64).sum::<u64>();
            if let Some((_, job)) = captured.jobs.first_mut()
                && !batches.is_empty()
            {
                job.lists
                    .push((in_flight_state(input), Redistribution::InFlight, batches));
            }
        }
        let reporter = self.reporter.clone();
        self.uploads.retain(|h| !h.is_finished());
        let abandoned = self.abandoned.clone();
        let handle = runtime().spawn_blocking(move || {
            let start = Instant::now();
            let CapturedSnapshot {
                id,
                jobs,
                sync,
                alignment,
                location,
                file_name,
                finished,
            } = captured;
            match write_snapshot(jobs, &location, &file_name, finished, abandoned) {
                Ok((states, size)) => reporter.ack(
                    id,
                    states,
                    SubtaskCheckpointStats {
                        alignment_ms: alignment.as_millis() as u64,
                        sync_ms: sync.as_millis() as u64,
                        async_ms: start.elapsed().as_millis() as u64,
                        state_size: size,
                        persisted_data,
                        unaligned,
                    },
                ),
                Err(e) => {
                    if e.is_secondary() {
                        tracing::debug!(checkpoint = id, "a snapshot of an ended task was dropped");
                    } else {
                        tracing::warn!(checkpoint = id, error = %e, "writing a snapshot failed");
                    }
                    reporter.decline(id, e.to_string(), e.is_secondary());
                }
            }
        });
        self.uploads.push(handle);
    }

    /// The in-flight data of `input` (1 or 2) that the head operator's snapshot held, to be
    /// read before anything else.
    pub(crate) fn take_in_flight(&self, input: u8) -> Vec<Vec<u8>> {
        self.operators
            .first()
            .and_then(|(_, ctx)| ctx.operator_state().take_restored(&in_flight_state(input)))
            .unwrap_or_default()
    }
}

/// The asynchronous part of a snapshot: writes one state file for the whole task (if any
/// operator has state), streaming it to storage, and describes each operator's part of it.
fn write_snapshot(
    jobs: Vec<(OperatorId, OperatorSnapshotJob)>,
    location: &StorageLocation,
    file_name: &str,
    finished: bool,
    abandoned: Arc<AtomicBool>,
) -> Result<(Vec<(OperatorId, SubtaskSnapshot)>, u64)> {
    let path = location.file(file_name);
    let mut w = StateFileWriter::streaming(location.upload(&path)?, abandoned);
    let parts = match write_parts(jobs, &mut w) {
        Ok(parts) => parts,
        Err(e) => {
            w.abort();
            return Err(e);
        }
    };
    let (size, checksum) = w.finish()?;
    let file = StateFile {
        path: path.to_string(),
        size,
        checksum,
    };
    let states = parts
        .into_iter()
        .map(|(op, keyed, lists)| {
            let snapshot = SubtaskSnapshot {
                finished,
                keyed: keyed.map(|k| k.finish(&file)),
                lists: lists
                    .into_iter()
                    .map(|(name, mode, span)| ListStateSnapshot {
                        name,
                        mode,
                        file: file.clone(),
                        span,
                    })
                    .collect(),
            };
            (op, snapshot)
        })
        .collect();
    Ok((states, size))
}

/// One operator's part of a state file: keyed sections and list states with their spans.
type WrittenParts = Vec<(
    OperatorId,
    Option<WrittenKeyedState>,
    Vec<(String, Redistribution, Span)>,
)>;

fn write_parts(
    jobs: Vec<(OperatorId, OperatorSnapshotJob)>,
    w: &mut StateFileWriter,
) -> Result<WrittenParts> {
    let mut parts = Vec::with_capacity(jobs.len());
    for (op, job) in jobs {
        let keyed = job.keyed.map(|k| k.write(w)).transpose()?;
        let mut lists = Vec::new();
        for (name, mode, elements) in job.lists {
            if elements.is_empty() {
                continue;
            }
            let encoded = postcard::to_stdvec(&elements)
                .map_err(|e| RuntimeError::Serialization(e.to_string()))?;
            w.begin_section();
            w.put_raw(&encoded)?;
            lists.push((name, mode, w.end_section()));
        }
        parts.push((op, keyed, lists));
    }
    Ok(parts)
}

/// What a barrier (or the end of a channel) means for the task.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BarrierStep {
    /// Stop reading this channel until the checkpoint is taken.
    pub(crate) block: Option<usize>,
    /// Read every channel again.
    pub(crate) unblock_all: bool,
    /// An older checkpoint that will never align; it is declined.
    pub(crate) aborted: Option<u64>,
    /// Every channel delivered the barrier: take the snapshot.
    pub(crate) complete: Option<(CheckpointBarrier, Duration)>,
}

struct Pending {
    barrier: CheckpointBarrier,
    seen: Vec<bool>,
    count: usize,
    started: Instant,
}

/// Tracks barriers over a task's input channels.
pub(crate) struct BarrierAligner {
    exactly_once: bool,
    closed: Vec<bool>,
    num_closed: usize,
    pending: Option<Pending>,
    /// The newest checkpoint taken or given up; older barriers are stale.
    last_done: u64,
}

impl BarrierAligner {
    pub(crate) fn new(num_channels: usize, mode: CheckpointingMode) -> Self {
        BarrierAligner {
            exactly_once: mode == CheckpointingMode::ExactlyOnce,
            closed: vec![false; num_channels],
            num_closed: 0,
            pending: None,
            last_done: 0,
        }
    }

    fn is_aligned(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.count + self.num_closed_unseen(p) == p.seen.len())
    }

    fn num_closed_unseen(&self, p: &Pending) -> usize {
        self.closed
            .iter()
            .zip(&p.seen)
            .filter(|(c, s)| **c && !**s)
            .count()
    }

    fn complete_if_aligned(&mut self, step: &mut BarrierStep) {
        if self.is_aligned()
            && let Some(p) = self.pending.take()
        {
            self.last_done = p.barrier.id;
            step.unblock_all = true;
            step.complete = Some((p.barrier, p.started.elapsed()));
        }
    }

    /// `barrier` arrived on `channel`.
    pub(crate) fn on_barrier(&mut self, channel: usize, barrier: CheckpointBarrier) -> BarrierStep {
        let mut step = BarrierStep::default();
        if barrier.id <= self.last_done {
            return step;
        }
        match &self.pending {
            Some(p) if p.barrier.id > barrier.id => return step,
            Some(p) if p.barrier.id < barrier.id => {
                step.aborted = Some(p.barrier.id);
                step.unblock_all = true;
                self.pending = None;
            }
            _ => {}
        }
        let n = self.closed.len();
        let p = self.pending.get_or_insert_with(|| Pending {
            barrier,
            seen: vec![false; n],
            count: 0,
            started: Instant::now(),
        });
        if !p.seen[channel] {
            p.seen[channel] = true;
            p.count += 1;
            if self.exactly_once {
                step.block = Some(channel);
            }
        }
        self.complete_if_aligned(&mut step);
        if step.complete.is_some() {
            step.block = None;
        }
        step
    }

    /// The barrier being aligned, if any.
    pub(crate) fn pending_barrier(&self) -> Option<CheckpointBarrier> {
        self.pending.as_ref().map(|p| p.barrier)
    }

    /// Whether a barrier of checkpoint `id` is stale: that checkpoint or a newer one was
    /// taken, given up, or is being aligned.
    pub(crate) fn is_stale(&self, id: u64) -> bool {
        id <= self.last_done || self.pending.as_ref().is_some_and(|p| p.barrier.id > id)
    }

    /// Checkpoint `id` is taken unaligned instead: an older alignment is given up (returned
    /// to be declined), and if `id` itself was being aligned, the channels that had delivered
    /// its barrier are returned with the time spent aligning. Every channel is read again.
    pub(crate) fn take_over(&mut self, id: u64) -> (Option<u64>, Vec<usize>, Duration) {
        self.last_done = self.last_done.max(id);
        match self.pending.take() {
            Some(p) if p.barrier.id == id => {
                let seen = (0..p.seen.len()).filter(|&c| p.seen[c]).collect();
                (None, seen, p.started.elapsed())
            }
            Some(p) => (Some(p.barrier.id), Vec::new(), Duration::ZERO),
            None => (None, Vec::new(), Duration::ZERO),
        }
    }

    /// `channel` delivered end-of-partition: it counts as aligned from now on.
    pub(crate) fn on_channel_closed(&mut self, channel: usize) -> BarrierStep {
        let mut step = BarrierStep::default();
        if !self.closed[channel] {
            self.closed[channel] = true;
            self.num_closed += 1;
        }
        self.complete_if_aligned(&mut step);
        step
    }

    /// The coordinator aborted checkpoint `id`: stop aligning it.
    pub(crate) fn abort(&mut self, id: u64) -> BarrierStep {
        let mut step = BarrierStep::default();
        if self.pending.as_ref().is_some_and(|p| p.barrier.id <= id) {
            self.pending = None;
            step.unblock_all = true;
        }
        self.last_done = self.last_done.max(id);
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::element::SnapshotKind;

    fn barrier(id: u64) -> CheckpointBarrier {
        CheckpointBarrier {
            id,
            timestamp: 0,
            kind: SnapshotKind::Checkpoint,
            unaligned: false,
            announce: false,
        }
    }

    #[test]
    fn exactly_once_blocks_until_every_channel_delivered() {
        let mut a = BarrierAligner::new(3, CheckpointingMode::ExactlyOnce);
        let s = a.on_barrier(0, barrier(1));
        assert_eq!(s.block, Some(0));
        assert!(s.complete.is_none());
        let s = a.on_barrier(2, barrier(1));
        assert_eq!(s.block, Some(2));
        // A channel that closes counts as aligned.
        let s = a.on_channel_closed(1);
        assert!(s.unblock_all);
        assert_eq!(s.complete.map(|(b, _)| b.id), Some(1));
        // A stale barrier is ignored.
        assert_eq!(a.on_barrier(0, barrier(1)), BarrierStep::default());
    }

    #[test]
    fn a_newer_barrier_aborts_an_incomplete_alignment() {
        let mut a = BarrierAligner::new(2, CheckpointingMode::ExactlyOnce);
        a.on_barrier(0, barrier(1));
        let s = a.on_barrier(1, barrier(2));
        assert_eq!(s.aborted, Some(1));
        assert!(s.unblock_all);
        assert_eq!(s.block, Some(1));
        let s = a.on_barrier(0, barrier(2));
        assert_eq!(s.complete.map(|(b, _)| b.id), Some(2));
        // An abort from the coordinator unblocks.
        a.on_barrier(0, barrier(3));
        let s = a.abort(3);
        assert!(s.unblock_all);
        assert_eq!(a.on_barrier(1, barrier(3)), BarrierStep::default());
    }

    #[test]
    fn at_least_once_never_blocks() {
        let mut a = BarrierAligner::new(2, CheckpointingMode::AtLeastOnce);
        let s = a.on_barrier(1, barrier(5));
        assert_eq!(s.block, None);
        let s = a.on_barrier(0, barrier(5));
        assert_eq!(s.complete.map(|(b, _)| b.id), Some(5));
    }
}
