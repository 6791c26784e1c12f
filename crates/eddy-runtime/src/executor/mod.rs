//! The mini cluster: runs a JobGraph inside this process, one thread per subtask.
//!
//! [`MiniCluster::submit`] starts a job master thread that deploys the job (every
//! channel, a thread per subtask), triggers checkpoints, and supervises the tasks: the first
//! failure cancels all other tasks and, as the restart strategy allows, redeploys the job from
//! its latest completed checkpoint — or fails it with the root cause. Cancellation by the
//! client cancels every task. The [`JobClient`] it returns reports status, metrics and
//! checkpoints, takes savepoints, and waits for the final [`JobExecutionResult`].

mod deploy;
mod master;
pub mod remote;
mod restart;
mod worker;

pub use deploy::TaskSet;
pub use deploy::{RemoteTasks, TaskHandle};
pub use restart::RestartStrategy;
pub use worker::{WORKER_ENV, WorkerSpec, run_worker};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use eddy_core::config::options;
use eddy_core::graph::JobGraph;
use eddy_core::ids::{JobId, OperatorId};
use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::accumulators::AccumulatorValue;
use crate::checkpoint::coordinator::{CheckpointSettings, CheckpointingStatistics};
use crate::checkpoint::metadata::SubtaskSnapshot;
use crate::checkpoint::restore::{RestorePlan, RestoreSource};
use crate::checkpoint::storage::StorageLocation;
use crate::checkpoint::store::{CompletedCheckpointStore, StandaloneCheckpointStore};
use crate::error::{Result, RuntimeError};
use crate::metrics::{MetricRegistry, MetricSnapshot};
use crate::registry::UserCodeRegistry;
pub use crate::task::TaskMessage;
use crate::task::{SnapshotTargets, SubtaskCheckpointStats};

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
    /// When the job ended, in ms since the epoch.
    end_time: Option<i64>,
}

struct JobShared {
    job_id: JobId,
    job_name: String,
    state: Mutex<JobState>,
    changed: Condvar,
    control: Sender<JobControl>,
    /// Set by [`JobClient::cancel`], so a job master blocked in deployment sees it too.
    cancelled: Arc<AtomicBool>,
    metrics: Arc<MetricRegistry>,
    checkpoints: Arc<Mutex<CheckpointingStatistics>>,
    exceptions: Mutex<Vec<JobException>>,
}

/// A failure the job went through (Flink's exception history entry).
#[derive(Clone, Debug, Serialize)]
pub struct JobException {
    /// When it happened, in ms since the epoch.
    pub timestamp: i64,
    /// What happened.
    pub message: String,
}

/// Failures kept per job.
const EXCEPTION_HISTORY: usize = 16;

/// Requests from clients to the job master.
enum JobControl {
    Cancel,
    /// A savepoint; with `stop`, the job then stops (`Some(drain)`).
    Savepoint {
        dir: Option<String>,
        stop: Option<bool>,
        reply: Sender<std::result::Result<String, String>>,
    },
    /// A checkpoint now.
    Checkpoint {
        reply: Sender<std::result::Result<String, String>>,
    },
}

/// What a task tells its job master. Every event names the restart attempt, the vertex and
/// the subtask it comes from.
#[allow(missing_docs)]
pub enum TaskEvent {
    /// The task's thread ended, with its accumulators or its error.
    Finished {
        attempt: u32,
        vertex: usize,
        subtask: u32,
        result: Result<BTreeMap<String, AccumulatorValue>>,
    },
    /// The task's input ended.
    EndOfData {
        attempt: u32,
        vertex: usize,
        subtask: u32,
    },
    /// The task took its part of a checkpoint.
    Ack {
        attempt: u32,
        vertex: usize,
        subtask: u32,
        checkpoint_id: u64,
        states: Vec<(OperatorId, SubtaskSnapshot)>,
        stats: SubtaskCheckpointStats,
    },
    /// The task could not take its part of a checkpoint. `task_ending`: because the task is
    /// being cancelled or failing, whose own end reports why; such a decline aborts the
    /// checkpoint without counting as a checkpoint failure.
    Decline {
        attempt: u32,
        vertex: usize,
        subtask: u32,
        checkpoint_id: u64,
        reason: String,
        task_ending: bool,
    },
}

/// What a [`TaskDeployer`] gets from the job master.
pub struct DeployContext {
    /// Where tasks report.
    pub events: Sender<TaskEvent>,
    /// The job's metrics.
    pub metrics: Arc<MetricRegistry>,
    /// Checkpoint settings.
    pub settings: CheckpointSettings,
    /// Where each checkpoint's files go.
    pub targets: SnapshotTargets,
    /// Set once the job is cancelled: a deployer still waiting for resources gives up with
    /// [`RuntimeError::Cancelled`].
    pub cancelled: Arc<AtomicBool>,
}

