//! The TaskManager: offers its slots to the JobManager and runs one worker process per job.
//!
//! It connects to the JobManager's RPC port (retrying until the JobManager is up, as Flink's
//! TaskManagers do), registers `taskmanager.numberOfTaskSlots` slots and heartbeats every
//! `heartbeat.interval`. For each job with tasks here it downloads the job's program once into
//! a content-addressed cache (checked against its SHA-256) and starts it in worker mode; the
//! worker holds the TaskManager's end of a pipe as its standard input, so it exits when the
//! TaskManager dies. A crashing worker takes only its own job's tasks with it. Its workers'
//! task metrics are served on the TaskManager's Prometheus endpoint, as Flink's TaskManagers
//! serve their tasks'.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_core::config::{Configuration, options};
use eddy_runtime::executor::remote::{WireMetric, read_message, write_message};
use eddy_runtime::executor::{WORKER_ENV, WorkerSpec};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::protocol::{
    JobManagerMessage, Registration, StartWorker, TASKMANAGER_MAGIC, TaskManagerMessage,
};
use crate::{ClusterError, Result};

/// How long a worker has to exit after it is told to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

type Workers = Arc<Mutex<HashMap<(String, u32), Child>>>;

/// Runs a TaskManager until the process is killed.
pub fn run(config: Configuration, work_dir: PathBuf) -> Result<()> {
    let id = config
        .get_optional(&options::TASKMANAGER_RESOURCE_ID)?
        .unwrap_or_else(|| format!("tm-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let log_file = crate::logging::init(&format!("eddy-taskmanager-{id}"));
    let slots = config.get(&options::TASK_SLOTS)?;
    let host = config.get(&options::TASKMANAGER_HOST)?;
    let jm = format!(
        "{}:{}",
        config.get(&options::JOBMANAGER_RPC_ADDRESS)?,
        config.get(&options::JOBMANAGER_RPC_PORT)?
    );
    let interval = config.get(&options::HEARTBEAT_INTERVAL)?;
    let ha = crate::ha::HaSettings::from_config(&config)?;
    let mut zk = match &ha {
        Some(settings) => Some(crate::ha::ZooKeeper::connect(settings)?),
        None => None,
    };
    let work_dir = work_dir.join(&id);
    std::fs::create_dir_all(work_dir.join("blobs"))
        .map_err(|e| ClusterError::io(format!("cannot create {}", work_dir.display()), e))?;
    let workers: Workers = Arc::new(Mutex::new(HashMap::new()));
    let prometheus_port = serve_metrics(&config, &host, slots, &workers, &id, &work_dir)?;
    match &ha {
        Some(settings) => println!(
            "TaskManager {id}: {slots} slot(s), JobManager leader from ZooKeeper at {}",
            settings.quorum
        ),
        None => println!("TaskManager {id}: {slots} slot(s), JobManager at {jm}"),
    }
    loop {
        // With high availability: the leader, found in ZooKeeper (a new session if the old one
        // ended), whose session the registration and every worker start are fenced with.
        let leader = match (&ha, &mut zk) {
            (Some(settings), Some(zk)) => match current_leader(settings, zk) {
                Some(leader) => Some(leader),
                None => continue,
            },
            _ => None,
        };
        let address = leader
            .as_ref()
            .map_or(jm.as_str(), |l| l.rpc_address.as_str());
        // A leader that died is still named in ZooKeeper until its session expires: keep
        // trying it until ZooKeeper names another.
        let still_leader = || match (&leader, &zk) {
            (Some(l), Some(zk)) => matches!(zk.leader(), Ok(Some(now)) if now == *l),
            _ => true,
        };
        let Some(stream) = connect(address, still_leader) else {
            continue;
        };
        let fence = match (&leader, &zk) {
            (Some(leader), Some(zk)) => Some((zk.clone(), leader.clone())),
            _ => None,
        };
        let watch = match &fence {
            Some((zk, leader)) => Some(follow_leader(zk.clone(), leader.clone(), &stream)?),
            None => None,
        };
        let registration = Registration {
            id: id.clone(),
            host: host.clone(),
            slots,
            pid: std::process::id(),
            prometheus_port,
            log_file: log_file.as_ref().map(|p| p.display().to_string()),
            leader_session: leader.as_ref().map(|l| l.session_id.clone()),
        };
        match session(
            stream,
            registration,
            interval,
            &work_dir,
            address,
            &workers,
            fence,
        ) {
            Ok(()) => tracing::warn!("the JobManager closed the connection; registering again"),
            Err(e) => tracing::warn!(error = %e, "lost the JobManager; registering again"),
        }
        if let Some(stop) = watch {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // Without a JobManager, the workers' jobs cannot go on.
        for ((job, attempt), mut child) in workers.lock().drain() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(metrics_file(&work_dir, &job, attempt));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The leader as ZooKeeper knows it, waiting up to a few seconds for one; opens a new session
/// if the old one ended. `None` to ask again.
fn current_leader(
    settings: &crate::ha::HaSettings,
    zk: &mut Arc<crate::ha::ZooKeeper>,
) -> Option<crate::ha::LeaderInfo> {
    if zk.session_ended() {
        match crate::ha::ZooKeeper::connect(settings) {
            Ok(new) => *zk = new,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach ZooKeeper; trying again");
                std::thread::sleep(Duration::from_secs(1));
                return None;
            }
        }
    }
    match zk.wait_for_leader(Duration::from_secs(5)) {
        Ok(Some(leader)) => Some(leader),
        Ok(None) => {
            tracing::info!("no JobManager leader yet");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the JobManager leader; trying again");
            std::thread::sleep(Duration::from_millis(500));
            None
        }
    }
}

/// Closes `stream` once ZooKeeper names a leader other than `leader`, which ends the session
/// with it: the workers of its jobs stop, and the TaskManager registers with the new leader.
/// The watch ends when the returned flag is set (the session ended for another reason).
fn follow_leader(
    zk: Arc<crate::ha::ZooKeeper>,
    leader: crate::ha::LeaderInfo,
    stream: &TcpStream,
) -> Result<Arc<std::sync::atomic::AtomicBool>> {
    let stream = stream
        .try_clone()
        .map_err(|e| ClusterError::io("connection", e))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("leader watch".into())
        .spawn(move || {
            if zk.wait_for_leader_change(&leader, &stopped) {
                tracing::warn!(old = %leader.session_id, "the JobManager leader changed; leaving the old one");
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        })
        .map_err(|e| ClusterError::io("cannot start the leader watch", e))?;
    Ok(stop)
}

/// Serves this TaskManager's metrics and those of its workers' tasks at `/metrics` on a port of
/// `metrics.reporter.prom.port`, its own and its workers' log files at `/logs` and
/// `/logs/:name` (its own at `/log`), its standard output at `/stdout` and its threads' and
/// its workers' at `/thread-dump`, which the JobManager's REST API passes on. Returns the port.
fn serve_metrics(
    config: &Configuration,
    host: &str,
    slots: u32,
    workers: &Workers,
    id: &str,
    work_dir: &Path,
) -> Result<Option<u16>> {
    let Some(listener) = crate::bind_port_range(host, &config.get(&options::PROMETHEUS_PORT)?)
    else {
        return Ok(None);
    };
    let port = listener.local_addr().ok().map(|a| a.port());
    let workers = workers.clone();
    let metrics_dir = work_dir.to_path_buf();
    let metrics_id = id.to_string();
    let metrics_host = host.to_string();
    let logs_id = id.to_string();
    let files_id = id.to_string();
    let log_id = id.to_string();
    let dump_id = id.to_string();
    let dump_workers = workers.clone();
    std::thread::Builder::new()
        .name("prometheus".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot serve metrics");
                    return;
                }
            };
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let live: Vec<(String, u32)> = workers.lock().keys().cloned().collect();
                    let tasks: Vec<WireMetric> = live
                        .iter()
                        .filter_map(|(job, attempt)| {
                            let json =
                                std::fs::read(metrics_file(&metrics_dir, job, *attempt)).ok()?;
                            serde_json::from_slice::<Vec<WireMetric>>(&json).ok()
                        })
                        .flatten()
                        .collect();
                    let text = metrics_text(&metrics_id, &metrics_host, slots, live.len(), tasks);
                    async move { crate::jobmanager::rest::metrics_text(text) }
                }),
            );
            let app = app
                .route(
                    "/logs",
                    axum::routing::get(move || async move { axum::Json(log_files(&logs_id)) }),
                )
                .route(
                    "/logs/{name}",
                    axum::routing::get(
                        move |axum::extract::Path(name): axum::extract::Path<String>| async move {
                            read_log(&files_id, &name)
                        },
                    ),
                )
                .route(
                    "/log",
                    axum::routing::get(move || async move {
                        read_log(&log_id, &format!("eddy-taskmanager-{log_id}.log"))
                    }),
                )
                .route(
                    "/stdout",
                    axum::routing::get(|| async {
                        crate::jobmanager::rest::plain_text(crate::process::stdout_text(
                            STDOUT_LIMIT,
                        ))
                    }),
                )
                .route(
                    "/thread-dump",
                    axum::routing::get(move || {
                        let pids: Vec<u32> = dump_workers.lock().values().map(Child::id).collect();
                        let dump =
                            crate::process::thread_dump(&format!("TaskManager {dump_id}"), &pids);
                        async move { axum::Json(dump) }
                    }),
                );
            if let Err(e) = runtime.block_on(crate::jobmanager::rest::serve_std(listener, app)) {
                tracing::warn!(error = %e, "metrics endpoint stopped");
            }
        })
        .map_err(|e| ClusterError::io("cannot start the metrics thread", e))?;
    Ok(port)
}

