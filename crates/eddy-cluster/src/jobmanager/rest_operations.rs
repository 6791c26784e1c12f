//! Flink's asynchronous operations: savepoints, stop with a savepoint, checkpoints triggered by
//! hand and savepoint disposal. Each `POST` answers a trigger id at once; the operation runs on
//! its own thread and its status is read by that id.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Operation;
use super::rest::{Answer, RestError, Shared, bad_request, not_found, parse_body};

type Accepted = std::result::Result<(StatusCode, Json<Value>), RestError>;

#[derive(Deserialize, Default)]
struct SavepointRequest {
    #[serde(rename = "target-directory", alias = "targetDirectory")]
    target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    cancel_job: bool,
    #[serde(default)]
    drain: bool,
}

/// Operations are kept by kind and trigger id: a trigger id is only found where its kind is.
fn key(kind: &str, trigger: &str) -> String {
    format!("{kind}/{trigger}")
}

/// Runs `run` on its own thread as an operation of `kind` with a new trigger id, answering the
/// id.
fn start(
    c: &Shared,
    kind: &str,
    run: impl FnOnce() -> Result<Value, String> + Send + 'static,
) -> Accepted {
    let trigger = uuid::Uuid::new_v4().simple().to_string();
    let t = key(kind, &trigger);
    c.operations.lock().insert(t.clone(), Operation::InProgress);
    let c = c.clone();
    std::thread::spawn(move || {
        let result = match run() {
            Ok(v) => Operation::Completed(v),
            Err(e) => Operation::Failed(e),
        };
        c.operations.lock().insert(t, result);
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))))
}

/// A savepoint of job `id` into `dir` (or the configured directory) as an operation; with
/// `stop` (`Some(drain)`) the job stops with it. The result is the savepoint's location.
fn start_savepoint(c: &Shared, id: &str, dir: Option<String>, stop: Option<bool>) -> Accepted {
    let client = c
        .job(id, |e| e.client.clone())
        .ok_or_else(|| not_found("job"))?;
    start(c, "savepoint", move || {
        let location = match stop {
            Some(drain) => client.stop_with_savepoint(drain, dir.as_deref()),
            None => client.trigger_savepoint(dir.as_deref()),
        };
        location
            .map(|location| json!({ "location": location }))
            .map_err(|e| e.to_string())
    })
}

/// `POST /jobs/:id/savepoints` (with `cancel-job`, the job stops with the savepoint).
pub(super) async fn trigger_savepoint(
    State(c): State<Shared>,
    Path(id): Path<String>,
    body: String,
) -> Accepted {
    let req: SavepointRequest = parse_body(&body)?;
    start_savepoint(
        &c,
        &id,
        req.target_directory,
        req.cancel_job.then_some(false),
    )
}

/// `POST /jobs/:id/stop`.
pub(super) async fn stop_job(
    State(c): State<Shared>,
    Path(id): Path<String>,
    body: String,
) -> Accepted {
    let req: SavepointRequest = parse_body(&body)?;
    start_savepoint(&c, &id, req.target_directory, Some(req.drain))
}

#[derive(Deserialize, Default)]
struct CheckpointRequest {
    #[serde(rename = "checkpointType")]
    checkpoint_type: Option<String>,
}

/// The id of the checkpoint at `location` (`.../chk-N`).
fn checkpoint_id(location: &str) -> Option<u64> {
    location
        .trim_end_matches('/')
        .rsplit('/')
        .next()?
        .strip_prefix("chk-")?
        .parse()
        .ok()
}

/// `POST /jobs/:id/checkpoints` (`flink checkpoint JOB`): a checkpoint now, of the kind the
/// job is configured for (`checkpointType` `CONFIGURED`, or `FULL` / `INCREMENTAL` where they
/// are what the job takes anyway).
pub(super) async fn trigger_checkpoint(
    State(c): State<Shared>,
    Path(id): Path<String>,
    body: String,
) -> Accepted {
    let req: CheckpointRequest = parse_body(&body)?;
    let incremental = c
        .job(&id, |e| {
            e.graph
                .config
                .get(&eddy_core::config::options::CHECKPOINTING_INCREMENTAL)
                .unwrap_or(false)
        })
        .ok_or_else(|| not_found("job"))?;
    match req.checkpoint_type.as_deref().map(str::to_ascii_uppercase) {
        None => {}
        Some(t) if t == "CONFIGURED" => {}
        Some(t) if t == "FULL" && !incremental => {}
        Some(t) if t == "INCREMENTAL" && incremental => {}
        Some(t) => {
            return Err(bad_request(format!(
                "this job takes {} checkpoints (execution.checkpointing.incremental: \
                 {incremental}); a {t} checkpoint by hand is not supported",
                if incremental { "incremental" } else { "full" }
            )));
        }
    }
    let client = c
        .job(&id, |e| e.client.clone())
        .ok_or_else(|| not_found("job"))?;
    start(&c, "checkpoint", move || {
        let location = client.trigger_checkpoint().map_err(|e| e.to_string())?;
        Ok(json!({ "checkpointId": checkpoint_id(&location), "location": location }))
    })
}