impl DeployContext {
    /// Whether the job has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Where a job's tasks run: threads of this process (the mini cluster) or worker processes on
/// TaskManagers.
pub trait TaskDeployer: Send {
    /// Starts every task of `job` for restart attempt `attempt`, restoring `restore`, and
    /// returns their handles per vertex and subtask.
    fn deploy(
        &mut self,
        job: &Arc<JobGraph>,
        attempt: u32,
        restore: Option<Arc<RestorePlan>>,
        ctx: &DeployContext,
    ) -> Result<Vec<Vec<TaskHandle>>>;

    /// Every task of the current attempt has stopped, or has been abandoned: resources held
    /// for them can go.
    fn release(&mut self) {}

    /// The tasks in `tasks` (whole pipelined regions) have stopped and will be deployed again:
    /// resources held only for them can go.
    fn release_tasks(&mut self, _tasks: &TaskSet) {}

    /// Whether [`deploy_tasks`](Self::deploy_tasks) can restart some pipelined regions while
    /// the job's other tasks keep running; if not, every failure restarts the whole job.
    fn restarts_regions(&self) -> bool {
        false
    }

    /// Starts the tasks in `tasks` — whole pipelined regions, whose earlier attempts have
    /// stopped — for attempt `attempt`, restoring `restore`, while the others keep running.
    fn deploy_tasks(
        &mut self,
        _job: &Arc<JobGraph>,
        _attempt: u32,
        _restore: Option<Arc<RestorePlan>>,
        _tasks: &TaskSet,
        _ctx: &DeployContext,
    ) -> Result<Vec<(usize, u32, TaskHandle)>> {
        Err(RuntimeError::Internal(
            "this deployer cannot restart pipelined regions".into(),
        ))
    }
}

/// Runs tasks as threads of this process.
struct LocalDeployer {
    registry: Arc<UserCodeRegistry>,
}

impl TaskDeployer for LocalDeployer {
    fn deploy(
        &mut self,
        job: &Arc<JobGraph>,
        attempt: u32,
        restore: Option<Arc<RestorePlan>>,
        ctx: &DeployContext,
    ) -> Result<Vec<Vec<TaskHandle>>> {
        let started = deploy::deploy(job, &self.registry, ctx, attempt, restore, None, None)?;
        let mut handles: Vec<Vec<TaskHandle>> = job.vertices.iter().map(|_| Vec::new()).collect();
        for (v, _, h) in started {
            handles[v].push(h);
        }
        Ok(handles)
    }

    fn restarts_regions(&self) -> bool {
        true
    }

    fn deploy_tasks(
        &mut self,
        job: &Arc<JobGraph>,
        attempt: u32,
        restore: Option<Arc<RestorePlan>>,
        tasks: &TaskSet,
        ctx: &DeployContext,
    ) -> Result<Vec<(usize, u32, TaskHandle)>> {
        deploy::deploy(
            job,
            &self.registry,
            ctx,
            attempt,
            restore,
            None,
            Some(tasks),
        )
    }
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
        self.shared.cancelled.store(true, Ordering::Relaxed);
        let _ = self.shared.control.send(JobControl::Cancel);
    }

