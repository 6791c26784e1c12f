//! The job master: deploys a job's tasks, drives its checkpoint coordinator, and decides what
//! a failure means — a restart from the latest completed checkpoint, or the end of the job.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use eddy_core::element::SnapshotKind;
use eddy_core::graph::JobGraph;
use parking_lot::Mutex;

use super::deploy::TaskHandle;
use super::{
    DeployContext, JobControl, JobError, JobExecutionResult, JobShared, JobStatus, RestartStrategy,
    TaskDeployer, TaskEvent, finish_job, record_exception, set_status,
};
use crate::accumulators::Accumulators;
use crate::checkpoint::coordinator::{
    CheckpointCoordinator, CheckpointSettings, CheckpointingStatistics, JobOutcome, TaskKey,
    TaskMessenger,
};
use crate::checkpoint::restore::{RestorePlan, RestoreSource};
use crate::error::{Result, RuntimeError};
use crate::metrics::MetricRegistry;
use crate::task::{SnapshotTargets, TaskMessage};

/// What the job master is doing.
enum Phase {
    /// Tasks run.
    Running,
    /// Tasks are being cancelled after a failure; then the job restarts after `restart`, or
    /// fails.
    Failing {
        cause: RuntimeError,
        restart: Option<Duration>,
        since: Instant,
    },
    /// Waiting to redeploy.
    Restarting { until: Instant },
    /// Tasks are being cancelled at the user's request.
    Cancelling { since: Instant },
}

struct Messenger<'a> {
    handles: &'a [Vec<TaskHandle>],
}

impl TaskMessenger for Messenger<'_> {
    fn send(&self, task: TaskKey, msg: TaskMessage) -> bool {
        self.handles
            .get(task.0)
            .and_then(|v| v.get(task.1 as usize))
            .is_some_and(|h| h.send(msg))
    }

    fn tasks(&self) -> Vec<TaskKey> {
        self.handles
            .iter()
            .enumerate()
            .flat_map(|(v, subtasks)| (0..subtasks.len() as u32).map(move |s| (v, s)))
            .collect()
    }
}

/// Supervises one job.
pub(super) struct JobMaster {
    shared: Arc<JobShared>,
    job: Arc<JobGraph>,
    deployer: Box<dyn TaskDeployer>,
    control: Receiver<JobControl>,
    events: Receiver<TaskEvent>,
    deploy_context: DeployContext,
    restart: RestartStrategy,
    cancellation_timeout: Duration,
    coordinator: CheckpointCoordinator,
    attempt: u32,
    handles: Vec<Vec<TaskHandle>>,
    alive: HashSet<TaskKey>,
    accumulators: Accumulators,
    start: Instant,
    phase: Phase,
    /// The plan the job started from, if it restored a savepoint.
    initial: Option<Arc<RestorePlan>>,
    /// A stop-with-savepoint in progress.
    stopping: Option<u64>,
}

