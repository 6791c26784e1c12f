//! JobManager high availability against a real ZooKeeper server: two JobManagers elect a
//! leader, the leader is killed (SIGKILL) or paused (SIGSTOP) past its session timeout, the
//! standby takes over and resumes the running job from its latest completed checkpoint, the
//! CLI follows the new leader, and the job's exactly-once output equals the brute-force
//! oracle's. Bad settings, an unreachable ZooKeeper and a corrupt record give clear errors.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::window_oracle::sorted;
use common::{committed_lines, example_bin, window_args, window_input};
use eddy_cluster::ha::testing::ZooKeeperServer;
use serde_json::Value;

fn eddy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_eddy"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal}");
}

/// Two JobManagers and two TaskManagers with ZooKeeper high availability, killed when dropped.
struct HaCluster {
    dir: tempfile::TempDir,
    zookeeper: ZooKeeperServer,
    /// Each JobManager's REST port and process (`None` once it is gone).
    jobmanagers: Vec<(u16, Option<Child>)>,
    taskmanagers: Vec<Child>,
}

impl HaCluster {
    fn start() -> Self {
        let zookeeper = ZooKeeperServer::start().expect("a ZooKeeper server");
        let mut cluster = HaCluster {
            dir: tempfile::tempdir().unwrap(),
            zookeeper,
            jobmanagers: Vec::new(),
            taskmanagers: Vec::new(),
        };
        for i in 0..2 {
            cluster.start_jobmanager(i);
        }
        for i in 0..2 {
            cluster.start_taskmanager(i);
        }
        let leader = cluster.wait_for_leader(None);
        cluster.wait_until("both TaskManagers registered", |c| {
            c.get(leader, "/overview")
                .is_some_and(|o| o["taskmanagers"] == 2)
        });
        cluster
    }

    /// `-D` arguments every process of the cluster gets.
    fn ha_properties(&self) -> Vec<String> {
        [
            "high-availability.type=zookeeper".to_string(),
            format!(
                "high-availability.zookeeper.quorum={}",
                self.zookeeper.quorum()
            ),
            format!(
                "high-availability.storageDir={}",
                self.dir.path().join("ha").display()
            ),
            "high-availability.cluster-id=/eddy-test".into(),
            "high-availability.zookeeper.client.session-timeout=2s".into(),
            "high-availability.zookeeper.client.connection-timeout=10s".into(),
        ]
        .into_iter()
        .flat_map(|p| ["-D".to_string(), p])
        .collect()
    }

    fn start_jobmanager(&mut self, i: usize) {
        self.start_jobmanager_with(i, &[]);
    }

