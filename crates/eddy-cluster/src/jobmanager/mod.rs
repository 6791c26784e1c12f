//! The JobManager: dispatcher, resource manager and job masters in one process.
//!
//! - The **RPC port** (`jobmanager.rpc.port`) accepts TaskManagers (registration, heartbeats,
//!   worker start and stop) and worker processes (the runtime's worker protocol).
//! - The **resource manager** ([`Resources`]) knows every TaskManager and its free slots, and
//!   declares a TaskManager lost when its connection drops or it misses heartbeats for
//!   `heartbeat.timeout`; the jobs with tasks on it then fail over.
//! - The **dispatcher** stores uploaded programs under their SHA-256, learns a program's
//!   JobGraph by running it with `EDDY_PLAN_OUTPUT`, and starts a job master for each job: the
//!   runtime's job master with a [`deployer::RemoteDeployer`], so restarts, checkpoints and
//!   savepoints behave as in the mini cluster.
//! - The **REST API** ([`rest`]) serves Flink's paths and the web UI.

pub mod deployer;
pub mod rest;
mod rest_applications;
mod rest_checkpoints;
mod rest_metrics;
mod rest_operations;
mod rest_process;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufReader, BufWriter, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use eddy_core::config::{Configuration, options};
use eddy_core::graph::JobGraph;
use eddy_core::ids::JobId;
use eddy_runtime::executor::remote::{WorkerHello, WorkerMessage, read_message, write_message};
use eddy_runtime::executor::{JobClient, JobStatus, MiniCluster, PLAN_OUTPUT_ENV, SubmitOptions};
use parking_lot::{Condvar, Mutex};
use sha2::{Digest, Sha256};

use crate::protocol::{
    JobManagerMessage, Registration, StartWorker, TASKMANAGER_MAGIC, TaskManagerMessage,
};
use crate::{ClusterError, Result};

/// A registered TaskManager.
pub struct TaskManagerInfo {
    /// What it registered with.
    pub registration: Registration,
    /// Slots not in use.
    pub free_slots: u32,
    /// Its last heartbeat.
    pub last_heartbeat: Instant,
    /// When it registered (ms since the epoch).
    pub registered_at: i64,
    /// The resources it and its workers used at its last heartbeat.
    pub process: crate::process::ProcessMetrics,
    writer: Arc<Mutex<BufWriter<TcpStream>>>,
    stream: TcpStream,
}

impl TaskManagerInfo {
    fn send(&self, message: &JobManagerMessage) -> bool {
        write_message(&mut *self.writer.lock(), message).is_ok()
    }
}

/// A worker process that has introduced itself, and its connection.
pub type ConnectedWorker = (WorkerHello, TcpStream);

/// The resource manager's view: TaskManagers and their slots.
#[derive(Default)]
pub struct Resources {
    /// Registered TaskManagers by id.
    pub taskmanagers: BTreeMap<String, TaskManagerInfo>,
    /// Worker connections by TaskManager (with their job and attempt), closed when it is lost.
    worker_streams: HashMap<String, Vec<(JobId, u32, TcpStream)>>,
}

impl Resources {
    /// Slots in all.
    pub fn total_slots(&self) -> u32 {
        self.taskmanagers
            .values()
            .map(|t| t.registration.slots)
            .sum()
    }

    /// Free slots.
    pub fn free_slots(&self) -> u32 {
        self.taskmanagers.values().map(|t| t.free_slots).sum()
    }
}

/// An uploaded program.
#[derive(Clone, Debug)]
pub struct Jar {
    /// Its id: the SHA-256 of its content.
    pub id: String,
    /// The name the client gave it (shown, never used as a path).
    pub name: String,
    /// When it was uploaded (ms since the epoch).
    pub uploaded: i64,
    /// Where it is stored.
    pub path: PathBuf,
}

/// A job the dispatcher started.
pub struct JobEntry {
    /// The job master's client.
    pub client: JobClient,
    /// The JobGraph.
    pub graph: Arc<JobGraph>,
    /// When it was submitted (ms since the epoch).
    pub start_time: i64,
    /// Its tasks' states and metrics, as its workers report them.
    pub monitor: deployer::JobMonitor,
}

