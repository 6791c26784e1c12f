//! The metric endpoints of the REST API, as Flink's: a vertex's metrics per subtask and
//! aggregated over subtasks, its watermarks and back pressure, and the JobManager's and
//! TaskManagers' process metrics.
//!
//! Metric ids follow Flink's: `name` for a task's own metrics, `Operator_Name.name` for an
//! operator's, prefixed with `subtask.` where a vertex's metrics of all subtasks are listed. A
//! task's `numRecordsIn` and `currentInputWatermark` are its head operator's, its
//! `numRecordsOut` that of the operators with network outputs, as in Flink.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use eddy_core::graph::JobVertex;
use eddy_runtime::executor::remote::WireMetric;
use serde_json::{Value, json};

use super::rest::{Answer, RestError, Shared, bad_request, io_operators, not_found, vertex_view};
use crate::process::ProcessMetrics;

type Params = Query<HashMap<String, String>>;

/// One metric of one subtask of a vertex.
pub(super) struct SubtaskMetric {
    pub subtask: u32,
    pub id: String,
    pub value: f64,
}

/// An operator's name as Flink writes it in metric ids.
fn metric_scope(name: &str) -> String {
    name.chars()
        .map(|c| if matches!(c, ' ' | ':' | '.') { '_' } else { c })
        .collect()
}

/// Every metric of `vertex`'s subtasks, with Flink's ids.
pub(super) fn vertex_metric_list(all: &[WireMetric], vertex: &JobVertex) -> Vec<SubtaskMetric> {
    let vid = vertex.id.to_string();
    let (head, outputs) = io_operators(vertex);
    let last = vertex.operators.last().map(|o| o.operator_id.to_string());
    let mut task_level: BTreeMap<(u32, String), f64> = BTreeMap::new();
    let mut view = Vec::new();
    for m in all {
        let var = |k: &str| m.variables.get(k).map(String::as_str);
        if var("task_id") != Some(vid.as_str()) {
            continue;
        }
        let Some(subtask) = var("subtask_index").and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Some(op) = var("operator_id") else {
            view.push(SubtaskMetric {
                subtask,
                id: m.name.clone(),
                value: m.value,
            });
            continue;
        };
        let scope = metric_scope(var("operator_name").unwrap_or(op));
        view.push(SubtaskMetric {
            subtask,
            id: format!("{scope}.{}", m.name),
            value: m.value,
        });
        let is_head = head.iter().any(|h| h == op);
        let is_output = outputs.iter().any(|o| o == op);
        let own = match m.name.as_str() {
            "numRecordsIn" | "numRecordsInPerSecond" | "currentInputWatermark" => is_head,
            "numRecordsOut" | "numRecordsOutPerSecond" => is_output,
            "currentOutputWatermark" => last.as_deref() == Some(op),
            _ => false,
        };
        if own {
            *task_level.entry((subtask, m.name.clone())).or_default() += m.value;
        }
    }
    view.extend(
        task_level
            .into_iter()
            .map(|((subtask, id), value)| SubtaskMetric { subtask, id, value }),
    );
    view
}

