//! The cluster as processes: a JobManager and TaskManagers started from the `eddy` binary, jobs
//! submitted with `eddy run`, outputs checked against brute-force oracles, TaskManagers killed
//! with SIGKILL, and the REST API fed bad requests.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::window_oracle::sorted;
use common::{
    brute_force_counts, check_region_failover, committed_lines, example_bin, random_text,
    read_counts, window_args, window_input,
};
use serde_json::Value;

fn eddy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_eddy"))
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to process `pid`.
fn signal(pid: &str, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}").as_str(), pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A JobManager and TaskManagers on free ports, killed when dropped.
struct TestCluster {
    dir: tempfile::TempDir,
    rest_port: u16,
    rpc_port: u16,
    prometheus_port: u16,
    jobmanager: Child,
    taskmanagers: Vec<(String, Child)>,
}

impl TestCluster {
    fn start(taskmanagers: usize, slots: u32) -> Self {
        Self::start_with(taskmanagers, slots, &[])
    }

    /// A cluster whose JobManager also gets `properties` (`key=value`).
    fn start_with(taskmanagers: usize, slots: u32, properties: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rest_port = free_port();
        let rpc_port = free_port();
        let prometheus_port = free_port();
        let jobmanager = Command::new(eddy_bin())
            .args(properties.iter().flat_map(|p| ["-D", p]))
            .args([
                "-D",
                &format!("metrics.reporter.prom.port={prometheus_port}"),
                "-D",
                &format!("rest.port={rest_port}"),
                "-D",
                &format!("jobmanager.rpc.port={rpc_port}"),
                "-D",
                "heartbeat.timeout=3s",
                "jobmanager",
                "--work-dir",
            ])
            .arg(dir.path().join("jm"))
            .env("EDDY_LOG_DIR", dir.path().join("log"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut cluster = TestCluster {
            dir,
            rest_port,
            rpc_port,
            prometheus_port,
            jobmanager,
            taskmanagers: Vec::new(),
        };
        for i in 0..taskmanagers {
            cluster.add_taskmanager(&format!("tm{i}"), slots);
        }
        cluster.wait_until(
            "every TaskManager registered",
            Duration::from_secs(30),
            |c| {
                c.get("/overview")
                    .is_some_and(|o| o["taskmanagers"] == taskmanagers as u64)
            },
        );
        cluster
    }

    fn add_taskmanager(&mut self, id: &str, slots: u32) {
        let child = Command::new(eddy_bin())
            .args([
                "-D",
                &format!("jobmanager.rpc.port={}", self.rpc_port),
                "-D",
                &format!("taskmanager.numberOfTaskSlots={slots}"),
                "-D",
                &format!("taskmanager.resource-id={id}"),
                "-D",
                "heartbeat.interval=500ms",
                "-D",
                "metrics.reporter.prom.port=0",
                "taskmanager",
                "--work-dir",
            ])
            .arg(self.dir.path().join("tm"))
            .env("EDDY_LOG_DIR", self.dir.path().join("log"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.taskmanagers.push((id.to_string(), child));
    }

    fn kill_taskmanager(&mut self, id: &str) {
        let pos = self.taskmanagers.iter().position(|(t, _)| t == id).unwrap();
        let (_, mut child) = self.taskmanagers.remove(pos);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    /// Each TaskManager's Prometheus port, from the REST API, by TaskManager id.
    fn taskmanager_prometheus_ports(&self) -> Vec<u16> {
        self.get("/taskmanagers").unwrap()["taskmanagers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tm| {
                tm["prometheusPort"]
                    .as_u64()
                    .expect("a TaskManager metrics port") as u16
            })
            .collect()
    }

    fn rest(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    fn get(&self, path: &str) -> Option<Value> {
        reqwest::blocking::get(format!("{}{path}", self.rest()))
            .ok()?
            .json()
            .ok()
    }

    fn request(&self, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
        let r = reqwest::blocking::Client::new()
            .request(method, format!("{}{path}", self.rest()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    fn wait_until(&self, what: &str, timeout: Duration, f: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; JobManager log:\n{}",
                self.log("eddy-jobmanager.log")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn job_state(&self, job: &str) -> String {
        self.get(&format!("/jobs/{job}"))
            .and_then(|j| j["state"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("log").join(name)).unwrap_or_default()
    }

    /// `eddy <args>` against this cluster.
    fn eddy(&self, args: &[&str]) -> Output {
        Command::new(eddy_bin())
            .args(["-D", &format!("rest.port={}", self.rest_port)])
            .args(args)
            .env_remove("EDDY_CONF_DIR")
            .output()
            .unwrap()
    }

    /// `eddy <args>`, which must succeed; its standard output.
    fn eddy_ok(&self, args: &[&str]) -> String {
        let out = self.eddy(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "eddy {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `eddy run -d` and the submitted job's id.
    fn submit(&self, p: u32, program: &str, args: &[String]) -> String {
        let p = p.to_string();
        let bin = example_bin(program);
        let mut all = vec!["run", "-d", "-p", &p, bin.to_str().unwrap(), "--"];
        all.extend(args.iter().map(String::as_str));
        self.eddy_ok(&all)
            .lines()
            .find_map(|l| l.strip_prefix("Job has been submitted with JobID "))
            .expect("job id")
            .trim()
            .to_string()
    }

    fn wait_checkpoints(&self, job: &str, completed: u64) {
        self.wait_until(
            &format!("job {job} completed {completed} checkpoint(s)"),
            Duration::from_secs(60),
            |c| {
                c.get(&format!("/jobs/{job}/checkpoints"))
                    .is_some_and(|v| v["counts"]["completed"].as_u64().unwrap_or(0) >= completed)
            },
        );
    }

    fn wait_state(&self, job: &str, state: &str, timeout: Duration) {
        self.wait_until(&format!("job {job} is {state}"), timeout, |c| {
            let s = c.job_state(job);
            assert!(
                s == state || !matches!(s.as_str(), "FINISHED" | "CANCELED" | "FAILED"),
                "job {job} ended {s}, not {state}: {:?}",
                c.get(&format!("/jobs/{job}/exceptions"))
            );
            s == state
        });
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.taskmanagers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.jobmanager.kill();
        let _ = self.jobmanager.wait();
    }
}

#[test]
fn word_count_on_two_taskmanagers_equals_the_brute_force_count() {
    let cluster = TestCluster::start(2, 2);
    let overview = cluster.get("/overview").unwrap();
    assert_eq!(overview["taskmanagers"], 2);
    assert_eq!(overview["slots-total"], 4);
    assert_eq!(overview["slots-available"], 4);

    let text = random_text(5, 5_000);
    let input = cluster.dir.path().join("words.txt");
    std::fs::write(&input, &text).unwrap();
    let output = cluster.dir.path().join("counts");
    let bin = example_bin("word_count");
    let stdout = cluster.eddy_ok(&[
        "run",
        "-p",
        "4",
        bin.to_str().unwrap(),
        "--",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(stdout.contains("FINISHED"), "{stdout}");
    assert_eq!(read_counts(&output), brute_force_counts(&text));

    // The job ran on both TaskManagers: each started a worker for it.
    let job = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Job has been submitted with JobID "))
        .unwrap()
        .trim()
        .to_string();
    for tm in ["tm0", "tm1"] {
        let log = cluster
            .dir
            .path()
            .join("log")
            .join(format!("eddy-worker-{tm}-{job}-0.log"));
        assert!(log.exists(), "no worker ran on {tm}");
    }
    let details = cluster.get(&format!("/jobs/{job}")).unwrap();
    assert_eq!(details["state"], "FINISHED");
    let vertices = details["vertices"].as_array().unwrap();
    assert!(vertices.iter().any(|v| v["parallelism"] == 4));
    for v in vertices {
        assert_eq!(v["status"], "FINISHED", "{v}");
        assert_eq!(v["tasks"]["FINISHED"], v["parallelism"], "{v}");
        let vid = v["id"].as_str().unwrap();
        let sub = cluster.get(&format!("/jobs/{job}/vertices/{vid}")).unwrap();
        let subtasks = sub["subtasks"].as_array().unwrap();
        assert_eq!(subtasks.len() as u64, v["parallelism"].as_u64().unwrap());
        assert!(subtasks.iter().all(|s| s["status"] == "FINISHED"), "{sub}");
    }
    assert_eq!(details["status-counts"]["FINISHED"], vertices.len());
    assert_eq!(
        details["plan"]["nodes"].as_array().unwrap().len(),
        vertices.len()
    );
    assert_eq!(cluster.get("/overview").unwrap()["slots-available"], 4);
    assert!(cluster.eddy_ok(&["list"]).contains(&job));
    // The same API under /v1/, where Flink's CLI and dashboard look for it.
    assert_eq!(
        cluster.get(&format!("/v1/jobs/{job}")).unwrap()["state"],
        "FINISHED"
    );
    assert_eq!(
        cluster.get("/v1/overview").unwrap()["taskmanagers"],
        cluster.get("/overview").unwrap()["taskmanagers"]
    );

    // Logs: one file per process, served through the REST API.
    let logs = cluster.get("/jobmanager/logs").unwrap();
    assert_eq!(logs["logs"][0]["name"], "eddy-jobmanager.log", "{logs}");
    let text = reqwest::blocking::get(format!(
        "{}/jobmanager/logs/eddy-jobmanager.log",
        cluster.rest()
    ))
    .unwrap()
    .text()
    .unwrap();
    assert!(text.contains("job submitted"), "{text}");
    let logs = cluster.get("/taskmanagers/tm0/logs").unwrap();
    let names: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    let worker_log = format!("eddy-worker-tm0-{job}-0.log");
    assert!(
        names.contains(&"eddy-taskmanager-tm0.log") && names.contains(&worker_log.as_str()),
        "{names:?}"
    );
    let r = reqwest::blocking::get(format!(
        "{}/taskmanagers/tm0/logs/eddy-taskmanager-tm0.log",
        cluster.rest()
    ))
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().unwrap().contains("registered with the JobManager"));

    // Records into the counter, as the workers reported them to the REST API.
    let counter = vertices
        .iter()
        .find(|v| v["name"].as_str().unwrap().starts_with("Counter"))
        .expect("the Counter vertex");
    let total_words: i64 = brute_force_counts(&text_input(&cluster)).values().sum();
    assert_eq!(
        counter["metrics"]["read-records"].as_f64().unwrap() as i64,
        total_words,
        "records into the counter: {counter}"
    );

    // Prometheus: the JobManager serves its own metrics and its jobs'; each TaskManager its
    // own (and its running tasks', checked in the failover test).
    let text = prometheus(cluster.prometheus_port);
    assert!(
        text.contains("flink_jobmanager_numRegisteredTaskManagers 2"),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("flink_jobmanager_job_numberOfCompletedCheckpoints{")
                && l.contains(&job)
        ),
        "{text}"
    );
    assert!(!text.contains("flink_taskmanager_job_task"), "{text}");
    for port in cluster.taskmanager_prometheus_ports() {
        let text = prometheus(port);
        assert!(
            text.contains("flink_taskmanager_numberOfTaskSlots 2"),
            "{text}"
        );
    }
}

fn prometheus(port: u16) -> String {
    reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

/// The sum of a task metric over the lines of a Prometheus text that carry every label in
/// `labels`.
fn sum_metric(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && labels.iter().all(|x| l.contains(x)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn text_input(cluster: &TestCluster) -> String {
    std::fs::read_to_string(cluster.dir.path().join("words.txt")).unwrap()
}

#[test]
fn a_killed_taskmanager_fails_the_job_over_with_exactly_once_output() {
    killed_taskmanager_case(false);
}

#[test]
fn a_killed_taskmanager_fails_over_from_unaligned_checkpoints_with_exactly_once_output() {
    killed_taskmanager_case(true);
}

/// Kills a TaskManager under a checkpointed job of four subtasks on two TaskManagers, and
/// checks that the job fails over and its output is the oracle's; with `unaligned`, after
/// checkpoints that held in-flight data from channels between processes.
fn killed_taskmanager_case(unaligned: bool) {
    let mut cluster = TestCluster::start(2, 2);
    let d = cluster.dir.path().to_path_buf();
    let (input, expected) = window_input(&d, 11, 8_000);
    let (out, mut args) = window_args(&d, &input, "run", 1000);
    if unaligned {
        args.extend([
            "-D".into(),
            "execution.checkpointing.unaligned.enabled=true".into(),
        ]);
    }
    let job = cluster.submit(4, "event_time_windows", &args);
    cluster.wait_state(&job, "RUNNING", Duration::from_secs(60));
    cluster.wait_checkpoints(&job, 2);
    if unaligned {
        // Records waiting in the writers' buffers (flushed every 100 ms) are overtaken by the
        // barriers and go into the checkpoints.
        cluster.wait_until(
            "a completed unaligned checkpoint holds in-flight data",
            Duration::from_secs(30),
            |c| {
                c.get(&format!("/jobs/{job}/checkpoints")).is_some_and(|v| {
                    v["history"].as_array().unwrap().iter().any(|h| {
                        h["status"] == "COMPLETED"
                            && h["checkpoint_type"] == "UNALIGNED_CHECKPOINT"
                            && h["persisted_data"].as_u64().unwrap_or(0) > 0
                    })
                })
            },
        );
        let config = cluster
            .get(&format!("/jobs/{job}/checkpoints/config"))
            .unwrap();
        assert_eq!(config["unaligned_checkpoints"], true, "{config}");
    }

    // Each TaskManager serves the metrics of the tasks it runs, labelled with its id.
    cluster.wait_until(
        "both TaskManagers serve the job's task metrics",
        Duration::from_secs(10),
        |c| {
            c.get("/taskmanagers").unwrap()["taskmanagers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|tm| {
                    let text = prometheus(tm["prometheusPort"].as_u64().unwrap() as u16);
                    let id = format!("tm_id=\"{}\"", tm["id"].as_str().unwrap());
                    sum_metric(
                        &text,
                        "flink_taskmanager_job_task_operator_numRecordsIn",
                        &[&job, &id],
                    ) > 0.0
                })
        },
    );

    cluster.kill_taskmanager("tm1");
    cluster.wait_until("the job restarts", Duration::from_secs(30), |c| {
        matches!(c.job_state(&job).as_str(), "RESTARTING" | "FAILING")
    });
    // Two slots are left; the job needs four, so a new TaskManager takes tm1's place.
    cluster.add_taskmanager("tm2", 2);
    cluster.wait_state(&job, "RUNNING", Duration::from_secs(60));
    let details = cluster.get(&format!("/jobs/{job}")).unwrap();
    let window = details["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["parallelism"] == 4)
        .unwrap()
        .clone();
    let sub = cluster
        .get(&format!(
            "/jobs/{job}/vertices/{}",
            window["id"].as_str().unwrap()
        ))
        .unwrap();
    assert!(
        sub["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["attempt"].as_u64().unwrap() >= 1),
        "the restarted attempt's subtasks: {sub}"
    );
    cluster.wait_state(&job, "FINISHED", Duration::from_secs(120));

    let exceptions = cluster.get(&format!("/jobs/{job}/exceptions")).unwrap();
    let root = exceptions["exceptionHistory"]["entries"][0]["stacktrace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        root.contains("tm1"),
        "the failure names the lost TaskManager: {root}"
    );
    let checkpoints = cluster.get(&format!("/jobs/{job}/checkpoints")).unwrap();
    assert!(checkpoints["counts"]["restored"].as_u64().unwrap() >= 1);
    assert_eq!(sorted(committed_lines(&out)), expected);
}

#[test]
fn a_failed_task_restarts_only_its_pipelined_region_on_the_cluster() {
    let cluster = TestCluster::start(2, 2);
    let out = cluster.dir.path().join("regions");
    let (records, keys) = (20_000i64, 7i64);
    // In subtask 1's range of the numbers pipeline; its slot is shared with the sums
    // pipeline's subtasks, which keep running, so the restart takes one of the free slots.
    let fail_at = records - records / 4;
    let args: Vec<String> = [
        "--output",
        out.to_str().unwrap(),
        "--records",
        &records.to_string(),
        "--keys",
        &keys.to_string(),
        "--fail-at",
        &fail_at.to_string(),
        "--pause-ms",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let job = cluster.submit(2, "region_failover", &args);
    cluster.wait_state(&job, "FINISHED", Duration::from_secs(120));
    check_region_failover(&out, records, keys, 2, 1);

    // The REST API shows each subtask's own attempt: only the failed one has a new one.
    let details = cluster.get(&format!("/jobs/{job}")).unwrap();
    for v in details["vertices"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let vid = v["id"].as_str().unwrap();
        let vertex = cluster.get(&format!("/jobs/{job}/vertices/{vid}")).unwrap();
        let attempts: Vec<u64> = vertex["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["attempt"].as_u64().unwrap())
            .collect();
        if name.contains("Numbers") {
            assert_eq!(attempts[0], 0, "{name}: {attempts:?}");
            assert!(attempts[1] >= 1, "{name}: {attempts:?}");
        } else {
            assert_eq!(attempts, vec![0, 0], "{name} was never restarted");
        }
    }
    let log = cluster.log("eddy-jobmanager.log");
    assert!(log.contains("restarting its pipelined region"), "{log}");
}

/// `eddy -D ... run-application ARGS` with logs under `dir`: whether it succeeded, and its
/// standard output and error. Fails the test if it runs longer than two minutes.
fn run_application(dir: &Path, properties: &[String], args: &[String]) -> (bool, String, String) {
    let child = Command::new(eddy_bin())
        .args(properties.iter().flat_map(|p| ["-D", p.as_str()]))
        .arg("run-application")
        .args(args)
        .env("EDDY_LOG_DIR", dir.join("log"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => {
            let out = out.unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
        Err(_) => {
            signal(&pid, "KILL");
            panic!("run-application did not end within two minutes");
        }
    }
}

#[test]
fn run_application_runs_the_program_on_its_own_cluster_which_ends_with_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = random_text(5, 3_000);
    let input = d.join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let (rest_port, rpc_port) = (free_port(), free_port());
    let properties = vec![
        format!("rest.port={rest_port}"),
        format!("jobmanager.rpc.port={rpc_port}"),
        "metrics.reporter.prom.port=0".to_string(),
        "restart-strategy.type=none".to_string(),
    ];
    let run = |input: &Path, out: &Path, work: &str| {
        let args: Vec<String> = [
            "-p",
            "2",
            "--taskmanagers",
            "2",
            "--work-dir",
            d.join(work).to_str().unwrap(),
            example_bin("word_count").to_str().unwrap(),
            "--",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        run_application(d, &properties, &args)
    };

    let out = d.join("counts");
    let (ok, stdout, stderr) = run(&input, &out, "first");
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("ended: FINISHED"), "{stdout}");
    assert_eq!(read_counts(&out), brute_force_counts(&text));
    // The cluster ended with its job: the JobManager's ports are closed, and both
    // TaskManagers were told to exit.
    assert!(std::net::TcpStream::connect(("127.0.0.1", rest_port)).is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", rpc_port)).is_err());
    for tm in ["application-tm0", "application-tm1"] {
        let log = std::fs::read_to_string(d.join("log").join(format!("eddy-taskmanager-{tm}.log")))
            .unwrap();
        assert!(log.contains("shuts the cluster down"), "{tm}: {log}");
    }

    // A job that fails ends the cluster too, with a failure status and the root cause.
    let (ok, stdout, stderr) = run(&d.join("missing.txt"), &d.join("none"), "second");
    assert!(!ok, "{stdout}{stderr}");
    assert!(stdout.contains("ended: FAILED"), "{stdout}");
    assert!(stderr.contains("missing.txt"), "{stderr}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", rest_port)).is_err());

    // A launcher killed while its job runs takes its cluster with it.
    let mut launcher = Command::new(eddy_bin())
        .args(properties.iter().flat_map(|p| ["-D", p.as_str()]))
        .args(["run-application", "--work-dir"])
        .arg(d.join("third"))
        .arg(example_bin("region_failover"))
        .args(["--", "--records", "10000000", "--output"])
        .arg(d.join("long"))
        .env("EDDY_LOG_DIR", d.join("log"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let up = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(up(rest_port) && d.join("long").join("opens").exists()) {
        assert!(
            Instant::now() < deadline,
            "the application cluster did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while up(rest_port) || up(rpc_port) {
        assert!(
            Instant::now() < deadline,
            "the JobManager outlived its killed launcher"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_crashed_worker_fails_only_its_own_job() {
    // One TaskManager runs both jobs' workers.
    let cluster = TestCluster::start(1, 4);
    let d = cluster.dir.path().to_path_buf();
    let (input_a, expected_a) = window_input(&d, 21, 6_000);
    let (input_b, expected_b) = window_input(&d, 22, 6_000);
    let (out_a, args_a) = window_args(&d, &input_a, "a", 1000);
    let (out_b, args_b) = window_args(&d, &input_b, "b", 1000);
    let a = cluster.submit(2, "event_time_windows", &args_a);
    let b = cluster.submit(2, "event_time_windows", &args_b);
    cluster.wait_state(&a, "RUNNING", Duration::from_secs(60));
    cluster.wait_state(&b, "RUNNING", Duration::from_secs(60));
    cluster.wait_checkpoints(&a, 1);

    // The TaskManager logs each worker's pid.
    let log = cluster.log("eddy-taskmanager-tm0.log");
    let pid = log
        .lines()
        .find(|l| l.contains("worker started") && l.contains(&a))
        .and_then(|l| l.split("pid=").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .unwrap_or_else(|| panic!("no worker of job {a} in the TaskManager's log:\n{log}"))
        .to_string();
    signal(&pid, "KILL");

    cluster.wait_state(&a, "FINISHED", Duration::from_secs(120));
    cluster.wait_state(&b, "FINISHED", Duration::from_secs(120));
    let exceptions = cluster.get(&format!("/jobs/{a}/exceptions")).unwrap();
    assert!(
        exceptions["root-exception"]
            .as_str()
            .is_some_and(|e| e.contains("worker process on TaskManager tm0 was lost")),
        "{exceptions}"
    );
    let checkpoints = cluster.get(&format!("/jobs/{a}/checkpoints")).unwrap();
    assert!(checkpoints["counts"]["restored"].as_u64().unwrap() >= 1);
    assert_eq!(sorted(committed_lines(&out_a)), expected_a);

    // The other job never noticed.
    let exceptions = cluster.get(&format!("/jobs/{b}/exceptions")).unwrap();
    assert!(exceptions["root-exception"].is_null(), "{exceptions}");
    let checkpoints = cluster.get(&format!("/jobs/{b}/checkpoints")).unwrap();
    assert_eq!(checkpoints["counts"]["restored"], 0, "{checkpoints}");
    assert_eq!(sorted(committed_lines(&out_b)), expected_b);
}

#[test]
fn cancel_and_stop_with_a_savepoint_then_resume() {
    let cluster = TestCluster::start(2, 2);
    let d = cluster.dir.path().to_path_buf();
    let (input, expected) = window_input(&d, 12, 6_000);

    // Cancel.
    let (_, args) = window_args(&d, &input, "cancelled", 500);
    let job = cluster.submit(2, "event_time_windows", &args);
    cluster.wait_state(&job, "RUNNING", Duration::from_secs(60));
    cluster.eddy_ok(&["cancel", &job]);
    assert_eq!(cluster.job_state(&job), "CANCELED");
    let details = cluster.get(&format!("/jobs/{job}")).unwrap();
    assert!(
        details["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["status"] == "CANCELED"),
        "{details}"
    );
    cluster.wait_until("the slots are free again", Duration::from_secs(30), |c| {
        c.get("/overview")
            .is_some_and(|o| o["slots-available"] == 4)
    });

    // Stop with a savepoint, then resume from it at another parallelism.
    let sp = d.join("sp");
    let (o2, args) = window_args(&d, &input, "stopped", 1000);
    let job = cluster.submit(2, "event_time_windows", &args);
    cluster.wait_state(&job, "RUNNING", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let stdout = cluster.eddy_ok(&["stop", "--savepointPath", sp.to_str().unwrap(), &job]);
    let savepoint = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
        .expect("savepoint path")
        .trim()
        .to_string();
    assert_eq!(cluster.job_state(&job), "FINISHED");
    let before = committed_lines(&o2);
    assert!(
        before.len() < expected.len(),
        "the job was stopped before its end"
    );

    let bin = example_bin("event_time_windows");
    let mut resume = vec![
        "run",
        "-p",
        "4",
        "-s",
        &savepoint,
        bin.to_str().unwrap(),
        "--",
    ];
    resume.extend(args.iter().map(String::as_str));
    cluster.eddy_ok(&resume);
    assert_eq!(sorted(committed_lines(&o2)), expected);
}

#[test]
fn a_job_without_enough_slots_waits_can_be_cancelled_and_fails_after_the_slot_request_timeout() {
    let mut cluster = TestCluster::start_with(1, 2, &["slot.request.timeout=15s"]);
    let d = cluster.dir.path().to_path_buf();
    let text = random_text(6, 2_000);
    let input = d.join("words.txt");
    std::fs::write(&input, &text).unwrap();
    let args = |run: &str| {
        vec![
            "--input".to_string(),
            input.to_str().unwrap().to_string(),
            "--output".to_string(),
            d.join(run).to_str().unwrap().to_string(),
        ]
    };
    let waiting = |c: &TestCluster, n: usize| {
        c.log("eddy-jobmanager.log")
            .matches("waiting for slots")
            .count()
            >= n
    };

    // Two slots, four needed: the job waits; a cancel ends the wait at once.
    let job = cluster.submit(4, "word_count", &args("cancelled"));
    cluster.wait_until("the job waits for slots", Duration::from_secs(30), |c| {
        waiting(c, 1)
    });
    let details = cluster.get(&format!("/jobs/{job}")).unwrap();
    assert_eq!(details["state"], "CREATED", "{details}");
    assert!(
        details["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["status"] == "SCHEDULED"),
        "{details}"
    );
    let asked = Instant::now();
    cluster.eddy_ok(&["cancel", &job]);
    assert_eq!(cluster.job_state(&job), "CANCELED");
    assert!(
        asked.elapsed() < Duration::from_secs(7),
        "the cancel waited for the slot request to time out: {:?}",
        asked.elapsed()
    );

    // Without a cancel, the job fails after slot.request.timeout, saying why.
    let job = cluster.submit(4, "word_count", &args("failed"));
    cluster.wait_state(&job, "FAILED", Duration::from_secs(60));
    let exceptions = cluster.get(&format!("/jobs/{job}/exceptions")).unwrap();
    let cause = exceptions["root-exception"].as_str().unwrap_or_default();
    assert!(
        cause.contains("could not get the 4 slots") && cause.contains("slot.request.timeout"),
        "{exceptions}"
    );

    // Slots that arrive while it waits let the job run.
    let job = cluster.submit(4, "word_count", &args("counts"));
    cluster.wait_until("the job waits for slots", Duration::from_secs(30), |c| {
        waiting(c, 3)
    });
    cluster.add_taskmanager("tm1", 2);
    cluster.wait_state(&job, "FINISHED", Duration::from_secs(60));
    assert_eq!(read_counts(&d.join("counts")), brute_force_counts(&text));
}

#[test]
fn bad_rest_requests_get_4xx_answers_and_the_jobmanager_keeps_running() {
    use reqwest::Method;
    let cluster = TestCluster::start(1, 1);
    let unknown = "00000000000000000000000000000000";
    for path in [
        format!("/jobs/{unknown}"),
        "/jobs/not-a-job-id".to_string(),
        format!("/jobs/{unknown}/vertices/abc"),
        format!("/jobs/{unknown}/checkpoints"),
        "/taskmanagers/nobody".to_string(),
        "/jobs/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/blobs/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/jobmanager/logs/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/taskmanagers/tm0/logs/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/taskmanagers/tm0/logs/eddy-jobmanager.log".to_string(),
        "/taskmanagers/nobody/logs".to_string(),
        "/no/such/path".to_string(),
    ] {
        let (status, body) = cluster.request(Method::GET, &path, "");
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(body["errors"].is_array(), "{path}: {body}");
    }
    let (status, _) = cluster.request(Method::PATCH, &format!("/jobs/{unknown}?mode=cancel"), "");
    assert_eq!(status, 404);
    let (status, _) = cluster.request(Method::PATCH, &format!("/jobs/{unknown}?mode=explode"), "");
    assert_eq!(status, 400);
    let (status, body) = cluster.request(Method::POST, "/jars/nothing/run", "{not json");
    assert_eq!(status, 400, "{body}");
    let (status, body) = cluster.request(Method::POST, "/jars/nothing/run", "{}");
    assert_eq!(status, 400, "{body}");
    let (status, _) = cluster.request(Method::POST, &format!("/jobs/{unknown}/savepoints"), "[1,2");
    assert_eq!(status, 400);
    let (status, _) = cluster.request(Method::POST, "/jars/upload", "not multipart");
    assert!((400..500).contains(&status));

    // An upload named with a path: stored under its hash, nowhere else.
    let form = reqwest::blocking::multipart::Form::new().part(
        "jarfile",
        reqwest::blocking::multipart::Part::bytes(b"#!/bin/sh\nexit 3\n".to_vec())
            .file_name("../../../escaped-upload"),
    );
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/jars/upload", cluster.rest()))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let id = r.json::<Value>().unwrap()["filename"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    for dir in [
        cluster.dir.path().to_path_buf(),
        cluster.dir.path().join("jm"),
        std::env::temp_dir(),
    ] {
        assert!(!dir.join("escaped-upload").exists());
    }
    // Running it fails clearly: it is not an Eddy program.
    let (status, body) = cluster.request(Method::POST, &format!("/jars/{id}/run"), "{}");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("did not build a job"),
        "{body}"
    );

    let overview = cluster
        .get("/overview")
        .expect("the JobManager still answers");
    assert_eq!(overview["taskmanagers"], 1);
}

#[test]
fn a_taskmanager_that_stops_heartbeating_is_declared_lost_and_registers_again() {
    let cluster = TestCluster::start(2, 2);
    let pid = cluster.taskmanagers[1].1.id().to_string();
    // Frozen, the TaskManager keeps its connection open but sends no heartbeats.
    signal(&pid, "STOP");
    cluster.wait_until(
        "the frozen TaskManager is declared lost",
        Duration::from_secs(20),
        |c| {
            c.get("/overview")
                .is_some_and(|o| o["taskmanagers"] == 1 && o["slots-total"] == 2)
        },
    );
    assert!(
        cluster
            .log("eddy-jobmanager.log")
            .contains("it missed its heartbeats"),
        "{}",
        cluster.log("eddy-jobmanager.log")
    );
    signal(&pid, "CONT");
    cluster.wait_until(
        "the TaskManager registers again",
        Duration::from_secs(20),
        |c| {
            c.get("/overview")
                .is_some_and(|o| o["taskmanagers"] == 2 && o["slots-total"] == 4)
        },
    );
}

/// A headless Chromium driven over the W3C WebDriver protocol by `chromedriver`.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Browser {
    fn start() -> Self {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect(
                "Chromium is not installed (scripts/test.sh installs chromium and chromium-driver)",
            );
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed (scripts/test.sh installs chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"performance": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1200"],
            },
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r: Value = self
            .http
            .request(
                method,
                format!("{}/session/{}{path}", self.base, self.session),
            )
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap();
        r["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call(
            reqwest::Method::POST,
            "/url",
            serde_json::json!({ "url": url }),
        );
    }

    /// Runs `script` in the page and returns its value.
    fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            serde_json::json!({"script": script, "args": []}),
        )
    }

    fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.eval(script);
            if !v.is_null() && v != Value::Bool(false) && v != 0 {
                return v;
            }
            assert!(Instant::now() < deadline, "the page never showed {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The HTTP requests the page made since the previous call, from Chromium's performance
    /// log: every URL answered, and each answer with an error status or load that failed.
    fn requests(&self) -> (Vec<String>, Vec<String>) {
        let log = self.call(
            reqwest::Method::POST,
            "/se/log",
            serde_json::json!({"type": "performance"}),
        );
        let (mut answered, mut failed) = (Vec::new(), Vec::new());
        for entry in log.as_array().into_iter().flatten() {
            let Some(m) = entry["message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
            else {
                continue;
            };
            let (method, params) = (&m["message"]["method"], &m["message"]["params"]);
            if method == "Network.responseReceived" {
                let r = &params["response"];
                let url = r["url"].as_str().unwrap_or_default().to_string();
                if r["status"].as_u64().is_some_and(|s| s >= 400) {
                    failed.push(format!("{} {url}", r["status"]));
                }
                answered.push(url);
            } else if method == "Network.loadingFailed" && params["canceled"] != true {
                failed.push(format!("load failed: {}", params["errorText"]));
            }
        }
        (answered, failed)
    }

    /// Clicks the element `css` selects, as a user would.
    fn click(&self, css: &str) {
        let e = self.call(
            reqwest::Method::POST,
            "/element",
            serde_json::json!({"using": "css selector", "value": css}),
        );
        let id = e["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {e}"))
            .to_string();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            serde_json::json!({}),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_web_ui_shows_the_running_job_and_cancels_it() {
    let cluster = TestCluster::start(1, 2);
    let d = cluster.dir.path().to_path_buf();
    let (input, _) = window_input(&d, 13, 20_000);
    let (_, args) = window_args(&d, &input, "run", 500);
    let job = cluster.submit(2, "event_time_windows", &args);
    cluster.wait_state(&job, "RUNNING", Duration::from_secs(60));
    let vertices = cluster.get(&format!("/jobs/{job}")).unwrap()["vertices"]
        .as_array()
        .unwrap()
        .len();

    let browser = Browser::start();
    browser.goto(&format!("{}/", cluster.rest()));
    // The overview: the cluster and the running job.
    browser.wait_for(
        "one TaskManager",
        "return document.querySelector('#tm-count')?.textContent === '1'",
    );
    browser.wait_for(
        "the running job",
        &format!("return !!document.querySelector('#running-jobs tr[data-job=\"{job}\"]')"),
    );
    browser.click(&format!("#running-jobs tr[data-job=\"{job}\"]"));
    // The job page: its graph, one box per vertex, with parallelism and record counts.
    let drawn = browser.wait_for(
        "the job graph",
        "return document.querySelectorAll('#job-graph g.vertex').length",
    );
    assert_eq!(drawn, vertices as u64);
    let text = browser.eval("return document.querySelector('#job-graph').textContent");
    let text = text.as_str().unwrap();
    assert!(text.contains("Parallelism: 2"), "{text}");
    assert!(text.contains("Records in"), "{text}");
    assert!(text.contains("HASH"), "the keyed exchange is drawn: {text}");
    browser.wait_for(
        "the checkpoint history",
        "return document.querySelectorAll('#checkpoints tr').length > 1",
    );

    browser.click("#cancel-job");
    cluster.wait_state(&job, "CANCELED", Duration::from_secs(30));
    browser.wait_for(
        "the cancelled state",
        "return document.querySelector('#job-state')?.textContent === 'CANCELED'",
    );
    assert!(
        browser
            .eval("return document.querySelector('#cancel-job') === null")
            .as_bool()
            .unwrap()
    );
}

/// Held by the tests that drive Flink's JVM tools and a browser, so that they do not run at
/// the same time: Flink's CLI gives up on hard-coded timeouts when the machine is overloaded.
static FLINK_TOOLS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Apache Flink's distribution (PyPI's apache-flink): `EDDY_FLINK_HOME`, which
/// `scripts/services.sh flink` installs and `scripts/test.sh` sets.
fn flink_home() -> PathBuf {
    let home = std::env::var_os("EDDY_FLINK_HOME").map(PathBuf::from);
    match home {
        Some(h) if h.join("bin/flink").exists() => h,
        _ => panic!(
            "no Flink distribution: run `scripts/services.sh flink` and set EDDY_FLINK_HOME to \
             the pyflink directory it prints"
        ),
    }
}

/// Runs Flink's own CLI against `cluster`: `flink VERB -m host:port ARGS`.
fn flink_cli(flink: &Path, cluster: &TestCluster, verb: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(flink.join("bin/flink"))
        .arg(verb)
        .args(["-m", &format!("127.0.0.1:{}", cluster.rest_port)])
        .args(args)
        .env("FLINK_HOME", flink)
        .env("FLINK_LOG_DIR", cluster.dir.path().join("flink-log"))
        .output()
        .unwrap();
    let mut text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        // The CLI's log says what it waited for.
        for log in std::fs::read_dir(cluster.dir.path().join("flink-log"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let log_text = std::fs::read_to_string(log.path()).unwrap_or_default();
            text.push_str(&format!("\n--- {}\n{log_text}", log.path().display()));
        }
    }
    (out.status.success(), text)
}

/// Compiles `sources` against Flink's jars into `classes`.
fn javac(flink: &Path, classes: &Path, sources: &[PathBuf]) {
    let status = Command::new("javac")
        .arg("-nowarn")
        .arg("-cp")
        .arg(flink.join("lib/*"))
        .arg("-d")
        .arg(classes)
        .args(sources)
        .status()
        .unwrap();
    assert!(status.success(), "javac {sources:?}");
}

/// Flink's web dashboard, the `web/` folder of the distribution's `flink-dist` jar, unpacked
/// into `dir`; returns the folder.
fn flink_dashboard(flink: &Path, dir: &Path) -> PathBuf {
    let dist = std::fs::read_dir(flink.join("lib"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("flink-dist"))
        })
        .expect("flink-dist jar in the Flink distribution");
    std::fs::create_dir_all(dir).unwrap();
    let unpacked = Command::new("jar")
        .arg("xf")
        .arg(&dist)
        .arg("web")
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(unpacked.success(), "jar xf {} web", dist.display());
    dir.join("web")
}

#[test]
fn flinks_own_dashboard_shows_the_cluster_and_its_job() {
    let _one_at_a_time = FLINK_TOOLS.lock().unwrap_or_else(|e| e.into_inner());
    let flink = flink_home();
    let web = tempfile::tempdir().unwrap();
    let dashboard = flink_dashboard(&flink, web.path());
    // A directory without a dashboard is a configuration error the JobManager names.
    let refused = Command::new(eddy_bin())
        .args([
            "-D",
            "web.dashboard.dir=/nonexistent/web",
            "-D",
            "rest.port=0",
        ])
        .args(["jobmanager", "--work-dir"])
        .arg(web.path().join("jm"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("web.dashboard.dir: /nonexistent/web"),
        "{stderr}"
    );
    // Two TaskManagers of one slot each: the keyed exchange crosses processes and moves bytes.
    let cluster = TestCluster::start_with(
        2,
        1,
        &[&format!("web.dashboard.dir={}", dashboard.display())],
    );
    let d = cluster.dir.path().to_path_buf();
    // 200 s of input: the job runs until it is cancelled.
    let (input, _) = window_input(&d, 15, 100_000);
    let (_, mut args) = window_args(&d, &input, "dashboard", 500);
    // A checkpoint a second: the 10 the JobManager keeps statistics of (web.checkpoints.history)
    // cover the test's clicks.
    let interval = args
        .iter()
        .position(|a| a == "--checkpoint-interval")
        .unwrap()
        + 1;
    args[interval] = "1000".into();
    let job = cluster.submit(2, "event_time_windows", &args);
    cluster.wait_state(&job, "RUNNING", Duration::from_secs(60));
    cluster.wait_checkpoints(&job, 2);
    let dump = cluster.get("/taskmanagers/tm1/thread-dump").unwrap();
    let dump = dump["threadInfos"].to_string();
    assert!(
        dump.contains("(TaskManager tm1)") && dump.contains("(worker process "),
        "the TaskManager's threads and its worker's: {dump}"
    );
    let details = cluster.get(&format!("/jobs/{job}")).unwrap();
    let vertices: Vec<String> = details["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    let window = &vertices[1];

    // Only the dashboard's own files are served.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", cluster.rest_port)).unwrap();
    std::io::Write::write_all(
        &mut raw,
        b"GET /../../../../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut raw, &mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 404") && !answer.contains("root:"),
        "{answer}"
    );

    let browser = Browser::start();
    let base = cluster.rest();
    let answered = std::cell::RefCell::new(Vec::new());
    // Opens a page of the dashboard, waits until its text matches `ready` (a JavaScript
    // condition on `t`, the page's text) and checks that no request failed and no error shows.
    let page = |route: &str, ready: &str| {
        browser.goto(&format!("{base}/#/{route}"));
        browser.wait_for(
            &format!("{route}: {ready}"),
            &format!("const t = document.body.innerText.replace(/\\s+/g, ' '); return {ready};"),
        );
        std::thread::sleep(Duration::from_millis(1500));
        let (ok, failed) = browser.requests();
        assert!(failed.is_empty(), "{route}: requests failed: {failed:?}");
        let shown = browser.eval(
            "return Array.from(document.querySelectorAll('.ant-message-notice, \
             .ant-notification-notice')).map(e => e.textContent)",
        );
        assert_eq!(
            shown,
            serde_json::json!([]),
            "{route}: error messages shown"
        );
        answered.borrow_mut().extend(ok);
    };
    page(
        "overview",
        "t.includes('Available Task Slots') && t.includes('EventTimeWindows')",
    );
    // The job graph with back pressure, busy time and the watermark; the vertex list with
    // bytes and records.
    let graph = "/Backpressured \\(max\\): \\d+%/.test(t) && /Busy \\(max\\): \\d+%/.test(t) \
                 && /Low Watermark: \\d+/.test(t) && /\\d+(\\.\\d+)? KB/.test(t) && !t.includes('loading')";
    page(&format!("job/running/{job}/overview"), graph);
    let vertex = format!("job/running/{job}/overview/{window}");
    page(
        &format!("{vertex}/backpressure"),
        "t.includes('Back Pressure Status') && /\\d+ \\[attempt-1\\]/.test(t)",
    );
    page(
        &format!("{vertex}/watermarks"),
        "t.includes('Datetime of Watermark Timestamp') && /\\b1 \\d+ 1970-01-01/.test(t)",
    );
    page(
        &format!("{vertex}/subtasks"),
        "t.includes('tm0') && t.includes('tm1') && t.includes('Accumulated Time')",
    );
    page(
        &format!("{vertex}/taskmanagers"),
        "t.includes('Bytes received') && t.includes('tm1')",
    );
    page(&format!("{vertex}/metrics"), "t.includes('Add Metric')");
    page(
        &format!("{vertex}/flamegraph"),
        "t.includes('flame graph feature is currently disabled')",
    );
    page(
        &format!("job/running/{job}/exceptions"),
        "t.includes('No Root Exception')",
    );
    page(
        &format!("job/running/{job}/configuration"),
        "t.includes('Execution Configuration') && t.includes('execution.checkpointing.interval')",
    );
    // Checkpoints: counts, history with one checkpoint's details per operator and subtask,
    // and the configuration.
    page(
        &format!("job/running/{job}/checkpoints"),
        "/Completed: [1-9]/.test(t) && t.includes('Latest Completed Checkpoint')",
    );
    let tab = |name: &str, nth: usize| {
        browser.eval(&format!(
            "Array.from(document.querySelectorAll('.ant-tabs-tab')).filter(e => \
             e.textContent.trim() === '{name}')[{nth}].click(); return true"
        ));
    };
    // Expands a visible row (`first` or last) of the tables `css` selects.
    let expand = |css: &str, first: bool| {
        let row = if first { "0" } else { "rows.length - 1" };
        browser.wait_for(
            &format!("a row to expand in {css}"),
            &format!(
                "const rows = Array.from(document.querySelectorAll('{css} \
                 .ant-table-row-expand-icon')).filter(e => e.offsetParent !== null); \
                 if (rows.length === 0) return false; rows[{row}].click(); return true"
            ),
        );
    };
    tab("History", 0);
    expand("flink-job-checkpoints", true);
    expand("flink-job-checkpoints-detail", false);
    browser.wait_for(
        "a checkpoint's subtasks",
        "return document.body.innerText.includes('Sync Duration')",
    );
    tab("Configuration", 1);
    browser.wait_for(
        "the checkpoint configuration",
        "return document.body.textContent.includes('Checkpointing Mode')",
    );
    let (ok, failed) = browser.requests();
    assert!(failed.is_empty(), "checkpoint details: {failed:?}");
    answered.borrow_mut().extend(ok);
    page(
        &format!("application/running/{job}"),
        "t.includes('Running Job List') && t.includes('EventTimeWindows')",
    );
    page("task-manager", "t.includes('tm0') && t.includes('tm1')");
    page(
        "task-manager/tm1/metrics",
        "/Heap \\d+(\\.\\d+)? MB \\d+(\\.\\d+)? MB/.test(t)",
    );
    // Logs and thread dumps show in an editor that draws only the lines in view.
    let log_line = "/\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z INFO/.test(t)";
    page("task-manager/tm1/logs", log_line);
    page(
        "task-manager/tm1/thread-dump",
        "t.includes('(TaskManager tm1)')",
    );
    page("job-manager/config", "t.includes('web.dashboard.dir')");
    page("job-manager/metrics", "/Heap \\d+(\\.\\d+)? MB/.test(t)");
    page("job-manager/logs", log_line);
    page("job-manager/thread-dump", "t.includes('(JobManager)')");

    // Every endpoint behind those pages was read.
    for path in [
        format!("/jobs/{job}/vertices/{window}/backpressure"),
        format!("/jobs/{job}/vertices/{window}/watermarks"),
        format!("/jobs/{job}/vertices/{window}/subtasks/metrics"),
        format!("/jobs/{job}/checkpoints/config"),
        format!("/jobs/{job}/checkpoints/details/"),
        format!("/jobs/{job}/config"),
        format!("/jobs/{job}/vertices/{window}/taskmanagers"),
        format!("/jobs/{job}/exceptions"),
        format!("/applications/{job}"),
        "/taskmanagers/tm1/metrics".into(),
        "/jobmanager/environment".into(),
        "/applications/overview".into(),
    ] {
        assert!(
            answered.borrow().iter().any(|u| u.contains(&path)),
            "the dashboard never read {path}"
        );
    }

    // Cancelling from the dashboard, as a user does.
    page(&format!("job/running/{job}/overview"), graph);
    browser.click("flink-job-status a[nz-popconfirm]");
    browser.wait_for(
        "the confirmation",
        "return !!document.querySelector('.ant-popover .ant-btn-primary')",
    );
    browser.click(".ant-popover .ant-btn-primary");
    cluster.wait_state(&job, "CANCELED", Duration::from_secs(30));
    page(
        &format!("job/completed/{job}/overview"),
        "t.includes('CANCELED') && t.includes('EventTimeWindows')",
    );
}

#[test]
fn flinks_own_cli_and_rest_client_classes_work_against_the_cluster() {
    let _one_at_a_time = FLINK_TOOLS.lock().unwrap_or_else(|e| e.into_inner());
    let flink = flink_home();
    let cluster = TestCluster::start(1, 4);
    let d = cluster.dir.path().to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // 60 s of input: the job runs through every verb below.
    let (input, expected) = window_input(&d, 14, 15_000);
    let (out, mut args) = window_args(&d, &input, "flink-cli", 250);
    let job = cluster.submit(2, "event_time_windows", &args);
    cluster.wait_state(&job, "RUNNING", Duration::from_secs(60));
    cluster.wait_checkpoints(&job, 1);

    // Every endpoint Flink's CLI and dashboard read parses into Flink's own response classes,
    // with every field Flink sends.
    let classes = d.join("classes");
    javac(
        &flink,
        &classes,
        &[root.join("tests/flink/RestContract.java")],
    );
    let contract = Command::new("java")
        .arg("-cp")
        .arg(format!(
            "{}:{}",
            classes.display(),
            flink.join("lib/*").display()
        ))
        .arg("RestContract")
        .arg(cluster.rest())
        .arg(d.join("contract-savepoints"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&contract.stdout);
    assert!(
        contract.status.success() && report.contains("every endpoint Eddy serves matches"),
        "{report}{}",
        String::from_utf8_lossy(&contract.stderr)
    );
    // All but the adaptive scheduler's rescale history (Eddy has no adaptive scheduler).
    let not_served: Vec<&str> = report
        .lines()
        .filter_map(|l| l.strip_prefix("not served: GET "))
        .collect();
    assert!(
        not_served
            .iter()
            .all(|p| p.starts_with("/jobs/:jobid/rescales/")),
        "{report}"
    );
    // The savepoint the contract check took and disposed of is gone.
    assert!(
        std::fs::read_dir(d.join("contract-savepoints"))
            .unwrap()
            .next()
            .is_none(),
        "{report}"
    );

    // Flink's CLI: list, savepoint, stop with a savepoint, list -a.
    let (ok, text) = flink_cli(&flink, &cluster, "list", &[]);
    assert!(
        ok && text.contains(&format!("{job} : EventTimeWindows (RUNNING)")),
        "{text}"
    );
    let (ok, text) = flink_cli(
        &flink,
        &cluster,
        "savepoint",
        &[&job, d.join("sp").to_str().unwrap()],
    );
    let savepoint = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("Savepoint completed. Path: "))
            .map(|p| PathBuf::from(p.trim()))
    };
    let sp = savepoint(&text).unwrap_or_else(|| panic!("no savepoint: {text}"));
    assert!(ok && sp.join("_metadata").exists(), "{text}");
    // A checkpoint by hand, and the disposal of a savepoint.
    let (ok, text) = flink_cli(&flink, &cluster, "checkpoint", &[&job]);
    assert!(
        ok && text.contains(&format!(" for job {job} completed.")),
        "{text}"
    );
    let (ok, text) = flink_cli(&flink, &cluster, "savepoint", &["-d", sp.to_str().unwrap()]);
    assert!(ok && !sp.exists(), "{text}");
    let sp2 = d.join("sp2");
    let (ok, text) = flink_cli(
        &flink,
        &cluster,
        "stop",
        &["--savepointPath", sp2.to_str().unwrap(), &job],
    );
    let stopped = savepoint(&text).unwrap_or_else(|| panic!("no savepoint: {text}"));
    assert!(ok && stopped.join("_metadata").exists(), "{text}");
    assert_eq!(cluster.job_state(&job), "FINISHED");
    let (ok, text) = flink_cli(&flink, &cluster, "list", &["-a"]);
    assert!(
        ok && text.contains(&format!("{job} : EventTimeWindows (FINISHED)")),
        "{text}"
    );

    // The savepoint Flink's CLI took resumes with Eddy's: together, exactly the oracle's output.
    let before = committed_lines(&out);
    assert!(
        before.len() < expected.len(),
        "the job was stopped before its end"
    );
    // The rest of the input at full speed: the source rate does not change the output.
    let rate = args.iter().position(|a| a == "--source-rate").unwrap() + 1;
    args[rate] = "100000".into();
    let bin = example_bin("event_time_windows");
    let mut resume = vec![
        "run",
        "-p",
        "2",
        "-s",
        stopped.to_str().unwrap(),
        bin.to_str().unwrap(),
        "--",
    ];
    resume.extend(args.iter().map(String::as_str));
    cluster.eddy_ok(&resume);
    assert_eq!(sorted(committed_lines(&out)), expected);

    // Cancel, as Eddy's own CLI does.
    let (_, args) = window_args(&d, &input, "flink-cancel", 500);
    let job = cluster.submit(2, "event_time_windows", &args);
    cluster.wait_state(&job, "RUNNING", Duration::from_secs(60));
    let (ok, text) = flink_cli(&flink, &cluster, "cancel", &[&job]);
    assert!(
        ok && text.contains(&format!("Cancelled job {job}")),
        "{text}"
    );
    assert_eq!(cluster.job_state(&job), "CANCELED");

    // A Flink program cannot run here: Flink's CLI shows why.
    javac(
        &flink,
        &classes,
        &[root.join("bench/flink-latency/LatencyJob.java")],
    );
    let jar = d.join("latency.jar");
    let packed = Command::new("jar")
        .arg("cf")
        .arg(&jar)
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .status()
        .unwrap();
    assert!(packed.success());
    let (ok, text) = flink_cli(
        &flink,
        &cluster,
        "run",
        &[
            "-d",
            "-c",
            "LatencyJob",
            jar.to_str().unwrap(),
            "passthrough",
            "10",
            "100",
            "1",
            "0",
            "1",
            d.to_str().unwrap(),
        ],
    );
    assert!(
        !ok && text.contains("this is an Eddy cluster: it runs Eddy programs"),
        "{text}"
    );
    assert_eq!(cluster.get("/overview").unwrap()["jobs-running"], 0);
}
