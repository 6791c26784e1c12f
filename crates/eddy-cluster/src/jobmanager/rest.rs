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
use axum::routing::{get, patch, post};
use eddy_core::config::options;
use eddy_core::graph::{JobGraph, PartitionerKind};
use eddy_runtime::executor::JobStatus;
use eddy_runtime::executor::remote::WireMetric;
use serde::Deserialize;
use serde_json::{Value, json};

use super::rest_applications as applications;
use super::rest_checkpoints as checkpoints;
use super::rest_metrics as metrics;
use super::rest_operations as operations;
use super::rest_process as process;
use super::{Cluster, RunRequest};
use crate::{ClusterError, Result};

/// The largest program upload accepted.
const MAX_UPLOAD: usize = 1 << 30;

pub(super) type Shared = Arc<Cluster>;

/// An error answer: `{"errors": [message]}` with a status.
pub struct RestError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "errors": [self.1] }))).into_response()
    }
}

/// A 404 answer naming what was not found.
pub(crate) fn not_found(what: &str) -> RestError {
    RestError(StatusCode::NOT_FOUND, format!("{what} not found"))
}

pub(super) fn bad_request(message: impl Into<String>) -> RestError {
    RestError(StatusCode::BAD_REQUEST, message.into())
}

/// A 500 answer naming what went wrong.
pub(super) fn internal(e: impl std::fmt::Display) -> RestError {
    RestError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub(super) type Answer = std::result::Result<Json<Value>, RestError>;

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
///
/// Other paths are Eddy's web UI, or, with `web.dashboard.dir`, that directory's files (Flink's
/// dashboard, which reads this API by relative paths, so it is served from `/`).
pub fn router(cluster: Shared) -> Router {
    let api = routes();
    let app = Router::new().merge(api.clone()).nest("/v1", api);
    let app = match cluster.config.get_optional(&options::WEB_DASHBOARD_DIR) {
        Ok(Some(dir)) => app.fallback_service(tower_http::services::ServeDir::new(dir).fallback(
            axum::handler::HandlerWithoutStateExt::into_service(page_not_found),
        )),
        _ => app
            .route("/", get(web_ui))
            .route("/index.html", get(web_ui))
            .fallback(page_not_found),
    };
    app.layer(axum::middleware::map_response(errors_as_json))
        .with_state(cluster)
}

async fn page_not_found() -> RestError {
    not_found("page")
}

/// Answers every error in Flink's shape, also those axum gives itself (a body over the size
/// limit, a malformed path or query): `{"errors": [text]}` with the same status.
async fn errors_as_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).trim().to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    RestError(status, text).into_response()
}

