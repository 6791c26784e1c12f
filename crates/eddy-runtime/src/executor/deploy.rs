//! Deployment: channels for every edge, a thread per subtask, and building each task's chain
//! inside its thread.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;

use crossbeam_channel::Sender;
use eddy_core::config::options;
use eddy_core::graph::JobGraph;
use eddy_core::keys::KeyGroupRange;

use super::{DeployContext, TaskEvent};
use crate::accumulators::Accumulators;
use crate::checkpoint::coordinator::CheckpointSettings;
use crate::checkpoint::restore::RestorePlan;
use crate::error::{Result, RuntimeError, panic_message};
use crate::exchange::{TaskSignals, net, net::DataConnection};
use crate::metrics::{Counter, MetricGroup, MetricRegistry, TaskTimeMetrics};
use crate::operator::{OperatorContext, ProcessingTimeService, TaskInfo};
use crate::registry::{AnyBox, AnySendBox, DataPort, OutputParts, TaskInputs, UserCodeRegistry};
use crate::state::StateContext;
use crate::task::{
    SnapshotTargets, StreamTask, TaskCheckpointing, TaskEnv, TaskMessage, TaskReporter,
};

/// Handles to one running task.
pub struct TaskHandle {
    mailbox: Mailbox,
}

enum Mailbox {
    Local {
        tx: Sender<TaskMessage>,
        signals: Arc<TaskSignals>,
    },
    Remote {
        tasks: Arc<dyn RemoteTasks>,
        vertex: u32,
        subtask: u32,
    },
}

/// Reaches tasks running in another process.
pub trait RemoteTasks: Send + Sync {
    /// Sends `message` to subtask `subtask` of vertex `vertex`; false if it is gone.
    fn send(&self, vertex: u32, subtask: u32, message: TaskMessage) -> bool;
}

impl TaskHandle {
    /// A handle on a task in another process.
    pub fn remote(tasks: Arc<dyn RemoteTasks>, vertex: u32, subtask: u32) -> Self {
        TaskHandle {
            mailbox: Mailbox::Remote {
                tasks,
                vertex,
                subtask,
            },
        }
    }

    /// Sends `message` to the task; false if it is gone.
    pub fn send(&self, message: TaskMessage) -> bool {
        match &self.mailbox {
            Mailbox::Local { tx, .. } => tx.send(message).is_ok(),
            Mailbox::Remote {
                tasks,
                vertex,
                subtask,
            } => tasks.send(*vertex, *subtask, message),
        }
    }

    /// Asks the task to stop.
    pub fn cancel(&self) {
        if let Mailbox::Local { signals, .. } = &self.mailbox {
            signals.cancel();
        }
        self.send(TaskMessage::Cancel);
    }
}

/// Which worker process runs each subtask, and the connections to the other workers.
pub(crate) struct Placement {
    /// This process's index.
    pub(crate) me: u32,
    /// The worker of every subtask, per vertex.
    pub(crate) workers: Vec<Vec<u32>>,
    /// A connection to every other worker.
    pub(crate) connections: BTreeMap<u32, Arc<DataConnection>>,
}

impl Placement {
    fn is_here(&self, vertex: usize, subtask: u32) -> bool {
        self.workers[vertex][subtask as usize] == self.me
    }
}

/// The channel ends one subtask gets.
#[derive(Default)]
pub(super) struct TaskChannels {
    /// Receivers per logical input, in edge order, then upstream subtask order.
    inputs: BTreeMap<u8, Vec<AnySendBox>>,
    /// The element type of each input (from its first edge).
    input_ports: BTreeMap<u8, Arc<dyn DataPort>>,
    /// Senders per network edge, ordered by downstream subtask.
    outputs: BTreeMap<u32, Vec<AnySendBox>>,
    /// Bytes received on channels from other processes (`numBytesIn`); in-process channels
    /// move records, not bytes.
    bytes_in: Arc<Counter>,
    /// Bytes sent on channels to other processes (`numBytesOut`).
    bytes_out: Arc<Counter>,
}

/// Which subtasks a deployment starts: all of them, or some pipelined regions.
pub type TaskSet = std::collections::HashSet<crate::checkpoint::coordinator::TaskKey>;