impl JobMaster {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        shared: Arc<JobShared>,
        job: Arc<JobGraph>,
        deployer: Box<dyn TaskDeployer>,
        metrics: Arc<MetricRegistry>,
        control: Receiver<JobControl>,
        settings: CheckpointSettings,
        restart: RestartStrategy,
        cancellation_timeout: Duration,
        stats: Arc<Mutex<CheckpointingStatistics>>,
        first_checkpoint_id: u64,
    ) -> Result<Self> {
        let targets = SnapshotTargets::default();
        let coordinator = CheckpointCoordinator::new(
            settings.clone(),
            job.clone(),
            targets.clone(),
            stats,
            first_checkpoint_id,
        )?;
        let (events_tx, events) = crossbeam_channel::unbounded();
        let cancelled = shared.cancelled.clone();
        Ok(JobMaster {
            shared,
            job,
            deployer,
            control,
            events,
            deploy_context: DeployContext {
                events: events_tx,
                metrics,
                settings,
                targets,
                cancelled,
            },
            restart,
            cancellation_timeout,
            coordinator,
            attempt: 0,
            handles: Vec::new(),
            alive: HashSet::new(),
            accumulators: Accumulators::default(),
            start: Instant::now(),
            phase: Phase::Running,
            initial: None,
            stopping: None,
        })
    }

    fn messenger(&self) -> Messenger<'_> {
        Messenger {
            handles: &self.handles,
        }
    }

    fn deploy(&mut self, plan: Option<Arc<RestorePlan>>) -> Result<()> {
        if self.attempt > 0 {
            self.deploy_context
                .metrics
                .remove_where("job_id", &self.job.job_id.to_string());
        }
        self.accumulators = Accumulators::default();
        if let Some(p) = &plan {
            tracing::info!(job = %self.job.name, checkpoint = p.checkpoint_id(), path = %p.location().display(), "restoring state");
            self.coordinator
                .record_restore(p.checkpoint_id(), p.location().display());
        }
        self.coordinator.reset_tasks();
        self.handles = self
            .deployer
            .deploy(&self.job, self.attempt, plan, &self.deploy_context)?;
        self.alive = self.messenger().tasks().into_iter().collect();
        Ok(())
    }

    pub(super) fn run(mut self, initial: Option<Arc<RestorePlan>>) {
        self.initial = initial.clone();
        if let Err(e) = self.deploy(initial) {
            let failed = self.failed(e);
            self.end(Err(failed));
            return;
        }
        set_status(&self.shared, JobStatus::Running);
        let mut next_metrics = Instant::now() + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            let mut deadline = next_metrics;
            if matches!(self.phase, Phase::Running)
                && let Some(d) = self.coordinator.next_deadline()
            {
                deadline = deadline.min(d);
            }
            match self.phase {
                Phase::Restarting { until } => deadline = deadline.min(until),
                Phase::Failing { since, .. } | Phase::Cancelling { since } => {
                    deadline = deadline.min(since + self.cancellation_timeout)
                }
                Phase::Running => {}
            }
            let timeout = deadline.saturating_duration_since(now);
            select! {
                recv(self.events) -> ev => {
                    if let Ok(ev) = ev {
                        self.on_event(ev);
                    }
                }
                recv(self.control) -> msg => {
                    if let Ok(msg) = msg {
                        self.on_control(msg);
                    }
                }
                default(timeout) => {}
            }
            if Instant::now() >= next_metrics {
                self.shared.metrics.update_views();
                next_metrics = Instant::now() + Duration::from_secs(1);
            }
            if let Some(result) = self.on_time() {
                self.end(result);
                return;
            }
        }
    }

    fn on_event(&mut self, ev: TaskEvent) {
        match ev {
            TaskEvent::Finished {
                attempt,
                vertex,
                subtask,
                result,
            } if attempt == self.attempt => {
                self.alive.remove(&(vertex, subtask));
                match result {
                    Ok(acc) => {
                        if let Err(e) = self.accumulators.merge_all(&acc) {
                            self.fail(e);
                        } else if matches!(self.phase, Phase::Running) {
                            let messenger = Messenger {
                                handles: &self.handles,
                            };
                            if let Err(e) = self
                                .coordinator
                                .on_task_exited((vertex, subtask), &messenger)
                            {
                                self.fail(e);
                            }
                        }
                    }
                    Err(e) => {
                        let name = &self.job.vertices[vertex].name;
                        if e.is_secondary() {
                            tracing::debug!(task = %name, subtask, error = %e, "task stopped");
                        } else {
                            tracing::error!(task = %name, subtask, error = %e, "task failed");
                        }
                        self.fail(e);
                    }
                }
            }
            TaskEvent::EndOfData {
                attempt,
                vertex,
                subtask,
            } if attempt == self.attempt => self.coordinator.on_end_of_data((vertex, subtask)),
            TaskEvent::Ack {
                attempt,
                vertex,
                subtask,
                checkpoint_id,
                states,
                stats,
            } if attempt == self.attempt => {
                let messenger = Messenger {
                    handles: &self.handles,
                };
                let r = self.coordinator.on_ack(
                    checkpoint_id,
                    (vertex, subtask),
                    states,
                    stats,
                    &messenger,
                );
                self.after_coordinator(r);
            }
            TaskEvent::Decline {
                attempt,
                vertex,
                subtask,
                checkpoint_id,
                reason,
                task_ending,
            } if attempt == self.attempt => {
                let messenger = Messenger {
                    handles: &self.handles,
                };
                let r = self.coordinator.on_decline(
                    checkpoint_id,
                    (vertex, subtask),
                    &reason,
                    task_ending,
                    &messenger,
                );
                self.after_coordinator(r);
            }
            _ => {} // an event of an earlier attempt
        }
    }

    fn after_coordinator(&mut self, result: Result<()>) {
        if let Err(e) = result {
            self.fail(e);
            return;
        }
        if let Some(id) = self.stopping
            && let Some(reason) = self.coordinator.take_failed_stop(id)
        {
            self.stopping = None;
            self.fail(RuntimeError::CheckpointAborted {
                id,
                reason: format!("stop-with-savepoint failed: {reason}"),
            });
        }
    }

    fn on_control(&mut self, msg: JobControl) {
        match msg {
            JobControl::Cancel => match self.phase {
                Phase::Running | Phase::Failing { .. } => {
                    set_status(&self.shared, JobStatus::Cancelling);
                    self.cancel_tasks();
                    self.phase = Phase::Cancelling {
                        since: Instant::now(),
                    };
                }
                Phase::Restarting { .. } => {
                    self.phase = Phase::Cancelling {
                        since: Instant::now(),
                    };
                }
                Phase::Cancelling { .. } => {}
            },
            JobControl::Savepoint { dir, stop, reply } => {
                if !matches!(self.phase, Phase::Running) {
                    let _ = reply.send(Err("the job is not running".into()));
                    return;
                }
                let kind = match stop {
                    Some(drain) => SnapshotKind::SavepointAndStop { drain },
                    None => SnapshotKind::Savepoint,
                };
                if stop.is_some() {
                    for t in self.messenger().tasks() {
                        self.messenger().send(t, TaskMessage::PrepareStop);
                    }
                }
                let messenger = Messenger {
                    handles: &self.handles,
                };
                match self
                    .coordinator
                    .trigger(kind, dir, Some(reply.clone()), &messenger)
                {
                    Ok(id) => {
                        if stop.is_some() {
                            self.stopping = Some(id);
                        }
                        self.after_coordinator(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                        if stop.is_some() {
                            self.fail(e);
                        }
                    }
                }
            }
            JobControl::Checkpoint { reply } => {
                if !matches!(self.phase, Phase::Running) {
                    let _ = reply.send(Err("the job is not running".into()));
                    return;
                }
                let messenger = Messenger {
                    handles: &self.handles,
                };
                if let Err(e) = self.coordinator.trigger(
                    SnapshotKind::Checkpoint,
                    None,
                    Some(reply.clone()),
                    &messenger,
                ) {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }

    fn cancel_tasks(&mut self) {
        for h in self.handles.iter().flatten() {
            h.cancel();
        }
        let messenger = Messenger {
            handles: &self.handles,
        };
        self.coordinator
            .abort_all("the job is stopping its tasks", &messenger);
    }

    /// A task failed (or a checkpoint failed too often): cancel the rest, then restart or fail.
    fn fail(&mut self, cause: RuntimeError) {
        match &mut self.phase {
            Phase::Running => {
                let restart = self.restart.on_failure(Instant::now());
                // The first failure to arrive may be a consequence of another (a task whose
                // peer died); the cause is logged once every task has stopped, when the root
                // cause is known.
                tracing::debug!(job = %self.job.name, error = %cause, "a task failed; stopping the job's tasks");
                set_status(
                    &self.shared,
                    if restart.is_some() {
                        JobStatus::Restarting
                    } else {
                        JobStatus::Failing
                    },
                );
                self.stopping = None;
                self.cancel_tasks();
                self.phase = Phase::Failing {
                    cause,
                    restart,
                    since: Instant::now(),
                };
            }
            Phase::Failing { cause: current, .. } => {
                // Prefer a root cause over a consequence of it.
                if current.is_secondary() && !cause.is_secondary() {
                    *current = cause;
                }
            }
            Phase::Restarting { .. } | Phase::Cancelling { .. } => {}
        }
    }

    /// Timers: checkpoints, restarts, and the end of the job. Returns the job's result once
    /// it has ended.
    fn on_time(&mut self) -> Option<std::result::Result<JobExecutionResult, JobError>> {
        let now = Instant::now();
        match &self.phase {
            Phase::Running => {
                if self.alive.is_empty() {
                    return Some(Ok(self.result_ok()));
                }
                let messenger = Messenger {
                    handles: &self.handles,
                };
                let r = self.coordinator.tick(&messenger);
                self.after_coordinator(r);
                None
            }
            Phase::Failing {
                restart,
                since,
                cause,
            } => {
                if self.alive.is_empty() {
                    self.deployer.release();
                    record_exception(&self.shared, cause.to_string());
                    match *restart {
                        Some(delay) => {
                            tracing::warn!(job = %self.job.name, error = %cause, strategy = self.restart.name(), ?delay, "job failed; restarting");
                            self.phase = Phase::Restarting { until: now + delay };
                            None
                        }
                        None => {
                            tracing::error!(job = %self.job.name, error = %cause, "job failed");
                            let Phase::Failing { cause, .. } =
                                std::mem::replace(&mut self.phase, Phase::Running)
                            else {
                                return None;
                            };
                            Some(Err(self.failed(cause)))
                        }
                    }
                } else if now >= *since + self.cancellation_timeout {
                    let Phase::Failing { cause, .. } =
                        std::mem::replace(&mut self.phase, Phase::Running)
                    else {
                        return None;
                    };
                    let remaining = self.alive.len();
                    tracing::error!(job = %self.job.name, remaining, "tasks did not stop within task.cancellation.timeout; abandoning them");
                    Some(Err(self.failed(RuntimeError::Internal(format!(
                        "{remaining} task(s) did not stop within {:?} after cancellation, following: {cause}",
                        self.cancellation_timeout
                    )))))
                } else {
                    None
                }
            }
            Phase::Restarting { until } => {
                if now < *until {
                    return None;
                }
                match self.restart_job() {
                    Ok(()) => {
                        self.phase = Phase::Running;
                        set_status(&self.shared, JobStatus::Running);
                        None
                    }
                    Err(e) => Some(Err(self.failed(e))),
                }
            }
            Phase::Cancelling { since } => {
                if self.alive.is_empty() || now >= *since + self.cancellation_timeout {
                    if !self.alive.is_empty() {
                        tracing::error!(job = %self.job.name, remaining = self.alive.len(), "tasks did not stop within task.cancellation.timeout; abandoning them");
                    }
                    Some(Err(JobError::Cancelled {
                        job_id: self.job.job_id,
                        job_name: self.job.name.clone(),
                    }))
                } else {
                    None
                }
            }
        }
    }

    /// Redeploys the job from the newest readable completed checkpoint.
    fn restart_job(&mut self) -> Result<()> {
        let mut plan = None;
        let candidates = self.coordinator.restore_candidates();
        let had_checkpoints = !candidates.is_empty();
        for c in candidates {
            let loaded = RestoreSource::load(c.dir.clone(), !c.savepoint).and_then(|source| {
                let allow = self
                    .job
                    .config
                    .get(&eddy_core::config::options::SAVEPOINT_IGNORE_UNCLAIMED_STATE)?;
                RestorePlan::new(Arc::new(source), &self.job, allow)
            });
            match loaded {
                Ok(p) => {
                    plan = Some(Arc::new(p));
                    break;
                }
                Err(e) => {
                    tracing::error!(job = %self.job.name, checkpoint = c.id, error = %e, "cannot restore from {}; falling back to an older checkpoint", c.describe());
                    self.coordinator.discard_unreadable(c.id);
                }
            }
        }
        if plan.is_none() {
            if had_checkpoints {
                return Err(RuntimeError::Restore(
                    "cannot restore: no completed checkpoint can be read; see the errors above"
                        .into(),
                ));
            }
            plan = self.initial.clone();
        }
        self.attempt += 1;
        self.deploy(plan)
    }

    fn result_ok(&self) -> JobExecutionResult {
        JobExecutionResult {
            job_id: self.job.job_id,
            net_runtime: self.start.elapsed(),
            accumulators: self.accumulators.snapshot(),
        }
    }

    /// The job's end after `cause`: cancelled if the user asked for it (a deployer waiting for
    /// slots gives up with [`RuntimeError::Cancelled`] then), failed otherwise.
    fn failed(&self, cause: RuntimeError) -> JobError {
        if self.deploy_context.is_cancelled() {
            return JobError::Cancelled {
                job_id: self.job.job_id,
                job_name: self.job.name.clone(),
            };
        }
        JobError::Failed {
            job_id: self.job.job_id,
            job_name: self.job.name.clone(),
            cause: Arc::new(cause),
        }
    }

    fn end(mut self, result: std::result::Result<JobExecutionResult, JobError>) {
        let outcome = match &result {
            Ok(_) => JobOutcome::Finished,
            Err(JobError::Cancelled { .. }) => JobOutcome::Cancelled,
            Err(JobError::Failed { .. }) => JobOutcome::Failed,
        };
        let handles = std::mem::take(&mut self.handles);
        self.coordinator
            .shutdown(outcome, &Messenger { handles: &handles });
        self.deployer.release();
        self.shared.metrics.update_views();
        finish_job(&self.shared, result);
    }
}
