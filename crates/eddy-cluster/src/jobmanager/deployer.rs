//! Deploys a job master's tasks as worker processes on TaskManagers.
//!
//! For each attempt: take the slots the job needs (slot sharing: the vertices of one slot
//! sharing group share slots, slot *i* of a group hosting subtask *i* of each of its vertices,
//! so a job in the default group needs as many slots as its highest parallelism), waiting up to
//! the JobManager's `slot.request.timeout` for them, or until the job is cancelled; ask
//! each TaskManager with slots to start one worker process; wait for the workers to connect and
//! check that each rebuilt the same JobGraph; send each its deployment. From then on the worker
//! connections carry task events one way and task messages the other. A worker connection that
//! closes before its tasks finished fails those tasks, which fails the attempt over.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufReader, BufWriter};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use eddy_core::config::options;
use eddy_core::graph::JobGraph;
use eddy_core::ids::JobId;
use eddy_runtime::RuntimeError;
use eddy_runtime::checkpoint::coordinator::TaskKey;
use eddy_runtime::checkpoint::restore::RestorePlan;
use eddy_runtime::executor::remote::{
    MasterMessage, NOT_DEPLOYED, RestoreSpec, WireMetric, WorkerDeployment, WorkerMessage,
    fingerprint, read_message, write_message,
};
use eddy_runtime::executor::{
    DeployContext, RemoteTasks, TaskDeployer, TaskEvent, TaskHandle, TaskMessage, TaskSet,
};
use eddy_runtime::task::SnapshotTargets;
use parking_lot::Mutex;

use super::Cluster;
use crate::protocol::{JobManagerMessage, StartWorker};

/// How long workers have to start and connect.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a deployer that waits checks whether its job was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Flink's slot sharing: the vertices of one slot sharing group share the group's slots, slot
/// *i* of the group hosting subtask *i* of each of them; each group has slots of its own, as
/// many as its highest parallelism. Takes each vertex's group and parallelism; returns the
/// number of slots the job needs and, per vertex, the slot of each subtask.
fn slot_placement(vertices: &[(&str, u32)]) -> (u32, Vec<Vec<u32>>) {
    let mut groups: Vec<(&str, u32)> = Vec::new();
    for &(group, parallelism) in vertices {
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, width)) => *width = (*width).max(parallelism),
            None => groups.push((group, parallelism)),
        }
    }
    let placement = vertices
        .iter()
        .map(|&(group, parallelism)| {
            let first: u32 = groups
                .iter()
                .take_while(|(g, _)| *g != group)
                .map(|(_, w)| w)
                .sum();
            (first..first + parallelism).collect()
        })
        .collect();
    (groups.iter().map(|(_, w)| w).sum(), placement)
}

fn job_slot_placement(job: &JobGraph) -> (u32, Vec<Vec<u32>>) {
    let vertices: Vec<(&str, u32)> = job
        .vertices
        .iter()
        .map(|v| (v.slot_sharing_group.as_str(), v.parallelism))
        .collect();
    slot_placement(&vertices)
}

/// The latest metrics of each worker, by TaskManager and attempt.
type WorkerMetrics = BTreeMap<(String, u32), Vec<WireMetric>>;

/// What a job's workers report: the state of every subtask's current attempt, and the latest
/// metrics of each worker, by TaskManager and attempt.
#[derive(Clone, Default)]
pub struct JobMonitor {
    metrics: Arc<Mutex<WorkerMetrics>>,
    tasks: Arc<Mutex<TaskStates>>,
}

/// The state of every subtask's current attempt, with Flink's names.
#[derive(Clone, Debug, Default)]
pub struct TaskStates {
    /// Per vertex, per subtask: the attempt it runs (a region failover restarts some subtasks
    /// under a new attempt number while the others keep theirs).
    pub attempts: Vec<Vec<u32>>,
    /// Per vertex, per subtask: `DEPLOYING`, `RUNNING`, `FINISHED`, `CANCELED` or `FAILED`.
    pub states: Vec<Vec<&'static str>>,
}

impl TaskStates {
    /// The latest attempt of any subtask: how often the job, or a region of it, restarted.
    pub fn latest_attempt(&self) -> u32 {
        self.attempts.iter().flatten().copied().max().unwrap_or(0)
    }

