//! The REST API, with Flink's paths and JSON field names.
//!
//! Errors are answered as Flink does: a 4xx or 5xx status with `{"errors": ["..."]}`. Uploaded
//! programs are stored under their SHA-256 only; no name a client sends reaches the file
//! system.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use eddy_core::graph::{JobGraph, PartitionerKind};
use eddy_runtime::executor::JobStatus;
use eddy_runtime::executor::remote::WireMetric;
use serde::Deserialize;
use serde_json::{Value, json};

use super::deployer::JobMonitor;
use super::{Cluster, Operation, RunRequest};
use crate::{ClusterError, Result};

/// The largest program upload accepted.
const MAX_UPLOAD: usize = 1 << 30;

type Shared = Arc<Cluster>;

/// An error answer: `{"errors": [message]}` with a status.
pub struct RestError(StatusCode, String);

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "errors": [self.1] }))).into_response()
    }
}

/// A 404 answer naming what was not found.
pub(crate) fn not_found(what: &str) -> RestError {
    RestError(StatusCode::NOT_FOUND, format!("{what} not found"))
}

fn bad_request(message: impl Into<String>) -> RestError {
    RestError(StatusCode::BAD_REQUEST, message.into())
}

type Answer = std::result::Result<Json<Value>, RestError>;

/// Serves the REST API on `listener` until the process ends; with `prometheus`, also
/// `/metrics` there.
pub fn serve(
    cluster: Shared,
    listener: std::net::TcpListener,
    prometheus: Option<std::net::TcpListener>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ClusterError::io("cannot start the REST server", e))?;
    runtime.block_on(async move {
        if let Some(p) = prometheus {
            let c = cluster.clone();
            let app = Router::new().route(
                "/metrics",
                get(move || {
                    let c = c.clone();
                    async move { metrics_text(c.prometheus()) }
                }),
            );
            tokio::spawn(serve_std(p, app));
        }
        serve_std(listener, router(cluster)).await
    })
}

/// Serves `app` on a standard listener.
pub async fn serve_std(listener: std::net::TcpListener, app: Router) -> Result<()> {
    listener
        .set_nonblocking(true)
        .map_err(|e| ClusterError::io("listener", e))?;
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|e| ClusterError::io("listener", e))?;
    axum::serve(listener, app)
        .await
        .map_err(|e| ClusterError::io("HTTP server", e))
}

/// A plain-text answer (a log file).
pub fn plain_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// A Prometheus text answer.
pub fn metrics_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The REST API's routes, under `/` and, as Flink serves its API and its CLI asks for it, under
/// `/v1/`.
pub fn router(cluster: Shared) -> Router {
    let api = routes();
    Router::new()
        .merge(api.clone())
        .nest("/v1", api)
        .fallback(|| async { not_found("page") })
        .with_state(cluster)
}

fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(web_ui))
        .route("/index.html", get(web_ui))
        .route("/config", get(config))
        .route("/overview", get(overview))
        .route("/jobs", get(jobs))
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/{id}", get(job_details).patch(job_patch))
        .route("/jobs/{id}/exceptions", get(job_exceptions))
        .route("/jobs/{id}/checkpoints", get(job_checkpoints))
        .route("/jobs/{id}/plan", get(job_plan))
        .route("/jobs/{id}/vertices/{vid}", get(vertex_details))
        .route("/jobs/{id}/savepoints", post(trigger_savepoint))
        .route("/jobs/{id}/savepoints/{tid}", get(operation_status))
        .route("/jobs/{id}/stop", post(stop_job))
        .route("/taskmanagers", get(taskmanagers))
        .route("/taskmanagers/{id}", get(taskmanager))
        .route("/taskmanagers/{id}/logs", get(taskmanager_logs))
        .route("/taskmanagers/{id}/logs/{name}", get(taskmanager_log))
        .route("/jobmanager/config", get(jobmanager_config))
        .route("/jobmanager/logs", get(jobmanager_logs))
        .route("/jobmanager/logs/{name}", get(jobmanager_log))
        .route("/jars", get(jars))
        .route(
            "/jars/upload",
            post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/jars/{id}/run", post(run_jar))
        .route("/blobs/{sha}", get(blob))
}

/// The web UI: one page that reads this API.
async fn web_ui() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("web/index.html"),
    )
        .into_response()
}