/// A metric value as Flink's REST API writes it: a string, integers without a fraction.
fn value_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() <= 9.3e18 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// The ids requested with `?get=a,b`, if any.
fn requested(params: &HashMap<String, String>) -> Option<Vec<&str>> {
    params.get("get").map(|g| {
        g.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// Flink's answer to a metrics request: the available ids without `get`, else the values of
/// those of the requested ids that exist.
fn metrics_answer(
    params: &HashMap<String, String>,
    metrics: impl IntoIterator<Item = (String, f64)>,
) -> Value {
    let metrics: BTreeMap<String, f64> = metrics.into_iter().collect();
    match requested(params) {
        None => json!(
            metrics
                .keys()
                .map(|id| json!({"id": id}))
                .collect::<Vec<_>>()
        ),
        Some(ids) => json!(
            ids.iter()
                .filter_map(|id| metrics
                    .get(*id)
                    .map(|v| json!({"id": id, "value": value_text(*v)})))
                .collect::<Vec<_>>()
        ),
    }
}

/// `GET /jobs/:id/vertices/:vid/metrics`.
pub(super) async fn vertex_metrics(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
    Query(params): Params,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        let (vertex, all) = (w.vertex(), w.all.as_slice());
        let view = vertex_metric_list(all, vertex);
        Json(metrics_answer(
            &params,
            view.into_iter()
                .map(|m| (format!("{}.{}", m.subtask, m.id), m.value)),
        ))
    })
}

/// `GET /jobs/:id/vertices/:vid/subtasks/:index/metrics`.
pub(super) async fn subtask_metrics(
    State(c): State<Shared>,
    Path((id, vid, index)): Path<(String, String, u32)>,
    Query(params): Params,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        let (vertex, all) = (w.vertex(), w.all.as_slice());
        if index >= vertex.parallelism {
            return Err(not_found("subtask"));
        }
        let view = vertex_metric_list(all, vertex);
        Ok(Json(metrics_answer(
            &params,
            view.into_iter()
                .filter(|m| m.subtask == index)
                .map(|m| (m.id, m.value)),
        )))
    })?
}

/// Flink's skew: the mean absolute deviation over the mean, in percent, at most 100.
fn skew(values: &[f64]) -> f64 {
    let avg = values.iter().sum::<f64>() / values.len() as f64;
    if values.is_empty() || avg == 0.0 {
        return 0.0;
    }
    let deviation = values.iter().map(|v| (v - avg).abs()).sum::<f64>() / values.len() as f64;
    (deviation / avg * 100.0).min(100.0)
}

/// The aggregations `?agg=` asks for (all by default).
fn aggregations(params: &HashMap<String, String>) -> std::result::Result<Vec<String>, RestError> {
    let aggs: Vec<String> = match params.get("agg") {
        Some(a) => a.split(',').map(|s| s.trim().to_string()).collect(),
        None => ["min", "max", "avg", "sum", "skew"]
            .map(String::from)
            .to_vec(),
    };
    match aggs
        .iter()
        .find(|a| !matches!(a.as_str(), "min" | "max" | "avg" | "sum" | "skew"))
    {
        Some(bad) => Err(bad_request(format!(
            "unknown aggregation '{bad}'; use min, max, avg, sum or skew"
        ))),
        None => Ok(aggs),
    }
}

/// Flink's answer to an aggregated metrics request over the values of each metric id in
/// `by_id` (one per subtask, job or TaskManager): the ids without `get`, else a row per
/// requested id with the aggregations `agg` asks for.
fn aggregated_answer(
    params: &HashMap<String, String>,
    by_id: BTreeMap<String, Vec<f64>>,
) -> std::result::Result<Value, RestError> {
    let aggs = aggregations(params)?;
    let Some(ids) = requested(params) else {
        return Ok(json!(
            by_id.keys().map(|id| json!({"id": id})).collect::<Vec<_>>()
        ));
    };
    let rows: Vec<Value> = ids
        .iter()
        .filter_map(|id| {
            let values = by_id.get(*id).filter(|v| !v.is_empty())?;
            let mut row = serde_json::Map::new();
            row.insert("id".into(), json!(id));
            for a in &aggs {
                let v = match a.as_str() {
                    "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
                    "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    "sum" => values.iter().sum(),
                    "avg" => values.iter().sum::<f64>() / values.len() as f64,
                    _ => skew(values),
                };
                row.insert(a.clone(), json!(v));
            }
            Some(Value::Object(row))
        })
        .collect();
    Ok(json!(rows))
}

/// The list `?name=a,b` selects, if given.
fn selection<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<Vec<&'a str>> {
    params
        .get(name)
        .map(|s| s.split(',').map(str::trim).collect())
}