fn routes() -> Router<Shared> {
    Router::new()
        .route("/config", get(config))
        .route("/overview", get(overview))
        .route(
            "/jobs",
            get(jobs)
                .post(submit_job_graph)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/jobs/overview", get(jobs_overview))
        .route("/jobs/metrics", get(metrics::aggregated_job_metrics))
        .route("/jobs/{id}/metrics", get(metrics::job_metrics))
        .route(
            "/applications/overview",
            get(applications::applications_overview),
        )
        .route("/applications/{id}", get(applications::application_details))
        .route(
            "/applications/{id}/jobmanager/config",
            get(job_jobmanager_config),
        )
        .route(
            "/applications/{id}/exceptions",
            get(applications::application_exceptions),
        )
        .route(
            "/applications/{id}/cancel",
            post(applications::cancel_application),
        )
        .route("/jobs/{id}", get(job_details).patch(job_patch))
        .route("/jobs/{id}/exceptions", get(job_exceptions))
        .route("/jobs/{id}/yarn-cancel", get(cancel_job))
        .route("/jobs/{id}/status", get(job_status))
        .route("/jobs/{id}/execution-result", get(execution_result))
        .route("/jobs/{id}/config", get(job_config))
        .route("/jobs/{id}/accumulators", get(job_accumulators))
        .route("/jobs/{id}/jobmanager/config", get(job_jobmanager_config))
        .route(
            "/jobs/{id}/jobmanager/environment",
            get(jobmanager_environment),
        )
        .route("/jobs/{id}/jobmanager/log-url", get(jobmanager_log_url))
        .route(
            "/jobs/{id}/taskmanagers/{tm}/log-url",
            get(taskmanager_log_url),
        )
        .route(
            "/jobs/{id}/resource-requirements",
            get(resource_requirements),
        )
        .route(
            "/jobs/{id}/checkpoints/config",
            get(checkpoints::checkpoint_config),
        )
        .route(
            "/jobs/{id}/checkpoints/details/{cid}",
            get(checkpoints::checkpoint_details),
        )
        .route(
            "/jobs/{id}/checkpoints/details/{cid}/subtasks/{vid}",
            get(checkpoints::checkpoint_subtasks),
        )
        .route("/jobs/{id}/plan", get(job_plan))
        .route("/jobs/{id}/vertices/{vid}", get(vertex_details))
        .route(
            "/jobs/{id}/vertices/{vid}/metrics",
            get(metrics::vertex_metrics),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/subtasks/metrics",
            get(metrics::aggregated_subtask_metrics),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/subtasks/{index}",
            get(subtask_details),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/subtasks/{index}/metrics",
            get(metrics::subtask_metrics),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/watermarks",
            get(metrics::watermarks),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/backpressure",
            get(metrics::backpressure),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/accumulators",
            get(vertex_accumulators),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/subtasks/accumulators",
            get(subtask_accumulators),
        )
        .route("/jobs/{id}/vertices/{vid}/subtasktimes", get(subtask_times))
        .route(
            "/jobs/{id}/vertices/{vid}/subtasks/{index}/attempts/{attempt}",
            get(subtask_attempt),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/subtasks/{index}/attempts/{attempt}/accumulators",
            get(subtask_attempt_accumulators),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/jm-operator-metrics",
            get(jobmanager_operator_metrics),
        )
        .route("/datasets", get(datasets))
        .route(
            "/jobs/{id}/vertices/{vid}/flamegraph",
            get(process::flame_graph),
        )
        .route(
            "/jobs/{id}/vertices/{vid}/taskmanagers",
            get(vertex_taskmanagers),
        )
        .route("/jobs/{id}/savepoints", post(operations::trigger_savepoint))
        .route(
            "/jobs/{id}/savepoints/{tid}",
            get(operations::savepoint_status),
        )
        .route("/jobs/{id}/stop", post(operations::stop_job))
        .route(
            "/jobs/{id}/checkpoints",
            get(checkpoints::job_checkpoints).post(operations::trigger_checkpoint),
        )
        .route(
            "/jobs/{id}/checkpoints/{tid}",
            get(operations::checkpoint_status),
        )
        .route("/jobs/{id}/rescaling", patch(operations::rescale))
        .route("/savepoint-disposal", post(operations::dispose_savepoint))
        .route(
            "/savepoint-disposal/{tid}",
            get(operations::disposal_status),
        )
        .route("/taskmanagers", get(taskmanagers))
        .route(
            "/taskmanagers/metrics",
            get(metrics::aggregated_taskmanager_metrics),
        )
        .route("/taskmanagers/{id}", get(taskmanager))
        .route(
            "/taskmanagers/{id}/metrics",
            get(metrics::taskmanager_metrics),
        )
        .route("/taskmanagers/{id}/logs", get(process::taskmanager_logs))
        .route(
            "/taskmanagers/{id}/logs/{name}",
            get(process::taskmanager_log),
        )
        .route("/taskmanagers/{id}/log", get(process::taskmanager_main_log))
        .route(
            "/taskmanagers/{id}/stdout",
            get(process::taskmanager_stdout),
        )
        .route(
            "/taskmanagers/{id}/thread-dump",
            get(process::taskmanager_thread_dump),
        )
        .route(
            "/taskmanagers/{id}/profiler",
            get(process::profiling_list).post(process::no_profiler),
        )
        .route("/jobmanager/config", get(jobmanager_config))
        .route("/jobmanager/environment", get(jobmanager_environment))
        .route("/jobmanager/metrics", get(metrics::jobmanager_metrics))
        .route("/jobmanager/logs", get(process::jobmanager_logs))
        .route("/jobmanager/logs/{name}", get(process::jobmanager_log))
        .route("/jobmanager/log", get(process::jobmanager_main_log))
        .route("/jobmanager/stdout", get(process::jobmanager_stdout))
        .route(
            "/jobmanager/thread-dump",
            get(process::jobmanager_thread_dump),
        )
        .route(
            "/jobmanager/profiler",
            get(process::profiling_list).post(process::no_profiler),
        )
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

pub(super) fn status_name(s: JobStatus) -> &'static str {
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

/// `POST /jobs`, where Flink's client submits a JobGraph it built from a Flink program: Eddy
/// cannot run one, and says so (the body is read, so the client sees the answer).
async fn submit_job_graph(_body: axum::body::Bytes) -> RestError {
    bad_request(
        "this is an Eddy cluster: it runs Eddy programs, not JobGraphs built by Flink's \
         client from Flink jars. Submit an Eddy program with `eddy run PROGRAM`, or upload it \
         with POST /jars/upload and start it with POST /jars/:id/run",
    )
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

/// Flink's execution states, in its order.
const EXECUTION_STATES: [&str; 10] = [
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
];

/// Counts of subtasks per state, with every one of Flink's states present.
fn task_counts<'a>(states: impl IntoIterator<Item = &'a &'static str>) -> Value {
    let mut counts: BTreeMap<&str, u32> = EXECUTION_STATES.into_iter().map(|k| (k, 0)).collect();
    for s in states {
        *counts.entry(s).or_default() += 1;
    }
    json!(counts)
}

/// The job overview's task counts: lower-case states and the total, as Flink's `JobDetails`.
fn overview_task_counts<'a>(states: impl IntoIterator<Item = &'a &'static str>) -> Value {
    let mut counts: BTreeMap<String, u32> = EXECUTION_STATES
        .into_iter()
        .map(|k| (k.to_lowercase(), 0))
        .collect();
    let mut total = 0;
    for s in states {
        *counts.entry(s.to_lowercase()).or_default() += 1;
        total += 1;
    }
    counts.insert("total".into(), total);
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

/// A job's start, end (-1 while it runs) and duration, in ms.
pub(super) fn job_times(e: &super::JobEntry) -> (i64, i64, i64) {
    let end = e.client.end_time();
    let duration = end.unwrap_or_else(eddy_core::time::now_millis) - e.start_time;
    (e.start_time, end.unwrap_or(-1), duration)
}

fn job_type(graph: &JobGraph) -> &'static str {
    if matches!(graph.mode, eddy_core::graph::ExecutionMode::Batch) {
        "BATCH"
    } else {
        "STREAMING"
    }
}

pub(super) fn job_summary(id: &eddy_core::ids::JobId, e: &super::JobEntry) -> Value {
    let (start, end, duration) = job_times(e);
    let tasks = e.monitor.tasks();
    json!({
        "jid": id.to_string(),
        "name": e.graph.name,
        "jobType": job_type(&e.graph),
        "schedulerType": "Default",
        "state": status_name(e.client.job_status()),
        "start-time": start,
        "end-time": end,
        "duration": duration,
        "last-modification": if end >= 0 { end } else { start },
        "tasks": overview_task_counts(tasks.states.iter().flatten()),
        "pending-operators": 0,
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
/// when `None`) and from `subtasks` (all when `None`).
fn metric_values<'a>(
    all: &'a [WireMetric],
    vertex: &'a str,
    name: &'a str,
    operators: Option<&'a [String]>,
    subtasks: Option<&'a [u32]>,
) -> impl Iterator<Item = f64> + 'a {
    let var = |m: &'a WireMetric, k: &str| m.variables.get(k).map(String::as_str);
    all.iter()
        .filter(move |m| {
            m.name == name
                && var(m, "task_id") == Some(vertex)
                && operators.is_none_or(|ops| {
                    var(m, "operator_id").is_some_and(|o| ops.iter().any(|x| x == o))
                })
                && subtasks.is_none_or(|s| {
                    var(m, "subtask_index")
                        .and_then(|i| i.parse().ok())
                        .is_some_and(|i| s.contains(&i))
                })
        })
        .map(|m| m.value)
}

/// A vertex's input operator (its head) and output operators (those with network outputs,
/// or its last one), whose record counts are the vertex's records in and out, as in Flink.
pub(super) fn io_operators(vertex: &eddy_core::graph::JobVertex) -> (Vec<String>, Vec<String>) {
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

/// Flink's `IOMetricsInfo` of a vertex, or of some of its subtasks: records in (its head
/// operator's) and out (its output operators'), and the time spent back-pressured, idle and
/// busy since the subtasks started; also, for Eddy's own page, the highest back-pressured time
/// per second of a subtask now. Bytes are those sent and received on channels between
/// processes: an exchange inside one process hands records over without serializing them.
fn io_metrics(
    all: &[WireMetric],
    vertex: &eddy_core::graph::JobVertex,
    subtasks: Option<&[u32]>,
) -> Value {
    let vid = vertex.id.to_string();
    let (head, outputs) = io_operators(vertex);
    let read = metric_values(all, &vid, "numRecordsIn", Some(&head), subtasks).sum::<f64>();
    let write = metric_values(all, &vid, "numRecordsOut", Some(&outputs), subtasks).sum::<f64>();
    let sum = |name| metric_values(all, &vid, name, None, subtasks).sum::<f64>() as u64;
    let max = |name| metric_values(all, &vid, name, None, subtasks).fold(0.0, f64::max);
    let watermark =
        metric_values(all, &vid, "currentInputWatermark", Some(&head), subtasks).reduce(f64::min);
    json!({
        "read-records": read as u64,
        "read-records-complete": true,
        "write-records": write as u64,
        "write-records-complete": true,
        "read-bytes": sum("numBytesIn"),
        "read-bytes-complete": true,
        "write-bytes": sum("numBytesOut"),
        "write-bytes-complete": true,
        "accumulated-backpressured-time": sum("accumulatedBackPressuredTimeMs"),
        "accumulated-idle-time": sum("accumulatedIdleTimeMs"),
        "accumulated-busy-time": sum("accumulatedBusyTimeMs") as f64,
        "current-input-watermark": watermark.map(|w| w as i64),
        "backpressured-ms-per-second": max("backPressuredTimeMsPerSecond") as u64,
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

/// A slot sharing group's id, as Flink writes one: 32 hex digits (from its name).
fn slot_sharing_group_id(name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The job's status timestamps as Flink reports them (0 for states not entered or not known).
fn status_timestamps(e: &super::JobEntry) -> Value {
    let status = status_name(e.client.job_status());
    let mut t: BTreeMap<&str, i64> = [
        "INITIALIZING",
        "CREATED",
        "RUNNING",
        "FAILING",
        "CANCELLING",
        "CANCELED",
        "FINISHED",
        "RESTARTING",
        "SUSPENDED",
        "FAILED",
        "RECONCILING",
    ]
    .into_iter()
    .map(|s| (s, 0))
    .collect();
    t.insert("INITIALIZING", e.start_time);
    t.insert("CREATED", e.start_time);
    if let Some(end) = e.client.end_time() {
        t.insert(status, end);
    }
    json!(t)
}

async fn job_details(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        let tasks = e.monitor.tasks();
        let all = e.monitor.all();
        let now = eddy_core::time::now_millis();
        let (start, end, duration) = job_times(e);
        let status = e.client.job_status();
        let vertices: Vec<Value> = e
            .graph
            .vertices
            .iter()
            .enumerate()
            .map(|(v, vertex)| {
                json!({
                    "id": vertex.id.to_string(),
                    "slotSharingGroupId": slot_sharing_group_id(&vertex.slot_sharing_group),
                    "name": vertex.name,
                    "maxParallelism": vertex.max_parallelism,
                    "parallelism": vertex.parallelism,
                    "status": vertex_status(vertex_states(&tasks, v)),
                    "start-time": start,
                    "end-time": end,
                    "duration": duration,
                    "tasks": task_counts(vertex_states(&tasks, v)),
                    "metrics": io_metrics(&all, vertex, None),
                })
            })
            .collect();
        let vertex_states: Vec<&'static str> = (0..e.graph.vertices.len())
            .map(|v| vertex_status(vertex_states(&tasks, v)))
            .collect();
        let streaming = !matches!(e.graph.mode, eddy_core::graph::ExecutionMode::Batch);
        Json(json!({
            "jid": e.graph.job_id.to_string(),
            "application-id": e.graph.job_id.to_string(),
            "name": e.graph.name,
            "schedulerType": "Default",
            "isStoppable": streaming && status == JobStatus::Running,
            "state": status_name(status),
            "job-type": job_type(&e.graph),
            "start-time": start,
            "end-time": end,
            "duration": duration,
            "maxParallelism": -1,
            "now": now,
            "timestamps": status_timestamps(e),
            "vertices": vertices,
            "status-counts": task_counts(&vertex_states),
            "plan": plan_json(&e.graph),
            "pending-operators": 0,
        }))
    })
    .ok_or_else(|| not_found("job"))
}

async fn job_plan(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| Json(json!({ "plan": plan_json(&e.graph) })))
        .ok_or_else(|| not_found("job"))
}

async fn job_status(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        Json(json!({"status": status_name(e.client.job_status())}))
    })
    .ok_or_else(|| not_found("job"))
}

/// `GET /jobs/:id/execution-result`, which Flink's CLI polls for an attached job: in progress,
/// or the job's end (`SUCCEEDED`, `FAILED`, `CANCELED`) and run time. Accumulator values and
/// a failure's cause are Java-serialized objects in Flink's answer, which a native process
/// cannot write: the accumulators are left out and the cause is in `/jobs/:id/exceptions`.
async fn execution_result(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        let status = e.client.job_status();
        if !status.is_terminal() {
            return Json(json!({"status": {"id": "IN_PROGRESS"}}));
        }
        let application_status = match status {
            JobStatus::Finished => "SUCCEEDED",
            JobStatus::Canceled => "CANCELED",
            _ => "FAILED",
        };
        let (_, _, duration) = job_times(e);
        Json(json!({
            "status": {"id": "COMPLETED"},
            "job-execution-result": {
                "id": e.graph.job_id.to_string(),
                "application-status": application_status,
                "accumulator-results": {},
                "net-runtime": duration,
            },
        }))
    })
    .ok_or_else(|| not_found("job"))
}

