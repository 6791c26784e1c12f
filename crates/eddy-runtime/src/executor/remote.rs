//! The control protocol between the JobManager's job master and a job's worker processes.
//!
//! A worker process runs the tasks one TaskManager hosts for one job. It connects to the
//! JobManager's RPC port, says who it is ([`WorkerHello`], with a fingerprint of the JobGraph
//! its `main()` rebuilt), receives its [`WorkerDeployment`], then reports task events and
//! metrics while the job master sends it task messages. Messages are postcard, each behind a
//! little-endian `u32` length.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use eddy_core::graph::JobGraph;
use eddy_core::ids::{JobId, OperatorId};
use serde::{Deserialize, Serialize};

use super::TaskEvent;
use crate::accumulators::AccumulatorValue;
use crate::checkpoint::metadata::SubtaskSnapshot;
use crate::error::{Result, RuntimeError};
use crate::metrics::{MetricSnapshot, MetricValue};
use crate::task::{SubtaskCheckpointStats, TaskMessage};

/// The largest control message accepted (checkpoint acknowledgements carry state handles).
const MAX_MESSAGE: usize = 64 << 20;

/// The first message on a connection to the JobManager's RPC port from a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerHello {
    /// The job, as the JobManager named it.
    pub job_id: JobId,
    /// The restart attempt the worker was started for.
    pub attempt: u32,
    /// The TaskManager that started it.
    pub taskmanager_id: String,
    /// [`fingerprint`] of the JobGraph the worker built.
    pub fingerprint: u64,
    /// Where the worker accepts data connections from the job's other workers.
    pub data_address: String,
}

/// Where a worker's tasks run and where to find the other workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerDeployment {
    /// This worker's index in `workers`.
    pub index: u32,
    /// The data address of every worker of the attempt.
    pub workers: Vec<String>,
    /// The worker of every subtask, per vertex; [`NOT_DEPLOYED`] for subtasks this deployment
    /// does not start (pipelined regions that run in other deployments).
    pub placement: Vec<Vec<u32>>,
    /// The snapshot to restore, if any.
    pub restore: Option<RestoreSpec>,
}

/// In a [`WorkerDeployment`]'s placement: a subtask no worker of the deployment runs.
pub const NOT_DEPLOYED: u32 = u32::MAX;

/// A snapshot to restore from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestoreSpec {
    /// The snapshot's directory.
    pub location: String,
    /// Whether this run of the job took it (a failover, not a savepoint restore).
    pub same_job: bool,
}

/// From the job master to a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MasterMessage {
    /// Start the tasks.
    Deploy(WorkerDeployment),
    /// A message for one task.
    Task {
        /// The task's vertex.
        vertex: u32,
        /// The subtask.
        subtask: u32,
        /// The message.
        message: TaskMessage,
    },
    /// Where checkpoint `id` writes its files.
    CheckpointTarget {
        /// The checkpoint.
        id: u64,
        /// Its directory.
        location: String,
    },
}

/// From a worker to the job master.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WorkerMessage {
    /// The first message.
    Hello(WorkerHello),
    /// A task event.
    Event(WireTaskEvent),
    /// The current value of the worker's metrics.
    Metrics(Vec<WireMetric>),
}

/// An error from another process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireError {
    /// Its message.
    pub message: String,
    /// Whether it is a consequence of another failure.
    pub secondary: bool,
}

/// A [`TaskEvent`] on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum WireTaskEvent {
    Finished {
        attempt: u32,
        vertex: u32,
        subtask: u32,
        result: std::result::Result<BTreeMap<String, AccumulatorValue>, WireError>,
    },
    EndOfData {
        attempt: u32,
        vertex: u32,
        subtask: u32,
    },
    Ack {
        attempt: u32,
        vertex: u32,
        subtask: u32,
        checkpoint_id: u64,
        states: Vec<(OperatorId, SubtaskSnapshot)>,
        stats: SubtaskCheckpointStats,
    },
    Decline {
        attempt: u32,
        vertex: u32,
        subtask: u32,
        checkpoint_id: u64,
        reason: String,
        task_ending: bool,
    },
}