/// Creates every channel of the job, or with `only` those of its subtasks (whole pipelined
/// regions, which exchange data with no other subtask).
fn create_channels(
    job: &JobGraph,
    registry: &UserCodeRegistry,
    placement: Option<&Placement>,
    only: Option<&TaskSet>,
) -> Result<Vec<Vec<TaskChannels>>> {
    let buffers_per_channel = job.config.get(&options::BUFFERS_PER_CHANNEL)? as usize;
    let floating = job.config.get(&options::FLOATING_BUFFERS_PER_GATE)? as usize;
    let mut plans: Vec<Vec<TaskChannels>> = job
        .vertices
        .iter()
        .map(|v| {
            (0..v.parallelism)
                .map(|_| TaskChannels::default())
                .collect()
        })
        .collect();

    // Channels per downstream gate, to share the floating buffers among them.
    let mut gate_size: BTreeMap<(u32, u32, u8), usize> = BTreeMap::new();
    for (ei, e) in job.edges.iter().enumerate() {
        for targets in job.edge_targets(ei) {
            for t in targets {
                *gate_size
                    .entry((e.target_vertex, t, e.target_input))
                    .or_default() += 1;
            }
        }
    }

    for (ei, e) in job.edges.iter().enumerate() {
        let code = registry.edge(e.stream_edge_id)?;
        for (s, targets) in job.edge_targets(ei).into_iter().enumerate() {
            if only.is_some_and(|o| !o.contains(&(e.source_vertex as usize, s as u32))) {
                continue;
            }
            for t in targets {
                let size = gate_size[&(e.target_vertex, t, e.target_input)];
                let capacity = buffers_per_channel + floating.div_ceil(size.max(1));
                let (sv, tv) = (e.source_vertex as usize, e.target_vertex as usize);
                let (tx, rx) = match placement {
                    None => {
                        let (tx, rx) = code.port.channel(capacity);
                        (Some(tx), Some(rx))
                    }
                    Some(p) => {
                        let id = net::channel_id(ei as u32, s as u32, t);
                        let (from, to) = (p.workers[sv][s], p.workers[tv][t as usize]);
                        let conn = |w: u32| {
                            p.connections.get(&w).ok_or_else(|| {
                                RuntimeError::Internal(format!("no connection to worker {w}"))
                            })
                        };
                        match (from == p.me, to == p.me) {
                            (true, true) => {
                                let (tx, rx) = code.port.channel(capacity);
                                (Some(tx), Some(rx))
                            }
                            (true, false) => {
                                let bytes = plans[sv][s].bytes_out.clone();
                                let tx = code.port.remote_sender(conn(to)?, id, capacity, bytes)?;
                                (Some(tx), None)
                            }
                            (false, true) => {
                                let bytes = plans[tv][t as usize].bytes_in.clone();
                                let rx =
                                    code.port
                                        .remote_receiver(conn(from)?, id, capacity, bytes)?;
                                (None, Some(rx))
                            }
                            (false, false) => (None, None),
                        }
                    }
                };
                if let Some(tx) = tx {
                    plans[sv][s].outputs.entry(ei as u32).or_default().push(tx);
                }
                if let Some(rx) = rx {
                    let target = &mut plans[tv][t as usize];
                    target.inputs.entry(e.target_input).or_default().push(rx);
                    target
                        .input_ports
                        .entry(e.target_input)
                        .or_insert_with(|| code.port.clone());
                }
            }
        }
    }
    Ok(plans)
}

/// Spawns the tasks of `job` for restart attempt `attempt` — all of them, those in `only`,
/// or with a `placement` those of this worker process — restoring state from `restore`; each
/// reports to the job master on `ctx.events`. Returns the handles of the tasks it started.
pub(super) fn deploy(
    job: &Arc<JobGraph>,
    registry: &Arc<UserCodeRegistry>,
    ctx: &DeployContext,
    attempt: u32,
    restore: Option<Arc<RestorePlan>>,
    placement: Option<&Placement>,
    only: Option<&TaskSet>,
) -> Result<Vec<(usize, u32, TaskHandle)>> {
    let plans = create_channels(job, registry, placement, only)?;
    let (metrics, events, settings, targets) =
        (&ctx.metrics, &ctx.events, &ctx.settings, &ctx.targets);
    let mut handles = Vec::new();
    for (v, subtasks) in plans.into_iter().enumerate() {
        for (i, channels) in subtasks.into_iter().enumerate() {
            if placement.is_some_and(|p| !p.is_here(v, i as u32))
                || only.is_some_and(|o| !o.contains(&(v, i as u32)))
            {
                continue;
            }
            let (mailbox_tx, mailbox_rx) = crossbeam_channel::unbounded();
            let signals = Arc::new(TaskSignals::default());
            let info = Arc::new(TaskInfo {
                job_id: job.job_id,
                job_name: job.name.clone(),
                task_name: job.vertices[v].name.clone(),
                subtask_index: i as u32,
                parallelism: job.vertices[v].parallelism,
                max_parallelism: job.vertices[v].max_parallelism,
                attempt_number: attempt,
            });
            let spec = TaskSpec {
                job: job.clone(),
                registry: registry.clone(),
                metrics: metrics.clone(),
                vertex: v,
                info: info.clone(),
                channels,
                mailbox: mailbox_rx,
                signals: signals.clone(),
                reporter: TaskReporter::new(events.clone(), attempt, v, i as u32),
                restore: restore.clone(),
                settings: settings.clone(),
                targets: targets.clone(),
            };
            let events = events.clone();
            let subtask = i as u32;
            std::thread::Builder::new()
                .name(info.task_name_with_subtask())
                .spawn(move || {
                    let result =
                        catch_unwind(AssertUnwindSafe(|| spec.run())).unwrap_or_else(|p| {
                            Err(RuntimeError::Internal(format!(
                                "task thread panicked: {}",
                                panic_message(p.as_ref())
                            )))
                        });
                    let _ = events.send(TaskEvent::Finished {
                        attempt,
                        vertex: v,
                        subtask,
                        result,
                    });
                })
                .map_err(|e| RuntimeError::io("cannot start a task thread", e))?;
            handles.push((
                v,
                subtask,
                TaskHandle {
                    mailbox: Mailbox::Local {
                        tx: mailbox_tx,
                        signals,
                    },
                },
            ));
        }
    }
    Ok(handles)
}

