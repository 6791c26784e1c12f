//! The cluster's processes as Flink's REST API shows them: log files, standard output and
//! thread dumps of the JobManager and of each TaskManager (a TaskManager's come from its own
//! HTTP endpoint, with its worker processes' threads), and the profiler and flame graph
//! endpoints, which answer that Eddy has neither.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::rest::{Answer, RestError, Shared, bad_request, not_found, plain_text, vertex_view};
use crate::taskmanager::STDOUT_LIMIT;

/// `GET path` on TaskManager `id`'s HTTP endpoint.
async fn from_taskmanager(
    c: &Shared,
    id: &str,
    path: &str,
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

fn bad_gateway(e: reqwest::Error) -> RestError {
    RestError(StatusCode::BAD_GATEWAY, e.to_string())
}

/// A JSON answer of TaskManager `id` at `path`, passed on.
async fn taskmanager_json(c: &Shared, id: &str, path: &str) -> Answer {
    let v: Value = from_taskmanager(c, id, path)
        .await?
        .json()
        .await
        .map_err(bad_gateway)?;
    Ok(Json(v))
}

/// A text answer of TaskManager `id` at `path`, passed on; `what` names it when it is missing.
async fn taskmanager_text(
    c: &Shared,
    id: &str,
    path: &str,
    what: &str,
) -> std::result::Result<Response, RestError> {
    let r = from_taskmanager(c, id, path).await?;
    if !r.status().is_success() {
        return Err(not_found(what));
    }
    Ok(plain_text(r.text().await.map_err(bad_gateway)?))
}

/// `GET /taskmanagers/:id/logs`.
pub(super) async fn taskmanager_logs(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    taskmanager_json(&c, &id, "/logs").await
}

/// `GET /taskmanagers/:id/logs/:name`.
pub(super) async fn taskmanager_log(
    State(c): State<Shared>,
    Path((id, name)): Path<(String, String)>,
) -> std::result::Result<Response, RestError> {
    if !crate::is_safe_file_name(&name) {
        return Err(bad_request("malformed log file name"));
    }
    taskmanager_text(&c, &id, &format!("/logs/{name}"), "log file").await
}

/// `GET /taskmanagers/:id/log`: the TaskManager's own log file.
pub(super) async fn taskmanager_main_log(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> std::result::Result<Response, RestError> {
    taskmanager_text(
        &c,
        &id,
        "/log",
        "log file (the TaskManager logs to standard error)",
    )
    .await
}

/// `GET /taskmanagers/:id/stdout`.
pub(super) async fn taskmanager_stdout(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> std::result::Result<Response, RestError> {
    taskmanager_text(&c, &id, "/stdout", "standard output").await
}

/// `GET /taskmanagers/:id/thread-dump`: the TaskManager's threads and its workers'.
pub(super) async fn taskmanager_thread_dump(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> Answer {
    taskmanager_json(&c, &id, "/thread-dump").await
}

/// `GET /jobmanager/logs`.
pub(super) async fn jobmanager_logs(State(c): State<Shared>) -> Json<Value> {
    let logs: Vec<Value> = c
        .log_file
        .iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            let name = p.file_name()?.to_string_lossy().to_string();
            Some(crate::logging::log_entry(name, &meta))
        })
        .collect();
    Json(json!({ "logs": logs }))
}

/// `GET /jobmanager/logs/:name`: only the JobManager's own log file, found by its name.
pub(super) async fn jobmanager_log(
    State(c): State<Shared>,
    Path(name): Path<String>,
) -> std::result::Result<Response, RestError> {
    match &c.log_file {
        Some(p) if p.file_name().is_some_and(|f| f.to_string_lossy() == name) => read_text(p).await,
        _ => Err(not_found("log file")),
    }
}

/// `GET /jobmanager/log`: the JobManager's log file.
pub(super) async fn jobmanager_main_log(
    State(c): State<Shared>,
) -> std::result::Result<Response, RestError> {
    match &c.log_file {
        Some(p) => read_text(p).await,
        None => Err(not_found(
            "log file (the JobManager logs to standard error; EDDY_LOG_DIR sets a directory)",
        )),
    }
}

async fn read_text(path: &std::path::Path) -> std::result::Result<Response, RestError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| RestError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(plain_text(text))
}

/// `GET /jobmanager/stdout`.
pub(super) async fn jobmanager_stdout() -> Response {
    plain_text(crate::process::stdout_text(STDOUT_LIMIT))
}

/// `GET /jobmanager/thread-dump`.
pub(super) async fn jobmanager_thread_dump() -> Json<Value> {
    Json(crate::process::thread_dump("JobManager", &[]))
}

/// `GET /jobmanager/profiler` and `/taskmanagers/:id/profiler`: no profiling was ever taken.
pub(super) async fn profiling_list() -> Json<Value> {
    Json(json!({ "profilingList": [] }))
}

/// `POST .../profiler`: Eddy has no built-in profiler.
pub(super) async fn no_profiler() -> RestError {
    bad_request(
        "Eddy has no built-in profiler: its processes are native, so profile them with the \
         system's tools (for example `perf record -g -p PID`; the thread dump lists each \
         process's threads)",
    )
}

/// `GET /jobs/:id/vertices/:vid/flamegraph`: Flink's answer when flame graphs are disabled,
/// which they always are in Eddy.
pub(super) async fn flame_graph(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |_| {
        Json(json!({ "endTimestamp": -2, "data": null }))
    })
}
