//! JobManager high availability with ZooKeeper (`high-availability.type: zookeeper`).
//!
//! Several JobManagers contend for one ZooKeeper lock (Apache Curator's leader latch recipe,
//! from the `zookeeper-client` crate). The one holding it is the leader: it binds its REST and
//! RPC ports and publishes their addresses with a fresh *leader session id* in an ephemeral
//! node; the others wait. Under `high-availability.zookeeper.path.root` /
//! `high-availability.cluster-id`:
//!
//! | node | holds |
//! |---|---|
//! | `leaderlatch/` | one ephemeral sequential node per contending JobManager |
//! | `leader` | the leader's [`LeaderInfo`] (ephemeral) |
//! | `jobgraphs/<job id>` | a [`JobRecord`]: where the job's graph and program are in `high-availability.storageDir` |
//! | `checkpoints/<job id>` | the job's retained completed checkpoints, newest first |
//! | `checkpoint-counter/<job id>` | the next checkpoint id |
//! | `job-results/<job id>` | how a job ended (`FINISHED`, `CANCELED`, `FAILED`) once it is forgotten |
//!
//! The leader writes a job's graph and program to `high-availability.storageDir` and its record to
//! ZooKeeper before it acknowledges the submission, and records each completed checkpoint there
//! before any task learns that it completed. Every write is a ZooKeeper transaction that also
//! checks that the writer's latch node still exists, so a JobManager that lost its leadership
//! (its session expired while it was paused or cut off) can write nothing: it cannot complete a
//! checkpoint or forget a job. TaskManagers follow the `leader` node: when it changes they stop
//! the workers of the old leader's jobs and register with the new one, which refuses a
//! registration for another leader session; a TaskManager also checks the leader session
//! before it starts a worker. A JobManager whose session ends exits.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eddy_core::config::{ConfigOption, Configuration, HighAvailabilityType, options};
use eddy_core::ids::JobId;
use eddy_runtime::RuntimeError;
use eddy_runtime::checkpoint::coordinator::JobOutcome;
use eddy_runtime::checkpoint::store::{CheckpointPointer, CompletedCheckpointStore};
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::{ClusterError, Result};

/// Where a cluster's high-availability data lives, from its configuration.
#[derive(Clone, Debug)]
pub struct HaSettings {
    /// `high-availability.zookeeper.quorum`.
    pub quorum: String,
    /// The cluster's node: the path root and the cluster id joined, e.g. `/flink/default`.
    pub root: String,
    /// The cluster's directory under `high-availability.storageDir`.
    pub storage_dir: PathBuf,
    /// `high-availability.zookeeper.client.session-timeout`.
    pub session_timeout: Duration,
    /// `high-availability.zookeeper.client.connection-timeout`.
    pub connection_timeout: Duration,
}