fn status_name(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Created => "CREATED",
        JobStatus::Running => "RUNNING",
        JobStatus::Failing => "FAILING",
        JobStatus::Restarting => "RESTARTING",
        JobStatus::Cancelling => "CANCELLING",
        JobStatus::Canceled => "CANCELED",
        JobStatus::Finished => "FINISHED",
        JobStatus::Failed => "FAILED",
    }
}

async fn config(State(c): State<Shared>) -> Json<Value> {
    Json(json!({
        "refresh-interval": 3000,
        "timezone-name": "Coordinated Universal Time",
        "timezone-offset": 0,
        "flink-version": env!("CARGO_PKG_VERSION"),
        "flink-revision": format!("eddy {}", env!("CARGO_PKG_VERSION")),
        "features": {
            "web-submit": true,
            "web-cancel": true,
            "web-rescale": false,
            "web-history": false,
        },
        "rest-address": c.rest_address,
    }))
}

async fn overview(State(c): State<Shared>) -> Json<Value> {
    let (tms, total, free) = {
        let r = c.resources.lock();
        (r.taskmanagers.len(), r.total_slots(), r.free_slots())
    };
    let mut counts = BTreeMap::<&str, u64>::new();
    for (_, e) in c.jobs.lock().iter() {
        let s = e.client.job_status();
        let key = match s {
            JobStatus::Finished => "jobs-finished",
            JobStatus::Canceled => "jobs-cancelled",
            JobStatus::Failed => "jobs-failed",
            _ => "jobs-running",
        };
        *counts.entry(key).or_default() += 1;
    }
    Json(json!({
        "taskmanagers": tms,
        "slots-total": total,
        "slots-available": free,
        "jobs-running": counts.get("jobs-running").copied().unwrap_or(0),
        "jobs-finished": counts.get("jobs-finished").copied().unwrap_or(0),
        "jobs-cancelled": counts.get("jobs-cancelled").copied().unwrap_or(0),
        "jobs-failed": counts.get("jobs-failed").copied().unwrap_or(0),
        "flink-version": env!("CARGO_PKG_VERSION"),
        "flink-commit": "eddy",
    }))
}

async fn jobs(State(c): State<Shared>) -> Json<Value> {
    let jobs: Vec<Value> = c
        .jobs
        .lock()
        .iter()
        .map(|(id, e)| json!({"id": id.to_string(), "status": status_name(e.client.job_status())}))
        .collect();
    Json(json!({ "jobs": jobs }))
}

/// Counts of subtasks per state, with every one of Flink's states present.
fn task_counts<'a>(states: impl IntoIterator<Item = &'a &'static str>) -> Value {
    let mut counts: BTreeMap<&str, u32> = [
        "CREATED",
        "SCHEDULED",
        "DEPLOYING",
        "RUNNING",
        "FINISHED",
        "CANCELING",
        "CANCELED",
        "FAILED",
        "RECONCILING",
        "INITIALIZING",
    ]
    .into_iter()
    .map(|k| (k, 0))
    .collect();
    for s in states {
        *counts.entry(s).or_default() += 1;
    }
    json!(counts)
}

