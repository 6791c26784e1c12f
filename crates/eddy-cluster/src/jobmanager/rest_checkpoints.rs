//! The checkpoint endpoints of the REST API, with Flink's JSON shapes: statistics and history,
//! the job's checkpointing configuration, and one checkpoint's details per vertex and subtask.

use axum::Json;
use axum::extract::{Path, State};
use eddy_core::config::ExternalizedCheckpointRetention;
use eddy_core::element::CheckpointingMode;
use eddy_runtime::checkpoint::coordinator::{
    CheckpointSettings, CheckpointStats, CheckpointStatus, SubtaskStats,
};
use eddy_runtime::state::BackendKind;
use serde_json::{Value, json};

use super::rest::{Answer, Shared, not_found};

fn class_name(s: CheckpointStatus) -> &'static str {
    match s {
        CheckpointStatus::InProgress => "in_progress",
        CheckpointStatus::Completed => "completed",
        CheckpointStatus::Failed => "failed",
    }
}

fn status_name(s: CheckpointStatus) -> &'static str {
    match s {
        CheckpointStatus::InProgress => "IN_PROGRESS",
        CheckpointStatus::Completed => "COMPLETED",
        CheckpointStatus::Failed => "FAILED",
    }
}

/// The time of the last acknowledgement, or the trigger's when none came yet.
fn latest_ack(subtasks: &[&SubtaskStats], trigger: i64) -> i64 {
    subtasks
        .iter()
        .map(|s| s.ack_timestamp)
        .max()
        .unwrap_or(trigger)
}

/// A vertex's part in checkpoint `h`: Flink's `TaskCheckpointStatistics` fields.
fn task_statistics(h: &CheckpointStats, vertex: usize, parallelism: u32) -> Value {
    let subtasks: Vec<&SubtaskStats> = h.subtasks.iter().filter(|s| s.vertex == vertex).collect();
    let ack = latest_ack(&subtasks, h.trigger_timestamp);
    let size: u64 = subtasks.iter().map(|s| s.stats.state_size).sum();
    let persisted: u64 = subtasks.iter().map(|s| s.stats.persisted_data).sum();
    let status = if subtasks.len() == parallelism as usize {
        "COMPLETED"
    } else {
        status_name(h.status)
    };
    json!({
        "id": h.id,
        "status": status,
        "latest_ack_timestamp": ack,
        "checkpointed_size": size,
        "state_size": size,
        "end_to_end_duration": (ack - h.trigger_timestamp).max(0),
        "alignment_buffered": 0,
        "processed_data": 0,
        "persisted_data": persisted,
        "num_subtasks": parallelism,
        "num_acknowledged_subtasks": subtasks.len(),
    })
}

/// One checkpoint as Flink's `CheckpointStatistics`; with `tasks`, also per vertex.
fn statistics(h: &CheckpointStats, tasks: Option<&[(String, u32)]>) -> Value {
    let all: Vec<&SubtaskStats> = h.subtasks.iter().collect();
    let per_task: serde_json::Map<String, Value> = tasks
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .map(|(v, (id, p))| (id.clone(), task_statistics(h, v, *p)))
        .collect();
    let mut v = json!({
        "className": class_name(h.status),
        "id": h.id,
        "status": status_name(h.status),
        "is_savepoint": h.is_savepoint,
        "savepointFormat": if h.is_savepoint { json!("CANONICAL") } else { Value::Null },
        "trigger_timestamp": h.trigger_timestamp,
        "latest_ack_timestamp": latest_ack(&all, h.trigger_timestamp),
        "checkpointed_size": h.state_size,
        "state_size": h.state_size,
        "end_to_end_duration": h.end_to_end_duration_ms,
        "alignment_buffered": 0,
        "processed_data": 0,
        "persisted_data": h.persisted_data,
        "num_subtasks": h.num_subtasks,
        "num_acknowledged_subtasks": h.num_acknowledged_subtasks,
        "checkpoint_type": match (h.is_savepoint, h.unaligned) {
            (true, _) => "SAVEPOINT",
            (false, true) => "UNALIGNED_CHECKPOINT",
            (false, false) => "CHECKPOINT",
        },
        "tasks": per_task,
    });
    let m = v.as_object_mut().expect("an object");
    match h.status {
        CheckpointStatus::Completed => {
            m.insert("external_path".into(), json!(h.external_path));
            m.insert("discarded".into(), json!(false));
        }
        CheckpointStatus::Failed => {
            m.insert(
                "failure_timestamp".into(),
                json!(latest_ack(&all, h.trigger_timestamp)),
            );
            m.insert("failure_message".into(), json!(h.failure_message));
        }
        CheckpointStatus::InProgress => {}
    }
    v
}