/// The most of a process's standard output file the REST API shows (its end).
pub(crate) const STDOUT_LIMIT: u64 = 1 << 20;

/// Where the worker of `job`'s attempt `attempt` writes its tasks' metrics.
fn metrics_file(work_dir: &Path, job: &str, attempt: u32) -> PathBuf {
    work_dir.join(format!("metrics-{job}-{attempt}.prom"))
}

/// This TaskManager's gauges and its workers' task metrics in Prometheus's text format, the
/// task metrics labelled with the TaskManager's id and host as Flink labels them.
fn metrics_text(
    id: &str,
    host: &str,
    slots: u32,
    workers: usize,
    tasks: Vec<WireMetric>,
) -> String {
    let own = BTreeMap::new();
    let mut metrics: Vec<(BTreeMap<String, String>, String, f64)> = vec![
        (own.clone(), "numberOfTaskSlots".into(), slots as f64),
        (own.clone(), "numWorkerProcesses".into(), workers as f64),
        (own, "Status_Memory_RSS".into(), resident_memory() as f64),
    ];
    for mut m in tasks {
        m.variables.insert("tm_id".into(), id.to_string());
        m.variables.insert("host".into(), host.to_string());
        metrics.push((m.variables, m.name, m.value));
    }
    eddy_runtime::metrics::prometheus_text(
        "taskmanager",
        metrics
            .iter()
            .map(|(v, name, value)| (v, name.as_str(), *value)),
    )
}