/// Everything needed to build and run one subtask, moved into its thread.
struct TaskSpec {
    job: Arc<JobGraph>,
    registry: Arc<UserCodeRegistry>,
    metrics: Arc<MetricRegistry>,
    vertex: usize,
    info: Arc<TaskInfo>,
    channels: TaskChannels,
    mailbox: crossbeam_channel::Receiver<TaskMessage>,
    signals: Arc<TaskSignals>,
    reporter: TaskReporter,
    restore: Option<Arc<RestorePlan>>,
    settings: CheckpointSettings,
    targets: SnapshotTargets,
}

impl TaskSpec {
    fn task_metric_group(&self) -> MetricGroup {
        let vertex = &self.job.vertices[self.vertex];
        self.metrics
            .root_group()
            .add_group_with_variable("job_id", &self.job.job_id.to_string())
            .add_group_with_variable("job_name", &self.job.name)
            .add_group_with_variable("task_id", &vertex.id.to_string())
            .add_group_with_variable("task_name", &vertex.name)
            .add_group_with_variable("subtask_index", &self.info.subtask_index.to_string())
    }

    fn run(mut self) -> Result<BTreeMap<String, crate::accumulators::AccumulatorValue>> {
        let accumulators = Accumulators::default();
        let task = self.build(&accumulators)?;
        task.run()?;
        Ok(accumulators.snapshot())
    }