/// Flink's `StatsSummaryDto`: min, max, average and percentiles of `values`.
fn summary(values: impl IntoIterator<Item = u64>) -> Value {
    let mut v: Vec<u64> = values.into_iter().collect();
    v.sort_unstable();
    if v.is_empty() {
        return json!({"min": 0, "max": 0, "avg": 0, "p50": 0.0, "p90": 0.0, "p95": 0.0,
                      "p99": 0.0, "p999": 0.0});
    }
    let pct = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64;
    json!({
        "min": v[0],
        "max": v[v.len() - 1],
        "avg": v.iter().sum::<u64>() / v.len() as u64,
        "p50": pct(0.5), "p90": pct(0.9), "p95": pct(0.95), "p99": pct(0.99), "p999": pct(0.999),
    })
}

/// The job's vertices as (id, parallelism).
fn vertices(e: &super::JobEntry) -> Vec<(String, u32)> {
    e.graph
        .vertices
        .iter()
        .map(|v| (v.id.to_string(), v.parallelism))
        .collect()
}

/// `GET /jobs/:id/checkpoints`.
pub(super) async fn job_checkpoints(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    c.job(&id, |e| {
        let s = e.client.checkpoint_statistics();
        let history: Vec<Value> = s
            .history
            .iter()
            .rev()
            .map(|h| statistics(h, None))
            .collect();
        let completed: Vec<&CheckpointStats> = s
            .history
            .iter()
            .filter(|h| h.status == CheckpointStatus::Completed)
            .collect();
        let zero = || summary([0]);
        let latest = |h: Option<&CheckpointStats>| h.map(|h| statistics(h, None));
        let savepoint = completed.iter().rev().find(|h| h.is_savepoint).copied();
        Json(json!({
            "counts": {
                "restored": s.restored,
                "total": s.triggered,
                "in_progress": s.in_progress,
                "completed": s.completed,
                "failed": s.failed,
            },
            "summary": {
                "checkpointed_size": summary(completed.iter().map(|h| h.state_size)),
                "state_size": summary(completed.iter().map(|h| h.state_size)),
                "end_to_end_duration": summary(completed.iter().map(|h| h.end_to_end_duration_ms)),
                "alignment_buffered": zero(),
                "processed_data": zero(),
                "persisted_data": summary(completed.iter().map(|h| h.persisted_data)),
            },
            "latest": {
                "completed": latest(s.latest_completed.as_ref()),
                "failed": latest(s.latest_failed.as_ref()),
                "savepoint": latest(savepoint),
                "restored": s.latest_restored.map(|(id, path)| json!({
                    "id": id,
                    "restore_timestamp": e.start_time,
                    "is_savepoint": false,
                    "external_path": path,
                })),
            },
            "history": history,
        }))
    })
    .ok_or_else(|| not_found("job"))
}

/// `GET /jobs/:id/checkpoints/config`.
pub(super) async fn checkpoint_config(State(c): State<Shared>, Path(id): Path<String>) -> Answer {
    let graph = c
        .job(&id, |e| e.graph.clone())
        .ok_or_else(|| not_found("job"))?;
    let s = CheckpointSettings::from_config(&graph.config).map_err(super::rest::internal)?;
    let retained = !matches!(
        s.retention,
        ExternalizedCheckpointRetention::NoExternalizedCheckpoints
    );
    let interval = s
        .interval
        .ok_or_else(|| {
            not_found("checkpointing configuration (checkpointing is off for this job)")
        })?
        .as_millis() as u64;
    Ok(Json(json!({
        "mode": match s.mode {
            CheckpointingMode::ExactlyOnce => "exactly_once",
            CheckpointingMode::AtLeastOnce => "at_least_once",
        },
        "interval": interval,
        "timeout": s.timeout.as_millis() as u64,
        "min_pause": s.min_pause.as_millis() as u64,
        "max_concurrent": s.max_concurrent,
        "externalization": {
            "enabled": retained,
            "delete_on_cancellation": !matches!(
                s.retention,
                ExternalizedCheckpointRetention::RetainOnCancellation
            ),
        },
        "state_backend": match s.backend.kind {
            BackendKind::HashMap => "HashMapStateBackend",
            BackendKind::Lsm(_) => "LsmStateBackend",
        },
        "checkpoint_storage": format!("FileSystemCheckpointStorage ({})", s.checkpoints_dir),
        "unaligned_checkpoints": s.unaligned.is_some(),
        "tolerable_failed_checkpoints": s.tolerable_failures,
        "aligned_checkpoint_timeout": s.unaligned.map_or(0, |t| t.as_millis() as u64),
        "checkpoints_after_tasks_finish": true,
        "state_changelog_enabled": false,
        "changelog_periodic_materialization_interval": 0,
        "changelog_storage": "none",
    })))
}