/// `GET /jobs/:id/vertices/:vid/subtasks/metrics?get=..&agg=..&subtasks=..`.
pub(super) async fn aggregated_subtask_metrics(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
    Query(params): Params,
) -> Answer {
    let subtasks: Option<Vec<u32>> = match selection(&params, "subtasks") {
        Some(s) => Some(
            s.iter()
                .map(|i| i.parse())
                .collect::<Result<_, _>>()
                .map_err(|_| bad_request("subtasks must be a list of subtask indexes"))?,
        ),
        None => None,
    };
    vertex_view(&c, &id, &vid, |w| {
        let (vertex, all) = (w.vertex(), w.all.as_slice());
        let mut by_id: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for m in vertex_metric_list(all, vertex) {
            if subtasks.as_ref().is_none_or(|s| s.contains(&m.subtask)) {
                by_id.entry(m.id).or_default().push(m.value);
            }
        }
        aggregated_answer(&params, by_id).map(Json)
    })?
}

/// `GET /jobs/:id/metrics`: the job's metrics in Flink's job scope.
pub(super) async fn job_metrics(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Answer {
    let now = eddy_core::time::now_millis();
    c.job(&id, |e| {
        let all = e.metrics(now).map(|(k, v)| (k.to_string(), v));
        Json(metrics_answer(&params, all))
    })
    .ok_or_else(|| not_found("job"))
}

/// `GET /jobs/metrics?get=..&agg=..&jobs=..`: job metrics aggregated over the jobs.
pub(super) async fn aggregated_job_metrics(
    State(c): State<Shared>,
    Query(params): Params,
) -> Answer {
    let now = eddy_core::time::now_millis();
    let jobs = selection(&params, "jobs");
    let mut by_id: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (id, e) in c.jobs.lock().iter() {
        if jobs
            .as_ref()
            .is_none_or(|j| j.contains(&id.to_string().as_str()))
        {
            for (k, v) in e.metrics(now) {
                by_id.entry(k.to_string()).or_default().push(v);
            }
        }
    }
    aggregated_answer(&params, by_id).map(Json)
}

/// A TaskManager's metrics: its processes' and its slots.
fn taskmanager_metric_list(t: &super::TaskManagerInfo) -> impl Iterator<Item = (String, f64)> {
    t.process
        .flink_metrics()
        .into_iter()
        .chain([
            ("Status.Slots.Total", t.registration.slots as f64),
            ("Status.Slots.Free", t.free_slots as f64),
        ])
        .map(|(k, v)| (k.to_string(), v))
}

/// `GET /taskmanagers/metrics?get=..&agg=..&taskmanagers=..`: TaskManager metrics aggregated
/// over the TaskManagers.
pub(super) async fn aggregated_taskmanager_metrics(
    State(c): State<Shared>,
    Query(params): Params,
) -> Answer {
    let selected = selection(&params, "taskmanagers");
    let mut by_id: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (id, t) in c.resources.lock().taskmanagers.iter() {
        if selected.as_ref().is_none_or(|s| s.contains(&id.as_str())) {
            for (k, v) in taskmanager_metric_list(t) {
                by_id.entry(k).or_default().push(v);
            }
        }
    }
    aggregated_answer(&params, by_id).map(Json)
}

/// `GET /jobs/:id/vertices/:vid/watermarks`: each subtask's input watermark.
pub(super) async fn watermarks(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        let (vertex, all) = (w.vertex(), w.all.as_slice());
        let rows: Vec<Value> = vertex_metric_list(all, vertex)
            .into_iter()
            .filter(|m| m.id == "currentInputWatermark")
            .map(|m| {
                json!({
                    "id": format!("{}.currentInputWatermark", m.subtask),
                    "value": value_text(m.value),
                })
            })
            .collect();
        Json(json!(rows))
    })
}

/// Flink's back pressure levels of a ratio of time back-pressured.
fn level(ratio: f64) -> &'static str {
    if ratio > 0.5 {
        "high"
    } else if ratio > 0.1 {
        "low"
    } else {
        "ok"
    }
}