async fn job_config(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        let conf = e.graph.config.to_map();
        let parallelism = e
            .graph
            .vertices
            .iter()
            .map(|v| v.parallelism)
            .max()
            .unwrap_or(1);
        let restart = conf
            .get("restart-strategy.type")
            .cloned()
            .unwrap_or_else(|| "Cluster level default restart strategy".into());
        Json(json!({
            "jid": e.graph.job_id.to_string(),
            "name": e.graph.name,
            "execution-config": {
                "restart-strategy": restart,
                "job-parallelism": parallelism,
                "object-reuse-mode": true,
                "user-config": conf,
            },
        }))
    })
    .ok_or_else(|| not_found("job"))
}

async fn job_accumulators(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |_| {
        Json(json!({
            "job-accumulators": [],
            "user-task-accumulators": [],
            "serialized-user-task-accumulators": {},
        }))
    })
    .ok_or_else(|| not_found("job"))
}

/// The configuration a job runs with: the JobManager's, overridden by the job's own.
async fn job_jobmanager_config(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    let job = c
        .job(&id, |e| e.graph.config.to_map())
        .ok_or_else(|| not_found("job"))?;
    let mut all = c.config.to_map();
    all.extend(job);
    Ok(Json(json!(
        all.into_iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect::<Vec<_>>()
    )))
}

