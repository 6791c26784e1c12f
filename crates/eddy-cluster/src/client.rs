//! The CLI's verbs, as calls to the JobManager's REST API.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, multipart};
use serde_json::{Value, json};

use crate::{ClusterError, Result};

/// A client of one JobManager's REST API.
pub struct RestClient {
    base: String,
    http: Client,
}

impl RestClient {
    /// A client for `address` (`host:port` or `http://host:port`).
    pub fn new(address: &str) -> Result<Self> {
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", address.trim_end_matches('/'))
        };
        let http = Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| ClusterError::Rest(format!("cannot create an HTTP client: {e}")))?;
        Ok(RestClient { base, http })
    }

    fn answer(&self, what: &str, r: reqwest::Result<reqwest::blocking::Response>) -> Result<Value> {
        let r = r.map_err(|e| {
            ClusterError::Rest(format!("cannot reach the JobManager at {}: {e}", self.base))
        })?;
        let status = r.status();
        let body: Value = r.json().unwrap_or(Value::Null);
        if !status.is_success() {
            let errors = body["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            return Err(ClusterError::Rest(format!(
                "{what} failed ({status}): {errors}"
            )));
        }
        Ok(body)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.answer(path, self.http.get(format!("{}{path}", self.base)).send())
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.answer(
            path,
            self.http
                .post(format!("{}{path}", self.base))
                .json(body)
                .send(),
        )
    }

    /// `PATCH path`.
    pub fn patch(&self, path: &str) -> Result<Value> {
        self.answer(path, self.http.patch(format!("{}{path}", self.base)).send())
    }

    /// Uploads a program; returns its id.
    pub fn upload(&self, program: &Path) -> Result<String> {
        let bytes = std::fs::read(program)
            .map_err(|e| ClusterError::io(format!("cannot read {}", program.display()), e))?;
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "program".into());
        let form =
            multipart::Form::new().part("jarfile", multipart::Part::bytes(bytes).file_name(name));
        let body = self.answer(
            "upload",
            self.http
                .post(format!("{}/jars/upload", self.base))
                .multipart(form)
                .send(),
        )?;
        body["filename"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClusterError::Rest("the upload answer has no file name".into()))
    }

    /// A job's state.
    pub fn job_state(&self, job_id: &str) -> Result<String> {
        Ok(self.get(&format!("/jobs/{job_id}"))?["state"]
            .as_str()
            .unwrap_or("UNKNOWN")
            .to_string())
    }

    /// Waits until the job is in one of `states` (or any terminal state); returns its state.
    pub fn wait_for(
        &self,
        job_id: &str,
        states: &[&str],
        timeout: Option<Duration>,
    ) -> Result<String> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let s = self.job_state(job_id)?;
            if states.contains(&s.as_str())
                || matches!(s.as_str(), "FINISHED" | "CANCELED" | "FAILED")
            {
                return Ok(s);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls an asynchronous operation until it completes; returns the savepoint location. A
    /// failed savepoint's status is an error naming its cause.
    pub fn wait_operation(&self, job_id: &str, trigger: &str) -> Result<String> {
        loop {
            let v = self
                .get(&format!("/jobs/{job_id}/savepoints/{trigger}"))
                .map_err(|e| ClusterError::Rest(format!("the savepoint failed: {e}")))?;
            if v["status"]["id"] == "COMPLETED" {
                return v["operation"]["location"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ClusterError::Rest(format!("the savepoint's status names no location: {v}"))
                    });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What `eddy run` was asked.
pub struct RunOptions<'a> {
    /// The program.
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [String],
    /// `-p`.
    pub parallelism: Option<u32>,
    /// `-d`.
    pub detached: bool,
    /// `-s`.
    pub savepoint: Option<&'a str>,
    /// `--allowNonRestoredState`.
    pub allow_non_restored_state: bool,
}

/// `eddy run`: uploads the program, runs it, and unless detached waits for the job to end.
/// Returns the job's final (or, detached, current) state.
pub fn run(client: &RestClient, o: &RunOptions<'_>) -> Result<String> {
    let jar = client.upload(o.program)?;
    let mut body =
        json!({ "programArgsList": o.args, "allowNonRestoredState": o.allow_non_restored_state });
    if let Some(p) = o.parallelism {
        body["parallelism"] = json!(p);
    }
    if let Some(s) = o.savepoint {
        body["savepointPath"] = json!(s);
    }
    let answer = client.post(&format!("/jars/{jar}/run"), &body)?;
    let job_id = answer["jobid"]
        .as_str()
        .ok_or_else(|| ClusterError::Rest("the run answer has no job id".into()))?
        .to_string();
    println!("Job has been submitted with JobID {job_id}");
    if o.detached {
        return client.job_state(&job_id);
    }
    let state = client.wait_for(&job_id, &[], None)?;
    println!("Job {job_id} ended: {state}");
    if state == "FAILED" {
        let ex = client.get(&format!("/jobs/{job_id}/exceptions"))?;
        if let Some(root) = ex["root-exception"].as_str() {
            eprintln!("Root cause: {root}");
        }
    }
    Ok(state)
}

/// `eddy list`: running and finished jobs, as Flink prints them.
pub fn list(client: &RestClient) -> Result<String> {
    let v = client.get("/jobs/overview")?;
    let mut running = Vec::new();
    let mut finished = Vec::new();
    for j in v["jobs"].as_array().into_iter().flatten() {
        let line = format!(
            "{} : {} : {} ({})",
            j["start-time"],
            j["jid"].as_str().unwrap_or(""),
            j["name"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or("")
        );
        match j["state"].as_str() {
            Some("FINISHED" | "CANCELED" | "FAILED") => finished.push(line),
            _ => running.push(line),
        }
    }
    let mut out = String::new();
    out.push_str("------------------ Running/Restarting Jobs -------------------\n");
    if running.is_empty() {
        out.push_str("No running jobs.\n");
    }
    for l in running {
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str("--------------------------------------------------------------\n");
    out.push_str("---------------------- Terminated Jobs -----------------------\n");
    for l in finished {
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}