/// This TaskManager's log files and its workers': `{"logs": [{"name", "size", "mtime"}]}`.
fn log_files(id: &str) -> serde_json::Value {
    let mut logs = Vec::new();
    if let Some(dir) = crate::logging::log_dir()
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if is_own_log(id, &name)
                && let Ok(meta) = e.metadata()
            {
                logs.push(crate::logging::log_entry(name, &meta));
            }
        }
    }
    serde_json::json!({ "logs": logs })
}

fn is_own_log(id: &str, name: &str) -> bool {
    (name == format!("eddy-taskmanager-{id}.log")
        || name.starts_with(&format!("eddy-worker-{id}-")))
        && name.ends_with(".log")
        && crate::is_safe_file_name(name)
}

fn read_log(id: &str, name: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let text = crate::logging::log_dir()
        .filter(|_| is_own_log(id, name))
        .and_then(|dir| std::fs::read_to_string(dir.join(name)).ok());
    match text {
        Some(t) => crate::jobmanager::rest::plain_text(t),
        None => crate::jobmanager::rest::not_found("log file").into_response(),
    }
}

/// Connects to the JobManager at `address`, retrying until it is up (as Flink's TaskManagers
/// do) while `wanted` says it is still the one to connect to (`None` once it is not).
fn connect(address: &str, wanted: impl Fn() -> bool) -> Option<TcpStream> {
    let mut delay = Duration::from_millis(50);
    loop {
        match TcpStream::connect(address) {
            Ok(s) => return Some(s),
            Err(e) => {
                tracing::info!(jobmanager = address, error = %e, "JobManager not reachable yet");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(500));
                if !wanted() {
                    return None;
                }
            }
        }
    }
}

/// The ZooKeeper session and the leader a session with a JobManager is fenced with.
type Fence = Option<(Arc<crate::ha::ZooKeeper>, crate::ha::LeaderInfo)>;

/// Whether the leader ZooKeeper names now is still `fence`'s (always without high
/// availability): read afresh before a worker starts, so a JobManager that lost the leadership
/// cannot deploy here even before the leader watch has noticed.
fn still_leader(fence: &Fence) -> bool {
    match fence {
        None => true,
        Some((zk, leader)) => {
            matches!(zk.leader(), Ok(Some(l)) if l.session_id == leader.session_id)
        }
    }
}