/// The JobManager's environment, in Flink's shape: the runtime, its command line and its
/// program (Eddy has no class path; the program binary stands in for it).
async fn jobmanager_environment() -> Json<Value> {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Json(json!({
        "jvm": {
            "version": format!("Eddy {} (native)", env!("CARGO_PKG_VERSION")),
            "arch": std::env::consts::ARCH,
            "options": std::env::args().skip(1).collect::<Vec<_>>(),
        },
        "classpath": [exe],
    }))
}

async fn jobmanager_log_url(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |_| ()).ok_or_else(|| not_found("job"))?;
    Ok(Json(
        json!({"url": format!("{}/#/job-manager/logs", c.rest_address)}),
    ))
}

async fn taskmanager_log_url(
    State(c): State<Shared>,
    Path((id, tm)): Path<(String, String)>,
) -> Answer {
    c.job(&id, |_| ()).ok_or_else(|| not_found("job"))?;
    if !c.resources.lock().taskmanagers.contains_key(&tm) {
        return Err(not_found("TaskManager"));
    }
    Ok(Json(
        json!({"url": format!("{}/#/task-manager/{tm}/logs", c.rest_address)}),
    ))
}

/// Each vertex's parallelism bounds: fixed, as Eddy rescales only through savepoints.
async fn resource_requirements(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        let r: serde_json::Map<String, Value> = e
            .graph
            .vertices
            .iter()
            .map(|v| {
                let p = json!({"lowerBound": v.parallelism, "upperBound": v.parallelism});
                (v.id.to_string(), json!({ "parallelism": p }))
            })
            .collect();
        Json(Value::Object(r))
    })
    .ok_or_else(|| not_found("job"))
}