/// A vertex's state from its subtasks' (Flink's aggregation): any failed, cancelled, running,
/// deploying or scheduled subtask decides in that order; finished only when all are.
fn vertex_status(states: &[&'static str]) -> &'static str {
    if states.is_empty() {
        return "CREATED";
    }
    for s in [
        "FAILED",
        "CANCELED",
        "RUNNING",
        "DEPLOYING",
        "SCHEDULED",
        "CREATED",
    ] {
        if states.contains(&s) {
            return s;
        }
    }
    "FINISHED"
}

/// The states of vertex `v`'s subtasks (none before the first deployment).
fn vertex_states(tasks: &super::deployer::TaskStates, v: usize) -> &[&'static str] {
    tasks.states.get(v).map(Vec::as_slice).unwrap_or(&[])
}

fn job_summary(id: &eddy_core::ids::JobId, e: &super::JobEntry) -> Value {
    let status = e.client.job_status();
    let now = eddy_core::time::now_millis();
    let tasks = e.monitor.tasks();
    json!({
        "jid": id.to_string(),
        "name": e.graph.name,
        "state": status_name(status),
        "start-time": e.start_time,
        "end-time": e.client.end_time().unwrap_or(-1),
        "duration": e.client.end_time().unwrap_or(now) - e.start_time,
        "last-modification": e.client.end_time().unwrap_or(e.start_time),
        "tasks": task_counts(tasks.states.iter().flatten()),
    })
}

async fn jobs_overview(State(c): State<Shared>) -> Json<Value> {
    let jobs: Vec<Value> = c
        .jobs
        .lock()
        .iter()
        .rev()
        .map(|(id, e)| job_summary(id, e))
        .collect();
    Json(json!({ "jobs": jobs }))
}

/// The values of metric `name` of vertex `vertex`, from `operators` (any metric of the task
/// when `None`) and from subtask `subtask` (all when `None`).
fn metric_values<'a>(
    all: &'a [WireMetric],
    vertex: &'a str,
    name: &'a str,
    operators: Option<&'a [String]>,
    subtask: Option<&'a str>,
) -> impl Iterator<Item = f64> + 'a {
    let var = |m: &'a WireMetric, k: &str| m.variables.get(k).map(String::as_str);
    all.iter()
        .filter(move |m| {
            m.name == name
                && var(m, "task_id") == Some(vertex)
                && operators.is_none_or(|ops| {
                    var(m, "operator_id").is_some_and(|o| ops.iter().any(|x| x == o))
                })
                && subtask.is_none_or(|s| var(m, "subtask_index") == Some(s))
        })
        .map(|m| m.value)
}

/// A vertex's input operator (its head) and output operators (those with network outputs,
/// or its last one), whose record counts are the vertex's records in and out, as in Flink.
fn io_operators(vertex: &eddy_core::graph::JobVertex) -> (Vec<String>, Vec<String>) {
    let head = vec![vertex.operators[0].operator_id.to_string()];
    let mut outputs: Vec<String> = vertex
        .operators
        .iter()
        .filter(|o| !o.network_outputs.is_empty())
        .map(|o| o.operator_id.to_string())
        .collect();
    if outputs.is_empty()
        && let Some(last) = vertex.operators.last()
    {
        outputs.push(last.operator_id.to_string());
    }
    (head, outputs)
}

/// Records in and out and back pressure of a vertex, or of one of its subtasks.
fn io_metrics(
    all: &[WireMetric],
    vertex: &eddy_core::graph::JobVertex,
    subtask: Option<&str>,
) -> (u64, u64, u64) {
    let vid = vertex.id.to_string();
    let (head, outputs) = io_operators(vertex);
    let read = metric_values(all, &vid, "numRecordsIn", Some(&head), subtask).sum::<f64>();
    let write = metric_values(all, &vid, "numRecordsOut", Some(&outputs), subtask).sum::<f64>();
    let bp =
        metric_values(all, &vid, "backPressuredTimeMsPerSecond", None, subtask).fold(0.0, f64::max);
    (read as u64, write as u64, bp as u64)
}

fn vertex_metrics(graph: &JobGraph, v: usize, metrics: &JobMonitor) -> Value {
    let all = metrics.all();
    let vertex = &graph.vertices[v];
    let vid = vertex.id.to_string();
    let (head, _) = io_operators(vertex);
    let (read, write, bp) = io_metrics(&all, vertex, None);
    let max = |name| metric_values(&all, &vid, name, None, None).fold(0.0, f64::max);
    let watermark =
        metric_values(&all, &vid, "currentInputWatermark", Some(&head), None).reduce(f64::min);
    json!({
        "read-records": read,
        "read-records-complete": true,
        "write-records": write,
        "write-records-complete": true,
        "read-bytes": 0,
        "read-bytes-complete": false,
        "write-bytes": 0,
        "write-bytes-complete": false,
        "accumulated-backpressured-time": bp,
        "accumulated-idle-time": max("idleTimeMsPerSecond") as u64,
        "accumulated-busy-time": max("busyTimeMsPerSecond"),
        "current-input-watermark": watermark.map(|w| w as i64),
    })
}

fn ship_strategy(p: PartitionerKind) -> &'static str {
    match p {
        PartitionerKind::Forward => "FORWARD",
        PartitionerKind::Rebalance => "REBALANCE",
        PartitionerKind::Rescale => "RESCALE",
        PartitionerKind::Shuffle => "SHUFFLE",
        PartitionerKind::Broadcast => "BROADCAST",
        PartitionerKind::KeyGroup => "HASH",
        PartitionerKind::Global => "GLOBAL",
    }
}