    /// The attempt subtask `s` of vertex `v` runs.
    pub fn attempt(&self, v: usize, s: u32) -> u32 {
        self.attempts
            .get(v)
            .and_then(|a| a.get(s as usize))
            .copied()
            .unwrap_or(0)
    }
}

impl JobMonitor {
    /// Every metric of every worker, each with the id of its TaskManager as variable `tm_id`.
    pub fn all(&self) -> Vec<WireMetric> {
        let metrics = self.metrics.lock();
        let mut all = Vec::with_capacity(metrics.values().map(Vec::len).sum());
        for ((tm, _), list) in metrics.iter() {
            all.extend(list.iter().map(|m| {
                let mut m = m.clone();
                m.variables.insert("tm_id".into(), tm.clone());
                m
            }));
        }
        all
    }

    /// The subtasks' states.
    pub fn tasks(&self) -> TaskStates {
        self.tasks.lock().clone()
    }

    /// Subtasks `tasks` start attempt `attempt` in state `state`.
    fn reset(&self, job: &JobGraph, attempt: u32, tasks: &TaskSet, state: &'static str) {
        let mut t = self.tasks.lock();
        if t.states.len() != job.vertices.len() {
            *t = TaskStates {
                attempts: job
                    .vertices
                    .iter()
                    .map(|v| vec![0; v.parallelism as usize])
                    .collect(),
                states: job
                    .vertices
                    .iter()
                    .map(|v| vec!["CREATED"; v.parallelism as usize])
                    .collect(),
            };
        }
        let t = &mut *t;
        for &(v, s) in tasks {
            if let (Some(a), Some(st)) = (
                t.attempts.get_mut(v).and_then(|a| a.get_mut(s as usize)),
                t.states.get_mut(v).and_then(|a| a.get_mut(s as usize)),
            ) {
                *a = attempt;
                *st = state;
            }
        }
    }

    /// Moves every subtask of attempt `attempt` in state `from` to `to` (a subtask that
    /// already ended stays).
    fn advance(&self, attempt: u32, from: &'static str, to: &'static str) {
        let mut guard = self.tasks.lock();
        let t = &mut *guard;
        for (states, attempts) in t.states.iter_mut().zip(&t.attempts) {
            for (st, a) in states.iter_mut().zip(attempts) {
                if *a == attempt && *st == from {
                    *st = to;
                }
            }
        }
    }

    fn set(&self, attempt: u32, vertex: u32, subtask: u32, state: &'static str) {
        let mut t = self.tasks.lock();
        if t.attempt(vertex as usize, subtask) == attempt
            && let Some(s) = t
                .states
                .get_mut(vertex as usize)
                .and_then(|v| v.get_mut(subtask as usize))
        {
            *s = state;
        }
    }

    /// Forgets the metrics of attempt `attempt`'s workers.
    fn forget(&self, attempt: u32) {
        self.metrics.lock().retain(|(_, a), _| *a != attempt);
    }
}

/// Starts a job's tasks on TaskManagers.
pub struct RemoteDeployer {
    cluster: Arc<Cluster>,
    job_id: JobId,
    start: StartWorker,
    monitor: JobMonitor,
    /// Deployments whose workers may still run tasks: the job's, and those of the regions
    /// restarted since.
    deployments: Vec<Deployment>,
}

/// The workers one attempt started, and the slots they hold.
struct Deployment {
    attempt: u32,
    workers: Arc<Workers>,
    /// Each slot taken: its TaskManager, and the subtasks it hosts that are not released.
    slots: Vec<(String, HashSet<TaskKey>)>,
}

struct Worker {
    taskmanager: String,
    writer: Mutex<BufWriter<TcpStream>>,
    stream: TcpStream,
}

/// The worker processes of one attempt.
struct Workers {
    workers: Vec<Worker>,
    /// The worker of every subtask, per vertex.
    placement: Vec<Vec<u32>>,
    targets: SnapshotTargets,
    targets_sent: Mutex<HashSet<u64>>,
}

impl Workers {
    fn send_to(&self, w: usize, message: &MasterMessage) -> bool {
        self.workers
            .get(w)
            .is_some_and(|w| write_message(&mut *w.writer.lock(), message).is_ok())
    }
}