/// The states whose durations Flink reports per subtask.
const DURATION_STATES: [&str; 5] = [
    "CREATED",
    "SCHEDULED",
    "DEPLOYING",
    "INITIALIZING",
    "RUNNING",
];

/// What the vertex and subtask endpoints need of a job's vertex.
pub(super) struct VertexView<'a> {
    e: &'a super::JobEntry,
    v: usize,
    tasks: super::deployer::TaskStates,
    pub(super) all: Vec<WireMetric>,
}

impl VertexView<'_> {
    pub(super) fn vertex(&self) -> &eddy_core::graph::JobVertex {
        &self.e.graph.vertices[self.v]
    }

    fn state(&self, s: u32) -> &'static str {
        vertex_states(&self.tasks, self.v)
            .get(s as usize)
            .copied()
            .unwrap_or("CREATED")
    }

    /// The TaskManager running subtask `s`, from whose worker its metrics come.
    fn taskmanager(&self, s: u32) -> String {
        let vid = self.vertex().id.to_string();
        self.all
            .iter()
            .find(|m| {
                m.variables.get("task_id") == Some(&vid)
                    && m.variables.get("subtask_index").map(String::as_str) == Some(&s.to_string())
            })
            .and_then(|m| m.variables.get("tm_id").cloned())
            .unwrap_or_default()
    }

    /// Time spent per state: Eddy records no state changes of subtasks, so the whole time since
    /// the job started counts for the state the subtask is in.
    fn status_duration(&self, s: u32) -> BTreeMap<&'static str, i64> {
        let (_, _, duration) = job_times(self.e);
        let mut d: BTreeMap<&'static str, i64> =
            DURATION_STATES.into_iter().map(|k| (k, 0)).collect();
        d.insert(self.state(s), duration);
        d
    }

    /// Flink's `AggregatedTaskDetailsInfo` over `subtasks`: statistics of their I/O metrics
    /// and state durations.
    fn aggregated(&self, subtasks: &[u32]) -> Value {
        let stats = |values: Vec<f64>| {
            let mut v = values;
            v.sort_by(f64::total_cmp);
            let n = v.len().max(1);
            let at = |q: f64| {
                v.get(((q * n as f64).ceil() as usize).clamp(1, n) - 1)
                    .copied()
                    .unwrap_or(0.0) as i64
            };
            json!({
                "min": at(0.0), "max": at(1.0), "avg": (v.iter().sum::<f64>() / n as f64) as i64,
                "sum": v.iter().sum::<f64>() as i64, "median": at(0.5),
                "p25": at(0.25), "p75": at(0.75), "p95": at(0.95),
            })
        };
        let io: Vec<Value> = subtasks
            .iter()
            .map(|s| io_metrics(&self.all, self.vertex(), Some(&[*s])))
            .collect();
        let metrics: serde_json::Map<String, Value> = [
            "read-bytes",
            "write-bytes",
            "read-records",
            "write-records",
            "accumulated-backpressured-time",
            "accumulated-idle-time",
            "accumulated-busy-time",
        ]
        .into_iter()
        .map(|k| {
            (
                k.to_string(),
                stats(io.iter().filter_map(|m| m[k].as_f64()).collect()),
            )
        })
        .collect();
        let durations: Vec<BTreeMap<&str, i64>> =
            subtasks.iter().map(|s| self.status_duration(*s)).collect();
        let status_duration: serde_json::Map<String, Value> = DURATION_STATES
            .into_iter()
            .map(|k| {
                (
                    k.to_string(),
                    stats(durations.iter().map(|d| d[k] as f64).collect()),
                )
            })
            .collect();
        json!({"metrics": metrics, "status-duration": status_duration})
    }

    /// Flink's `SubtaskExecutionAttemptDetailsInfo`.
    fn subtask(&self, s: u32) -> Value {
        let (start, end, duration) = job_times(self.e);
        json!({
            "subtask": s,
            "status": self.state(s),
            "attempt": self.tasks.attempt(self.v, s),
            "endpoint": self.taskmanager(s),
            "start-time": start,
            "end-time": end,
            "duration": duration,
            "metrics": io_metrics(&self.all, self.vertex(), Some(&[s])),
            "taskmanager-id": self.taskmanager(s),
            "status-duration": self.status_duration(s),
            "start_time": start,
        })
    }
}

