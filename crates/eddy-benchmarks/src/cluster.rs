//! A JobManager and TaskManagers started from the `eddy` binary, driven over the REST API.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// A free port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running cluster: its processes are killed when it is dropped.
pub struct Cluster {
    rest: String,
    /// The JobManager, then the TaskManagers.
    pub processes: Vec<Child>,
    http: reqwest::blocking::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Cluster {
    /// Starts a JobManager and `taskmanagers` TaskManagers of one slot each, working under
    /// `dir`, and waits until all have registered.
    pub fn start(eddy: &Path, dir: &Path, taskmanagers: usize) -> Result<Self> {
        let (rest_port, rpc_port) = (free_port()?, free_port()?);
        let mut processes = vec![
            Command::new(eddy)
                .args(["-D", &format!("rest.port={rest_port}")])
                .args(["-D", &format!("jobmanager.rpc.port={rpc_port}")])
                .args(["jobmanager", "--work-dir"])
                .arg(dir.join("jm"))
                .env("EDDY_LOG_DIR", dir.join("log"))
                .stdout(Stdio::null())
                .spawn()?,
        ];
        for i in 0..taskmanagers {
            processes.push(
                Command::new(eddy)
                    .args(["-D", &format!("jobmanager.rpc.port={rpc_port}")])
                    .args(["-D", "taskmanager.numberOfTaskSlots=1"])
                    .args(["-D", &format!("taskmanager.resource-id=tm{i}")])
                    .args(["taskmanager", "--work-dir"])
                    .arg(dir.join("tm"))
                    .env("EDDY_LOG_DIR", dir.join("log"))
                    .stdout(Stdio::null())
                    .spawn()?,
            );
        }
        let cluster = Cluster {
            rest: format!("http://127.0.0.1:{rest_port}"),
            processes,
            http: reqwest::blocking::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster
            .get("/overview")
            .ok()
            .map(|o| o["taskmanagers"].clone())
            != Some(json!(taskmanagers))
        {
            if Instant::now() > deadline {
                bail!("the cluster did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(cluster)
    }

    /// GETs `path` from the REST API.
    pub fn get(&self, path: &str) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.rest))
            .send()?
            .json()?)
    }

    /// Uploads a program; returns its id.
    pub fn upload(&self, program: &Path) -> Result<String> {
        let form = reqwest::blocking::multipart::Form::new().part(
            "jarfile",
            reqwest::blocking::multipart::Part::bytes(std::fs::read(program)?).file_name(
                program
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        );
        let v: Value = self
            .http
            .post(format!("{}/jars/upload", self.rest))
            .multipart(form)
            .send()?
            .json()?;
        Ok(v["filename"].as_str().context("upload failed")?.to_string())
    }

    /// Runs an uploaded program with `args`; returns the job id.
    pub fn run(&self, jar: &str, args: &[String]) -> Result<String> {
        let v: Value = self
            .http
            .post(format!("{}/jars/{jar}/run", self.rest))
            .json(&json!({ "programArgsList": args }))
            .send()?
            .json()?;
        Ok(v["jobid"]
            .as_str()
            .with_context(|| format!("run failed: {v}"))?
            .to_string())
    }

    /// Polls until the job is in `state` (or has ended); returns when it was seen.
    pub fn wait(&self, job: &str, state: &str, poll: Duration) -> Result<Instant> {
        loop {
            let s = self.get(&format!("/jobs/{job}"))?["state"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if s == state {
                return Ok(Instant::now());
            }
            if matches!(s.as_str(), "FAILED" | "CANCELED") || (s == "FINISHED" && state != s) {
                bail!("job {job} is {s}, waiting for {state}");
            }
            std::thread::sleep(poll);
        }
    }
}