impl JobEntry {
    /// The job's metrics in Flink's job scope, as of `now` (ms since the epoch).
    pub fn metrics(&self, now: i64) -> [(&'static str, f64); 8] {
        let c = self.client.checkpoint_statistics();
        let status = self.client.job_status();
        let uptime = match status {
            JobStatus::Running => (now - self.start_time) as f64,
            _ => 0.0,
        };
        let last = c.latest_completed.as_ref();
        [
            ("uptime", uptime),
            ("numRestarts", self.monitor.tasks().latest_attempt() as f64),
            ("totalNumberOfCheckpoints", c.triggered as f64),
            ("numberOfCompletedCheckpoints", c.completed as f64),
            ("numberOfFailedCheckpoints", c.failed as f64),
            ("numberOfInProgressCheckpoints", c.in_progress as f64),
            (
                "lastCheckpointDuration",
                last.map_or(0.0, |l| l.end_to_end_duration_ms as f64),
            ),
            (
                "lastCheckpointSize",
                last.map_or(0.0, |l| l.state_size as f64),
            ),
        ]
    }
}

/// Asynchronous operations (savepoints, stop) the REST API reports by trigger id.
#[derive(Clone, Debug)]
pub enum Operation {
    /// Still running.
    InProgress,
    /// Done: Flink's description of the result (`{"location": ...}` for a savepoint).
    Completed(serde_json::Value),
    /// Failed: why.
    Failed(String),
}

/// The JobManager's state, shared by the REST API, the RPC server and the job masters.
pub struct Cluster {
    /// The JobManager's configuration.
    pub config: Configuration,
    /// `host:port` workers and TaskManagers reach the RPC port at.
    pub rpc_address: String,
    /// `http://host:port` of the REST API.
    pub rest_address: String,
    /// Where programs and plans are stored.
    pub work_dir: PathBuf,
    /// This process's log file.
    pub log_file: Option<PathBuf>,
    /// The resource manager.
    pub resources: Mutex<Resources>,
    /// Signalled when slots are freed or TaskManagers register.
    pub slots_changed: Condvar,
    /// Uploaded programs by id.
    pub jars: Mutex<BTreeMap<String, Jar>>,
    /// Jobs, in submission order (finished ones up to `jobstore.max-capacity`).
    pub jobs: Mutex<VecDeque<(JobId, JobEntry)>>,
    /// Asynchronous operations (savepoints, checkpoints, disposals) by `kind/trigger id`.
    pub operations: Mutex<HashMap<String, Operation>>,
    /// Worker processes that have connected and await their job master.
    pending_workers: Mutex<HashMap<(JobId, u32), Sender<ConnectedWorker>>>,
    heartbeat_timeout: Duration,
    /// With high availability: this JobManager's leadership, which records jobs and
    /// checkpoints in ZooKeeper.
    pub leadership: Option<crate::ha::Leadership>,
}

impl Cluster {
    /// Finds a job.
    pub fn job<R>(&self, id: &str, f: impl FnOnce(&JobEntry) -> R) -> Option<R> {
        let id: JobId = id.parse().ok()?;
        let jobs = self.jobs.lock();
        jobs.iter().find(|(j, _)| *j == id).map(|(_, e)| f(e))
    }

    /// Declares a TaskManager lost: its slots go, and its workers' connections are closed so
    /// their jobs fail over.
    pub fn remove_taskmanager(&self, id: &str, reason: &str) {
        let mut r = self.resources.lock();
        if let Some(tm) = r.taskmanagers.remove(id) {
            tracing::warn!(taskmanager = id, reason, "TaskManager lost");
            let _ = tm.stream.shutdown(std::net::Shutdown::Both);
        }
        for (_, _, s) in r.worker_streams.remove(id).unwrap_or_default() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.slots_changed.notify_all();
    }