    fn savepoint_request(&self, dir: Option<&str>, stop: Option<bool>) -> Result<String> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.shared
            .control
            .send(JobControl::Savepoint {
                dir: dir.map(str::to_string),
                stop,
                reply,
            })
            .map_err(|_| RuntimeError::user("the job has ended"))?;
        match answer.recv() {
            Ok(Ok(path)) => Ok(path),
            Ok(Err(e)) => Err(RuntimeError::user(e)),
            Err(_) => Err(RuntimeError::user(
                "the job ended before the savepoint completed",
            )),
        }
    }

    /// Takes a savepoint into `dir` (or `execution.checkpointing.savepoint-dir`) and returns
    /// its path once it is complete. The job keeps running.
    pub fn trigger_savepoint(&self, dir: Option<&str>) -> Result<String> {
        self.savepoint_request(dir, None)
    }

    /// Stops the job with a savepoint: sources stop, the savepoint is taken, and the job
    /// finishes. With `drain`, event time first advances to the end, so every timer and
    /// window fires (use it when the job will not be resumed). Returns the savepoint's path.
    pub fn stop_with_savepoint(&self, drain: bool, dir: Option<&str>) -> Result<String> {
        self.savepoint_request(dir, Some(drain))
    }

    /// Takes a checkpoint now and returns its path once it is complete.
    pub fn trigger_checkpoint(&self) -> Result<String> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.shared
            .control
            .send(JobControl::Checkpoint { reply })
            .map_err(|_| RuntimeError::user("the job has ended"))?;
        match answer.recv() {
            Ok(Ok(path)) => Ok(path),
            Ok(Err(e)) => Err(RuntimeError::user(e)),
            Err(_) => Err(RuntimeError::user(
                "the job ended before the checkpoint completed",
            )),
        }
    }

    /// When the job ended (ms since the epoch), once it has.
    pub fn end_time(&self) -> Option<i64> {
        self.shared.state.lock().end_time
    }

    /// The job's name.
    pub fn job_name(&self) -> &str {
        &self.shared.job_name
    }

    /// The failures the job went through, oldest first (at most 16).
    pub fn exceptions(&self) -> Vec<JobException> {
        self.shared.exceptions.lock().clone()
    }

    /// Counts and recent history of the job's checkpoints.
    pub fn checkpoint_statistics(&self) -> CheckpointingStatistics {
        self.shared.checkpoints.lock().clone()
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

/// The environment variable that makes `execute()` write the program's JobGraph, as JSON, to
/// the file it names and exit without running anything: how the JobManager learns the graph of
/// an uploaded program, and how `eddy info` prints it.
pub const PLAN_OUTPUT_ENV: &str = "EDDY_PLAN_OUTPUT";

/// Runs `job` the way this process was started to: in the mini cluster (the usual case); as a
/// worker, running a TaskManager's share of a job the JobManager deployed ([`WORKER_ENV`]);
/// or not at all, writing the JobGraph out ([`PLAN_OUTPUT_ENV`]). The last two exit the
/// process when done.
pub fn launch(job: JobGraph, registry: UserCodeRegistry) -> Result<JobClient> {
    if let Some(path) = std::env::var_os(PLAN_OUTPUT_ENV) {
        let json = serde_json::to_vec_pretty(&job)
            .map_err(|e| RuntimeError::Serialization(format!("cannot write the JobGraph: {e}")))?;
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!(
                "cannot write the JobGraph to {}: {e}",
                path.to_string_lossy()
            );
            std::process::exit(1);
        }
        std::process::exit(0);
    }
    if let Some(spec) = WorkerSpec::from_env()? {
        run_worker(job, registry, spec);
    }
    MiniCluster::submit(job, registry)
}

/// Runs jobs inside this process.
pub struct MiniCluster;

/// How [`MiniCluster::submit_with_options`] starts a job.
#[derive(Default)]
pub struct SubmitOptions {
    /// Where completed checkpoints are recorded and checkpoint ids come from (default: nowhere
    /// outside the job master).
    pub checkpoint_store: Option<Box<dyn CompletedCheckpointStore>>,
    /// Completed checkpoints of an earlier run of this same job, newest first: the job resumes
    /// from the first that can be read, as after a failover. How a JobManager that took over
    /// the leadership resumes the jobs of the one before it.
    pub resume_from: Vec<String>,
}

/// The restore plan of a job resuming from its own checkpoints (`candidates`, newest first):
/// the first one that can be read.
fn resume_plan(
    job: &Arc<JobGraph>,
    candidates: &[String],
    allow: bool,
) -> Result<Arc<RestorePlan>> {
    let mut errors = Vec::new();
    for path in candidates {
        let loaded = StorageLocation::parse(path)
            .and_then(|location| RestoreSource::load(location, true))
            .and_then(|source| RestorePlan::new(Arc::new(source), job, allow));
        match loaded {
            Ok(plan) => return Ok(Arc::new(plan)),
            Err(e) => {
                tracing::warn!(job = %job.name, checkpoint = %path, error = %e, "cannot resume from a checkpoint; trying an older one");
                errors.push(format!("{path}: {e}"));
            }
        }
    }
    Err(RuntimeError::Restore(format!(
        "job {} cannot resume: none of its completed checkpoints can be read ({})",
        job.job_id,
        errors.join("; ")
    )))
}

impl MiniCluster {
    /// Deploys `job` and returns at once with a client for it. Errors in the job's
    /// configuration, or in the savepoint it restores from (`execution.savepoint.path`), are
    /// reported here.
    pub fn submit(job: JobGraph, registry: UserCodeRegistry) -> Result<JobClient> {
        Self::submit_with(
            job,
            Box::new(LocalDeployer {
                registry: Arc::new(registry),
            }),
        )
    }