/// Flink's job plan: nodes with their inputs.
pub fn plan_json(graph: &JobGraph) -> Value {
    let nodes: Vec<Value> = graph
        .vertices
        .iter()
        .enumerate()
        .map(|(v, vertex)| {
            let inputs: Vec<Value> = graph
                .edges
                .iter()
                .filter(|e| e.target_vertex as usize == v)
                .enumerate()
                .map(|(num, e)| {
                    json!({
                        "num": num,
                        "id": graph.vertices[e.source_vertex as usize].id.to_string(),
                        "ship_strategy": ship_strategy(e.partitioner),
                        "exchange": "pipelined_bounded",
                    })
                })
                .collect();
            let description = vertex
                .operators
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(" -> ");
            json!({
                "id": vertex.id.to_string(),
                "parallelism": vertex.parallelism,
                "operator": "",
                "operator_strategy": "",
                "description": description,
                "inputs": inputs,
                "optimizer_properties": {},
            })
        })
        .collect();
    json!({
        "jid": graph.job_id.to_string(),
        "name": graph.name,
        "type": if matches!(graph.mode, eddy_core::graph::ExecutionMode::Batch) { "BATCH" } else { "STREAMING" },
        "nodes": nodes,
    })
}

async fn job_details(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        let tasks = e.monitor.tasks();
        let now = eddy_core::time::now_millis();
        let mut summary = job_summary(&e.graph.job_id, e);
        let vertices: Vec<Value> = e
            .graph
            .vertices
            .iter()
            .enumerate()
            .map(|(v, vertex)| {
                json!({
                    "id": vertex.id.to_string(),
                    "name": vertex.name,
                    "maxParallelism": vertex.max_parallelism,
                    "parallelism": vertex.parallelism,
                    "status": vertex_status(vertex_states(&tasks, v)),
                    "start-time": e.start_time,
                    "end-time": e.client.end_time().unwrap_or(-1),
                    "duration": e.client.end_time().unwrap_or(now) - e.start_time,
                    "tasks": task_counts(vertex_states(&tasks, v)),
                    "metrics": vertex_metrics(&e.graph, v, &e.monitor),
                })
            })
            .collect();
        let vertex_states: Vec<&'static str> = (0..e.graph.vertices.len())
            .map(|v| vertex_status(vertex_states(&tasks, v)))
            .collect();
        let status_counts = task_counts(&vertex_states);
        if let Value::Object(m) = &mut summary {
            m.insert("isStoppable".into(), json!(false));
            m.insert(
                "job-type".into(),
                json!(
                    if matches!(e.graph.mode, eddy_core::graph::ExecutionMode::Batch) {
                        "BATCH"
                    } else {
                        "STREAMING"
                    }
                ),
            );
            m.insert("now".into(), json!(now));
            m.insert("maxParallelism".into(), json!(-1));
            m.insert("vertices".into(), json!(vertices));
            m.insert("status-counts".into(), json!(status_counts));
            m.insert("plan".into(), plan_json(&e.graph));
        }
        Json(summary)
    })
    .ok_or_else(|| not_found("job"))
}

async fn job_plan(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| Json(json!({ "plan": plan_json(&e.graph) })))
        .ok_or_else(|| not_found("job"))
}