/// The status of operation `tid` of `kind` in Flink's shape (`AsynchronousOperationResult`).
/// A failed operation answers an error naming its cause: Flink's shape for it holds a
/// Java-serialized exception, which a native process cannot write, and Flink's clients show
/// an error's text as they get it.
fn status(c: &Shared, kind: &str, tid: &str) -> Answer {
    let op = c
        .operations
        .lock()
        .get(&key(kind, tid))
        .cloned()
        .ok_or_else(|| not_found("trigger"))?;
    Ok(Json(match op {
        Operation::InProgress => json!({"status": {"id": "IN_PROGRESS"}}),
        Operation::Completed(operation) => {
            json!({"status": {"id": "COMPLETED"}, "operation": operation})
        }
        Operation::Failed(cause) => {
            return Err(RestError(StatusCode::INTERNAL_SERVER_ERROR, cause));
        }
    }))
}

/// `GET /jobs/:id/savepoints/:tid`.
pub(super) async fn savepoint_status(
    State(c): State<Shared>,
    Path((_id, tid)): Path<(String, String)>,
) -> Answer {
    status(&c, "savepoint", &tid)
}

/// `GET /jobs/:id/checkpoints/:tid`.
pub(super) async fn checkpoint_status(
    State(c): State<Shared>,
    Path((_id, tid)): Path<(String, String)>,
) -> Answer {
    status(&c, "checkpoint", &tid)
}

#[derive(Deserialize, Default)]
struct DisposalRequest {
    #[serde(rename = "savepoint-path")]
    savepoint_path: Option<String>,
}

/// `POST /savepoint-disposal` (`flink savepoint -d PATH`): deletes a savepoint's directory,
/// which must hold a savepoint's `_metadata`.
pub(super) async fn dispose_savepoint(State(c): State<Shared>, body: String) -> Accepted {
    let req: DisposalRequest = parse_body(&body)?;
    let path = req
        .savepoint_path
        .ok_or_else(|| bad_request("the request names no savepoint-path"))?;
    start(&c, "disposal", move || {
        let dir = std::path::PathBuf::from(path.strip_prefix("file://").unwrap_or(&path));
        let dir = if dir.file_name().is_some_and(|n| n == "_metadata") {
            dir.parent().map(|p| p.to_path_buf()).unwrap_or(dir)
        } else {
            dir
        };
        if !dir.join("_metadata").is_file() {
            return Err(format!(
                "{} is not a savepoint: it has no _metadata file",
                dir.display()
            ));
        }
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot delete {}: {e}", dir.display()))?;
        Ok(json!({}))
    })
}

/// `GET /savepoint-disposal/:tid`.
pub(super) async fn disposal_status(State(c): State<Shared>, Path(tid): Path<String>) -> Answer {
    status(&c, "disposal", &tid)
}

/// `PATCH /jobs/:id/rescaling`: a running job's parallelism is changed by stopping it with a
/// savepoint and running it again from there, which keeps its state.
pub(super) async fn rescale(State(c): State<Shared>, Path(id): Path<String>) -> RestError {
    if c.job(&id, |_| ()).is_none() {
        return not_found("job");
    }
    bad_request(format!(
        "Eddy does not rescale a running job in place: stop it with a savepoint \
         (`eddy stop {id}` or `flink stop {id}`) and run it again with `-p N -s SAVEPOINT`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoints_id_is_the_number_of_its_directory() {
        assert_eq!(checkpoint_id("/tmp/cp/abc/chk-12"), Some(12));
        assert_eq!(checkpoint_id("s3://b/cp/abc/chk-7/"), Some(7));
        assert_eq!(checkpoint_id("/tmp/sp/savepoint-1"), None);
    }
}