    /// Like [`MiniCluster::submit`], with the tasks started by `deployer`: this is how the
    /// JobManager runs a job master for a job whose tasks run on TaskManagers.
    pub fn submit_with(job: JobGraph, deployer: Box<dyn TaskDeployer>) -> Result<JobClient> {
        Self::submit_with_options(job, deployer, SubmitOptions::default())
    }

    /// Like [`MiniCluster::submit_with`], with the job's checkpoints recorded in
    /// `options.checkpoint_store` and, for a job that ran before under another JobManager,
    /// resumed from the newest of `options.resume_from` that can be read.
    pub fn submit_with_options(
        job: JobGraph,
        deployer: Box<dyn TaskDeployer>,
        options: SubmitOptions,
    ) -> Result<JobClient> {
        let metrics = MetricRegistry::new();
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let checkpoints = Arc::new(Mutex::new(CheckpointingStatistics::default()));
        let shared = Arc::new(JobShared {
            job_id: job.job_id,
            job_name: job.name.clone(),
            state: Mutex::new(JobState {
                status: JobStatus::Created,
                result: None,
                end_time: None,
            }),
            changed: Condvar::new(),
            control: control_tx,
            cancelled: Arc::new(AtomicBool::new(false)),
            metrics: metrics.clone(),
            checkpoints: checkpoints.clone(),
            exceptions: Mutex::new(Vec::new()),
        });
        let cancellation_timeout = job.config.get(&options::TASK_CANCELLATION_TIMEOUT)?;
        // Validate what every task will read, so a bad value fails the submission, not a task.
        job.config.get_optional(&options::BUFFER_TIMEOUT)?;
        job.config.get(&options::SEGMENT_SIZE)?;
        let settings = CheckpointSettings::from_config(&job.config)?;
        let restart = RestartStrategy::from_config(&job.config, settings.enabled())?;
        let job = Arc::new(job);
        let allow = job.config.get(&options::SAVEPOINT_IGNORE_UNCLAIMED_STATE)?;

        let initial = if !options.resume_from.is_empty() {
            Some(resume_plan(&job, &options.resume_from, allow)?)
        } else {
            match job.config.get_optional(&options::SAVEPOINT_PATH)? {
                Some(path) => {
                    let location = StorageLocation::parse(&path)?;
                    let source = RestoreSource::load(location, false).map_err(|e| {
                        RuntimeError::Restore(format!("cannot restore from '{path}': {e}"))
                    })?;
                    Some(Arc::new(RestorePlan::new(Arc::new(source), &job, allow)?))
                }
                None => None,
            }
        };
        let store = options
            .checkpoint_store
            .unwrap_or_else(|| Box::new(StandaloneCheckpointStore));

        let master = master::JobMaster::new(
            shared.clone(),
            job.clone(),
            deployer,
            metrics,
            control_rx,
            settings,
            restart,
            cancellation_timeout,
            checkpoints,
            initial.as_ref().map_or(1, |p| p.checkpoint_id() + 1),
            store,
        )?;
        std::thread::Builder::new()
            .name(format!("jobmaster {}", job.name))
            .spawn(move || master.run(initial))
            .map_err(|e| RuntimeError::io("cannot start the job master thread", e))?;
        Ok(JobClient { shared })
    }
}

fn set_status(shared: &JobShared, status: JobStatus) {
    let mut state = shared.state.lock();
    if !state.status.is_terminal() && state.status != status {
        tracing::info!(job = %shared.job_name, job_id = %shared.job_id, from = ?state.status, to = ?status, "job status changed");
        state.status = status;
    }
    shared.changed.notify_all();
}

fn record_exception(shared: &JobShared, message: String) {
    let mut e = shared.exceptions.lock();
    if e.len() == EXCEPTION_HISTORY {
        e.remove(0);
    }
    e.push(JobException {
        timestamp: eddy_core::time::now_millis(),
        message,
    });
}

fn finish_job(shared: &JobShared, result: std::result::Result<JobExecutionResult, JobError>) {
    let status = match &result {
        Ok(_) => JobStatus::Finished,
        Err(JobError::Cancelled { .. }) => JobStatus::Canceled,
        Err(JobError::Failed { .. }) => JobStatus::Failed,
    };
    let mut state = shared.state.lock();
    tracing::info!(job = %shared.job_name, job_id = %shared.job_id, status = ?status, "job ended");
    state.status = status;
    state.result = Some(result);
    state.end_time = Some(eddy_core::time::now_millis());
    shared.changed.notify_all();
}