/// Checkpoint `cid` of job `id`, from the retained history.
fn find(
    c: &Shared,
    id: &str,
    cid: &str,
) -> Result<(CheckpointStats, Vec<(String, u32)>), super::rest::RestError> {
    let (stats, vs) = c
        .job(id, |e| (e.client.checkpoint_statistics(), vertices(e)))
        .ok_or_else(|| not_found("job"))?;
    let cid: u64 = cid.parse().map_err(|_| not_found("checkpoint"))?;
    let h = stats
        .history
        .into_iter()
        .find(|h| h.id == cid)
        .ok_or_else(|| not_found(&format!(
            "checkpoint {cid} (statistics of the last web.checkpoints.history checkpoints are kept)"
        )))?;
    Ok((h, vs))
}

/// `GET /jobs/:id/checkpoints/details/:cid`.
pub(super) async fn checkpoint_details(
    State(c): State<Shared>,
    Path((id, cid)): Path<(String, String)>,
) -> Answer {
    let (h, vs) = find(&c, &id, &cid)?;
    Ok(Json(statistics(&h, Some(&vs))))
}

/// `GET /jobs/:id/checkpoints/details/:cid/subtasks/:vid`.
pub(super) async fn checkpoint_subtasks(
    State(c): State<Shared>,
    Path((id, cid, vid)): Path<(String, String, String)>,
) -> Answer {
    let (h, vs) = find(&c, &id, &cid)?;
    let v = vs
        .iter()
        .position(|(i, _)| *i == vid)
        .ok_or_else(|| not_found("vertex"))?;
    let parallelism = vs[v].1;
    let acked: Vec<&SubtaskStats> = h.subtasks.iter().filter(|s| s.vertex == v).collect();
    let subtasks: Vec<Value> = (0..parallelism)
        .map(|i| match acked.iter().find(|s| s.subtask == i) {
            Some(s) => json!({
                "className": "completed",
                "index": i,
                "status": "completed",
                "ack_timestamp": s.ack_timestamp,
                "end_to_end_duration": (s.ack_timestamp - h.trigger_timestamp).max(0),
                "checkpointed_size": s.stats.state_size,
                "state_size": s.stats.state_size,
                "checkpoint": {"sync": s.stats.sync_ms, "async": s.stats.async_ms},
                "alignment": {"buffered": 0, "processed": 0,
                              "persisted": s.stats.persisted_data,
                              "duration": s.stats.alignment_ms},
                "start_delay": 0,
                "unaligned_checkpoint": s.stats.unaligned,
                "aborted": false,
            }),
            None => json!({"className": "pending_or_failed", "index": i,
                           "status": "pending_or_failed"}),
        })
        .collect();
    let mut body = task_statistics(&h, v, parallelism);
    let end_to_end = acked
        .iter()
        .map(|s| (s.ack_timestamp - h.trigger_timestamp).max(0) as u64);
    body.as_object_mut().expect("an object").extend([
        (
            "summary".to_string(),
            json!({
                "checkpointed_size": summary(acked.iter().map(|s| s.stats.state_size)),
                "state_size": summary(acked.iter().map(|s| s.stats.state_size)),
                "end_to_end_duration": summary(end_to_end),
                "checkpoint_duration": {
                    "sync": summary(acked.iter().map(|s| s.stats.sync_ms)),
                    "async": summary(acked.iter().map(|s| s.stats.async_ms)),
                },
                "alignment": {
                    "buffered": summary([0]),
                    "processed": summary([0]),
                    "persisted": summary(acked.iter().map(|s| s.stats.persisted_data)),
                    "duration": summary(acked.iter().map(|s| s.stats.alignment_ms)),
                },
                "start_delay": summary([0]),
            }),
        ),
        ("subtasks".to_string(), json!(subtasks)),
    ]);
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn summaries_have_flinks_percentiles() {
        let s = summary([5, 1, 3, 2, 4]);
        assert_eq!(s["min"], 1);
        assert_eq!(s["max"], 5);
        assert_eq!(s["avg"], 3);
        assert_eq!(s["p50"], 3.0);
        assert_eq!(s["p99"], 5.0);
        assert_eq!(summary([])["max"], 0);
    }
}
