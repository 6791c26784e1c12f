//! The mini cluster: runs a JobGraph inside this process, one thread per subtask.
//!
//! [`MiniCluster::submit`] creates every channel, spawns every task, and starts a job master
//! thread that supervises them: the first failure cancels all other tasks and fails the job with
//! the root cause; cancellation by the client cancels every task. The [`JobClient`] it returns
//! reports status, metrics and the final [`JobExecutionResult`].

mod deploy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use eddy_core::config::options;
use eddy_core::graph::JobGraph;
use eddy_core::ids::JobId;
use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::accumulators::{AccumulatorValue, Accumulators};
use crate::error::{Result, RuntimeError};
use crate::metrics::{MetricRegistry, MetricSnapshot};
use crate::registry::UserCodeRegistry;
use crate::task::TaskMessage;

/// A job's status, with Flink's names and transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Submitted, not yet running.
    Created,
    /// Tasks are running.
    Running,
    /// A task failed; the others are being cancelled.
    Failing,
    /// Restarting after a failure.
    Restarting,
    /// Cancellation requested; tasks are stopping.
    Cancelling,
    /// Cancelled.
    Canceled,
    /// Every task finished.
    Finished,
    /// The job failed.
    Failed,
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Canceled | JobStatus::Finished | JobStatus::Failed
        )
    }
}

/// What a finished job returns (Flink's `JobExecutionResult`).
#[derive(Clone, Debug)]
pub struct JobExecutionResult {
    /// The job's id.
    pub job_id: JobId,
    /// Wall-clock time from start to finish.
    pub net_runtime: Duration,
    /// Accumulators merged over all subtasks.
    pub accumulators: BTreeMap<String, AccumulatorValue>,
}

impl JobExecutionResult {
    /// An accumulator's final value.
    pub fn accumulator_result(&self, name: &str) -> Option<&AccumulatorValue> {
        self.accumulators.get(name)
    }
}

/// How a job ended, when it did not finish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// A task failed; `cause` is the root cause.
    #[error("job '{job_name}' ({job_id}) failed: {cause}")]
    Failed {
        /// The job's id.
        job_id: JobId,
        /// The job's name.
        job_name: String,
        /// The first error that was not a consequence of another.
        cause: Arc<RuntimeError>,
    },
    /// The job was cancelled.
    #[error("job '{job_name}' ({job_id}) was cancelled")]
    Cancelled {
        /// The job's id.
        job_id: JobId,
        /// The job's name.
        job_name: String,
    },
}

impl JobError {
    /// The root cause, for a failed job.
    pub fn cause(&self) -> Option<&RuntimeError> {
        match self {
            JobError::Failed { cause, .. } => Some(cause),
            JobError::Cancelled { .. } => None,
        }
    }
}

struct JobState {
    status: JobStatus,
    result: Option<std::result::Result<JobExecutionResult, JobError>>,
}

struct JobShared {
    job_id: JobId,
    job_name: String,
    state: Mutex<JobState>,
    changed: Condvar,
    control: Sender<JobControl>,
    metrics: Arc<MetricRegistry>,
}

enum JobControl {
    Cancel,
}

/// A handle on a submitted job (Flink's `JobClient`).
#[derive(Clone)]
pub struct JobClient {
    shared: Arc<JobShared>,
}

impl std::fmt::Debug for JobClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JobClient({} {})",
            self.shared.job_name, self.shared.job_id
        )
    }
}

impl JobClient {
    /// The job's id.
    pub fn job_id(&self) -> JobId {
        self.shared.job_id
    }

    /// The job's current status.
    pub fn job_status(&self) -> JobStatus {
        self.shared.state.lock().status
    }

    /// Asks the job to stop. Returns at once; wait with
    /// [`JobClient::get_job_execution_result`].
    pub fn cancel(&self) {
        let _ = self.shared.control.send(JobControl::Cancel);
    }

    /// Blocks until the job ends, then returns its result or how it failed.
    pub fn get_job_execution_result(&self) -> std::result::Result<JobExecutionResult, JobError> {
        let mut state = self.shared.state.lock();
        loop {
            if let Some(r) = &state.result {
                return r.clone();
            }
            self.shared.changed.wait(&mut state);
        }
    }

    /// Like [`JobClient::get_job_execution_result`], but gives up after `timeout` (returning
    /// `None` if the job is still running).
    pub fn wait_timeout(
        &self,
        timeout: Duration,
    ) -> Option<std::result::Result<JobExecutionResult, JobError>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        loop {
            if let Some(r) = &state.result {
                return Some(r.clone());
            }
            if self
                .shared
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return state.result.clone();
            }
        }
    }

    /// Blocks until the job reaches `status` or ends; returns the status it reached.
    pub fn wait_for_status(&self, status: JobStatus, timeout: Duration) -> JobStatus {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        while state.status != status && !state.status.is_terminal() {
            if self
                .shared
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                break;
            }
        }
        state.status
    }

    /// The current value of every metric of the job.
    pub fn metrics(&self) -> Vec<MetricSnapshot> {
        let id = self.shared.job_id.to_string();
        self.shared
            .metrics
            .snapshot()
            .into_iter()
            .filter(|m| m.variables.get("job_id") == Some(&id))
            .collect()
    }
}

/// The end of one task's thread.
struct TaskEvent {
    vertex: usize,
    subtask: u32,
    result: Result<BTreeMap<String, AccumulatorValue>>,
}

/// Handles to one running task.
struct TaskHandle {
    mailbox: Sender<TaskMessage>,
    signals: Arc<crate::exchange::TaskSignals>,
}

/// Runs jobs inside this process.
pub struct MiniCluster;