    /// Stores a program under its SHA-256 and returns its entry.
    pub fn store_jar(&self, name: &str, bytes: &[u8]) -> Result<Jar> {
        let id = format!("{:x}", Sha256::digest(bytes));
        let path = crate::store_program(&self.work_dir.join("blobs"), &id, bytes)?;
        let jar = Jar {
            id: id.clone(),
            name: name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                .take(100)
                .collect(),
            uploaded: eddy_core::time::now_millis(),
            path,
        };
        self.jars.lock().insert(id, jar.clone());
        Ok(jar)
    }

    /// Runs an uploaded program to learn its JobGraph, then starts a job master for it. With
    /// high availability, the job is recorded in ZooKeeper before it starts.
    pub fn run_jar(self: &Arc<Self>, jar_id: &str, request: RunRequest) -> Result<JobId> {
        let jar = self
            .jars
            .lock()
            .get(jar_id)
            .cloned()
            .ok_or_else(|| ClusterError::Invalid(format!("no uploaded program '{jar_id}'")))?;
        let mut props = Vec::new();
        if let Some(p) = request.parallelism {
            props.push(format!("parallelism.default={p}"));
        }
        if let Some(s) = &request.savepoint_path {
            if s.chars().any(char::is_whitespace) {
                return Err(ClusterError::Invalid(
                    "savepoint paths with whitespace are not supported".into(),
                ));
            }
            props.push(format!("execution.savepoint.path={s}"));
        }
        if request.allow_non_restored_state {
            props.push("execution.savepoint.ignore-unclaimed-state=true".into());
        }
        let dynamic_properties = props.join(" ");
        let graph = plan(
            &jar.path,
            &request.args,
            &dynamic_properties,
            &self.work_dir,
        )?;
        let job_id = graph.job_id;
        let record = crate::ha::JobRecord {
            name: jar.name.clone(),
            program: jar.id.clone(),
            args: request.args.clone(),
            dynamic_properties,
            submitted: eddy_core::time::now_millis(),
        };
        let mut submit = SubmitOptions::default();
        if let Some(leadership) = &self.leadership {
            let json = serde_json::to_vec(&graph)
                .map_err(|e| ClusterError::Invalid(format!("cannot encode the JobGraph: {e}")))?;
            let program = std::fs::read(&jar.path)
                .map_err(|e| ClusterError::io(format!("cannot read {}", jar.path.display()), e))?;
            leadership.put_job(job_id, &json, &program, &record)?;
            submit.checkpoint_store = Some(leadership.checkpoint_store(job_id));
        }
        self.start_job(graph, &record, submit)?;
        tracing::info!(job_id = %job_id, program = %jar.name, "job submitted");
        Ok(job_id)
    }

    /// Starts a job master for `graph`, whose program and arguments `record` names.
    fn start_job(
        self: &Arc<Self>,
        graph: JobGraph,
        record: &crate::ha::JobRecord,
        submit: SubmitOptions,
    ) -> Result<()> {
        let job_id = graph.job_id;
        let monitor = deployer::JobMonitor::default();
        let deployer = deployer::RemoteDeployer::new(
            self.clone(),
            job_id,
            StartWorker {
                job_id: job_id.to_string(),
                attempt: 0,
                blob: record.program.clone(),
                args: record.args.clone(),
                dynamic_properties: record.dynamic_properties.clone(),
            },
            monitor.clone(),
        );
        let graph = Arc::new(graph);
        let client =
            MiniCluster::submit_with_options((*graph).clone(), Box::new(deployer), submit)?;
        tracing::info!(job = %graph.name, job_id = %job_id, "job master started");
        let mut jobs = self.jobs.lock();
        jobs.push_back((
            job_id,
            JobEntry {
                client,
                graph,
                start_time: eddy_core::time::now_millis(),
                monitor,
            },
        ));
        let capacity = self.config.get(&options::JOBSTORE_MAX_CAPACITY)? as usize;
        while jobs
            .iter()
            .filter(|(_, e)| e.client.job_status().is_terminal())
            .count()
            > capacity
        {
            let Some(pos) = jobs
                .iter()
                .position(|(_, e)| e.client.job_status().is_terminal())
            else {
                break;
            };
            jobs.remove(pos);
        }
        Ok(())
    }