fn session(
    stream: TcpStream,
    registration: Registration,
    interval: Duration,
    work_dir: &Path,
    jm: &str,
    workers: &Workers,
    fence: Fence,
) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let writer = Arc::new(Mutex::new(BufWriter::new(
        stream
            .try_clone()
            .map_err(|e| ClusterError::io("connection", e))?,
    )));
    {
        let mut w = writer.lock();
        w.write_all(TASKMANAGER_MAGIC)
            .map_err(|e| ClusterError::io("registering", e))?;
        write_message(&mut *w, &TaskManagerMessage::Register(registration.clone()))?;
    }
    let mut reader = BufReader::new(stream);
    let rest = match read_message::<JobManagerMessage>(&mut reader)? {
        Some(JobManagerMessage::Registered {
            rest_address,
            leader_session,
        }) if leader_session == registration.leader_session => rest_address,
        Some(JobManagerMessage::Registered { leader_session, .. }) => {
            return Err(ClusterError::Invalid(format!(
                "the JobManager answered for leader session {leader_session:?}, not {:?}",
                registration.leader_session
            )));
        }
        Some(JobManagerMessage::Refused { reason }) => {
            return Err(ClusterError::Invalid(format!(
                "registration refused: {reason}"
            )));
        }
        _ => return Err(ClusterError::Invalid("registration refused".into())),
    };
    tracing::info!(taskmanager = %registration.id, rest = %rest, "registered with the JobManager");

    // Heartbeats, and reports of workers that exited.
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    {
        let writer = writer.clone();
        let workers = workers.clone();
        let alive = alive.clone();
        let work_dir = work_dir.to_path_buf();
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                let mut next = Instant::now();
                while alive.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut exited = Vec::new();
                    workers
                        .lock()
                        .retain(|(job, attempt), child| match child.try_wait() {
                            Ok(Some(status)) => {
                                exited.push((job.clone(), *attempt, status.to_string()));
                                false
                            }
                            _ => true,
                        });
                    for (job_id, attempt, status) in exited {
                        tracing::info!(job_id, attempt, status, "worker exited");
                        let _ = std::fs::remove_file(metrics_file(&work_dir, &job_id, attempt));
                        let m = TaskManagerMessage::WorkerExited {
                            job_id,
                            attempt,
                            status,
                        };
                        if write_message(&mut *writer.lock(), &m).is_err() {
                            return;
                        }
                    }
                    if Instant::now() >= next {
                        let pids: Vec<u32> = workers.lock().values().map(Child::id).collect();
                        let m = TaskManagerMessage::Heartbeat {
                            process: crate::process::ProcessMetrics::read(&pids),
                        };
                        if write_message(&mut *writer.lock(), &m).is_err() {
                            return;
                        }
                        next = Instant::now() + interval;
                    }
                    std::thread::sleep(Duration::from_millis(100).min(interval));
                }
            })
            .map_err(|e| ClusterError::io("cannot start the heartbeat thread", e))?;
    }
    let result = loop {
        match read_message::<JobManagerMessage>(&mut reader) {
            Ok(Some(JobManagerMessage::StartWorker(_))) if !still_leader(&fence) => {
                tracing::warn!(
                    "a JobManager that is no longer the leader asked for a worker; leaving it"
                );
                break Err(ClusterError::HighAvailability(
                    "the JobManager lost its leadership".into(),
                ));
            }
            Ok(Some(JobManagerMessage::StartWorker(start))) => {
                if let Err(e) = start_worker(&start, &registration, work_dir, jm, &rest, workers) {
                    // The job master sees no worker connect and fails the attempt with a
                    // pointer to this log.
                    tracing::error!(job_id = %start.job_id, error = %e, "cannot start the job's worker");
                }
            }
            Ok(Some(JobManagerMessage::StopWorker { job_id, attempt })) => {
                let child = workers.lock().remove(&(job_id.clone(), attempt));
                if let Some(mut child) = child {
                    let metrics = metrics_file(work_dir, &job_id, attempt);
                    std::thread::spawn(move || {
                        let deadline = Instant::now() + STOP_GRACE;
                        while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_)))
                        {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        if !matches!(child.try_wait(), Ok(Some(_))) {
                            tracing::warn!(job_id, attempt, "worker did not exit; killing it");
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                        let _ = std::fs::remove_file(metrics);
                    });
                }
            }
            Ok(Some(JobManagerMessage::Shutdown { reason })) => {
                tracing::info!(reason, "the JobManager shuts the cluster down; exiting");
                for ((job, attempt), mut child) in workers.lock().drain() {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_file(metrics_file(work_dir, &job, attempt));
                }
                std::process::exit(0);
            }
            Ok(Some(JobManagerMessage::Registered { .. } | JobManagerMessage::Refused { .. })) => {}
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
        }
    };
    alive.store(false, std::sync::atomic::Ordering::Relaxed);
    result
}