impl HaSettings {
    /// The settings, or `None` without high availability. A missing or malformed key is an
    /// error that names it.
    pub fn from_config(config: &Configuration) -> Result<Option<HaSettings>> {
        if config.get(&options::HA_TYPE)? == HighAvailabilityType::None {
            return Ok(None);
        }
        let quorum = required(
            config,
            &options::HA_ZOOKEEPER_QUORUM,
            "name the ZooKeeper servers, e.g. 'zk1:2181,zk2:2181,zk3:2181'",
        )?;
        for server in quorum.split(',') {
            let ok = server
                .trim()
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(ClusterError::Invalid(format!(
                    "{}: '{}' is not host:port (in '{quorum}')",
                    options::HA_ZOOKEEPER_QUORUM.key,
                    server.trim()
                )));
            }
        }
        let root_key = config.get(&options::HA_ZOOKEEPER_ROOT)?;
        let cluster_id = config.get(&options::HA_CLUSTER_ID)?;
        let segments: Vec<&str> = root_key
            .split('/')
            .chain(cluster_id.split('/'))
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = segments
            .iter()
            .find(|s| **s == "." || **s == ".." || s.chars().any(char::is_whitespace))
        {
            return Err(ClusterError::Invalid(format!(
                "{} / {}: '{bad}' cannot be a ZooKeeper node name",
                options::HA_ZOOKEEPER_ROOT.key,
                options::HA_CLUSTER_ID.key
            )));
        }
        if segments.is_empty() {
            return Err(ClusterError::Invalid(format!(
                "{} and {} name no ZooKeeper node",
                options::HA_ZOOKEEPER_ROOT.key,
                options::HA_CLUSTER_ID.key
            )));
        }
        let storage = required(
            config,
            &options::HA_STORAGE_DIR,
            "name a directory every JobManager can reach, where the leader keeps job graphs, \
             programs and checkpoint pointers",
        )?;
        let storage = match storage.strip_prefix("file://") {
            Some(path) => path.to_string(),
            None if storage.contains("://") => {
                return Err(ClusterError::Invalid(format!(
                    "{}: '{storage}' is not supported; use a directory (or a file:// URL) every \
                     JobManager can reach, such as a shared file system",
                    options::HA_STORAGE_DIR.key
                )));
            }
            None => storage,
        };
        Ok(Some(HaSettings {
            quorum,
            root: format!("/{}", segments.join("/")),
            storage_dir: Path::new(&storage).join(segments.join("-")),
            session_timeout: config.get(&options::HA_ZOOKEEPER_SESSION_TIMEOUT)?,
            connection_timeout: config.get(&options::HA_ZOOKEEPER_CONNECTION_TIMEOUT)?,
        }))
    }
}

/// The value of `option`, which high availability needs; without one, an error naming it and
/// saying what to give (`hint`).
fn required(config: &Configuration, option: &ConfigOption<String>, hint: &str) -> Result<String> {
    config
        .get_optional(option)?
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            ClusterError::Invalid(format!(
                "high-availability.type is ZOOKEEPER but {} is not set: {hint}",
                option.key
            ))
        })
}

/// The leader's addresses, published in the `leader` node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// A fresh id per leadership: TaskManagers register for it and fence with it.
    pub session_id: String,
    /// `http://host:port` of its REST API.
    pub rest_address: String,
    /// `host:port` of its RPC endpoint.
    pub rpc_address: String,
}

/// A job as the leader records it before acknowledging its submission.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's name.
    pub name: String,
    /// SHA-256 of its program, stored as `blobs/<sha>` in the storage directory.
    pub program: String,
    /// The program's arguments.
    pub args: Vec<String>,
    /// `-D` properties it was submitted with.
    pub dynamic_properties: String,
    /// When it was first submitted (ms since the epoch).
    pub submitted: i64,
}

fn ha_error(what: impl std::fmt::Display) -> ClusterError {
    ClusterError::HighAvailability(what.to_string())
}

/// A ZooKeeper session, used from ordinary threads: its calls block on a runtime of its own,
/// whose worker thread keeps the session alive between calls.
pub struct ZooKeeper {
    runtime: tokio::runtime::Runtime,
    client: zk::Client,
    settings: HaSettings,
}

impl std::fmt::Debug for ZooKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ZooKeeper({}{})",
            self.settings.quorum, self.settings.root
        )
    }
}

fn acls() -> zk::Acls<'static> {
    zk::Acls::anyone_all()
}