    /// Starts JobManager `i` with `extra` arguments after `jobmanager`; its standard output and
    /// error go to files in its log directory.
    fn start_jobmanager_with(&mut self, i: usize, extra: &[String]) {
        let rest_port = free_port();
        let log = self.dir.path().join(format!("log-jm{i}"));
        std::fs::create_dir_all(&log).unwrap();
        let child = Command::new(eddy_bin())
            .args(self.ha_properties())
            .args(["-D", &format!("rest.port={rest_port}")])
            .args(["-D", "jobmanager.rpc.port=0", "-D", "heartbeat.timeout=3s"])
            .args(["-D", "metrics.reporter.prom.port=0"])
            .args(["jobmanager", "--work-dir"])
            .arg(self.dir.path().join(format!("jm{i}")))
            .args(extra)
            .env("EDDY_LOG_DIR", &log)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log.join("stdout.txt")).unwrap())
            .stderr(std::fs::File::create(log.join("stderr.txt")).unwrap())
            .spawn()
            .unwrap();
        while self.jobmanagers.len() <= i {
            self.jobmanagers.push((0, None));
        }
        self.jobmanagers[i] = (rest_port, Some(child));
    }

    fn stdout(&self, jm: usize) -> String {
        let dir = self.dir.path().join(format!("log-jm{jm}"));
        std::fs::read_to_string(dir.join("stdout.txt")).unwrap_or_default()
    }

    fn start_taskmanager(&mut self, i: usize) {
        let child = Command::new(eddy_bin())
            .args(self.ha_properties())
            .args(["-D", "taskmanager.numberOfTaskSlots=2"])
            .args(["-D", &format!("taskmanager.resource-id=tm{i}")])
            .args(["-D", "heartbeat.interval=500ms"])
            .args(["-D", "metrics.reporter.prom.port=0"])
            .args(["taskmanager", "--work-dir"])
            .arg(self.dir.path().join("tm"))
            .env("EDDY_LOG_DIR", self.dir.path().join("log-tm"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.taskmanagers.push(child);
    }

    fn get(&self, jm: usize, path: &str) -> Option<Value> {
        let port = self.jobmanagers[jm].0;
        reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .ok()?
            .json()
            .ok()
    }

    /// The JobManagers' logs and standard errors.
    fn logs(&self) -> String {
        (0..self.jobmanagers.len())
            .map(|i| {
                let dir = self.dir.path().join(format!("log-jm{i}"));
                format!(
                    "--- JobManager {i} ---\n{}{}",
                    std::fs::read_to_string(dir.join("eddy-jobmanager.log")).unwrap_or_default(),
                    std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default()
                )
            })
            .collect()
    }

    fn stderr(&self, jm: usize) -> String {
        let dir = self.dir.path().join(format!("log-jm{jm}"));
        std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default()
    }

    fn wait_until(&self, what: &str, f: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until one JobManager (other than `not`) serves its REST API: only the leader binds
    /// its ports. Returns its index.
    fn wait_for_leader(&self, not: Option<usize>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let serving: Vec<usize> = (0..self.jobmanagers.len())
                .filter(|&i| Some(i) != not && self.jobmanagers[i].1.is_some())
                .filter(|&i| self.get(i, "/overview").is_some())
                .collect();
            assert!(
                serving.len() <= 1,
                "two JobManagers serve at once: {serving:?}"
            );
            if let Some(&leader) = serving.first() {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no JobManager became the leader\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `eddy <args>` with the cluster's high-availability settings (so without `-m`: the CLI
    /// finds the leader in ZooKeeper).
    fn eddy(&self, args: &[&str]) -> Output {
        Command::new(eddy_bin())
            .args(self.ha_properties())
            .args(args)
            .env_remove("EDDY_CONF_DIR")
            .output()
            .unwrap()
    }

    fn eddy_ok(&self, args: &[&str]) -> String {
        let out = self.eddy(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "eddy {args:?} failed: {stdout}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        stdout
    }

    fn submit(&self, program: &str, args: &[String]) -> String {
        let bin = example_bin(program);
        let mut all = vec!["run", "-d", "-p", "4", bin.to_str().unwrap(), "--"];
        all.extend(args.iter().map(String::as_str));
        self.eddy_ok(&all)
            .lines()
            .find_map(|l| l.strip_prefix("Job has been submitted with JobID "))
            .expect("job id")
            .trim()
            .to_string()
    }

    fn job_state(&self, jm: usize, job: &str) -> String {
        self.get(jm, &format!("/jobs/{job}"))
            .and_then(|j| j["state"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn wait_state(&self, jm: usize, job: &str, state: &str) {
        self.wait_until(&format!("job {job} is {state}"), |c| {
            let s = c.job_state(jm, job);
            assert!(
                s == state || !matches!(s.as_str(), "FINISHED" | "CANCELED" | "FAILED"),
                "job {job} ended {s}, not {state}: {:?}\n{}",
                c.get(jm, &format!("/jobs/{job}/exceptions")),
                c.logs()
            );
            s == state
        });
    }

    fn checkpoints(&self, jm: usize, job: &str) -> Value {
        self.get(jm, &format!("/jobs/{job}/checkpoints"))
            .unwrap_or(Value::Null)
    }

    /// The id of the job's latest completed checkpoint on JobManager `jm`, once it has one
    /// with an id of at least `at_least`.
    fn wait_checkpoint(&self, jm: usize, job: &str, at_least: u64) -> u64 {
        self.wait_until(
            &format!("job {job} completed checkpoint {at_least} or later"),
            |c| {
                c.checkpoints(jm, job)["latest"]["completed"]["id"]
                    .as_u64()
                    .is_some_and(|id| id >= at_least)
            },
        );
        self.checkpoints(jm, job)["latest"]["completed"]["id"]
            .as_u64()
            .unwrap()
    }

    fn zookeeper(&self) -> std::sync::Arc<eddy_cluster::ha::ZooKeeper> {
        let mut config = eddy_core::config::Configuration::new();
        for kv in self.ha_properties().iter().filter(|p| *p != "-D") {
            config.apply_dynamic_property(kv).unwrap();
        }
        let settings = eddy_cluster::ha::HaSettings::from_config(&config)
            .unwrap()
            .unwrap();
        eddy_cluster::ha::ZooKeeper::connect(&settings).unwrap()
    }

    /// Waits until JobManager `jm`'s process has exited; its status.
    fn wait_exit(&mut self, jm: usize, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.jobmanagers[jm]
            .1
            .as_mut()
            .expect("a running JobManager");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.jobmanagers[jm].1 = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "JobManager {jm} is still running\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for c in self
            .taskmanagers
            .iter_mut()
            .chain(self.jobmanagers.iter_mut().filter_map(|(_, c)| c.as_mut()))
        {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Submits a checkpointed event-time window job (8,000 events at 1,000/s, exactly-once file
/// sink) through the CLI, which finds the leader in ZooKeeper; returns its id, output directory
/// and the oracle's windows.
fn submit_window_job(cluster: &HaCluster, leader: usize) -> (String, PathBuf, Vec<String>) {
    let d: &Path = cluster.dir.path();
    let (input, expected) = window_input(d, 21, 8_000);
    let (out, args) = window_args(d, &input, "run", 1000);
    let job = cluster.submit("event_time_windows", &args);
    cluster.wait_state(leader, &job, "RUNNING");
    assert_eq!(
        cluster.zookeeper().recorded_jobs().unwrap(),
        vec![job.clone()],
        "the leader recorded the job in ZooKeeper before acknowledging it"
    );
    (job, out, expected)
}

/// After a failover to `leader`: the job resumed from a checkpoint at least as new as
/// `before`, checkpoints with newer ids, finishes with exactly the oracle's windows, and is then
/// forgotten in ZooKeeper.
fn check_resumed_job(
    cluster: &HaCluster,
    leader: usize,
    job: &str,
    before: u64,
    out: &Path,
    expected: &[String],
) {
    cluster.wait_until("the job resumed on the new leader", |c| {
        matches!(c.job_state(leader, job).as_str(), "RUNNING" | "FINISHED")
    });
    let checkpoints = cluster.checkpoints(leader, job);
    let restored = checkpoints["latest"]["restored"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("the job resumed from a checkpoint: {checkpoints}"));
    assert!(
        restored >= before,
        "resumed from checkpoint {restored}, older than {before}, the latest completed before the failover"
    );
    // The CLI follows the leader.
    let list = cluster.eddy_ok(&["list"]);
    assert!(list.contains(job), "eddy list names the job: {list}");
    cluster.wait_state(leader, job, "FINISHED");
    let latest = cluster.checkpoints(leader, job)["latest"]["completed"]["id"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        latest > restored,
        "checkpoint ids go on after {restored} (latest {latest})"
    );
    assert_same_windows(sorted(committed_lines(out)), expected, &cluster.logs());
    assert!(
        cluster.zookeeper().recorded_jobs().unwrap().is_empty(),
        "a finished job is forgotten in ZooKeeper"
    );
}

/// Compares the job's windows with the oracle's, naming what was lost and what was duplicated.
fn assert_same_windows(got: Vec<String>, expected: &[String], logs: &str) {
    if got == expected {
        return;
    }
    let mut missing = expected.to_vec();
    let mut extra = Vec::new();
    for line in got {
        match missing.iter().position(|l| *l == line) {
            Some(i) => {
                missing.remove(i);
            }
            None => extra.push(line),
        }
    }
    panic!(
        "{} windows lost, {} extra (duplicated or wrong); lost: {:?}; extra: {:?}\n{logs}",
        missing.len(),
        extra.len(),
        &missing[..missing.len().min(20)],
        &extra[..extra.len().min(20)]
    );
}

#[test]
fn a_killed_leader_is_replaced_and_its_running_job_resumes_from_its_latest_checkpoint() {
    let mut cluster = HaCluster::start();
    let leader = cluster.wait_for_leader(None);
    let (job, out, expected) = submit_window_job(&cluster, leader);
    let before = cluster.wait_checkpoint(leader, &job, 3);

    let mut old = cluster.jobmanagers[leader].1.take().unwrap();
    old.kill().unwrap(); // SIGKILL
    old.wait().unwrap();
    let new = cluster.wait_for_leader(Some(leader));
    assert_ne!(new, leader);
    cluster.wait_until("both TaskManagers registered with the new leader", |c| {
        c.get(new, "/overview")
            .is_some_and(|o| o["taskmanagers"] == 2)
    });
    check_resumed_job(&cluster, new, &job, before, &out, &expected);
}

#[test]
fn a_paused_leader_is_replaced_and_cannot_act_after_it_resumes() {
    let mut cluster = HaCluster::start();
    let leader = cluster.wait_for_leader(None);
    let (job, out, expected) = submit_window_job(&cluster, leader);
    let before = cluster.wait_checkpoint(leader, &job, 2);

    // Paused past its 2 s session timeout: ZooKeeper ends its session, the standby is elected
    // and the TaskManagers leave the old leader.
    let paused = cluster.jobmanagers[leader].1.as_ref().unwrap();
    signal(paused, "STOP");
    let new = cluster.wait_for_leader(Some(leader));
    cluster.wait_until("the job runs on the new leader", |c| {
        c.job_state(new, &job) == "RUNNING"
            && c.checkpoints(new, &job)["latest"]["completed"]["id"]
                .as_u64()
                .is_some_and(|id| id > before)
    });

    // Resumed, the old leader finds its session gone and exits without acting: the job's
    // output stays exactly once.
    let paused = cluster.jobmanagers[leader].1.as_ref().unwrap();
    signal(paused, "CONT");
    let status = cluster.wait_exit(leader, Duration::from_secs(30));
    assert!(!status.success(), "the deposed leader exits with an error");
    let stderr = cluster.stderr(leader);
    assert!(
        stderr.contains("lost its leadership"),
        "the deposed leader says why it exits: {stderr}"
    );
    check_resumed_job(&cluster, new, &job, before, &out, &expected);
}

#[test]
fn an_application_cluster_resumes_its_job_on_a_new_leader_instead_of_running_the_program_again() {
    let mut cluster = HaCluster {
        dir: tempfile::tempdir().unwrap(),
        zookeeper: ZooKeeperServer::start().expect("a ZooKeeper server"),
        jobmanagers: Vec::new(),
        taskmanagers: Vec::new(),
    };
    let d = cluster.dir.path().to_path_buf();
    let (input, expected) = window_input(&d, 31, 6_000);
    let (out, args) = window_args(&d, &input, "app", 1000);
    let mut application = vec![
        "--application".to_string(),
        example_bin("event_time_windows").display().to_string(),
        "-p".into(),
        "2".into(),
        "--".into(),
    ];
    application.extend(args);
    cluster.start_jobmanager_with(0, &application);
    cluster.start_taskmanager(0);
    let first = cluster.wait_for_leader(None);
    assert_eq!(first, 0);
    cluster.wait_until("the application's job runs", |c| {
        c.get(0, "/jobs/overview")
            .and_then(|o| o["jobs"][0]["state"].as_str().map(str::to_string))
            .as_deref()
            == Some("RUNNING")
    });
    let job = cluster.get(0, "/jobs/overview").unwrap()["jobs"][0]["jid"]
        .as_str()
        .unwrap()
        .to_string();
    let before = cluster.wait_checkpoint(0, &job, 2);
    cluster.start_jobmanager_with(1, &application);

    let mut old = cluster.jobmanagers[0].1.take().unwrap();
    old.kill().unwrap();
    old.wait().unwrap();
    let new = cluster.wait_for_leader(Some(0));
    assert_eq!(new, 1);
    let status = cluster.wait_exit(1, Duration::from_secs(120));
    let stdout = cluster.stdout(1);
    assert!(
        status.success(),
        "the application finished: {stdout}\n{}",
        cluster.logs()
    );
    assert!(
        stdout.contains(&format!("Recovered job {job} from checkpoint")),
        "the new leader resumed the job: {stdout}"
    );
    assert!(
        !stdout.contains("Job has been submitted"),
        "the program did not run again: {stdout}"
    );
    assert!(
        stdout.contains(&format!("Job {job} ended: FINISHED")),
        "{stdout}"
    );
    let restored = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("Recovered job {job} from checkpoint ")))
        .and_then(|id| id.trim().parse::<u64>().ok())
        .unwrap();
    assert!(
        restored >= before,
        "resumed from {restored}, older than {before}"
    );
    assert_same_windows(sorted(committed_lines(&out)), &expected, &cluster.logs());

    // Once the job has ended, a JobManager of the same application cluster does not run it
    // again either.
    cluster.start_jobmanager_with(2, &application);
    let status = cluster.wait_exit(2, Duration::from_secs(60));
    let stdout = cluster.stdout(2);
    assert!(status.success(), "{stdout}\n{}", cluster.logs());
    assert!(
        stdout.contains(&format!(
            "The application's job {job} already ended: FINISHED"
        )),
        "{stdout}"
    );
    assert_same_windows(sorted(committed_lines(&out)), &expected, &cluster.logs());
}

/// `eddy <args>` with `-D` properties; its status and standard error, within 60 s.
fn eddy_fails(properties: &[&str], args: &[&str]) -> String {
    let start = Instant::now();
    let out = Command::new(eddy_bin())
        .args(properties.iter().flat_map(|p| ["-D", p]))
        .args(args)
        .env_remove("EDDY_CONF_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "eddy {args:?} took {:?}",
        start.elapsed()
    );
    assert!(!out.status.success(), "eddy {args:?} must fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_settings_an_unreachable_zookeeper_and_a_corrupt_record_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("jm");
    let work = work.to_str().unwrap();
    let storage = format!("high-availability.storageDir={}", dir.path().display());
    let jobmanager = ["jobmanager", "--work-dir", work];

    let e = eddy_fails(&["high-availability.type=zookeper"], &jobmanager);
    assert!(
        e.contains("high-availability.type") && e.contains("ZOOKEEPER"),
        "{e}"
    );
    let e = eddy_fails(&["high-availability.type=zookeeper"], &jobmanager);
    assert!(
        e.contains("high-availability.zookeeper.quorum is not set"),
        "{e}"
    );
    let e = eddy_fails(
        &[
            "high-availability.type=zookeeper",
            "high-availability.zookeeper.quorum=localhost",
            &storage,
        ],
        &jobmanager,
    );
    assert!(e.contains("'localhost' is not host:port"), "{e}");
    let e = eddy_fails(
        &[
            "high-availability.type=zookeeper",
            "high-availability.zookeeper.quorum=localhost:2181",
        ],
        &jobmanager,
    );
    assert!(e.contains("high-availability.storageDir is not set"), "{e}");

    // Nothing listens on the quorum's port: the JobManager and the CLI give up after the
    // connection timeout, naming the quorum.
    let quorum = format!(
        "high-availability.zookeeper.quorum=127.0.0.1:{}",
        free_port()
    );
    let unreachable = [
        "high-availability.type=zookeeper",
        quorum.as_str(),
        storage.as_str(),
        "high-availability.zookeeper.client.connection-timeout=2s",
    ];
    let e = eddy_fails(&unreachable, &jobmanager);
    assert!(e.contains("cannot reach ZooKeeper at 127.0.0.1:"), "{e}");
    let e = eddy_fails(&unreachable, &["list"]);
    assert!(e.contains("cannot reach ZooKeeper at 127.0.0.1:"), "{e}");

    // A corrupt job record: the new leader names it and what is wrong, and serves anyway.
    let mut cluster = HaCluster {
        dir,
        zookeeper: ZooKeeperServer::start().expect("a ZooKeeper server"),
        jobmanagers: Vec::new(),
        taskmanagers: Vec::new(),
    };
    let zk = cluster.zookeeper();
    let bad_job = "0123456789abcdef0123456789abcdef";
    eddy_cluster::ha::testing::write_node(&zk, &format!("jobgraphs/{bad_job}"), b"{not json")
        .unwrap();
    cluster.start_jobmanager(0);
    let leader = cluster.wait_for_leader(None);
    cluster.wait_until("the corrupt record is reported", |c| {
        c.stderr(leader)
            .contains(&format!("cannot recover job {bad_job}"))
    });
    let stderr = cluster.stderr(leader);
    assert!(
        stderr.contains(&format!(
            "/eddy-test/jobgraphs/{bad_job} is not a valid job record"
        )),
        "{stderr}"
    );
    let jobs = cluster.get(leader, "/jobs/overview").unwrap();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
    assert_eq!(
        zk.recorded_jobs().unwrap(),
        vec![bad_job.to_string()],
        "the record is left for an operator to mend"
    );
}