async fn vertex_details(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer {
    c.job(&id, |e| {
        let tasks = e.monitor.tasks();
        let v = e
            .graph
            .vertices
            .iter()
            .position(|v| v.id.to_string() == vid)?;
        let vertex = &e.graph.vertices[v];
        let all = e.monitor.all();
        let vid_s = vertex.id.to_string();
        let subtasks: Vec<Value> = (0..vertex.parallelism)
            .map(|s| {
                let (read, write, bp) = io_metrics(&all, vertex, Some(&s.to_string()));
                json!({
                    "subtask": s,
                    "status": vertex_states(&tasks, v).get(s as usize).copied().unwrap_or("CREATED"),
                    "attempt": tasks.attempt,
                    "metrics": {
                        "read-records": read,
                        "write-records": write,
                        "accumulated-backpressured-time": bp,
                    },
                })
            })
            .collect();
        Some(Json(json!({
            "id": vid_s,
            "name": vertex.name,
            "parallelism": vertex.parallelism,
            "maxParallelism": vertex.max_parallelism,
            "now": eddy_core::time::now_millis(),
            "subtasks": subtasks,
            "metrics": vertex_metrics(&e.graph, v, &e.monitor),
        })))
    })
    .flatten()
    .ok_or_else(|| not_found("job or vertex"))
}

async fn job_exceptions(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        let mut entries: Vec<Value> = e
            .client
            .exceptions()
            .into_iter()
            .map(|x| json!({"exceptionName": "RuntimeError", "stacktrace": x.message, "timestamp": x.timestamp}))
            .collect();
        let root = match e.client.wait_timeout(std::time::Duration::ZERO) {
            Some(Err(err)) => err.cause().map(|c| c.to_string()),
            _ => None,
        };
        if let Some(r) = &root
            && entries.last().and_then(|l| l["stacktrace"].as_str()) != Some(r)
        {
            entries.push(json!({"exceptionName": "RuntimeError", "stacktrace": r, "timestamp": eddy_core::time::now_millis()}));
        }
        let latest = entries.last().cloned();
        entries.reverse();
        Json(json!({
            "root-exception": latest.as_ref().map(|l| l["stacktrace"].clone()),
            "timestamp": latest.as_ref().map(|l| l["timestamp"].clone()),
            "all-exceptions": [],
            "truncated": false,
            "exceptionHistory": { "entries": entries, "truncated": false },
        }))
    })
    .ok_or_else(|| not_found("job"))
}

async fn job_checkpoints(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        let s = e.client.checkpoint_statistics();
        let history: Vec<Value> = s
            .history
            .iter()
            .rev()
            .map(|h| {
                json!({
                    "id": h.id,
                    "status": h.status,
                    "is_savepoint": h.is_savepoint,
                    "trigger_timestamp": h.trigger_timestamp,
                    "end_to_end_duration": h.end_to_end_duration_ms,
                    "state_size": h.state_size,
                    "checkpointed_size": h.state_size,
                    "num_subtasks": h.num_subtasks,
                    "num_acknowledged_subtasks": h.num_acknowledged_subtasks,
                    "external_path": h.external_path,
                    "failure_message": h.failure_message,
                })
            })
            .collect();
        Json(json!({
            "counts": {
                "restored": s.restored,
                "total": s.triggered,
                "in_progress": s.in_progress,
                "completed": s.completed,
                "failed": s.failed,
            },
            "latest": {
                "completed": s.latest_completed,
                "failed": s.latest_failed,
                "restored": s.latest_restored.map(|(id, path)| json!({"id": id, "external_path": path})),
                "savepoint": Value::Null,
            },
            "history": history,
        }))
    })
    .ok_or_else(|| not_found("job"))
}

#[derive(Deserialize)]
struct PatchQuery {
    mode: Option<String>,
}

async fn job_patch(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<PatchQuery>,
) -> std::result::Result<(StatusCode, Json<Value>), RestError> {
    match q.mode.as_deref() {
        None | Some("cancel") => {}
        Some(other) => {
            return Err(bad_request(format!(
                "unknown mode '{other}'; use mode=cancel"
            )));
        }
    }
    c.job(&id, |e| e.client.cancel())
        .ok_or_else(|| not_found("job"))?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

#[derive(Deserialize, Default)]
struct SavepointRequest {
    #[serde(rename = "target-directory", alias = "targetDirectory")]
    target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    cancel_job: bool,
    #[serde(default)]
    drain: bool,
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(
    body: &str,
) -> std::result::Result<T, RestError> {
    if body.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(body).map_err(|e| bad_request(format!("malformed request body: {e}")))
}

fn start_operation(
    c: &Shared,
    id: &str,
    run: impl FnOnce(&eddy_runtime::executor::JobClient) -> eddy_runtime::Result<String>
    + Send
    + 'static,
) -> std::result::Result<(StatusCode, Json<Value>), RestError> {
    let client = c
        .job(id, |e| e.client.clone())
        .ok_or_else(|| not_found("job"))?;
    let trigger = uuid::Uuid::new_v4().simple().to_string();
    c.operations
        .lock()
        .insert(trigger.clone(), Operation::InProgress);
    let c2 = c.clone();
    let t2 = trigger.clone();
    std::thread::spawn(move || {
        let result = match run(&client) {
            Ok(path) => Operation::Completed(path),
            Err(e) => Operation::Failed(e.to_string()),
        };
        c2.operations.lock().insert(t2, result);
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))))
}

