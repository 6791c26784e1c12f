//! Eddy's cluster: a JobManager and TaskManagers in separate processes.
//!
//! - [`jobmanager`]: the dispatcher (REST API and web UI on `rest.port`), the resource manager
//!   (TaskManagers, their slots and heartbeats) and one job master per job — the runtime's own
//!   job master, whose tasks a [`jobmanager::deployer::RemoteDeployer`] starts in worker
//!   processes on TaskManagers.
//! - [`taskmanager`]: registers its slots, heartbeats, and starts one worker process per job
//!   from a content-addressed copy of the job's program.
//! - [`client`]: the CLI's verbs (`run`, `list`, `cancel`, `stop`, `savepoint`, `info`) over the
//!   REST API.
//! - [`application`]: `run-application`, an application cluster on this machine.
//! - [`ha`]: high availability with ZooKeeper: leader election among JobManagers, and the job
//!   graphs, programs and checkpoint pointers a new leader resumes jobs from.
//!
//! The JobManager and TaskManagers talk over one TCP connection each ([`protocol`]); worker
//! processes talk to the job master with the runtime's worker protocol
//! (`eddy_runtime::executor::remote`) on the same port, and to each other over credit-based data
//! connections.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

pub mod application;
pub mod client;
pub mod ha;
pub mod jobmanager;
pub mod logging;
pub mod process;
pub mod protocol;
pub mod taskmanager;

/// Everything that can go wrong in the cluster's processes.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A configuration value is missing or wrong.
    #[error(transparent)]
    Config(#[from] eddy_core::CoreError),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] eddy_runtime::RuntimeError),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A request to the REST API failed.
    #[error("{0}")]
    Rest(String),
    /// Something the user asked for cannot be done.
    #[error("{0}")]
    Invalid(String),
    /// High availability failed: ZooKeeper cannot be reached, a record in it is not valid, or
    /// this JobManager is no longer the leader.
    #[error("high availability: {0}")]
    HighAvailability(String),
}

impl ClusterError {
    /// An I/O error with context.
    pub fn io(context: impl std::fmt::Display, source: std::io::Error) -> Self {
        ClusterError::Io {
            context: context.to_string(),
            source,
        }
    }
}

/// Binds the first free port of `spec` (`9249` or `9249-9260`) on `host`, for a Prometheus
/// endpoint; `None` (with a warning) when none is free or the spec is malformed.
pub fn bind_port_range(host: &str, spec: &str) -> Option<std::net::TcpListener> {
    let (from, to) = match spec.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
        None => {
            let p = spec.trim().parse::<u16>().ok()?;
            (p, p)
        }
    };
    let listener = (from..=to).find_map(|p| std::net::TcpListener::bind((host, p)).ok());
    if listener.is_none() {
        tracing::warn!(
            ports = spec,
            "no free port for the Prometheus endpoint; metrics are not served"
        );
    }
    listener
}

/// Whether `s` is a hex SHA-256, the name of a stored program.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `name` is a plain file name: ASCII letters, digits, `.`, `_` and `-` only, so it
/// cannot leave the directory it is looked up in.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Stores `bytes`, whose SHA-256 is `sha`, as the executable `dir/sha` (written to a temporary
/// name and renamed, so a reader never sees half a program); returns its path.
pub fn store_program(dir: &std::path::Path, sha: &str, bytes: &[u8]) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| ClusterError::io("program directory", e))?;
    let path = dir.join(sha);
    if path.exists() {
        return Ok(path);
    }
    let tmp = dir.join(format!(".{sha}.{}", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, bytes).map_err(|e| ClusterError::io("storing a program", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| ClusterError::io("making a program executable", e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| ClusterError::io("storing a program", e))?;
    Ok(path)
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, ClusterError>;
