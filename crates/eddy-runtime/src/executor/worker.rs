//! Worker mode: a job's program, started by a TaskManager, runs that TaskManager's share of
//! the job's tasks.
//!
//! The TaskManager starts the program's binary with [`WORKER_ENV`] set. `main()` runs as it
//! always does and builds the same JobGraph; `execute()` then lands here instead of in the
//! mini cluster. The worker connects to the job master, proves it built the same graph,
//! receives which subtasks are its own, connects to the job's other workers (one connection
//! per pair, every channel between them multiplexed on it), and runs its tasks. Task events
//! and metrics go to the job master; task messages come back. Its tasks' metrics also go to a
//! file its TaskManager serves to Prometheus. When its tasks have ended the
//! process exits; it also exits if the job master or its TaskManager goes away.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eddy_core::config::options;
use eddy_core::graph::JobGraph;
use eddy_core::ids::JobId;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::deploy::{self, Placement, TaskHandle};
use super::remote::{
    MasterMessage, WireMetric, WorkerDeployment, WorkerHello, WorkerMessage, fingerprint,
    read_message, write_message,
};
use super::{DeployContext, TaskEvent};
use crate::checkpoint::coordinator::CheckpointSettings;
use crate::checkpoint::restore::{RestorePlan, RestoreSource};
use crate::checkpoint::storage::StorageLocation;
use crate::error::{Result, RuntimeError};
use crate::exchange::net::DataConnection;
use crate::metrics::MetricRegistry;
use crate::registry::UserCodeRegistry;
use crate::task::{SnapshotTargets, TaskMessage};

/// The environment variable that starts a program in worker mode; its value is a
/// [`WorkerSpec`] as JSON.
pub const WORKER_ENV: &str = "EDDY_WORKER";

/// How long a task waits for a checkpoint's location to arrive from the job master.
const TARGET_WAIT: Duration = Duration::from_secs(10);

/// What a TaskManager tells the worker process it starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The JobManager's RPC address (`host:port`).
    pub jobmanager: String,
    /// The job.
    pub job_id: JobId,
    /// The restart attempt.
    pub attempt: u32,
    /// The TaskManager's id.
    pub taskmanager_id: String,
    /// The host this worker's data connections are reached at.
    pub host: String,
    /// Where the worker keeps its tasks' metrics (JSON, rewritten every second) for its
    /// TaskManager's metrics endpoint to serve.
    #[serde(default)]
    pub metrics_file: Option<PathBuf>,
}

impl WorkerSpec {
    /// The spec in [`WORKER_ENV`], if this process is a worker.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(WORKER_ENV) {
            Ok(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| RuntimeError::InvalidJob(format!("malformed {WORKER_ENV}: {e}"))),
            Err(_) => Ok(None),
        }
    }
}

/// Runs this worker's tasks of `job`, then exits the process: 0 when every task finished or
/// was cancelled, 1 when the worker could not run.
pub fn run_worker(job: JobGraph, registry: UserCodeRegistry, spec: WorkerSpec) -> ! {
    // The TaskManager holds our stdin open; when it dies, so do we.
    let _ = std::thread::Builder::new()
        .name("parent watch".into())
        .spawn(|| {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            tracing::warn!("the TaskManager is gone; the worker exits");
            std::process::exit(1);
        });
    match worker_main(job, registry, &spec) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!(job_id = %spec.job_id, attempt = spec.attempt, error = %e, "worker failed");
            eprintln!("eddy worker for job {}: {e}", spec.job_id);
            std::process::exit(1)
        }
    }
}

type ControlWriter = Arc<Mutex<BufWriter<TcpStream>>>;

fn send(writer: &ControlWriter, message: &WorkerMessage) -> Result<()> {
    write_message(&mut *writer.lock(), message)
}