    fn build(&mut self, accumulators: &Accumulators) -> Result<Box<dyn StreamTask>> {
        let job = self.job.clone();
        let registry = self.registry.clone();
        let vertex = &job.vertices[self.vertex];
        let config = Arc::new(job.config.clone());
        let buffer_timeout = if job.config.get(&options::BUFFER_TIMEOUT_ENABLED)? {
            Some(job.config.get(&options::BUFFER_TIMEOUT)?)
        } else {
            None
        };
        let segment_size = job.config.get(&options::SEGMENT_SIZE)?.0;
        // A buffer timeout of 0 keeps full-size buffers: the task flushes them after every
        // batch it handles (`FlushTimer`), which sends each record as soon as it is processed
        // without a buffer per record.
        let batch_size_of = |port: &dyn DataPort| -> usize { port.batch_size(segment_size) };
        let task_group = self.task_metric_group();
        for (name, bytes) in [
            ("numBytesIn", &self.channels.bytes_in),
            ("numBytesOut", &self.channels.bytes_out),
        ] {
            task_group.register_counter(name, bytes.clone());
            task_group.meter_over(&format!("{name}PerSecond"), bytes.clone());
        }
        let time_metrics =
            TaskTimeMetrics::register(&task_group, self.signals.back_pressured.clone());
        let auto_watermark_interval =
            Some(job.config.get(&options::AUTO_WATERMARK_INTERVAL)?).filter(|d| !d.is_zero());
        let signals = self.signals.clone();
        let dirty = Rc::new(Cell::new(false));
        let timers = ProcessingTimeService::default();
        let task_name = self.info.task_name_with_subtask();
        let key_groups = KeyGroupRange::for_operator(
            vertex.max_parallelism,
            vertex.parallelism,
            self.info.subtask_index,
        );

        let subtask = self.info.subtask_index;
        let mut states: Vec<(eddy_core::ids::OperatorId, StateContext)> = Vec::new();
        let mut finished_on_restore = self.restore.is_some();
        let mut any_restored = false;
        let mut built: Vec<Option<AnyBox>> = (0..vertex.operators.len()).map(|_| None).collect();
        for idx in (0..vertex.operators.len()).rev() {
            let op = &vertex.operators[idx];
            let factory = registry.operator(op.operator_id)?;
            let restored = match &self.restore {
                Some(plan) => {
                    if plan.has_operator(op.operator_id) {
                        any_restored = true;
                        finished_on_restore &= plan.is_finished(op.operator_id, subtask);
                    }
                    plan.restore_for(op.operator_id, subtask, key_groups)
                        .map_err(|e| e.in_operator(&op.name, &task_name))?
                }
                None => None,
            };
            let state = StateContext::with_restore(
                key_groups,
                vertex.max_parallelism,
                self.settings.backend.clone(),
                format!("{}-{}-{}", op.name, subtask, self.info.attempt_number),
                restored,
            );
            states.push((op.operator_id, state.clone()));
            let mut main: Vec<AnyBox> = Vec::new();
            let mut sides: BTreeMap<String, (Arc<dyn DataPort>, Vec<AnyBox>)> = BTreeMap::new();
            for ce in &op.chained_outputs {
                let link = built[ce.target as usize].take().ok_or_else(|| {
                    RuntimeError::Internal(format!("chained operator {} built twice", ce.target))
                })?;
                match &ce.side_output {
                    None => main.push(link),
                    Some(tag) => {
                        let port = registry.edge(ce.stream_edge_id)?.port.clone();
                        sides
                            .entry(tag.clone())
                            .or_insert((port, Vec::new()))
                            .1
                            .push(link);
                    }
                }
            }
            for &je in &op.network_outputs {
                let e = &job.edges[je as usize];
                let code = registry.edge(e.stream_edge_id)?;
                let senders = self.channels.outputs.remove(&je).unwrap_or_default();
                let target_max_parallelism = job.vertices[e.target_vertex as usize].max_parallelism;
                let partitioner = code.partitioner.create(
                    e.partitioner,
                    senders.len(),
                    target_max_parallelism,
                )?;
                let writer = code.port.writer(
                    senders,
                    partitioner,
                    batch_size_of(code.port.as_ref()),
                    signals.clone(),
                    dirty.clone(),
                )?;
                match &e.side_output {
                    None => main.push(writer),
                    Some(tag) => {
                        sides
                            .entry(tag.clone())
                            .or_insert((code.port.clone(), Vec::new()))
                            .1
                            .push(writer);
                    }
                }
            }
            let sides = sides
                .into_iter()
                .map(|(tag, (port, outs))| Ok((tag, port.side_output(outs)?)))
                .collect::<Result<Vec<_>>>()?;
            let parts = OutputParts { main, sides };
            let metrics = task_group
                .add_group_with_variable("operator_id", &op.operator_id.to_string())
                .add_group_with_variable("operator_name", &op.name);
            let ctx = OperatorContext {
                task_info: self.info.clone(),
                operator_name: op.name.clone(),
                operator_id: op.operator_id,
                operator_index: idx,
                metrics,
                timer_service: timers.for_operator(idx),
                accumulators: accumulators.clone(),
                config: config.clone(),
                execution_mode: job.mode,
                state,
            };
            if idx > 0 {
                built[idx] = Some(
                    factory
                        .create_link(ctx, parts)
                        .map_err(|e| e.in_operator(&op.name, &task_name))?,
                );
                continue;
            }
            let mut gates = Vec::new();
            for (input, receivers) in std::mem::take(&mut self.channels.inputs) {
                let port = self.channels.input_ports.get(&input).ok_or_else(|| {
                    RuntimeError::Internal(format!("input {input} has no element type"))
                })?;
                gates.push(port.gate(receivers)?);
            }
            states.reverse();
            let mut checkpointing = TaskCheckpointing::new(
                self.settings.enabled(),
                self.settings.mode,
                self.settings.unaligned.filter(|_| self.settings.enabled()),
                self.reporter.clone(),
                self.targets.clone(),
                finished_on_restore && any_restored,
            );
            checkpointing.operators = std::mem::take(&mut states);
            let env = TaskEnv {
                checkpointing,
                info: self.info.clone(),
                mailbox: self.mailbox.clone(),
                signals: signals.clone(),
                timers: timers.clone(),
                dirty: dirty.clone(),
                buffer_timeout,
                time_metrics: time_metrics.clone(),
                auto_watermark_interval,
                mode: job.mode,
                batch_size: batch_size_of(factory.output_port().as_ref()),
            };
            return factory
                .create_task(ctx, env, TaskInputs { gates }, parts)
                .map_err(|e| e.in_operator(&op.name, &task_name));
        }
        Err(RuntimeError::Internal(format!(
            "vertex '{}' has no operators",
            vertex.name
        )))
    }
}