impl RemoteTasks for Workers {
    fn send(&self, vertex: u32, subtask: u32, message: TaskMessage) -> bool {
        // A checkpoint's location goes to every worker before its first barrier does.
        if let TaskMessage::TriggerCheckpoint(b) = &message
            && self.targets_sent.lock().insert(b.id)
            && let Some(location) = self.targets.get(b.id)
        {
            let m = MasterMessage::CheckpointTarget {
                id: b.id,
                location: location.display().to_string(),
            };
            for w in 0..self.workers.len() {
                self.send_to(w, &m);
            }
        }
        let Some(w) = self
            .placement
            .get(vertex as usize)
            .and_then(|p| p.get(subtask as usize))
        else {
            return false;
        };
        self.send_to(
            *w as usize,
            &MasterMessage::Task {
                vertex,
                subtask,
                message,
            },
        )
    }
}

impl RemoteDeployer {
    /// A deployer for `job_id`, whose workers start as `start` says.
    pub fn new(
        cluster: Arc<Cluster>,
        job_id: JobId,
        start: StartWorker,
        monitor: JobMonitor,
    ) -> Self {
        RemoteDeployer {
            cluster,
            job_id,
            start,
            monitor,
            deployments: Vec::new(),
        }
    }

    /// Takes `needed` slots, spread over as few TaskManagers as possible (Flink's default),
    /// waiting up to `slot.request.timeout`, or until the job is cancelled.
    fn allocate(
        &self,
        needed: u32,
        timeout: Duration,
        ctx: &DeployContext,
    ) -> Result<Vec<(String, u32)>, RuntimeError> {
        let deadline = Instant::now() + timeout;
        let mut r = self.cluster.resources.lock();
        if r.free_slots() < needed {
            tracing::info!(job_id = %self.job_id, needed, free = r.free_slots(), "waiting for slots");
        }
        while r.free_slots() < needed {
            if ctx.is_cancelled() {
                return Err(RuntimeError::Cancelled);
            }
            let wake = deadline.min(Instant::now() + CANCEL_POLL);
            self.cluster.slots_changed.wait_until(&mut r, wake);
            if Instant::now() >= deadline && r.free_slots() < needed {
                return Err(RuntimeError::user(format!(
                    "could not get the {needed} slots the job needs within {timeout:?} \
                     (slot.request.timeout): {} TaskManager(s) offer {} slot(s), {} free",
                    r.taskmanagers.len(),
                    r.total_slots(),
                    r.free_slots()
                )));
            }
        }
        let mut remaining = needed;
        let mut taken = Vec::new();
        for (id, tm) in r.taskmanagers.iter_mut() {
            if remaining == 0 {
                break;
            }
            let n = tm.free_slots.min(remaining);
            if n > 0 {
                tm.free_slots -= n;
                remaining -= n;
                taken.push((id.clone(), n));
            }
        }
        Ok(taken)
    }

    fn free(&self, slots: &[(String, u32)]) {
        let mut r = self.cluster.resources.lock();
        for (id, n) in slots {
            if let Some(tm) = r.taskmanagers.get_mut(id) {
                tm.free_slots = (tm.free_slots + n).min(tm.registration.slots);
            }
        }
        self.cluster.slots_changed.notify_all();
    }

