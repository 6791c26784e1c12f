//! Messages between a TaskManager and the JobManager, on the JobManager's RPC port
//! (`jobmanager.rpc.port`).
//!
//! A TaskManager's connection starts with [`TASKMANAGER_MAGIC`]; a worker process's starts
//! with its first length-prefixed message. Both then exchange postcard messages behind a `u32`
//! length (`eddy_runtime::executor::remote::{read_message, write_message}`).

use serde::{Deserialize, Serialize};

/// The first four bytes of a TaskManager's connection.
pub const TASKMANAGER_MAGIC: &[u8; 4] = b"EDTM";

/// A TaskManager's registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Registration {
    /// Its resource id.
    pub id: String,
    /// The host its workers accept data connections on.
    pub host: String,
    /// Slots it offers (`taskmanager.numberOfTaskSlots`).
    pub slots: u32,
    /// Its process id.
    pub pid: u32,
    /// Its Prometheus port, if it serves metrics.
    pub prometheus_port: Option<u16>,
    /// Its log file, if it logs to one.
    pub log_file: Option<String>,
    /// With high availability: the leader session (from ZooKeeper) it registers for. A
    /// JobManager refuses a registration for any session but its own.
    pub leader_session: Option<String>,
}

/// From a TaskManager to the JobManager.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TaskManagerMessage {
    /// The first message.
    Register(Registration),
    /// Still alive, with the resources it and its workers use.
    Heartbeat {
        /// The TaskManager process and its worker processes together.
        process: crate::process::ProcessMetrics,
    },
    /// A worker process ended.
    WorkerExited {
        /// Its job.
        job_id: String,
        /// Its attempt.
        attempt: u32,
        /// How it ended.
        status: String,
    },
}

/// From the JobManager to a TaskManager.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum JobManagerMessage {
    /// Registration accepted.
    Registered {
        /// Where the TaskManager downloads programs: the REST address.
        rest_address: String,
        /// The JobManager's leader session, with high availability.
        leader_session: Option<String>,
    },
    /// Registration refused (it named another leader session): why.
    Refused {
        /// Why, naming both sessions.
        reason: String,
    },
    /// Start a worker process for a job's attempt.
    StartWorker(StartWorker),
    /// Stop the worker process of a job's attempt, if it still runs.
    StopWorker {
        /// The job.
        job_id: String,
        /// The attempt.
        attempt: u32,
    },
    /// The cluster ends (an application cluster whose job ended): stop every worker and exit.
    Shutdown {
        /// Why, for the log.
        reason: String,
    },
}

/// How to start a worker process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StartWorker {
    /// The job.
    pub job_id: String,
    /// The attempt.
    pub attempt: u32,
    /// SHA-256 of the program, which the TaskManager downloads from `/blobs/:sha256`.
    pub blob: String,
    /// The program's arguments.
    pub args: Vec<String>,
    /// `-D` properties the program was submitted with (`EDDY_DYNAMIC_PROPERTIES`).
    pub dynamic_properties: String,
}