impl ZooKeeper {
    /// Opens a session with the quorum, giving up after the connection timeout with an error
    /// that names the quorum.
    pub fn connect(settings: &HaSettings) -> Result<Arc<ZooKeeper>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zookeeper")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::io("cannot start the ZooKeeper client", e))?;
        let connector = zk::Client::connector().with_session_timeout(settings.session_timeout);
        let connect = runtime.block_on(async {
            tokio::time::timeout(
                settings.connection_timeout,
                connector.connect(&settings.quorum),
            )
            .await
        });
        let client = match connect {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(ha_error(format!(
                    "cannot reach ZooKeeper at {} ({}): {e}",
                    settings.quorum,
                    options::HA_ZOOKEEPER_QUORUM.key
                )));
            }
            Err(_) => {
                return Err(ha_error(format!(
                    "cannot reach ZooKeeper at {} ({}): no session within {:?} ({})",
                    settings.quorum,
                    options::HA_ZOOKEEPER_QUORUM.key,
                    settings.connection_timeout,
                    options::HA_ZOOKEEPER_CONNECTION_TIMEOUT.key
                )));
            }
        };
        let zk = ZooKeeper {
            runtime,
            client,
            settings: settings.clone(),
        };
        for dir in [
            "leaderlatch",
            "jobgraphs",
            "checkpoints",
            "checkpoint-counter",
            "job-results",
        ] {
            let path = zk.path(dir);
            zk.block_on(
                zk.client
                    .mkdir(&path, &zk::CreateMode::Persistent.with_acls(acls())),
            )
            .map_err(|e| zk.error(&format!("cannot create {path}"), e))?;
        }
        Ok(Arc::new(zk))
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &HaSettings {
        &self.settings
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The absolute path of `relative` under the cluster's node.
    fn path(&self, relative: &str) -> String {
        format!("{}/{relative}", self.settings.root)
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> ClusterError {
        ha_error(format!(
            "ZooKeeper at {}: {what}: {e}",
            self.settings.quorum
        ))
    }

    /// Whether the session has ended for good (expired or closed).
    pub fn session_ended(&self) -> bool {
        self.client.state().is_terminated()
    }

    /// The ids of the jobs recorded in ZooKeeper (those a new leader would resume).
    pub fn recorded_jobs(&self) -> Result<Vec<String>> {
        let dir = self.path("jobgraphs");
        let mut jobs = self
            .block_on(self.client.list_children(&dir))
            .map_err(|e| self.error("cannot list the recorded jobs", e))?;
        jobs.sort();
        Ok(jobs)
    }

    /// The current leader, if there is one.
    pub fn leader(&self) -> Result<Option<LeaderInfo>> {
        let path = self.path("leader");
        match self.block_on(self.client.get_data(&path)) {
            Ok((data, _)) => serde_json::from_slice(&data).map(Some).map_err(|e| {
                ha_error(format!(
                    "the leader record {path} in ZooKeeper is not valid: {e}"
                ))
            }),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(self.error("cannot read the leader", e)),
        }
    }

    /// Waits up to `timeout` for a leader (`None` if there is none by then).
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<Option<LeaderInfo>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let path = self.path("leader");
            let (stat, watcher) = self
                .block_on(self.client.check_and_watch_stat(&path))
                .map_err(|e| self.error("cannot watch the leader", e))?;
            if stat.is_some()
                && let Some(leader) = self.leader()?
            {
                return Ok(Some(leader));
            }
            let changed =
                self.block_on(async { tokio::time::timeout_at(deadline, watcher.changed()).await });
            if changed.is_err() {
                return Ok(None);
            }
            if self.session_ended() {
                return Err(ha_error("the ZooKeeper session ended"));
            }
        }
    }

    /// Blocks until the leader is no longer `current` (it changed or went away), or until the
    /// session ends; returns `false` instead once `stop` is set (checked twice a second).
    pub fn wait_for_leader_change(&self, current: &LeaderInfo, stop: &AtomicBool) -> bool {
        let path = self.path("leader");
        loop {
            let Ok((Some(_), watcher)) = self.block_on(self.client.check_and_watch_stat(&path))
            else {
                return true;
            };
            match self.leader() {
                Ok(Some(l)) if &l == current => {}
                _ => return true,
            }
            let stopped = self.block_on(async {
                let changed = watcher.changed();
                tokio::pin!(changed);
                loop {
                    tokio::select! {
                        _ = &mut changed => return false,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if stop.load(Ordering::Relaxed) {
                                return true;
                            }
                        }
                    }
                }
            });
            if stopped {
                return false;
            }
            if self.session_ended() {
                return true;
            }
        }
    }

    /// Contends for the leadership and blocks until this process has it; then publishes what
    /// `info` returns (whose session id identifies this leadership) as the leader.
    pub fn elect(
        self: &Arc<Self>,
        info: impl FnOnce() -> Result<LeaderInfo>,
    ) -> Result<Leadership> {
        let dir = self.path("leaderlatch");
        let prefix = zk::LockPrefix::new_curator(&dir, "latch-")
            .map_err(|e| self.error("leader latch", e))?;
        let lock = self
            .block_on(self.client.lock(prefix, b"", acls()))
            .map_err(|e| self.error("cannot contend for the leadership", e))?
            .into_owned();
        let info = info()?;
        let data = serde_json::to_vec(&info).map_err(|e| ha_error(e.to_string()))?;
        let leadership = Leadership {
            zk: self.clone(),
            lock: Arc::new(lock),
            info,
        };
        let path = self.path("leader");
        let options = zk::CreateMode::Ephemeral.with_acls(acls());
        let created = self.block_on(leadership.lock.create(&path, &data, &options));
        match created {
            Ok(_) => {}
            // A leader node of an earlier session of ours, not yet gone: replace it.
            Err(zk::Error::NodeExists) => {
                let mut writer = leadership.lock.new_check_writer();
                writer
                    .add_delete(&path, None)
                    .and_then(|()| writer.add_create(&path, &data, &options))
                    .map_err(|e| self.error("cannot publish the leader", e))?;
                self.block_on(writer.commit())
                    .map_err(|e| self.error("cannot publish the leader", e))?;
            }
            Err(e) => return Err(self.error("cannot publish the leader", e)),
        }
        Ok(leadership)
    }
}