fn start_worker(
    start: &StartWorker,
    registration: &Registration,
    work_dir: &Path,
    jm: &str,
    rest: &str,
    workers: &Workers,
) -> Result<()> {
    let program = fetch_blob(&start.blob, work_dir, rest)?;
    let job_id = start
        .job_id
        .parse()
        .map_err(|_| ClusterError::Invalid(format!("malformed job id {}", start.job_id)))?;
    let spec = WorkerSpec {
        jobmanager: jm.to_string(),
        job_id,
        attempt: start.attempt,
        taskmanager_id: registration.id.clone(),
        host: registration.host.clone(),
        metrics_file: Some(metrics_file(work_dir, &start.job_id, start.attempt)),
    };
    let spec = serde_json::to_string(&spec)
        .map_err(|e| ClusterError::Invalid(format!("cannot encode the worker spec: {e}")))?;
    let (stdout, stderr) = match crate::logging::log_dir() {
        Some(dir) => {
            let path = dir.join(format!(
                "eddy-worker-{}-{}-{}.log",
                registration.id, start.job_id, start.attempt
            ));
            let f = std::fs::File::create(&path)
                .map_err(|e| ClusterError::io(format!("cannot create {}", path.display()), e))?;
            let f2 = f
                .try_clone()
                .map_err(|e| ClusterError::io("worker log", e))?;
            (Stdio::from(f), Stdio::from(f2))
        }
        None => (Stdio::inherit(), Stdio::inherit()),
    };
    let child = Command::new(&program)
        .args(&start.args)
        .env(WORKER_ENV, spec)
        .env("EDDY_DYNAMIC_PROPERTIES", &start.dynamic_properties)
        .env_remove(eddy_runtime::executor::PLAN_OUTPUT_ENV)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| ClusterError::io(format!("cannot start {}", program.display()), e))?;
    tracing::info!(job_id = %start.job_id, attempt = start.attempt, pid = child.id(), "worker started");
    if let Some(mut old) = workers
        .lock()
        .insert((start.job_id.clone(), start.attempt), child)
    {
        let _ = old.kill();
    }
    Ok(())
}

/// The program with SHA-256 `sha`, from the cache or downloaded from the JobManager.
fn fetch_blob(sha: &str, work_dir: &Path, rest: &str) -> Result<PathBuf> {
    if !crate::is_sha256(sha) {
        return Err(ClusterError::Invalid(format!("malformed blob id {sha}")));
    }
    let dir = work_dir.join("blobs");
    let path = dir.join(sha);
    if path.exists() {
        return Ok(path);
    }
    let url = format!("{rest}/blobs/{sha}");
    let bytes = reqwest::blocking::get(&url)
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.bytes())
        .map_err(|e| ClusterError::Rest(format!("cannot download {url}: {e}")))?;
    let actual = format!("{:x}", Sha256::digest(&bytes));
    if actual != sha {
        return Err(ClusterError::Invalid(format!(
            "downloaded program has SHA-256 {actual}, expected {sha}"
        )));
    }
    crate::store_program(&dir, sha, &bytes)
}

/// This process's resident memory in bytes (Linux; 0 elsewhere).
pub fn resident_memory() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use eddy_runtime::executor::remote::WireMetric;

    #[test]
    fn workers_metrics_have_one_type_line_per_metric_and_the_taskmanager_labels() {
        let metric = |job: &str, value| WireMetric {
            variables: [
                ("job_id".to_string(), job.to_string()),
                ("task_id".to_string(), "t".to_string()),
            ]
            .into(),
            name: "numRecordsIn".into(),
            value,
        };
        let text = super::metrics_text("tm0", "h", 2, 2, vec![metric("a", 1.0), metric("b", 3.0)]);
        assert!(
            text.contains("flink_taskmanager_numberOfTaskSlots 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE flink_taskmanager_job_task_numRecordsIn gauge\n\
                 flink_taskmanager_job_task_numRecordsIn{host=\"h\",job_id=\"a\",task_id=\"t\",tm_id=\"tm0\"} 1\n\
                 flink_taskmanager_job_task_numRecordsIn{host=\"h\",job_id=\"b\",task_id=\"t\",tm_id=\"tm0\"} 3\n"
            ),
            "{text}"
        );
    }
}
