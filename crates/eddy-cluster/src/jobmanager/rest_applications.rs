//! Flink's application endpoints (`/applications/...`). Every Eddy program submitted to a
//! session cluster runs one job, so each job is one application with the job's id, as Flink
//! reports a job submitted to a session cluster (a "single job application").

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use eddy_runtime::executor::JobStatus;
use serde_json::{Value, json};

use super::rest::{Answer, RestError, Shared, job_summary, job_times, not_found, status_name};

/// The application state Flink reports for a job in `status`.
fn application_status(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Finished => "FINISHED",
        JobStatus::Failed => "FAILED",
        JobStatus::Canceled => "CANCELED",
        JobStatus::Cancelling => "CANCELING",
        _ => "RUNNING",
    }
}

/// The fields `/applications/overview` and `/applications/:id` share.
fn application_summary(e: &super::JobEntry) -> serde_json::Map<String, Value> {
    let (start, end, duration) = job_times(e);
    let status = e.client.job_status();
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(e.graph.job_id.to_string()));
    m.insert("name".into(), json!(e.graph.name));
    m.insert("status".into(), json!(application_status(status)));
    m.insert("start-time".into(), json!(start));
    m.insert("end-time".into(), json!(end));
    m.insert("duration".into(), json!(duration));
    m
}

/// `GET /applications/overview`.
pub(super) async fn applications_overview(State(c): State<Shared>) -> Json<Value> {
    let applications: Vec<Value> = c
        .jobs
        .lock()
        .iter()
        .rev()
        .map(|(_, e)| {
            let mut m = application_summary(e);
            let job_state = status_name(e.client.job_status());
            m.insert("jobs".into(), json!({ job_state: 1 }));
            Value::Object(m)
        })
        .collect();
    Json(json!({ "applications": applications }))
}

/// `GET /applications/:id`: the application and its job.
pub(super) async fn application_details(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        let mut m = application_summary(e);
        let status = application_status(e.client.job_status());
        let mut timestamps = serde_json::Map::new();
        for s in [
            "CREATED",
            "RUNNING",
            "FAILING",
            "FAILED",
            "CANCELING",
            "CANCELED",
            "FINISHED",
        ] {
            timestamps.insert(s.into(), json!(0));
        }
        timestamps.insert("CREATED".into(), json!(e.start_time));
        timestamps.insert("RUNNING".into(), json!(e.start_time));
        if let Some(end) = e.client.end_time() {
            timestamps.insert(status.into(), json!(end));
        }
        m.insert("timestamps".into(), Value::Object(timestamps));
        m.insert("jobs".into(), json!([job_summary(&e.graph.job_id, e)]));
        Json(Value::Object(m))
    })
    .ok_or_else(|| not_found("application"))
}

/// `GET /applications/:id/exceptions`: the job's failures, each naming the job.
pub(super) async fn application_exceptions(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> Answer {
    c.job(&id, |e| {
        let job = e.graph.job_id.to_string();
        let mut entries: Vec<Value> = e
            .client
            .exceptions()
            .into_iter()
            .map(|x| {
                json!({
                    "exceptionName": "RuntimeError",
                    "stacktrace": x.message,
                    "timestamp": x.timestamp,
                    "jobId": job,
                })
            })
            .collect();
        entries.reverse();
        Json(json!({ "exceptionHistory": { "entries": entries } }))
    })
    .ok_or_else(|| not_found("application"))
}

/// `POST /applications/:id/cancel`: cancels the application's job.
pub(super) async fn cancel_application(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> std::result::Result<(StatusCode, Json<Value>), RestError> {
    super::rest::cancel(&c, &id, "application")
}
