//! The job master: deploys a job's tasks, drives its checkpoint coordinator, and decides what
//! a failure means — a restart from the latest completed checkpoint, or the end of the job.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use eddy_core::config::FailoverStrategy;
use eddy_core::element::SnapshotKind;
use eddy_core::graph::JobGraph;
use parking_lot::Mutex;

use super::deploy::{TaskHandle, TaskSet};
use super::{
    DeployContext, JobControl, JobError, JobExecutionResult, JobShared, JobStatus, RestartStrategy,
    TaskDeployer, TaskEvent, finish_job, record_exception, set_status,
};
use crate::accumulators::{AccumulatorValue, Accumulators};
use crate::checkpoint::coordinator::{
    CheckpointCoordinator, CheckpointSettings, CheckpointingStatistics, JobOutcome, TaskKey,
    TaskMessenger,
};
use crate::checkpoint::restore::{RestorePlan, RestoreSource};
use crate::checkpoint::store::CompletedCheckpointStore;
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

/// Pipelined regions restarting while the rest of the job runs (region failover).
struct RegionFailover {
    /// Every task of the failed regions.
    tasks: TaskSet,
    cause: RuntimeError,
    delay: Duration,
    since: Instant,
    /// Once every task of the regions has stopped: when they are deployed again.
    restart_at: Option<Instant>,
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
    /// The latest attempt number; each restart, of the job or of regions, takes a new one.
    attempt: u32,
    /// The attempt each subtask runs, per vertex.
    attempts: Vec<Vec<u32>>,
    handles: Vec<Vec<TaskHandle>>,
    alive: HashSet<TaskKey>,
    failover: FailoverStrategy,
    /// The pipelined region of each subtask, and the subtasks of each region.
    region_of: HashMap<TaskKey, usize>,
    regions: Vec<Vec<TaskKey>>,
    recovering: Option<RegionFailover>,
    /// Merged accumulators of the subtasks that finished, and each one's own.
    accumulators: Accumulators,
    finished_accumulators: HashMap<TaskKey, BTreeMap<String, AccumulatorValue>>,
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
        store: Box<dyn CompletedCheckpointStore>,
    ) -> Result<Self> {
        let targets = SnapshotTargets::default();
        let coordinator = CheckpointCoordinator::new(
            settings.clone(),
            job.clone(),
            targets.clone(),
            stats,
            first_checkpoint_id,
            store,
        )?;
        let (events_tx, events) = crossbeam_channel::unbounded();
        let cancelled = shared.cancelled.clone();
        let failover = job
            .config
            .get(&eddy_core::config::options::FAILOVER_STRATEGY)?;
        let regions: Vec<Vec<TaskKey>> = job
            .pipelined_regions()
            .into_iter()
            .map(|r| r.into_iter().map(|(v, s)| (v as usize, s)).collect())
            .collect();
        let region_of = regions
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.iter().map(move |t| (*t, i)))
            .collect();
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
            attempts: Vec::new(),
            handles: Vec::new(),
            alive: HashSet::new(),
            failover,
            region_of,
            regions,
            recovering: None,
            accumulators: Accumulators::default(),
            finished_accumulators: HashMap::new(),
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
        self.finished_accumulators.clear();
        self.record_restore(plan.as_deref());
        self.coordinator.reset_tasks(None);
        self.handles = self
            .deployer
            .deploy(&self.job, self.attempt, plan, &self.deploy_context)?;
        self.attempts = self
            .handles
            .iter()
            .map(|h| vec![self.attempt; h.len()])
            .collect();
        self.alive = self.messenger().tasks().into_iter().collect();
        Ok(())
    }

    fn record_restore(&self, plan: Option<&RestorePlan>) {
        if let Some(p) = plan {
            tracing::info!(job = %self.job.name, checkpoint = p.checkpoint_id(), path = %p.location().display(), "restoring state");
            self.coordinator
                .record_restore(p.checkpoint_id(), p.location().display());
        }
    }

    /// Whether an event of `attempt` comes from the attempt `task` runs now.
    fn is_current(&self, attempt: u32, task: TaskKey) -> bool {
        self.attempts
            .get(task.0)
            .and_then(|a| a.get(task.1 as usize))
            == Some(&attempt)
    }

    /// Whether `task` belongs to a region being restarted.
    fn is_recovering(&self, task: TaskKey) -> bool {
        self.recovering
            .as_ref()
            .is_some_and(|r| r.tasks.contains(&task))
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
            if matches!(self.phase, Phase::Running) {
                match &self.recovering {
                    Some(r) => {
                        deadline = deadline
                            .min(r.restart_at.unwrap_or(r.since + self.cancellation_timeout));
                    }
                    None => {
                        if let Some(d) = self.coordinator.next_deadline() {
                            deadline = deadline.min(d);
                        }
                    }
                }
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
            } if self.is_current(attempt, (vertex, subtask)) => {
                self.alive.remove(&(vertex, subtask));
                match result {
                    // A task of a restarting region that stopped without an error: its
                    // results go with the attempt.
                    Ok(_) if self.is_recovering((vertex, subtask)) => {}
                    Ok(acc) => {
                        let merged = self.accumulators.merge_all(&acc);
                        self.finished_accumulators.insert((vertex, subtask), acc);
                        if let Err(e) = merged {
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
                        self.task_failed((vertex, subtask), e);
                    }
                }
            }
            TaskEvent::EndOfData {
                attempt,
                vertex,
                subtask,
            } if self.is_current(attempt, (vertex, subtask)) => {
                self.coordinator.on_end_of_data((vertex, subtask))
            }
            TaskEvent::Ack {
                attempt,
                vertex,
                subtask,
                checkpoint_id,
                states,
                stats,
            } if self.is_current(attempt, (vertex, subtask)) => {
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
            } if self.is_current(attempt, (vertex, subtask)) => {
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
                    self.recovering = None;
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
                if let Err(why) = self.can_snapshot() {
                    let _ = reply.send(Err(why.into()));
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
                if let Err(why) = self.can_snapshot() {
                    let _ = reply.send(Err(why.into()));
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

    /// Whether a savepoint or checkpoint can be taken now, or why not.
    fn can_snapshot(&self) -> std::result::Result<(), &'static str> {
        if !matches!(self.phase, Phase::Running) {
            Err("the job is not running")
        } else if self.recovering.is_some() {
            Err("tasks of the job are restarting after a failure")
        } else {
            Ok(())
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

    /// Task `task` failed. With region failover, its pipelined region restarts while the rest
    /// of the job runs; otherwise, or when the region is the whole job, the job fails over.
    fn task_failed(&mut self, task: TaskKey, cause: RuntimeError) {
        if !matches!(self.phase, Phase::Running) {
            return self.fail(cause);
        }
        if let Some(r) = &mut self.recovering
            && r.tasks.contains(&task)
        {
            // A consequence of the failure that restarts its region, or the root cause
            // arriving after a consequence.
            if r.cause.is_secondary() && !cause.is_secondary() {
                r.cause = cause;
            }
            return;
        }
        let Some(&region) = self.region_of.get(&task) else {
            return self.fail(cause);
        };
        let tasks = &self.regions[region];
        if self.failover == FailoverStrategy::Full
            || !self.deployer.restarts_regions()
            || tasks.len() == self.region_of.len()
            || self.stopping.is_some()
        {
            return self.fail(cause);
        }
        let Some(delay) = self.restart.on_failure(Instant::now()) else {
            return self.fail_job(cause, None);
        };
        let name = &self.job.vertices[task.0].name;
        tracing::warn!(job = %self.job.name, task = %name, subtask = task.1, error = %cause, tasks = tasks.len(), "a task failed; restarting its pipelined region");
        for &(v, s) in tasks {
            if self.alive.contains(&(v, s)) {
                self.handles[v][s as usize].cancel();
            }
        }
        let messenger = Messenger {
            handles: &self.handles,
        };
        self.coordinator
            .abort_all("tasks of the job are restarting", &messenger);
        let since = Instant::now();
        match &mut self.recovering {
            Some(r) => {
                r.tasks.extend(tasks.iter().copied());
                r.delay = r.delay.max(delay);
                r.since = since;
                r.restart_at = None;
            }
            None => {
                self.recovering = Some(RegionFailover {
                    tasks: tasks.iter().copied().collect(),
                    cause,
                    delay,
                    since,
                    restart_at: None,
                })
            }
        }
    }

    /// A task failed (or a checkpoint failed too often): cancel the rest, then restart or fail.
    fn fail(&mut self, cause: RuntimeError) {
        match &mut self.phase {
            Phase::Running => {
                let restart = self.restart.on_failure(Instant::now());
                self.fail_job(cause, restart);
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

    /// Stops every task after `cause`, then restarts the job after `restart`, or fails it.
    fn fail_job(&mut self, cause: RuntimeError, restart: Option<Duration>) {
        // The first failure to arrive may be a consequence of another (a task whose peer
        // died); the cause is logged once every task has stopped, when the root cause is
        // known.
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
        self.recovering = None;
        self.cancel_tasks();
        self.phase = Phase::Failing {
            cause,
            restart,
            since: Instant::now(),
        };
    }

    /// Timers: checkpoints, restarts, and the end of the job. Returns the job's result once
    /// it has ended.
    fn on_time(&mut self) -> Option<std::result::Result<JobExecutionResult, JobError>> {
        let now = Instant::now();
        match &self.phase {
            Phase::Running => {
                if self.recovering.is_some() {
                    return self.on_region_time(now);
                }
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

    /// The timers of a region failover: once the failed regions' tasks have stopped, their
    /// restart after the delay.
    fn on_region_time(
        &mut self,
        now: Instant,
    ) -> Option<std::result::Result<JobExecutionResult, JobError>> {
        let r = self.recovering.as_mut()?;
        if r.restart_at.is_none() {
            let remaining = r.tasks.iter().filter(|t| self.alive.contains(t)).count();
            if remaining == 0 {
                self.deployer.release_tasks(&r.tasks);
                record_exception(&self.shared, r.cause.to_string());
                tracing::warn!(job = %self.job.name, error = %r.cause, strategy = self.restart.name(), delay = ?r.delay, tasks = r.tasks.len(), "pipelined region failed; restarting it");
                r.restart_at = Some(now + r.delay);
            } else if now >= r.since + self.cancellation_timeout {
                tracing::error!(job = %self.job.name, remaining, "tasks did not stop within task.cancellation.timeout; abandoning them");
                let cause = RuntimeError::Internal(format!(
                    "{remaining} task(s) did not stop within {:?} after cancellation, following: {}",
                    self.cancellation_timeout, r.cause
                ));
                return Some(Err(self.failed(cause)));
            }
        }
        if r.restart_at.is_some_and(|at| now >= at) {
            match self.restart_regions() {
                Ok(true) => {}
                Ok(false) => {
                    // The regions could not be deployed alone (no free slots for them): the
                    // whole job restarts, once every task has stopped.
                    let cause = RuntimeError::Internal(
                        "the failed pipelined regions could not be restarted alone".into(),
                    );
                    self.fail_job(cause, Some(Duration::ZERO));
                }
                Err(e) => return Some(Err(self.failed(e))),
            }
        }
        None
    }

    /// Redeploys the tasks of the failed regions from the newest readable completed
    /// checkpoint, under a new attempt number. False if the deployer could not start them.
    fn restart_regions(&mut self) -> Result<bool> {
        let Some(r) = self.recovering.take() else {
            return Ok(true);
        };
        let plan = self.restore_plan()?;
        self.attempt += 1;
        let job_id = self.job.job_id.to_string();
        for &(v, s) in &r.tasks {
            let task_id = self.job.vertices[v].id.to_string();
            self.deploy_context.metrics.remove_where_all(&[
                ("job_id", &job_id),
                ("task_id", &task_id),
                ("subtask_index", &s.to_string()),
            ]);
            self.finished_accumulators.remove(&(v, s));
        }
        self.accumulators = Accumulators::default();
        for acc in self.finished_accumulators.values() {
            self.accumulators.merge_all(acc)?;
        }
        self.record_restore(plan.as_deref());
        self.coordinator.reset_tasks(Some(&r.tasks));
        let started = match self.deployer.deploy_tasks(
            &self.job,
            self.attempt,
            plan,
            &r.tasks,
            &self.deploy_context,
        ) {
            Ok(started) => started,
            Err(e) => {
                tracing::warn!(job = %self.job.name, error = %e, "cannot restart the failed pipelined regions alone; restarting the whole job");
                return Ok(false);
            }
        };
        for (v, s, handle) in started {
            self.handles[v][s as usize] = handle;
            self.attempts[v][s as usize] = self.attempt;
            self.alive.insert((v, s));
        }
        tracing::info!(job = %self.job.name, attempt = self.attempt, tasks = r.tasks.len(), "pipelined region restarted");
        Ok(true)
    }

    /// Redeploys the job from the newest readable completed checkpoint.
    fn restart_job(&mut self) -> Result<()> {
        let plan = self.restore_plan()?;
        self.attempt += 1;
        self.deploy(plan)
    }

    /// The plan of the newest completed checkpoint that can be read (falling back to older
    /// ones), or without checkpoints the one the job started from.
    fn restore_plan(&mut self) -> Result<Option<Arc<RestorePlan>>> {
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
        Ok(plan)
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