/// Runs `f` on a view of vertex `vid` of job `id`.
pub(super) fn vertex_view<R>(
    c: &Shared,
    id: &str,
    vid: &str,
    f: impl FnOnce(&VertexView<'_>) -> R,
) -> std::result::Result<R, RestError> {
    c.job(id, |e| {
        let v = e
            .graph
            .vertices
            .iter()
            .position(|v| v.id.to_string() == vid)?;
        let view = VertexView {
            e,
            v,
            tasks: e.monitor.tasks(),
            all: e.monitor.all(),
        };
        Some(f(&view))
    })
    .ok_or_else(|| not_found("job"))?
    .ok_or_else(|| not_found("vertex"))
}

async fn vertex_details(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        let vertex = w.vertex();
        let subtasks: Vec<Value> = (0..vertex.parallelism).map(|s| w.subtask(s)).collect();
        Json(json!({
            "id": vertex.id.to_string(),
            "name": vertex.name,
            "parallelism": vertex.parallelism,
            "maxParallelism": vertex.max_parallelism,
            "now": eddy_core::time::now_millis(),
            "subtasks": subtasks,
            "aggregated": w.aggregated(&(0..vertex.parallelism).collect::<Vec<_>>()),
            "metrics": io_metrics(&w.all, vertex, None),
        }))
    })
}

async fn subtask_details(
    State(c): State<Shared>,
    Path((id, vid, index)): Path<(String, String, u32)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        (index < w.vertex().parallelism)
            .then(|| Json(w.subtask(index)))
            .ok_or_else(|| not_found("subtask"))
    })?
}