    fn start_workers(
        &self,
        job: &Arc<JobGraph>,
        attempt: u32,
        slots: &[(String, u32)],
        placement: Vec<Vec<u32>>,
        restore: Option<&Arc<RestorePlan>>,
        ctx: &DeployContext,
    ) -> Result<Arc<Workers>, RuntimeError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let key = (self.job_id, attempt);
        self.cluster.pending_workers.lock().insert(key, tx);
        let result = self.start_workers_inner(job, attempt, slots, placement, restore, ctx, rx);
        self.cluster.pending_workers.lock().remove(&key);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn start_workers_inner(
        &self,
        job: &Arc<JobGraph>,
        attempt: u32,
        slots: &[(String, u32)],
        placement: Vec<Vec<u32>>,
        restore: Option<&Arc<RestorePlan>>,
        ctx: &DeployContext,
        hellos: crossbeam_channel::Receiver<super::ConnectedWorker>,
    ) -> Result<Arc<Workers>, RuntimeError> {
        {
            let r = self.cluster.resources.lock();
            for (tm, _) in slots {
                let message = JobManagerMessage::StartWorker(StartWorker {
                    attempt,
                    ..self.start.clone()
                });
                let sent = r.taskmanagers.get(tm).is_some_and(|t| t.send(&message));
                if !sent {
                    return Err(RuntimeError::user(format!(
                        "TaskManager {tm} is gone; cannot start the job's worker there"
                    )));
                }
            }
        }
        // Wait for every worker to connect.
        let index_of: HashMap<&str, usize> = slots
            .iter()
            .enumerate()
            .map(|(i, (tm, _))| (tm.as_str(), i))
            .collect();
        let mut connected: Vec<Option<(String, TcpStream)>> = slots.iter().map(|_| None).collect();
        let deadline = Instant::now() + WORKER_START_TIMEOUT;
        let expected = fingerprint(job);
        while connected.iter().any(Option::is_none) {
            if ctx.is_cancelled() {
                return Err(RuntimeError::Cancelled);
            }
            let (hello, stream) = match hellos
                .recv_deadline(deadline.min(Instant::now() + CANCEL_POLL))
            {
                Ok(h) => h,
                Err(_) if Instant::now() < deadline => continue,
                Err(_) => {
                    return Err(RuntimeError::user(format!(
                        "the job's worker processes did not all connect within {WORKER_START_TIMEOUT:?}; \
                         see the TaskManagers' logs"
                    )));
                }
            };
            if hello.fingerprint != expected {
                return Err(RuntimeError::InvalidJob(format!(
                    "the program built a different JobGraph on TaskManager {} than when it was \
                     submitted; a program must build the same job every time it runs",
                    hello.taskmanager_id
                )));
            }
            match index_of.get(hello.taskmanager_id.as_str()) {
                Some(&i) => connected[i] = Some((hello.data_address, stream)),
                None => {
                    tracing::warn!(taskmanager = %hello.taskmanager_id, "unexpected worker; turned away");
                }
            }
        }
        let connected: Vec<(String, TcpStream)> = connected.into_iter().flatten().collect();
        let addresses: Vec<String> = connected.iter().map(|(a, _)| a.clone()).collect();
        let restore = restore.map(|p| RestoreSpec {
            location: p.location().display().to_string(),
            same_job: p.source().same_job,
        });
        let mut workers = Vec::new();
        for (i, (_, stream)) in connected.into_iter().enumerate() {
            let writer = stream
                .try_clone()
                .map_err(|e| RuntimeError::io("worker connection", e))?;
            let worker = Worker {
                taskmanager: slots[i].0.clone(),
                writer: Mutex::new(BufWriter::new(writer)),
                stream,
            };
            write_message(
                &mut *worker.writer.lock(),
                &MasterMessage::Deploy(WorkerDeployment {
                    index: i as u32,
                    workers: addresses.clone(),
                    placement: placement.clone(),
                    restore: restore.clone(),
                }),
            )?;
            workers.push(worker);
        }
        let workers = Arc::new(Workers {
            workers,
            placement,
            targets: ctx.targets.clone(),
            targets_sent: Mutex::new(HashSet::new()),
        });
        for (i, w) in workers.workers.iter().enumerate() {
            let reader = w
                .stream
                .try_clone()
                .map_err(|e| RuntimeError::io("worker connection", e))?;
            let subtasks: Vec<(u32, u32)> = workers
                .placement
                .iter()
                .enumerate()
                .flat_map(|(v, p)| {
                    p.iter()
                        .enumerate()
                        .filter(move |(_, w)| **w == i as u32)
                        .map(move |(s, _)| (v as u32, s as u32))
                })
                .collect();
            let events = ctx.events.clone();
            let monitor = self.monitor.clone();
            let tm = w.taskmanager.clone();
            std::thread::Builder::new()
                .name(format!("worker {tm}"))
                .spawn(move || read_worker(reader, attempt, subtasks, events, monitor, tm))
                .map_err(|e| RuntimeError::io("cannot start a worker reader", e))?;
        }
        Ok(workers)
    }
}