    /// Resumes the jobs recorded in ZooKeeper, each from its latest completed checkpoint: what
    /// a JobManager does when it becomes the leader. A record that cannot be read is reported
    /// and left in place; the other jobs resume. Returns the ids of the resumed jobs.
    fn recover_jobs(self: &Arc<Self>, leadership: &crate::ha::Leadership) -> Result<Vec<JobId>> {
        let mut recovered = Vec::new();
        for (node, read) in leadership.jobs()? {
            let resumed = read.and_then(|(record, graph)| {
                let graph: JobGraph = serde_json::from_slice(&graph).map_err(|e| {
                    ClusterError::HighAvailability(format!(
                        "job {node}'s recorded JobGraph is not valid: {e}"
                    ))
                })?;
                let job_id = graph.job_id;
                let program = std::fs::read(leadership.program_path(&record.program))
                    .map_err(|e| ClusterError::io(format!("job {node}'s program"), e))?;
                self.store_jar(&record.name, &program)?;
                let checkpoints = leadership.checkpoints(job_id)?;
                let latest = checkpoints.first().map(|c| c.id);
                let submit = SubmitOptions {
                    checkpoint_store: Some(leadership.checkpoint_store(job_id)),
                    resume_from: checkpoints.into_iter().map(|c| c.path).collect(),
                };
                self.start_job(graph, &record, submit)?;
                Ok((job_id, latest))
            });
            match resumed {
                Ok((job_id, checkpoint)) => {
                    tracing::info!(job_id = %job_id, ?checkpoint, "job recovered from ZooKeeper");
                    println!(
                        "Recovered job {job_id} from {}",
                        checkpoint.map_or("its start".into(), |id| format!("checkpoint {id}"))
                    );
                    recovered.push(job_id);
                }
                Err(e) => {
                    tracing::error!(job = %node, error = %e, "cannot recover a job");
                    eprintln!("eddy: cannot recover job {node}: {e}");
                }
            }
        }
        Ok(recovered)
    }

    /// Forgets the worker connections of a job's attempt.
    fn forget_workers(&self, job_id: JobId, attempt: u32) {
        for streams in self.resources.lock().worker_streams.values_mut() {
            streams.retain(|(j, a, _)| !(*j == job_id && *a == attempt));
        }
    }

    fn register_worker(&self, hello: WorkerHello, stream: TcpStream) {
        let key = (hello.job_id, hello.attempt);
        let tx = self.pending_workers.lock().get(&key).cloned();
        match tx {
            Some(tx) => {
                if let Ok(s) = stream.try_clone() {
                    self.resources
                        .lock()
                        .worker_streams
                        .entry(hello.taskmanager_id.clone())
                        .or_default()
                        .push((hello.job_id, hello.attempt, s));
                }
                let _ = tx.send((hello, stream));
            }
            None => {
                tracing::info!(job_id = %hello.job_id, attempt = hello.attempt, "a worker of an attempt that is over connected; turned away");
            }
        }
    }
}

/// What `POST /jars/:id/run` asks for.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// Program arguments.
    pub args: Vec<String>,
    /// Default parallelism.
    pub parallelism: Option<u32>,
    /// Savepoint to restore.
    pub savepoint_path: Option<String>,
    /// Skip savepoint state no operator claims.
    pub allow_non_restored_state: bool,
}