/// `GET /jobs/:id/vertices/:vid/subtasks/:index/attempts/:attempt`: the current attempt's
/// details (Eddy keeps no history of earlier attempts' subtasks).
async fn subtask_attempt(
    State(c): State<Shared>,
    Path((id, vid, index, attempt)): Path<(String, String, u32, u32)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        if index >= w.vertex().parallelism {
            Err(not_found("subtask"))
        } else if attempt != w.tasks.attempt(w.v, index) {
            Err(not_found("attempt (only the current one is kept)"))
        } else {
            Ok(Json(w.subtask(index)))
        }
    })?
}

/// `GET /jobs/:id/vertices/:vid/subtasks/:index/attempts/:attempt/accumulators`.
async fn subtask_attempt_accumulators(
    State(c): State<Shared>,
    Path((id, vid, index, attempt)): Path<(String, String, u32, u32)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        if index >= w.vertex().parallelism || attempt != w.tasks.attempt(w.v, index) {
            return Err(not_found("attempt"));
        }
        Ok(Json(json!({
            "subtask": index,
            "attempt": attempt,
            "id": format!("{}_{index}_{attempt}", w.vertex().id),
            "user-accumulators": [],
        })))
    })?
}

/// `GET /jobs/:id/vertices/:vid/jm-operator-metrics`: metrics of operator coordinators in the
/// JobManager; Eddy's operators run in their tasks only, so there are none.
async fn jobmanager_operator_metrics(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |_| Json(json!([])))
}

/// `GET /datasets`: cluster partitions kept for later jobs; Eddy keeps none.
async fn datasets() -> Json<Value> {
    Json(json!({ "dataSets": [] }))
}

async fn subtask_times(State(c): State<Shared>, Path((id, vid)): Path<(String, String)>) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        let (start, _, duration) = job_times(w.e);
        let subtasks: Vec<Value> = (0..w.vertex().parallelism)
            .map(|s| {
                let mut timestamps: BTreeMap<&str, i64> =
                    EXECUTION_STATES.into_iter().map(|k| (k, 0)).collect();
                timestamps.insert("CREATED", start);
                json!({
                    "subtask": s,
                    "endpoint": w.taskmanager(s),
                    "duration": duration,
                    "timestamps": timestamps,
                })
            })
            .collect();
        Json(json!({
            "id": w.vertex().id.to_string(),
            "name": w.vertex().name,
            "now": eddy_core::time::now_millis(),
            "subtasks": subtasks,
        }))
    })
}

/// The vertex's subtasks grouped by the TaskManager that runs them.
async fn vertex_taskmanagers(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        let (start, end, duration) = job_times(w.e);
        let mut by_tm: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for s in 0..w.vertex().parallelism {
            by_tm.entry(w.taskmanager(s)).or_default().push(s);
        }
        let tms: Vec<Value> = by_tm
            .iter()
            .map(|(tm, subtasks)| {
                let states: Vec<&'static str> = subtasks.iter().map(|s| w.state(*s)).collect();
                json!({
                    "endpoint": tm,
                    "taskmanager-id": tm,
                    "status": vertex_status(&states),
                    "start-time": start,
                    "end-time": end,
                    "duration": duration,
                    "metrics": io_metrics(&w.all, w.vertex(), Some(subtasks)),
                    "status-counts": task_counts(&states),
                    "aggregated": w.aggregated(subtasks),
                })
            })
            .collect();
        Json(json!({
            "id": w.vertex().id.to_string(),
            "name": w.vertex().name,
            "now": eddy_core::time::now_millis(),
            "taskmanagers": tms,
        }))
    })
}

/// Eddy has no accumulators: the lists are empty, in Flink's shape.
async fn vertex_accumulators(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        Json(json!({"id": w.vertex().id.to_string(), "user-accumulators": []}))
    })
}

async fn subtask_accumulators(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        let subtasks: Vec<Value> = (0..w.vertex().parallelism)
            .map(|s| {
                json!({
                    "subtask": s,
                    "attempt": w.tasks.attempt(w.v, s),
                    "endpoint": w.taskmanager(s),
                    "user-accumulators": [],
                })
            })
            .collect();
        Json(json!({
            "id": w.vertex().id.to_string(),
            "parallelism": w.vertex().parallelism,
            "subtasks": subtasks,
        }))
    })
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
    cancel(&c, &id, "job")
}