/// `GET /jobs/:id/vertices/:vid/backpressure`, from the subtasks' back-pressured, idle and busy
/// time per second.
pub(super) async fn backpressure(
    State(c): State<Shared>,
    Path((id, vid)): Path<(String, String)>,
) -> Answer {
    vertex_view(&c, &id, &vid, |w| {
        let (vertex, all) = (w.vertex(), w.all.as_slice());
        let view = vertex_metric_list(all, vertex);
        let ratio = |s: u32, name: &str| {
            view.iter()
                .find(|m| m.subtask == s && m.id == name)
                .map_or(0.0, |m| (m.value / 1000.0).clamp(0.0, 1.0))
        };
        let subtasks: Vec<Value> = (0..vertex.parallelism)
            .map(|s| {
                let bp = ratio(s, "backPressuredTimeMsPerSecond");
                json!({
                    "subtask": s,
                    "attempt-number": 0,
                    "backpressureLevel": level(bp),
                    "backpressure-level": level(bp),
                    "ratio": bp,
                    "idleRatio": ratio(s, "idleTimeMsPerSecond"),
                    "busyRatio": ratio(s, "busyTimeMsPerSecond"),
                })
            })
            .collect();
        let worst = (0..vertex.parallelism)
            .map(|s| ratio(s, "backPressuredTimeMsPerSecond"))
            .fold(0.0, f64::max);
        Json(json!({
            "status": "ok",
            "backpressureLevel": level(worst),
            "backpressure-level": level(worst),
            "end-timestamp": eddy_core::time::now_millis(),
            "subtasks": subtasks,
        }))
    })
}

/// `GET /jobmanager/metrics`: the JobManager process and the cluster's gauges.
pub(super) async fn jobmanager_metrics(State(c): State<Shared>, Query(params): Params) -> Answer {
    let (tms, total, free) = {
        let r = c.resources.lock();
        (r.taskmanagers.len(), r.total_slots(), r.free_slots())
    };
    let running = c
        .jobs
        .lock()
        .iter()
        .filter(|(_, e)| !e.client.job_status().is_terminal())
        .count();
    let process = tokio::task::spawn_blocking(|| ProcessMetrics::read(&[]))
        .await
        .map_err(super::rest::internal)?;
    let gauges = [
        ("numRegisteredTaskManagers", tms as f64),
        ("taskSlotsTotal", total as f64),
        ("taskSlotsAvailable", free as f64),
        ("numRunningJobs", running as f64),
    ];
    let all = process
        .flink_metrics()
        .into_iter()
        .chain(gauges)
        .map(|(k, v)| (k.to_string(), v));
    Ok(Json(metrics_answer(&params, all)))
}

/// `GET /taskmanagers/:id/metrics`: the TaskManager's and its workers' processes, as of its
/// last heartbeat.
pub(super) async fn taskmanager_metrics(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Answer {
    let r = c.resources.lock();
    let t = r
        .taskmanagers
        .get(&id)
        .ok_or_else(|| not_found("TaskManager"))?;
    Ok(Json(metrics_answer(&params, taskmanager_metric_list(t))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_flinks_mean_absolute_deviation_over_the_mean() {
        assert_eq!(skew(&[5.0, 5.0, 5.0]), 0.0);
        assert_eq!(skew(&[0.0, 0.0]), 0.0);
        // Mean 2, deviations 1 and 1: 50 %.
        assert_eq!(skew(&[1.0, 3.0]), 50.0);
        assert_eq!(skew(&[0.0, 0.0, 0.0, 100.0]), 100.0);
    }

    #[test]
    fn values_are_strings_as_flink_writes_them() {
        assert_eq!(value_text(11467.0), "11467");
        assert_eq!(value_text(0.25), "0.25");
        assert_eq!(value_text(-9.223372036854776e18), "-9223372036854775808");
        let params: HashMap<String, String> = [("get".to_string(), "b, a,zz".to_string())].into();
        let answer = metrics_answer(&params, [("a".to_string(), 1.0), ("b".to_string(), 2.5)]);
        assert_eq!(
            answer,
            json!([{"id": "b", "value": "2.5"}, {"id": "a", "value": "1"}])
        );
        let list = metrics_answer(&HashMap::new(), [("a".to_string(), 1.0)]);
        assert_eq!(list, json!([{"id": "a"}]));
    }

    #[test]
    fn operator_names_become_metric_scopes() {
        assert_eq!(metric_scope("Source: events"), "Source__events");
        assert_eq!(
            metric_scope("Timestamps/Watermarks"),
            "Timestamps/Watermarks"
        );
    }
}