/// Runs `program` with `args` in plan mode and returns the JobGraph its `execute()` built.
pub fn plan(
    program: &Path,
    args: &[String],
    dynamic_properties: &str,
    work_dir: &Path,
) -> Result<JobGraph> {
    let out = work_dir.join(format!("plan-{}.json", uuid::Uuid::new_v4()));
    let output = std::process::Command::new(program)
        .args(args)
        .env(PLAN_OUTPUT_ENV, &out)
        .env("EDDY_DYNAMIC_PROPERTIES", dynamic_properties)
        .env_remove(eddy_runtime::executor::WORKER_ENV)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ClusterError::io(format!("cannot run {}", program.display()), e))?;
    let json = std::fs::read(&out);
    let _ = std::fs::remove_file(&out);
    let json = match json {
        Ok(j) if output.status.success() => j,
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
            return Err(ClusterError::Invalid(format!(
                "the program did not build a job ({}): {}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
    };
    serde_json::from_slice(&json)
        .map_err(|e| ClusterError::Invalid(format!("the program's JobGraph is malformed: {e}")))
}

/// A program a JobManager runs as soon as it starts (application mode): the cluster lives as
/// long as the program's job.
#[derive(Clone, Debug)]
pub struct Application {
    /// The program.
    pub program: PathBuf,
    /// Its arguments, parallelism and savepoint.
    pub request: RunRequest,
}

/// Starts a JobManager: the RPC server, the heartbeat monitor and the REST API. Blocks while
/// the REST server runs. With an `application`, runs it at once, and once its job has ended
/// (and `execution.shutdown-on-application-finish`) shuts its TaskManagers down and exits,
/// with status 0 if the job finished.
pub fn run(
    config: Configuration,
    work_dir: PathBuf,
    application: Option<Application>,
) -> Result<()> {
    let log_file = crate::logging::init("eddy-jobmanager");
    if let Some(dir) = config.get_optional(&options::WEB_DASHBOARD_DIR)?
        && !std::path::Path::new(&dir).join("index.html").is_file()
    {
        return Err(ClusterError::Invalid(format!(
            "web.dashboard.dir: {dir} holds no index.html (for Flink's dashboard, unpack the \
             web/ folder of a Flink distribution's lib/flink-dist-*.jar and name that folder)"
        )));
    }
    let ha = match crate::ha::HaSettings::from_config(&config)? {
        Some(settings) => {
            let zk = crate::ha::ZooKeeper::connect(&settings)?;
            println!(
                "JobManager: high availability through ZooKeeper at {} ({}); waiting for the \
                 leadership",
                settings.quorum, settings.root
            );
            Some(zk)
        }
        None => None,
    };
    let mut listeners = None;
    let leadership = match &ha {
        Some(zk) => Some(zk.elect(|| {
            let bound = bind(&config)?;
            let info = crate::ha::LeaderInfo {
                session_id: uuid::Uuid::new_v4().to_string(),
                rest_address: bound.rest_address.clone(),
                rpc_address: bound.rpc_address.clone(),
            };
            listeners = Some(bound);
            Ok(info)
        })?),
        None => None,
    };
    let bound = match listeners {
        Some(b) => b,
        None => bind(&config)?,
    };
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| ClusterError::io(format!("cannot create {}", work_dir.display()), e))?;
    let cluster = Arc::new(Cluster {
        heartbeat_timeout: config.get(&options::HEARTBEAT_TIMEOUT)?,
        rpc_address: bound.rpc_address,
        rest_address: bound.rest_address,
        config,
        work_dir,
        log_file,
        resources: Mutex::new(Resources::default()),
        slots_changed: Condvar::new(),
        jars: Mutex::new(BTreeMap::new()),
        jobs: Mutex::new(VecDeque::new()),
        operations: Mutex::new(HashMap::new()),
        pending_workers: Mutex::new(HashMap::new()),
        leadership,
    });
    let (rpc, rest, rest_bind) = (bound.rpc, bound.rest, bound.rest_bind);
    {
        let cluster = cluster.clone();
        std::thread::Builder::new()
            .name("rpc".into())
            .spawn(move || accept_loop(cluster, rpc))
            .map_err(|e| ClusterError::io("cannot start the RPC thread", e))?;
    }
    {
        let cluster = cluster.clone();
        std::thread::Builder::new()
            .name("heartbeat monitor".into())
            .spawn(move || heartbeat_monitor(cluster))
            .map_err(|e| ClusterError::io("cannot start the heartbeat monitor", e))?;
    }
    tracing::info!(rest = %cluster.rest_address, rpc = %cluster.rpc_address, "JobManager started");
    println!(
        "JobManager: REST API and web UI at {}, RPC at {}",
        cluster.rest_address, cluster.rpc_address
    );
    let mut recovered = Vec::new();
    if let Some(leadership) = &cluster.leadership {
        println!(
            "JobManager: leader (session {})",
            leadership.info().session_id
        );
        tracing::info!(session = %leadership.info().session_id, "this JobManager is the leader");
        let lost = leadership.clone();
        std::thread::Builder::new()
            .name("leadership".into())
            .spawn(move || {
                let why = lost.wait_until_lost();
                tracing::error!(reason = %why, "lost the leadership; exiting");
                eprintln!("eddy: this JobManager lost its leadership ({why}); exiting");
                std::process::exit(1);
            })
            .map_err(|e| ClusterError::io("cannot start the leadership watcher", e))?;
        recovered = cluster.recover_jobs(leadership)?;
    }
    if let Some(app) = application {
        let cluster = cluster.clone();
        let shutdown = cluster
            .config
            .get(&options::SHUTDOWN_ON_APPLICATION_FINISH)?;
        std::thread::Builder::new()
            .name("application".into())
            .spawn(move || {
                let (finished, reason) = match run_application(&cluster, &app, &recovered) {
                    Ok((job_id, state)) => {
                        println!("Job {job_id} ended: {state}");
                        (state == "FINISHED", format!("job {job_id} ended: {state}"))
                    }
                    Err(e) => {
                        eprintln!("eddy: the application failed: {e}");
                        tracing::error!(error = %e, "the application failed");
                        (false, format!("the application failed: {e}"))
                    }
                };
                if shutdown {
                    tracing::info!(reason, "application ended; shutting the cluster down");
                    for tm in cluster.resources.lock().taskmanagers.values() {
                        tm.send(&JobManagerMessage::Shutdown {
                            reason: reason.clone(),
                        });
                    }
                    std::process::exit(if finished { 0 } else { 1 });
                }
            })
            .map_err(|e| ClusterError::io("cannot start the application thread", e))?;
    }
    let prometheus =
        crate::bind_port_range(&rest_bind, &cluster.config.get(&options::PROMETHEUS_PORT)?);
    if let Some(p) = &prometheus
        && let Ok(a) = p.local_addr()
    {
        tracing::info!(address = %a, "Prometheus metrics at /metrics");
    }
    rest::serve(cluster, rest, prometheus)
}

/// Runs an application's program as a job and waits for it to end; returns the job's id and
/// final state. A job recovered from ZooKeeper (high availability) is the application's: the
/// program does not run again, its job is waited for.
fn run_application(
    cluster: &Arc<Cluster>,
    app: &Application,
    recovered: &[JobId],
) -> Result<(JobId, &'static str)> {
    let job_id = match recovered.first() {
        Some(id) => *id,
        None => {
            // With high availability, an application whose job already ended does not run again.
            let ended = match &cluster.leadership {
                Some(l) => l.job_results()?.into_iter().next(),
                None => None,
            };
            if let Some((job, state)) = ended {
                println!("The application's job {job} already ended: {state}");
                let state = match state.as_str() {
                    "FINISHED" => "FINISHED",
                    "CANCELED" => "CANCELED",
                    _ => "FAILED",
                };
                let job_id = job.parse().map_err(|_| {
                    ClusterError::HighAvailability(format!("job result {job} is not a job id"))
                })?;
                return Ok((job_id, state));
            }
            submit_application(cluster, app)?
        }
    };
    let client = cluster
        .job(&job_id.to_string(), |e| e.client.clone())
        .ok_or_else(|| ClusterError::Invalid(format!("job {job_id} is gone")))?;
    Ok(match client.get_job_execution_result() {
        Ok(_) => (job_id, "FINISHED"),
        Err(eddy_runtime::executor::JobError::Cancelled { .. }) => (job_id, "CANCELED"),
        Err(e) => {
            eprintln!("Root cause: {e}");
            (job_id, "FAILED")
        }
    })
}

/// Stores an application's program and submits its job.
fn submit_application(cluster: &Arc<Cluster>, app: &Application) -> Result<JobId> {
    let bytes = std::fs::read(&app.program).map_err(|e| {
        ClusterError::io(
            format!("cannot read the program {}", app.program.display()),
            e,
        )
    })?;
    let name = app
        .program
        .file_name()
        .map_or_else(|| "program".into(), |n| n.to_string_lossy().to_string());
    let jar = cluster.store_jar(&name, &bytes)?;
    let job_id = cluster.run_jar(&jar.id, app.request.clone())?;
    println!("Job has been submitted with JobID {job_id}");
    Ok(job_id)
}

/// The JobManager's listening sockets.
struct Bound {
    rpc: TcpListener,
    rest: TcpListener,
    rest_bind: String,
    rpc_address: String,
    rest_address: String,
}

/// Binds the RPC port (`jobmanager.rpc.address`/`port`) and the REST port
/// (`rest.bind-address`/`rest.port`); port 0 takes a free one.
fn bind(config: &Configuration) -> Result<Bound> {
    let rpc_host = config.get(&options::JOBMANAGER_RPC_ADDRESS)?;
    let rpc_port = config.get(&options::JOBMANAGER_RPC_PORT)?;
    let rpc = TcpListener::bind((rpc_host.as_str(), rpc_port))
        .map_err(|e| ClusterError::io(format!("cannot listen on {rpc_host}:{rpc_port}"), e))?;
    let rpc_port = rpc
        .local_addr()
        .map_err(|e| ClusterError::io("rpc listener", e))?
        .port();
    let rest_bind = config.get(&options::REST_BIND_ADDRESS)?;
    let rest_port = config.get(&options::REST_PORT)?;
    let rest = TcpListener::bind((rest_bind.as_str(), rest_port))
        .map_err(|e| ClusterError::io(format!("cannot listen on {rest_bind}:{rest_port}"), e))?;
    let rest_port = rest
        .local_addr()
        .map_err(|e| ClusterError::io("rest listener", e))?
        .port();
    let rest_host = config.get(&options::REST_ADDRESS)?;
    Ok(Bound {
        rpc,
        rest,
        rest_bind,
        rpc_address: format!("{rpc_host}:{rpc_port}"),
        rest_address: format!("http://{rest_host}:{rest_port}"),
    })
}

impl Cluster {
    /// The JobManager's metrics and its jobs' (`flink_jobmanager_job_*`, Flink's job scope),
    /// in Prometheus's text format. Task metrics are served by the TaskManagers running them.
    pub fn prometheus(&self) -> String {
        let (tms, total, free) = {
            let r = self.resources.lock();
            (r.taskmanagers.len(), r.total_slots(), r.free_slots())
        };
        let jobs = self.jobs.lock();
        let running = jobs
            .iter()
            .filter(|(_, e)| !e.client.job_status().is_terminal())
            .count();
        let now = eddy_core::time::now_millis();
        let own = BTreeMap::new();
        let mut metrics: Vec<(BTreeMap<String, String>, &'static str, f64)> = vec![
            (own.clone(), "numRegisteredTaskManagers", tms as f64),
            (own.clone(), "taskSlotsTotal", total as f64),
            (own.clone(), "taskSlotsAvailable", free as f64),
            (own.clone(), "numRunningJobs", running as f64),
            (
                own,
                "Status_Memory_RSS",
                crate::taskmanager::resident_memory() as f64,
            ),
        ];
        for (id, e) in jobs.iter() {
            let labels: BTreeMap<String, String> = [
                ("job_id".to_string(), id.to_string()),
                ("job_name".to_string(), e.graph.name.clone()),
            ]
            .into();
            for (name, value) in e.metrics(now) {
                metrics.push((labels.clone(), name, value));
            }
        }
        drop(jobs);
        eddy_runtime::metrics::prometheus_text(
            "jobmanager",
            metrics.iter().map(|(labels, name, v)| (labels, *name, *v)),
        )
    }
}

fn accept_loop(cluster: Arc<Cluster>, listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let cluster = cluster.clone();
        let _ = std::thread::Builder::new()
            .name("rpc connection".into())
            .spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                if let Err(e) = serve_connection(&cluster, stream) {
                    tracing::warn!(peer, error = %e, "RPC connection failed");
                }
            });
    }
}