/// This JobManager's leadership: the lock that fences every write it makes.
#[derive(Clone)]
pub struct Leadership {
    zk: Arc<ZooKeeper>,
    /// Never cloned on its own: dropping it gives the lock up.
    lock: Arc<zk::OwnedLockClient>,
    info: LeaderInfo,
}

impl Leadership {
    /// What it published.
    pub fn info(&self) -> &LeaderInfo {
        &self.info
    }

    /// Blocks until the leadership is lost: the session ended, or the latch node is gone.
    /// Returns why.
    pub fn wait_until_lost(&self) -> String {
        let zk = &self.zk;
        let path = self.lock.lock_path().to_string();
        let mut state = zk.client.state_watcher();
        loop {
            let (stat, watcher) = match zk.block_on(zk.client.check_and_watch_stat(&path)) {
                Ok(found) => found,
                Err(e) => return format!("the ZooKeeper session ended ({e})"),
            };
            if stat.is_none() {
                return format!("its ZooKeeper latch node {path} is gone");
            }
            let ended = zk.block_on(async {
                tokio::select! {
                    _ = watcher.changed() => None,
                    s = state.changed() => s.is_terminated().then_some(s),
                }
            });
            if let Some(s) = ended {
                return format!("its ZooKeeper session ended ({s:?})");
            }
            if zk.session_ended() {
                return "its ZooKeeper session ended".into();
            }
        }
    }

    fn storage(&self) -> &Path {
        &self.zk.settings.storage_dir
    }

    /// Where the program `sha` is kept for every JobManager.
    pub fn program_path(&self, sha: &str) -> PathBuf {
        self.storage().join("blobs").join(sha)
    }

    fn graph_path(&self, job: JobId) -> PathBuf {
        self.storage().join("jobgraphs").join(format!("{job}.json"))
    }