impl From<TaskEvent> for WireTaskEvent {
    fn from(e: TaskEvent) -> Self {
        match e {
            TaskEvent::Finished {
                attempt,
                vertex,
                subtask,
                result,
            } => WireTaskEvent::Finished {
                attempt,
                vertex: vertex as u32,
                subtask,
                result: result.map_err(|e| WireError {
                    secondary: e.is_secondary(),
                    message: e.to_string(),
                }),
            },
            TaskEvent::EndOfData {
                attempt,
                vertex,
                subtask,
            } => WireTaskEvent::EndOfData {
                attempt,
                vertex: vertex as u32,
                subtask,
            },
            TaskEvent::Ack {
                attempt,
                vertex,
                subtask,
                checkpoint_id,
                states,
                stats,
            } => WireTaskEvent::Ack {
                attempt,
                vertex: vertex as u32,
                subtask,
                checkpoint_id,
                states,
                stats,
            },
            TaskEvent::Decline {
                attempt,
                vertex,
                subtask,
                checkpoint_id,
                reason,
                task_ending,
            } => WireTaskEvent::Decline {
                attempt,
                vertex: vertex as u32,
                subtask,
                checkpoint_id,
                reason,
                task_ending,
            },
        }
    }
}

impl From<WireTaskEvent> for TaskEvent {
    fn from(e: WireTaskEvent) -> Self {
        match e {
            WireTaskEvent::Finished {
                attempt,
                vertex,
                subtask,
                result,
            } => TaskEvent::Finished {
                attempt,
                vertex: vertex as usize,
                subtask,
                result: result.map_err(|e| RuntimeError::Remote {
                    message: e.message,
                    secondary: e.secondary,
                }),
            },
            WireTaskEvent::EndOfData {
                attempt,
                vertex,
                subtask,
            } => TaskEvent::EndOfData {
                attempt,
                vertex: vertex as usize,
                subtask,
            },
            WireTaskEvent::Ack {
                attempt,
                vertex,
                subtask,
                checkpoint_id,
                states,
                stats,
            } => TaskEvent::Ack {
                attempt,
                vertex: vertex as usize,
                subtask,
                checkpoint_id,
                states,
                stats,
            },
            WireTaskEvent::Decline {
                attempt,
                vertex,
                subtask,
                checkpoint_id,
                reason,
                task_ending,
            } => TaskEvent::Decline {
                attempt,
                vertex: vertex as usize,
                subtask,
                checkpoint_id,
                reason,
                task_ending,
            },
        }
    }
}

/// A metric's value on the wire: counters, gauges and meters as numbers (histograms are not
/// sent).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireMetric {
    /// Scope variables (`task_id`, `subtask_index`, ...).
    pub variables: BTreeMap<String, String>,
    /// The metric's name.
    pub name: String,
    /// Its value.
    pub value: f64,
}

impl WireMetric {
    /// The wire form of `m`, unless it is a histogram.
    pub fn from_snapshot(m: MetricSnapshot) -> Option<Self> {
        let value = match m.value {
            MetricValue::Count(c) => c as f64,
            MetricValue::Gauge(g) | MetricValue::Rate(g) => g,
            MetricValue::Histogram(_) => return None,
        };
        Some(WireMetric {
            variables: m.variables,
            name: m.name,
            value,
        })
    }
}

/// A hash of what a JobGraph computes — its vertices, edges and mode, not its id or name — so
/// a worker can check that its `main()` built the graph the JobManager runs.
pub fn fingerprint(job: &JobGraph) -> u64 {
    let bytes = postcard::to_allocvec(&(&job.mode, &job.vertices, &job.edges)).unwrap_or_default();
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Writes one message.
pub fn write_message<T: Serialize>(w: &mut impl Write, message: &T) -> Result<()> {
    let bytes = postcard::to_allocvec(message)
        .map_err(|e| RuntimeError::Serialization(format!("cannot encode a message: {e}")))?;
    w.write_all(&(bytes.len() as u32).to_le_bytes())
        .and_then(|_| w.write_all(&bytes))
        .and_then(|_| w.flush())
        .map_err(|e| RuntimeError::io("sending a control message", e))
}

/// Reads one message; `None` at a clean end of the stream.
pub fn read_message<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(RuntimeError::io("reading a control message", e)),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(RuntimeError::Serialization(format!(
            "control message of {len} bytes is larger than the limit of {MAX_MESSAGE}"
        )));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .map_err(|e| RuntimeError::io("reading a control message", e))?;
    postcard::from_bytes(&buf)
        .map(Some)
        .map_err(|e| RuntimeError::Serialization(format!("malformed control message: {e}")))
}