/// Forwards a worker's events to the job master; when the connection ends, the worker's
/// subtasks that had not finished fail.
fn read_worker(
    stream: TcpStream,
    attempt: u32,
    subtasks: Vec<(u32, u32)>,
    events: Sender<TaskEvent>,
    monitor: JobMonitor,
    taskmanager: String,
) {
    let mut open: HashSet<(u32, u32)> = subtasks.into_iter().collect();
    let mut reader = BufReader::new(stream);
    let end = loop {
        match read_message::<WorkerMessage>(&mut reader) {
            Ok(Some(WorkerMessage::Event(e))) => {
                let e = TaskEvent::from(e);
                if let TaskEvent::Finished {
                    vertex,
                    subtask,
                    result,
                    ..
                } = &e
                {
                    open.remove(&(*vertex as u32, *subtask));
                    let state = match result {
                        Ok(_) => "FINISHED",
                        Err(e) if e.is_secondary() => "CANCELED",
                        Err(_) => "FAILED",
                    };
                    monitor.set(attempt, *vertex as u32, *subtask, state);
                }
                if events.send(e).is_err() {
                    return;
                }
            }
            Ok(Some(WorkerMessage::Metrics(m))) => {
                monitor
                    .metrics
                    .lock()
                    .insert((taskmanager.clone(), attempt), m);
            }
            Ok(Some(WorkerMessage::Hello(_))) => {}
            Ok(None) => break "its connection closed".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    for (vertex, subtask) in open {
        monitor.set(attempt, vertex, subtask, "FAILED");
        let _ = events.send(TaskEvent::Finished {
            attempt,
            vertex: vertex as usize,
            subtask,
            result: Err(RuntimeError::Remote {
                message: format!(
                    "the worker process on TaskManager {taskmanager} was lost ({end}) while \
                     the task was running"
                ),
                secondary: false,
            }),
        });
    }
}

impl RemoteDeployer {
    /// Takes a slot for each slot (of the job's slot sharing) that `tasks` use, starts a worker
    /// on each TaskManager with slots, and deploys `tasks` on them for attempt `attempt`;
    /// returns their handles.
    fn start(
        &mut self,
        job: &Arc<JobGraph>,
        attempt: u32,
        restore: Option<Arc<RestorePlan>>,
        tasks: &TaskSet,
        ctx: &DeployContext,
    ) -> Result<Vec<(usize, u32, TaskHandle)>, RuntimeError> {
        self.monitor.reset(job, attempt, tasks, "SCHEDULED");
        let job_slots = job_slot_placement(job).1;
        let slot_of = |&(v, s): &TaskKey| job_slots[v][s as usize];
        let used: BTreeSet<u32> = tasks.iter().map(slot_of).collect();
        // The whole job waits for slots; restarting regions take the slots free now, or the
        // job master restarts the whole job instead.
        let timeout = if tasks.len() == job.num_tasks() as usize {
            self.cluster
                .config
                .get(&options::SLOT_REQUEST_TIMEOUT)
                .map_err(RuntimeError::from)?
        } else {
            Duration::ZERO
        };
        let taken = self.allocate(used.len() as u32, timeout, ctx)?;
        self.monitor.advance(attempt, "SCHEDULED", "DEPLOYING");
        // The i-th slot used takes the i-th slot taken; the worker of each slot taken.
        let index_of: HashMap<u32, usize> = used.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        let mut slot_worker = Vec::new();
        for (w, (_, n)) in taken.iter().enumerate() {
            slot_worker.extend(std::iter::repeat_n(w, *n as usize));
        }
        let placement: Vec<Vec<u32>> = job_slots
            .iter()
            .enumerate()
            .map(|(v, subtasks)| {
                subtasks
                    .iter()
                    .enumerate()
                    .map(|(s, slot)| {
                        if tasks.contains(&(v, s as u32)) {
                            slot_worker[index_of[slot]] as u32
                        } else {
                            NOT_DEPLOYED
                        }
                    })
                    .collect()
            })
            .collect();
        let mut slots: Vec<(String, HashSet<TaskKey>)> = slot_worker
            .iter()
            .map(|&w| (taken[w].0.clone(), HashSet::new()))
            .collect();
        for t in tasks {
            slots[index_of[&slot_of(t)]].1.insert(*t);
        }
        let workers =
            match self.start_workers(job, attempt, &taken, placement, restore.as_ref(), ctx) {
                Ok(w) => w,
                Err(e) => {
                    self.stop_workers(attempt, taken.iter().map(|(tm, _)| tm));
                    self.free(&taken);
                    return Err(e);
                }
            };
        self.monitor.advance(attempt, "DEPLOYING", "RUNNING");
        let handles = tasks
            .iter()
            .map(|&(v, s)| (v, s, TaskHandle::remote(workers.clone(), v as u32, s)))
            .collect();
        self.deployments.push(Deployment {
            attempt,
            workers,
            slots,
        });
        Ok(handles)
    }

    /// Stops a deployment's workers (its slots are freed by the caller). Their last metrics
    /// stay until a new deployment replaces them.
    fn stop(&self, d: &Deployment) {
        for w in &d.workers.workers {
            let _ = w.stream.shutdown(std::net::Shutdown::Both);
        }
        self.stop_workers(d.attempt, d.workers.workers.iter().map(|w| &w.taskmanager));
        self.cluster.forget_workers(self.job_id, d.attempt);
    }

    fn stop_workers<'a>(&self, attempt: u32, taskmanagers: impl Iterator<Item = &'a String>) {
        let r = self.cluster.resources.lock();
        for tm in taskmanagers {
            if let Some(t) = r.taskmanagers.get(tm) {
                t.send(&JobManagerMessage::StopWorker {
                    job_id: self.job_id.to_string(),
                    attempt,
                });
            }
        }
    }
}

impl TaskDeployer for RemoteDeployer {
    fn deploy(
        &mut self,
        job: &Arc<JobGraph>,
        attempt: u32,
        restore: Option<Arc<RestorePlan>>,
        ctx: &DeployContext,
    ) -> Result<Vec<Vec<TaskHandle>>, RuntimeError> {
        self.release();
        self.monitor.metrics.lock().clear();
        let all: TaskSet = job
            .vertices
            .iter()
            .enumerate()
            .flat_map(|(v, vertex)| (0..vertex.parallelism).map(move |s| (v, s)))
            .collect();
        let mut handles: Vec<Vec<Option<TaskHandle>>> = job
            .vertices
            .iter()
            .map(|v| (0..v.parallelism).map(|_| None).collect())
            .collect();
        for (v, s, h) in self.start(job, attempt, restore, &all, ctx)? {
            handles[v][s as usize] = Some(h);
        }
        Ok(handles
            .into_iter()
            .map(|v| v.into_iter().flatten().collect())
            .collect())
    }

    fn release(&mut self) {
        for d in std::mem::take(&mut self.deployments) {
            let held: Vec<(String, u32)> = d
                .slots
                .iter()
                .filter(|(_, hosted)| !hosted.is_empty())
                .map(|(tm, _)| (tm.clone(), 1))
                .collect();
            self.stop(&d);
            self.free(&held);
        }
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
    ) -> Result<Vec<(usize, u32, TaskHandle)>, RuntimeError> {
        self.start(job, attempt, restore, tasks, ctx)
    }

    /// A slot whose subtasks have all been released is free again, though its worker may
    /// still run other subtasks; a deployment with no subtasks left stops its workers.
    fn release_tasks(&mut self, tasks: &TaskSet) {
        let mut freed = Vec::new();
        for d in &mut self.deployments {
            for (tm, hosted) in &mut d.slots {
                let before = hosted.len();
                hosted.retain(|t| !tasks.contains(t));
                if before > 0 && hosted.is_empty() {
                    freed.push((tm.clone(), 1));
                }
            }
        }
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deployments)
            .into_iter()
            .partition(|d| d.slots.iter().all(|(_, hosted)| hosted.is_empty()));
        for d in &done {
            self.stop(d);
            self.monitor.forget(d.attempt);
        }
        self.deployments = kept;
        self.free(&freed);
    }
}

#[cfg(test)]
mod tests {
    use super::slot_placement;

    #[test]
    fn one_group_needs_its_highest_parallelism_and_shares_slots() {
        let (needed, placement) = slot_placement(&[("default", 2), ("default", 4), ("default", 1)]);
        assert_eq!(needed, 4);
        assert_eq!(placement, vec![vec![0, 1], vec![0, 1, 2, 3], vec![0]]);
    }

    #[test]
    fn each_group_gets_slots_of_its_own() {
        let (needed, placement) =
            slot_placement(&[("default", 2), ("heavy", 3), ("default", 1), ("heavy", 2)]);
        assert_eq!(needed, 5);
        assert_eq!(
            placement,
            vec![vec![0, 1], vec![2, 3, 4], vec![0], vec![2, 3]]
        );
    }
}