async fn trigger_savepoint(
    State(c): State<Shared>,
    Path(id): Path<String>,
    body: String,
) -> std::result::Result<(StatusCode, Json<Value>), RestError> {
    let req: SavepointRequest = parse_body(&body)?;
    let dir = req.target_directory;
    if req.cancel_job {
        start_operation(&c, &id, move |client| {
            client.stop_with_savepoint(false, dir.as_deref())
        })
    } else {
        start_operation(&c, &id, move |client| {
            client.trigger_savepoint(dir.as_deref())
        })
    }
}

async fn stop_job(
    State(c): State<Shared>,
    Path(id): Path<String>,
    body: String,
) -> std::result::Result<(StatusCode, Json<Value>), RestError> {
    let req: SavepointRequest = parse_body(&body)?;
    let dir = req.target_directory;
    let drain = req.drain;
    start_operation(&c, &id, move |client| {
        client.stop_with_savepoint(drain, dir.as_deref())
    })
}

async fn operation_status(
    State(c): State<Shared>,
    Path((_id, tid)): Path<(String, String)>,
) -> Answer {
    let op = c
        .operations
        .lock()
        .get(&tid)
        .cloned()
        .ok_or_else(|| not_found("trigger"))?;
    Ok(Json(match op {
        Operation::InProgress => json!({"status": {"id": "IN_PROGRESS"}}),
        Operation::Completed(location) => {
            json!({"status": {"id": "COMPLETED"}, "operation": {"location": location}})
        }
        Operation::Failed(cause) => json!({
            "status": {"id": "COMPLETED"},
            "operation": {"failure-cause": {"class": "RuntimeError", "stack-trace": cause}},
        }),
    }))
}

fn taskmanager_json(id: &str, t: &super::TaskManagerInfo) -> Value {
    json!({
        "id": id,
        "path": format!("{}:{}", t.registration.host, t.registration.pid),
        "dataPort": -1,
        "timeSinceLastHeartbeat": eddy_core::time::now_millis() - t.last_heartbeat.elapsed().as_millis() as i64,
        "slotsNumber": t.registration.slots,
        "freeSlots": t.free_slots,
        "totalResource": {},
        "freeResource": {},
        "hardware": {
            "cpuCores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "physicalMemory": -1,
            "freeMemory": -1,
            "managedMemory": -1,
        },
        "memoryConfiguration": {},
        "metrics": { "rssBytes": t.rss_bytes },
        "registeredAt": t.registered_at,
        "prometheusPort": t.registration.prometheus_port,
        "logFile": t.registration.log_file,
    })
}

async fn taskmanagers(State(c): State<Shared>) -> Json<Value> {
    let r = c.resources.lock();
    let tms: Vec<Value> = r
        .taskmanagers
        .iter()
        .map(|(id, t)| taskmanager_json(id, t))
        .collect();
    Json(json!({ "taskmanagers": tms }))
}

async fn taskmanager(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    let r = c.resources.lock();
    r.taskmanagers
        .get(&id)
        .map(|t| Json(taskmanager_json(&id, t)))
        .ok_or_else(|| not_found("TaskManager"))
}

/// Fetches `path` from TaskManager `id`'s own HTTP endpoint.
async fn from_taskmanager(
    c: &Shared,
    id: &str,
    path: String,
) -> std::result::Result<reqwest::Response, RestError> {
    let base = {
        let r = c.resources.lock();
        let t = r
            .taskmanagers
            .get(id)
            .ok_or_else(|| not_found("TaskManager"))?;
        let port = t.registration.prometheus_port.ok_or_else(|| {
            RestError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "TaskManager {id} serves no HTTP endpoint (no free metrics.reporter.prom.port)"
                ),
            )
        })?;
        format!("http://{}:{port}", t.registration.host)
    };
    reqwest::get(format!("{base}{path}"))
        .await
        .map_err(|e| RestError(StatusCode::BAD_GATEWAY, format!("TaskManager {id}: {e}")))
}