    /// Records a submitted job: its program and graph into the storage directory, then its
    /// record into ZooKeeper, fenced by the leadership.
    pub fn put_job(
        &self,
        job: JobId,
        graph_json: &[u8],
        program: &[u8],
        record: &JobRecord,
    ) -> Result<()> {
        crate::store_program(&self.storage().join("blobs"), &record.program, program)?;
        let graph = self.graph_path(job);
        write_atomically(&graph, graph_json)?;
        let data = serde_json::to_vec(record).map_err(|e| ha_error(e.to_string()))?;
        let path = self.zk.path(&format!("jobgraphs/{job}"));
        let options = zk::CreateMode::Persistent.with_acls(acls());
        match self.zk.block_on(self.lock.create(&path, &data, &options)) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.zk.error(&format!("cannot record job {job}"), e)),
        }
    }

    /// The jobs recorded in ZooKeeper, by node name: each with its record and graph (JSON), or
    /// what is wrong with them.
    pub fn jobs(&self) -> Result<Vec<(String, Result<RecordedJob>)>> {
        let dir = self.zk.path("jobgraphs");
        let mut children = self
            .zk
            .block_on(self.zk.client.list_children(&dir))
            .map_err(|e| self.zk.error("cannot list the recorded jobs", e))?;
        children.sort();
        Ok(children
            .into_iter()
            .map(|child| {
                let read = self.read_job(&dir, &child);
                (child, read)
            })
            .collect())
    }

    fn read_job(&self, dir: &str, child: &str) -> Result<RecordedJob> {
        let path = format!("{dir}/{child}");
        let job: JobId = child
            .parse()
            .map_err(|_| ha_error(format!("the HA record {path} is not named after a job id")))?;
        let (data, _) = self
            .zk
            .block_on(self.zk.client.get_data(&path))
            .map_err(|e| self.zk.error(&format!("cannot read {path}"), e))?;
        let record: JobRecord = serde_json::from_slice(&data).map_err(|e| {
            ha_error(format!(
                "the HA record {path} is not a valid job record: {e}"
            ))
        })?;
        if !crate::is_sha256(&record.program) {
            return Err(ha_error(format!(
                "the HA record {path} names no program (found '{}')",
                record.program
            )));
        }
        let graph_path = self.graph_path(job);
        let graph = std::fs::read(&graph_path).map_err(|e| {
            ha_error(format!(
                "job {job}'s graph {} (recorded in {path}) cannot be read: {e}",
                graph_path.display()
            ))
        })?;
        let program = self.program_path(&record.program);
        if !program.is_file() {
            return Err(ha_error(format!(
                "job {job}'s program {} (recorded in {path}) is missing",
                program.display()
            )));
        }
        Ok((record, graph))
    }

    /// The retained completed checkpoints of `job`, newest first.
    pub fn checkpoints(&self, job: JobId) -> Result<Vec<CheckpointPointer>> {
        let path = self.zk.path(&format!("checkpoints/{job}"));
        match self.zk.block_on(self.zk.client.get_data(&path)) {
            Ok((data, _)) => serde_json::from_slice(&data).map_err(|e| {
                ha_error(format!(
                    "the HA record {path} is not a valid list of checkpoints: {e}"
                ))
            }),
            Err(zk::Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(self.zk.error(&format!("cannot read {path}"), e)),
        }
    }

    /// Forgets `job`, which ended with `outcome`: its record, checkpoints and counter go and
    /// its result is kept, in one fenced transaction.
    pub fn remove_job(&self, job: JobId, outcome: &str) -> Result<()> {
        let paths: Vec<String> = ["checkpoints", "checkpoint-counter", "jobgraphs"]
            .iter()
            .map(|dir| self.zk.path(&format!("{dir}/{job}")))
            .collect();
        let result = self.zk.path(&format!("job-results/{job}"));
        let mut writer = self.lock.new_check_writer();
        for path in &paths {
            let exists = self
                .zk
                .block_on(self.zk.client.check_stat(path))
                .map_err(|e| self.zk.error(&format!("cannot read {path}"), e))?;
            if exists.is_some() {
                writer
                    .add_delete(path, None)
                    .map_err(|e| self.zk.error(&format!("cannot delete {path}"), e))?;
            }
        }
        writer
            .add_create(
                &result,
                outcome.as_bytes(),
                &zk::CreateMode::Persistent.with_acls(acls()),
            )
            .map_err(|e| self.zk.error(&format!("cannot create {result}"), e))?;
        self.zk
            .block_on(writer.commit())
            .map_err(|e| self.zk.error(&format!("cannot forget job {job}"), e))?;
        let _ = std::fs::remove_file(self.graph_path(job));
        Ok(())
    }

    /// The jobs that ended and were forgotten, with how they ended.
    pub fn job_results(&self) -> Result<Vec<(String, String)>> {
        let dir = self.zk.path("job-results");
        let mut jobs = self
            .zk
            .block_on(self.zk.client.list_children(&dir))
            .map_err(|e| self.zk.error("cannot list the job results", e))?;
        jobs.sort();
        jobs.into_iter()
            .map(|job| {
                let path = format!("{dir}/{job}");
                let (data, _) = self
                    .zk
                    .block_on(self.zk.client.get_data(&path))
                    .map_err(|e| self.zk.error(&format!("cannot read {path}"), e))?;
                Ok((job, String::from_utf8_lossy(&data).to_string()))
            })
            .collect()
    }

    /// The checkpoint store of `job`, recording into ZooKeeper under this leadership.
    pub fn checkpoint_store(&self, job: JobId) -> Box<dyn CompletedCheckpointStore> {
        Box::new(ZooKeeperCheckpointStore {
            leadership: self.clone(),
            job,
        })
    }
}