fn serve_connection(cluster: &Arc<Cluster>, stream: TcpStream) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let mut magic = [0u8; 4];
    let n = stream
        .peek(&mut magic)
        .map_err(|e| ClusterError::io("reading a connection", e))?;
    if n == 4 && &magic == TASKMANAGER_MAGIC {
        return serve_taskmanager(cluster, stream);
    }
    let mut reader = BufReader::new(
        stream
            .try_clone()
            .map_err(|e| ClusterError::io("connection", e))?,
    );
    match read_message::<WorkerMessage>(&mut reader)? {
        Some(WorkerMessage::Hello(hello)) => {
            cluster.register_worker(hello, stream);
            Ok(())
        }
        _ => Err(ClusterError::Invalid(
            "a connection did not introduce itself".into(),
        )),
    }
}

fn serve_taskmanager(cluster: &Arc<Cluster>, stream: TcpStream) -> Result<()> {
    let mut reader = BufReader::new(
        stream
            .try_clone()
            .map_err(|e| ClusterError::io("connection", e))?,
    );
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|e| ClusterError::io("reading a TaskManager", e))?;
    let registration = match read_message::<TaskManagerMessage>(&mut reader)? {
        Some(TaskManagerMessage::Register(r)) => r,
        _ => {
            return Err(ClusterError::Invalid(
                "a TaskManager did not register".into(),
            ));
        }
    };
    let id = registration.id.clone();
    let writer = Arc::new(Mutex::new(BufWriter::new(
        stream
            .try_clone()
            .map_err(|e| ClusterError::io("connection", e))?,
    )));
    let own_session = cluster
        .leadership
        .as_ref()
        .map(|l| l.info().session_id.clone());
    if registration.leader_session != own_session {
        let reason = format!(
            "TaskManager {id} registers for leader session {:?}, this JobManager's is {:?}",
            registration.leader_session, own_session
        );
        tracing::warn!(reason, "registration refused");
        write_message(&mut *writer.lock(), &JobManagerMessage::Refused { reason })?;
        return Ok(());
    }
    write_message(
        &mut *writer.lock(),
        &JobManagerMessage::Registered {
            rest_address: cluster.rest_address.clone(),
            leader_session: own_session,
        },
    )?;
    {
        let mut r = cluster.resources.lock();
        if let Some(old) = r.taskmanagers.remove(&id) {
            let _ = old.stream.shutdown(std::net::Shutdown::Both);
        }
        tracing::info!(taskmanager = %id, slots = registration.slots, host = %registration.host, "TaskManager registered");
        r.taskmanagers.insert(
            id.clone(),
            TaskManagerInfo {
                free_slots: registration.slots,
                registration,
                last_heartbeat: Instant::now(),
                registered_at: eddy_core::time::now_millis(),
                process: Default::default(),
                writer,
                stream,
            },
        );
        cluster.slots_changed.notify_all();
    }
    loop {
        match read_message::<TaskManagerMessage>(&mut reader) {
            Ok(Some(TaskManagerMessage::Heartbeat { process })) => {
                if let Some(tm) = cluster.resources.lock().taskmanagers.get_mut(&id) {
                    tm.last_heartbeat = Instant::now();
                    tm.process = process;
                }
            }
            Ok(Some(TaskManagerMessage::WorkerExited {
                job_id,
                attempt,
                status,
            })) => {
                tracing::info!(taskmanager = %id, job_id, attempt, status, "worker process exited");
            }
            Ok(Some(TaskManagerMessage::Register(_))) => {}
            Ok(None) | Err(_) => {
                cluster.remove_taskmanager(&id, "its connection closed");
                return Ok(());
            }
        }
    }
}

fn heartbeat_monitor(cluster: Arc<Cluster>) {
    let period =
        (cluster.heartbeat_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        std::thread::sleep(period);
        let lost: Vec<String> = cluster
            .resources
            .lock()
            .taskmanagers
            .iter()
            .filter(|(_, t)| t.last_heartbeat.elapsed() > cluster.heartbeat_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            cluster.remove_taskmanager(&id, "it missed its heartbeats");
        }
    }
}