async fn taskmanager_logs(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    let r = from_taskmanager(&c, &id, "/logs".into()).await?;
    let v: Value = r
        .json()
        .await
        .map_err(|e| RestError(StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok(Json(v))
}

async fn taskmanager_log(
    State(c): State<Shared>,
    Path((id, name)): Path<(String, String)>,
) -> std::result::Result<Response, RestError> {
    if !crate::is_safe_file_name(&name) {
        return Err(bad_request("malformed log file name"));
    }
    let r = from_taskmanager(&c, &id, format!("/logs/{name}")).await?;
    if !r.status().is_success() {
        return Err(not_found("log file"));
    }
    let text = r
        .text()
        .await
        .map_err(|e| RestError(StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok(plain_text(text))
}

async fn jobmanager_config(State(c): State<Shared>) -> Json<Value> {
    let entries: Vec<Value> = c
        .config
        .to_map()
        .into_iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    Json(json!(entries))
}

async fn jobmanager_logs(State(c): State<Shared>) -> Json<Value> {
    let logs: Vec<Value> = c
        .log_file
        .iter()
        .filter_map(|p| {
            let size = std::fs::metadata(p).ok()?.len();
            let name = p.file_name()?.to_string_lossy().to_string();
            Some(json!({"name": name, "size": size}))
        })
        .collect();
    Json(json!({ "logs": logs }))
}

async fn jobmanager_log(
    State(c): State<Shared>,
    Path(name): Path<String>,
) -> std::result::Result<Response, RestError> {
    // Only the JobManager's own log file, found by its name, is served.
    let path = c
        .log_file
        .clone()
        .filter(|p| p.file_name().is_some_and(|f| f.to_string_lossy() == name))
        .ok_or_else(|| not_found("log file"))?;
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| RestError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(plain_text(text))
}

async fn jars(State(c): State<Shared>) -> Json<Value> {
    let files: Vec<Value> = c
        .jars
        .lock()
        .values()
        .map(|j| json!({"id": j.id, "name": j.name, "uploaded": j.uploaded, "entry": []}))
        .collect();
    Json(json!({ "address": c.rest_address, "files": files }))
}

async fn upload(State(c): State<Shared>, mut form: Multipart) -> Answer {
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad_request(format!("malformed upload: {e}")))?
    {
        if field.name() != Some("jarfile") {
            continue;
        }
        let name = field.file_name().unwrap_or("program").to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad_request(format!("malformed upload: {e}")))?;
        if bytes.is_empty() {
            return Err(bad_request("the uploaded program is empty"));
        }
        let c = c.clone();
        let jar = tokio::task::spawn_blocking(move || c.store_jar(&name, &bytes))
            .await
            .map_err(|e| RestError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| RestError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        return Ok(Json(json!({"filename": jar.id, "status": "success"})));
    }
    Err(bad_request("no 'jarfile' field in the upload"))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RunBody {
    program_args_list: Option<Vec<String>>,
    program_args: Option<String>,
    parallelism: Option<u32>,
    savepoint_path: Option<String>,
    #[serde(default)]
    allow_non_restored_state: bool,
}

async fn run_jar(State(c): State<Shared>, Path(id): Path<String>, body: String) -> Answer {
    let body: RunBody = parse_body(&body)?;
    if body.parallelism == Some(0) {
        return Err(bad_request("parallelism must be at least 1"));
    }
    let args = match (body.program_args_list, body.program_args) {
        (Some(list), _) => list,
        (None, Some(s)) => s.split_whitespace().map(str::to_string).collect(),
        (None, None) => Vec::new(),
    };
    let request = RunRequest {
        args,
        parallelism: body.parallelism,
        savepoint_path: body.savepoint_path,
        allow_non_restored_state: body.allow_non_restored_state,
    };
    let result = tokio::task::spawn_blocking(move || c.run_jar(&id, request))
        .await
        .map_err(|e| RestError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match result {
        Ok(job_id) => Ok(Json(json!({"jobid": job_id.to_string()}))),
        Err(ClusterError::Invalid(m)) => Err(bad_request(m)),
        Err(e) => Err(RestError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn blob(
    State(c): State<Shared>,
    Path(sha): Path<String>,
) -> std::result::Result<Response, RestError> {
    if !crate::is_sha256(&sha) {
        return Err(bad_request("a blob is named by its SHA-256"));
    }
    let path = c.work_dir.join("blobs").join(&sha);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| not_found("blob"))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
