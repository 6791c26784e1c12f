//! Where a job's completed checkpoints are recorded and where its checkpoint ids come from
//! (Flink's `CompletedCheckpointStore` and `CheckpointIDCounter`).
//!
//! The mini cluster and a JobManager without high availability keep both in memory
//! ([`StandaloneCheckpointStore`]). A JobManager with high availability keeps them in ZooKeeper
//! (`eddy-cluster`'s `ha` module): a checkpoint counts as completed only once it is recorded
//! there — before any task hears of it, so before any sink commits — and ids come from a
//! counter there, so the leader that takes over resumes from the latest completed checkpoint
//! and never hands out an id twice. Every write there is fenced by the leader's own ZooKeeper
//! lock, so a JobManager that lost its leadership can neither complete a checkpoint nor forget a
//! job.

use super::coordinator::JobOutcome;
use crate::error::Result;

/// A completed checkpoint as the store records it: its id and the directory of its `_metadata`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointPointer {
    /// The checkpoint's id.
    pub id: u64,
    /// The directory of its `_metadata`.
    pub path: String,
}

/// Records completed checkpoints and hands out checkpoint ids for one job.
pub trait CompletedCheckpointStore: Send {
    /// The id of the next checkpoint: at least `minimum`, and greater than every id handed out
    /// before, also by another JobManager that ran the same job earlier.
    fn next_checkpoint_id(&mut self, minimum: u64) -> Result<u64>;

    /// Records that a checkpoint completed. `retained` are the checkpoints a restore may use,
    /// newest first, the new one among them. Called after its `_metadata` is written and before
    /// any task learns that it completed: an error means it did not complete.
    fn add_checkpoint(&mut self, retained: &[CheckpointPointer]) -> Result<()>;

    /// The job ended for good with `outcome`: forget it. Called before the job's checkpoints are
    /// deleted; an error keeps them (another JobManager may be running the job now).
    fn shutdown(&mut self, outcome: JobOutcome) -> Result<()>;
}

/// The mini cluster's store: nothing outlives the job master, whose coordinator counts ids
/// itself.
#[derive(Debug, Default)]
pub struct StandaloneCheckpointStore;

impl CompletedCheckpointStore for StandaloneCheckpointStore {
    fn next_checkpoint_id(&mut self, minimum: u64) -> Result<u64> {
        Ok(minimum)
    }

    fn add_checkpoint(&mut self, _retained: &[CheckpointPointer]) -> Result<()> {
        Ok(())
    }

    fn shutdown(&mut self, _outcome: JobOutcome) -> Result<()> {
        Ok(())
    }
}