fn worker_main(mut job: JobGraph, registry: UserCodeRegistry, spec: &WorkerSpec) -> Result<()> {
    job.job_id = spec.job_id;
    let listener = TcpListener::bind((spec.host.as_str(), 0))
        .map_err(|e| RuntimeError::io(format!("cannot listen on {}", spec.host), e))?;
    let port = listener
        .local_addr()
        .map_err(|e| RuntimeError::io("data listener", e))?
        .port();
    let control = TcpStream::connect(&spec.jobmanager).map_err(|e| {
        RuntimeError::io(
            format!("cannot reach the JobManager at {}", spec.jobmanager),
            e,
        )
    })?;
    let _ = control.set_nodelay(true);
    let writer: ControlWriter = Arc::new(Mutex::new(BufWriter::new(
        control
            .try_clone()
            .map_err(|e| RuntimeError::io("control connection", e))?,
    )));
    let mut reader = BufReader::new(control);
    send(
        &writer,
        &WorkerMessage::Hello(WorkerHello {
            job_id: spec.job_id,
            attempt: spec.attempt,
            taskmanager_id: spec.taskmanager_id.clone(),
            fingerprint: fingerprint(&job),
            data_address: format!("{}:{port}", spec.host),
        }),
    )?;
    let deployment = match read_message::<MasterMessage>(&mut reader)? {
        Some(MasterMessage::Deploy(d)) => d,
        // The job master turned us away (the attempt is over, or the graph differs).
        None => return Ok(()),
        Some(other) => {
            return Err(RuntimeError::Internal(format!(
                "expected a deployment, got {other:?}"
            )));
        }
    };
    let job = Arc::new(job);
    let connections = connect(&deployment, &listener)?;
    let placement = Placement {
        me: deployment.index,
        workers: deployment.placement.clone(),
        connections: connections.clone(),
    };

    let restore = match &deployment.restore {
        Some(r) => {
            let source = RestoreSource::load(StorageLocation::parse(&r.location)?, r.same_job)?;
            let allow = job.config.get(&options::SAVEPOINT_IGNORE_UNCLAIMED_STATE)?;
            Some(Arc::new(RestorePlan::new(Arc::new(source), &job, allow)?))
        }
        None => None,
    };
    let (events_tx, events) = crossbeam_channel::unbounded();
    let metrics = MetricRegistry::new();
    let ctx = DeployContext {
        events: events_tx,
        metrics: metrics.clone(),
        settings: CheckpointSettings::from_config(&job.config)?,
        targets: SnapshotTargets::waiting(TARGET_WAIT),
        cancelled: Default::default(),
    };
    let started = deploy::deploy(
        &job,
        &Arc::new(registry),
        &ctx,
        spec.attempt,
        restore,
        Some(&placement),
        None,
    )?;
    for c in connections.values() {
        c.start_pending()?;
    }
    let mut remaining = started.len();
    let tasks: HashMap<(u32, u32), TaskHandle> = started
        .into_iter()
        .map(|(v, s, h)| ((v as u32, s), h))
        .collect();
    let tasks = Arc::new(tasks);
    tracing::info!(job = %job.name, job_id = %job.job_id, attempt = spec.attempt, tasks = remaining, "worker deployed its tasks");

    // Set once every task has ended: the job master may then close the connection.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Messages from the job master.
    {
        let tasks = tasks.clone();
        let done = done.clone();
        let targets = ctx.targets.clone();
        std::thread::Builder::new()
            .name("worker control".into())
            .spawn(move || {
                loop {
                    match read_message::<MasterMessage>(&mut reader) {
                        Ok(Some(MasterMessage::Task {
                            vertex,
                            subtask,
                            message,
                        })) => {
                            if let Some(t) = tasks.get(&(vertex, subtask)) {
                                if matches!(message, TaskMessage::Cancel) {
                                    t.cancel();
                                } else {
                                    t.send(message);
                                }
                            }
                        }
                        Ok(Some(MasterMessage::CheckpointTarget { id, location })) => {
                            match StorageLocation::parse(&location) {
                                Ok(l) => targets.insert(id, l),
                                Err(e) => tracing::error!(error = %e, "bad checkpoint location"),
                            }
                        }
                        Ok(Some(MasterMessage::Deploy(_))) => {}
                        Ok(None) | Err(_) if done.load(std::sync::atomic::Ordering::Relaxed) => {
                            return;
                        }
                        Ok(None) | Err(_) => {
                            tracing::warn!(
                                "the job master is gone; cancelling this worker's tasks"
                            );
                            for t in tasks.values() {
                                t.cancel();
                            }
                            // Give tasks a moment to stop, then leave regardless.
                            std::thread::sleep(Duration::from_secs(5));
                            std::process::exit(1);
                        }
                    }
                }
            })
            .map_err(|e| RuntimeError::io("cannot start the worker's control thread", e))?;
    }

    // Task events to the job master, and metrics every second and before the last event.
    let send_metrics = || {
        metrics.update_views();
        let snapshot: Vec<WireMetric> = metrics
            .snapshot()
            .into_iter()
            .filter_map(WireMetric::from_snapshot)
            .collect();
        if let Some(path) = &spec.metrics_file {
            write_metrics_file(path, &snapshot);
        }
        send(&writer, &WorkerMessage::Metrics(snapshot))
    };
    let mut next_metrics = std::time::Instant::now();
    while remaining > 0 {
        let timeout = next_metrics.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(timeout) {
            Ok(event) => {
                if let TaskEvent::Finished {
                    vertex,
                    subtask,
                    result,
                    ..
                } = &event
                {
                    remaining -= 1;
                    // A failed task restarts elsewhere, perhaps while this worker runs on:
                    // its metrics go, so they do not shadow its new attempt's.
                    if result.is_err() {
                        metrics.remove_where_all(&[
                            ("task_id", &job.vertices[*vertex].id.to_string()),
                            ("subtask_index", &subtask.to_string()),
                        ]);
                    }
                    if remaining == 0 {
                        // The job master may close the connection once it has the last event.
                        send_metrics()?;
                        done.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                send(&writer, &WorkerMessage::Event(event.into()))?;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if remaining > 0 && std::time::Instant::now() >= next_metrics {
            send_metrics()?;
            next_metrics = std::time::Instant::now() + Duration::from_secs(1);
        }
    }
    for c in connections.values() {
        c.finish(Duration::from_secs(10));
    }
    let _ = writer.lock().flush();
    tracing::info!(job_id = %job.job_id, "worker done");
    Ok(())
}

/// Replaces `path` with `metrics` as JSON, for the TaskManager to serve. Written beside and
/// renamed, so a reader never sees half a file; a failure costs only this second's figures.
fn write_metrics_file(path: &Path, metrics: &[WireMetric]) {
    let partial = path.with_extension("partial");
    let written = serde_json::to_vec(metrics)
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(&partial, json))
        .and_then(|()| std::fs::rename(&partial, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the metrics file");
    }
}

/// Opens one data connection to every other worker: a worker dials those with a higher index
/// and accepts those with a lower one. Each side registers its channels before the connection
/// starts reading.
fn connect(
    deployment: &WorkerDeployment,
    listener: &TcpListener,
) -> Result<BTreeMap<u32, Arc<DataConnection>>> {
    let me = deployment.index;
    let mut connections = BTreeMap::new();
    for (i, address) in deployment.workers.iter().enumerate() {
        let i = i as u32;
        if i != me {
            connections.insert(i, DataConnection::new(address.clone()));
        }
    }
    for (i, address) in deployment.workers.iter().enumerate().skip(me as usize + 1) {
        let mut stream = TcpStream::connect(address)
            .map_err(|e| RuntimeError::io(format!("cannot connect to worker {address}"), e))?;
        stream
            .write_all(&me.to_le_bytes())
            .map_err(|e| RuntimeError::io(format!("cannot connect to worker {address}"), e))?;
        if let Some(c) = connections.get(&(i as u32)) {
            c.set_pending(stream);
        }
    }
    for _ in 0..me {
        let (mut stream, _) = listener
            .accept()
            .map_err(|e| RuntimeError::io("accepting a worker's data connection", e))?;
        let mut from = [0u8; 4];
        stream
            .read_exact(&mut from)
            .map_err(|e| RuntimeError::io("accepting a worker's data connection", e))?;
        let from = u32::from_le_bytes(from);
        match connections.get(&from) {
            Some(c) if from < me => c.set_pending(stream),
            _ => {
                return Err(RuntimeError::Internal(format!(
                    "unexpected data connection from worker {from}"
                )));
            }
        }
    }
    Ok(connections)
}