/// A job's record and its JobGraph's JSON, as a new leader reads them.
pub type RecordedJob = (JobRecord, Vec<u8>);

/// Writes `bytes` to `path` through a temporary file and a rename, creating its directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ClusterError::io(format!("cannot create {}", dir.display()), e))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes)
        .map_err(|e| ClusterError::io(format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| ClusterError::io(format!("cannot write {}", path.display()), e))
}

/// A job's completed checkpoints and checkpoint counter in ZooKeeper.
struct ZooKeeperCheckpointStore {
    leadership: Leadership,
    job: JobId,
}

impl ZooKeeperCheckpointStore {
    fn fail(&self, what: &str, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::HighAvailability(format!(
            "job {}: {what} in ZooKeeper at {}: {e}",
            self.job, self.leadership.zk.settings.quorum
        ))
    }
}

impl CompletedCheckpointStore for ZooKeeperCheckpointStore {
    fn next_checkpoint_id(&mut self, minimum: u64) -> eddy_runtime::Result<u64> {
        let zk = &self.leadership.zk;
        let lock = &self.leadership.lock;
        let path = zk.path(&format!("checkpoint-counter/{}", self.job));
        loop {
            let (current, version) = match zk.block_on(zk.client.get_data(&path)) {
                Ok((data, stat)) => {
                    let text = String::from_utf8_lossy(&data);
                    let n = text.trim().parse::<u64>().map_err(|_| {
                        self.fail(
                            &format!("the counter {path} holds '{text}', not a number"),
                            "",
                        )
                    })?;
                    (n, Some(stat.version))
                }
                Err(zk::Error::NoNode) => (0, None),
                Err(e) => return Err(self.fail("cannot read the checkpoint counter", e)),
            };
            let id = current.max(minimum).max(1);
            let next = (id + 1).to_string();
            let written = match version {
                Some(v) => zk
                    .block_on(lock.set_data(&path, next.as_bytes(), Some(v)))
                    .map(drop),
                None => zk
                    .block_on(lock.create(
                        &path,
                        next.as_bytes(),
                        &zk::CreateMode::Persistent.with_acls(acls()),
                    ))
                    .map(drop),
            };
            match written {
                Ok(()) => return Ok(id),
                // Someone else moved it in between: read it again.
                Err(zk::Error::BadVersion | zk::Error::NodeExists) => continue,
                Err(e) => return Err(self.fail("cannot advance the checkpoint counter", e)),
            }
        }
    }

    fn add_checkpoint(&mut self, retained: &[CheckpointPointer]) -> eddy_runtime::Result<()> {
        let zk = &self.leadership.zk;
        let lock = &self.leadership.lock;
        let path = zk.path(&format!("checkpoints/{}", self.job));
        let data = serde_json::to_vec(retained).map_err(|e| self.fail("cannot encode", e))?;
        let written = match zk.block_on(lock.set_data(&path, &data, None)) {
            Err(zk::Error::NoNode) => zk
                .block_on(lock.create(&path, &data, &zk::CreateMode::Persistent.with_acls(acls())))
                .map(drop),
            other => other.map(drop),
        };
        written.map_err(|e| {
            let id = retained.first().map_or(0, |c| c.id);
            self.fail(&format!("cannot record checkpoint {id}"), e)
        })
    }

    fn shutdown(&mut self, outcome: JobOutcome) -> eddy_runtime::Result<()> {
        tracing::info!(job_id = %self.job, ?outcome, "the job ended; forgetting it in ZooKeeper");
        let outcome = match outcome {
            JobOutcome::Finished => "FINISHED",
            JobOutcome::Cancelled => "CANCELED",
            JobOutcome::Failed => "FAILED",
        };
        self.leadership
            .remove_job(self.job, outcome)
            .map_err(|e| RuntimeError::HighAvailability(e.to_string()))
    }
}