/// `GET /jobs/:id/yarn-cancel`, where Flink's dashboard cancels a job.
async fn cancel_job(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> std::result::Result<(StatusCode, Json<Value>), RestError> {
    cancel(&c, &id, "job")
}

/// Cancels job `id`, answering as Flink does (202); `what` names it when it is not found.
pub(super) fn cancel(
    c: &Shared,
    id: &str,
    what: &str,
) -> std::result::Result<(StatusCode, Json<Value>), RestError> {
    c.job(id, |e| e.client.cancel())
        .ok_or_else(|| not_found(what))?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

pub(super) fn parse_body<T: for<'de> Deserialize<'de> + Default>(
    body: &str,
) -> std::result::Result<T, RestError> {
    if body.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(body).map_err(|e| bad_request(format!("malformed request body: {e}")))
}

/// A TaskManager in Flink's shape (`TaskManagerInfo`; with `details`, `TaskManagerDetailsInfo`).
/// Slots count one CPU each; Eddy does not divide memory into Flink's pools, so those sizes
/// are 0, and the memory figures are the processes' (see `crate::process`).
fn taskmanager_json(id: &str, t: &super::TaskManagerInfo, details: bool) -> Value {
    let p = &t.process;
    let resource = |slots: u32| {
        json!({"cpuCores": slots as f64, "taskHeapMemory": 0, "taskOffHeapMemory": 0,
               "managedMemory": 0, "networkMemory": 0, "extendedResources": {}})
    };
    let memory: serde_json::Map<String, Value> = [
        "frameworkHeap",
        "taskHeap",
        "frameworkOffHeap",
        "taskOffHeap",
        "networkMemory",
        "managedMemory",
        "jvmMetaspace",
        "jvmOverhead",
        "totalFlinkMemory",
        "totalProcessMemory",
    ]
    .into_iter()
    .map(|k| (k.to_string(), json!(0)))
    .collect();
    let mut v = json!({
        "id": id,
        "path": format!("{}:{}", t.registration.host, t.registration.pid),
        "dataPort": -1,
        "jmxPort": -1,
        "timeSinceLastHeartbeat": eddy_core::time::now_millis() - t.last_heartbeat.elapsed().as_millis() as i64,
        "slotsNumber": t.registration.slots,
        "freeSlots": t.free_slots,
        "assignedTasks": t.registration.slots - t.free_slots,
        "totalResource": resource(t.registration.slots),
        "freeResource": resource(t.free_slots),
        "hardware": {
            "cpuCores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "physicalMemory": p.physical_memory,
            "freeMemory": p.physical_memory.saturating_sub(p.rss_bytes),
            "managedMemory": 0,
        },
        "memoryConfiguration": memory,
        "registeredAt": t.registered_at,
        "prometheusPort": t.registration.prometheus_port,
        "logFile": t.registration.log_file,
    });
    if details && let Some(m) = v.as_object_mut() {
        m.insert("allocatedSlots".into(), json!([]));
        m.insert(
            "metrics".into(),
            json!({
                "heapUsed": p.anon_bytes,
                "heapCommitted": p.anon_bytes,
                "heapMax": p.physical_memory,
                "nonHeapUsed": p.file_bytes,
                "nonHeapCommitted": p.file_bytes,
                "nonHeapMax": -1,
                "directCount": 0, "directUsed": 0, "directMax": 0,
                "mappedCount": 0, "mappedUsed": 0, "mappedMax": 0,
                "nettyShuffleMemorySegmentsAvailable": 0,
                "nettyShuffleMemorySegmentsUsed": 0,
                "nettyShuffleMemorySegmentsTotal": 0,
                "nettyShuffleMemoryAvailable": 0,
                "nettyShuffleMemoryUsed": 0,
                "nettyShuffleMemoryTotal": 0,
                "garbageCollectors": [],
                "rssBytes": p.rss_bytes,
            }),
        );
    }
    v
}

async fn taskmanagers(State(c): State<Shared>) -> Json<Value> {
    let r = c.resources.lock();
    let tms: Vec<Value> = r
        .taskmanagers
        .iter()
        .map(|(id, t)| taskmanager_json(id, t, false))
        .collect();
    Json(json!({ "taskmanagers": tms }))
}

async fn taskmanager(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    let r = c.resources.lock();
    r.taskmanagers
        .get(&id)
        .map(|t| Json(taskmanager_json(&id, t, true)))
        .ok_or_else(|| not_found("TaskManager"))
}

/// Fetches `path` from TaskManager `id`'s own HTTP endpoint.
async fn jobmanager_config(State(c): State<Shared>) -> Json<Value> {
    let entries: Vec<Value> = c
        .config
        .to_map()
        .into_iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    Json(json!(entries))
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