impl MiniCluster {
    /// Deploys `job` and returns at once with a client for it.
    pub fn submit(job: JobGraph, registry: UserCodeRegistry) -> Result<JobClient> {
        let metrics = MetricRegistry::new();
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(JobShared {
            job_id: job.job_id,
            job_name: job.name.clone(),
            state: Mutex::new(JobState {
                status: JobStatus::Created,
                result: None,
            }),
            changed: Condvar::new(),
            control: control_tx,
            metrics: metrics.clone(),
        });
        let cancellation_timeout = job.config.get(&options::TASK_CANCELLATION_TIMEOUT)?;
        // Validate what every task will read, so a bad value fails the submission, not a task.
        job.config.get_optional(&options::BUFFER_TIMEOUT)?;
        job.config.get(&options::SEGMENT_SIZE)?;

        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let job = Arc::new(job);
        let registry = Arc::new(registry);
        let handles = deploy::deploy(&job, &registry, &metrics, events_tx)?;
        set_status(&shared, JobStatus::Running);

        let master = shared.clone();
        std::thread::Builder::new()
            .name(format!("jobmaster {}", job.name))
            .spawn(move || {
                job_master(
                    master,
                    job,
                    handles,
                    events_rx,
                    control_rx,
                    cancellation_timeout,
                )
            })
            .map_err(|e| RuntimeError::io("cannot start the job master thread", e))?;
        Ok(JobClient { shared })
    }
}

fn set_status(shared: &JobShared, status: JobStatus) {
    let mut state = shared.state.lock();
    if !state.status.is_terminal() {
        tracing::info!(job = %shared.job_name, job_id = %shared.job_id, from = ?state.status, to = ?status, "job status changed");
        state.status = status;
    }
    shared.changed.notify_all();
}

fn job_master(
    shared: Arc<JobShared>,
    job: Arc<JobGraph>,
    handles: Vec<Vec<TaskHandle>>,
    events: Receiver<TaskEvent>,
    control: Receiver<JobControl>,
    cancellation_timeout: Duration,
) {
    let start = Instant::now();
    let mut remaining: usize = handles.iter().map(Vec::len).sum();
    let mut root_cause: Option<RuntimeError> = None;
    let mut secondary: Option<RuntimeError> = None;
    let mut cancel_requested = false;
    let mut cancelling_since: Option<Instant> = None;
    let accumulators = Accumulators::default();
    let ticker = crossbeam_channel::tick(Duration::from_secs(1));

    let cancel_all = |handles: &Vec<Vec<TaskHandle>>| {
        for h in handles.iter().flatten() {
            h.signals.cancel();
            let _ = h.mailbox.send(TaskMessage::Cancel);
        }
    };

    while remaining > 0 {
        select! {
            recv(events) -> ev => {
                let Ok(ev) = ev else { break };
                remaining -= 1;
                match ev.result {
                    Ok(acc) => {
                        if let Err(e) = accumulators.merge_all(&acc)
                            && root_cause.is_none()
                        {
                            root_cause = Some(e);
                        }
                    }
                    Err(e) => {
                        let name = &job.vertices[ev.vertex].name;
                        if e.is_secondary() {
                            tracing::debug!(task = %name, subtask = ev.subtask, error = %e, "task stopped");
                            if secondary.is_none() {
                                secondary = Some(e);
                            }
                        } else {
                            tracing::error!(task = %name, subtask = ev.subtask, error = %e, "task failed");
                            if root_cause.is_none() {
                                root_cause = Some(e);
                            }
                        }
                        if cancelling_since.is_none() && !cancel_requested {
                            set_status(&shared, JobStatus::Failing);
                            cancel_all(&handles);
                            cancelling_since = Some(Instant::now());
                        }
                    }
                }
            }
            recv(control) -> msg => {
                if let Ok(JobControl::Cancel) = msg
                    && cancelling_since.is_none()
                {
                    cancel_requested = true;
                    set_status(&shared, JobStatus::Cancelling);
                    cancel_all(&handles);
                    cancelling_since = Some(Instant::now());
                }
            }
            recv(ticker) -> _ => {
                shared.metrics.update_views();
                if let Some(since) = cancelling_since
                    && since.elapsed() > cancellation_timeout
                {
                    tracing::error!(job = %job.name, remaining, "tasks did not stop within task.cancellation.timeout; abandoning them");
                    if root_cause.is_none() && !cancel_requested {
                        root_cause = Some(RuntimeError::Internal(format!(
                            "{remaining} task(s) did not stop within {cancellation_timeout:?} after cancellation"
                        )));
                    }
                    break;
                }
            }
        }
    }
    shared.metrics.update_views();

    let result = if let Some(cause) = root_cause {
        Err(JobError::Failed {
            job_id: job.job_id,
            job_name: job.name.clone(),
            cause: Arc::new(cause),
        })
    } else if cancel_requested {
        Err(JobError::Cancelled {
            job_id: job.job_id,
            job_name: job.name.clone(),
        })
    } else if let Some(cause) = secondary {
        // Only consequences were reported (should not happen): still a failure.
        Err(JobError::Failed {
            job_id: job.job_id,
            job_name: job.name.clone(),
            cause: Arc::new(cause),
        })
    } else {
        Ok(JobExecutionResult {
            job_id: job.job_id,
            net_runtime: start.elapsed(),
            accumulators: accumulators.snapshot(),
        })
    };
    let status = match &result {
        Ok(_) => JobStatus::Finished,
        Err(JobError::Cancelled { .. }) => JobStatus::Canceled,
        Err(JobError::Failed { .. }) => JobStatus::Failed,
    };
    let mut state = shared.state.lock();
    tracing::info!(job = %job.name, job_id = %job.job_id, status = ?status, "job ended");
    state.status = status;
    state.result = Some(result);
    shared.changed.notify_all();
}
