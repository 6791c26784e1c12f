//! The error type of `eddy-runtime`.

use std::fmt;

use eddy_core::CoreError;

/// A `Result` whose error is [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Who is responsible for an error: the user (bad input or code), the outside world (a file, a
/// socket, a broker), or Eddy itself (a bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorDomain {
    /// The user's program, configuration or input.
    User,
    /// An external system.
    External,
    /// A bug in Eddy.
    Internal,
}

/// Errors raised while building or running a job.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// An error raised inside one operator of one subtask; names both.
    #[error("operator '{operator}' in task '{task}' failed: {source}")]
    Operator {
        /// The operator's name.
        operator: String,
        /// The task's name with its subtask, e.g. `Map -> Sink (2/4)#0`.
        task: String,
        /// What went wrong.
        #[source]
        source: Box<RuntimeError>,
    },
    /// A user function panicked.
    #[error("user function panicked: {0}")]
    Panic(String),
    /// A user function returned an error.
    #[error("{0}")]
    User(String),
    /// An I/O error with what was being done (a path, an address).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or address.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record or event could not be encoded or decoded.
    #[error("serialization failed: {0}")]
    Serialization(String),
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] CoreError),
    /// The job or task was cancelled.
    #[error("the task was cancelled")]
    Cancelled,
    /// A downstream or upstream task went away; a consequence of another failure.
    #[error("a connected task has terminated")]
    ChannelClosed,
    /// Checkpoint storage failed: a file could not be written, read or found, or is corrupt.
    #[error("checkpoint storage: {context}: {reason}")]
    Storage {
        /// What was being done, naming the file or directory.
        context: String,
        /// What went wrong.
        reason: String,
    },
    /// A checkpoint or savepoint cannot be restored into this job (state nobody claims, a
    /// changed max parallelism, ...).
    #[error("{0}")]
    Restore(String),
    /// The embedded LSM state backend failed.
    #[error("state backend: {0}")]
    StateBackend(String),
    /// A checkpoint was aborted: it took too long, a task declined it, or it was subsumed.
    #[error("checkpoint {id} aborted: {reason}")]
    CheckpointAborted {
        /// The checkpoint's id.
        id: u64,
        /// Why.
        reason: String,
    },
    /// The high-availability services (where a JobManager records completed checkpoints and
    /// takes checkpoint ids) failed, or this JobManager is no longer the leader.
    #[error("high availability: {0}")]
    HighAvailability(String),
    /// The job graph cannot run (bad parallelism, missing user code, ...).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// An error that happened in another process, as that process described it.
    #[error("{message}")]
    Remote {
        /// The error's message.
        message: String,
        /// Whether it was only a consequence of another failure.
        secondary: bool,
    },
    /// A bug in Eddy. Please report it.
    #[error("internal error (this is a bug in Eddy): {0}")]
    Internal(String),
}

impl RuntimeError {
    /// An I/O error with context.
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.to_string(),
            source,
        }
    }

    /// A checkpoint storage error.
    pub fn storage(context: impl fmt::Display, reason: impl fmt::Display) -> Self {
        RuntimeError::Storage {
            context: context.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A user-level error with a message.
    pub fn user(message: impl fmt::Display) -> Self {
        RuntimeError::User(message.to_string())
    }

    /// Who is responsible for this error.
    pub fn domain(&self) -> ErrorDomain {
        match self {
            RuntimeError::Operator { source, .. } => source.domain(),
            RuntimeError::Panic(_)
            | RuntimeError::User(_)
            | RuntimeError::Config(_)
            | RuntimeError::InvalidJob(_)
            | RuntimeError::Restore(_)
            | RuntimeError::Serialization(_) => ErrorDomain::User,
            RuntimeError::Io { .. }
            | RuntimeError::Storage { .. }
            | RuntimeError::StateBackend(_)
            | RuntimeError::CheckpointAborted { .. }
            | RuntimeError::HighAvailability(_)
            | RuntimeError::ChannelClosed
            | RuntimeError::Remote { .. }
            | RuntimeError::Cancelled => ErrorDomain::External,
            RuntimeError::Internal(_) => ErrorDomain::Internal,
        }
    }

    /// Whether this error is only a consequence of another task's failure or of cancellation,
    /// so that the root cause should be reported instead.
    pub fn is_secondary(&self) -> bool {
        match self {
            RuntimeError::Operator { source, .. } => source.is_secondary(),
            RuntimeError::Cancelled | RuntimeError::ChannelClosed => true,
            RuntimeError::Remote { secondary, .. } => *secondary,
            _ => false,
        }
    }

    /// Wraps the error with the operator and task it happened in, unless it already names one.
    pub fn in_operator(self, operator: &str, task: &str) -> Self {
        match self {
            e @ RuntimeError::Operator { .. } => e,
            e if e.is_secondary() => e,
            e => RuntimeError::Operator {
                operator: operator.to_string(),
                task: task.to_string(),
                source: Box::new(e),
            },
        }
    }
}

/// Extracts a readable message from a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}