/// Starting ZooKeeper servers for tests, from the jars `scripts/services.sh` fetches
/// (`EDDY_ZOOKEEPER_LIBS`, by default `$HOME/.cache/eddy-tools/zookeeper-*/libs`).
pub mod testing {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::{ClusterError, Result};

    /// Writes `data` into the node `relative` under the cluster's node, creating it: how a
    /// test plants a record a JobManager must refuse.
    pub fn write_node(zk: &super::ZooKeeper, relative: &str, data: &[u8]) -> Result<()> {
        let path = zk.path(relative);
        zk.block_on(zk.client.create(
            &path,
            data,
            &super::zk::CreateMode::Persistent.with_acls(super::acls()),
        ))
        .map(drop)
        .map_err(|e| zk.error(&format!("cannot create {path}"), e))
    }

    /// A ZooKeeper server on a free port of 127.0.0.1, killed when dropped.
    pub struct ZooKeeperServer {
        child: Child,
        port: u16,
        _dir: tempfile::TempDir,
    }

    fn libs() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("EDDY_ZOOKEEPER_LIBS") {
            return Ok(PathBuf::from(dir));
        }
        let tools = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/eddy-tools"))
            .unwrap_or_default();
        let found = std::fs::read_dir(&tools).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("zookeeper-3"))
                        && p.join(".complete").exists()
                })
                .max()
        });
        found.map(|p| p.join("libs")).ok_or_else(|| {
            ClusterError::Invalid(
                "no ZooKeeper jars (run scripts/services.sh zookeeper, or set EDDY_ZOOKEEPER_LIBS)"
                    .into(),
            )
        })
    }

    impl ZooKeeperServer {
        /// Starts a server (tick 250 ms, so sessions of 0.5–5 s can be negotiated) and waits
        /// until it serves sessions.
        pub fn start() -> Result<ZooKeeperServer> {
            let libs = libs()?;
            let dir =
                tempfile::tempdir().map_err(|e| ClusterError::io("temporary directory", e))?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| ClusterError::io("free port", e))?
                .port();
            let log = std::fs::File::create(dir.path().join("zookeeper.log"))
                .map_err(|e| ClusterError::io("ZooKeeper log", e))?;
            let child = Command::new("java")
                .args([
                    "-Xmx128m",
                    "-Dzookeeper.admin.enableServer=false",
                    "-Dzookeeper.maxSessionTimeout=60000",
                    "-cp",
                ])
                .arg(format!("{}/*", libs.display()))
                .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
                .arg(port.to_string())
                .arg(dir.path().join("data"))
                .arg("250")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| ClusterError::io("cannot start java for ZooKeeper", e))?;
            let mut server = ZooKeeperServer {
                child,
                port,
                _dir: dir,
            };
            server.wait_ready()?;
            Ok(server)
        }

        fn wait_ready(&mut self) -> Result<()> {
            let deadline = Instant::now() + Duration::from_secs(60);
            let settings = super::HaSettings {
                quorum: self.quorum(),
                root: "/eddy-ready".into(),
                storage_dir: PathBuf::new(),
                session_timeout: Duration::from_secs(2),
                connection_timeout: Duration::from_secs(2),
            };
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(ClusterError::Invalid(format!(
                        "ZooKeeper exited at start ({status}): {}",
                        self.log()
                    )));
                }
                if super::ZooKeeper::connect(&settings).is_ok() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(ClusterError::Invalid(format!(
                        "ZooKeeper did not serve sessions within a minute: {}",
                        self.log()
                    )));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }

        /// Its log.
        pub fn log(&self) -> String {
            std::fs::read_to_string(self._dir.path().join("zookeeper.log")).unwrap_or_default()
        }

        /// `127.0.0.1:port`, for `high-availability.zookeeper.quorum`.
        pub fn quorum(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }
    }

    impl Drop for ZooKeeperServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
