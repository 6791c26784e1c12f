//! The error type of the DataStream API.

use eddy_core::CoreError;
use eddy_runtime::RuntimeError;
use eddy_runtime::executor::JobError;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between building a program and the end of its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration (names the key and where it came from).
    #[error(transparent)]
    Config(#[from] CoreError),
    /// The program's dataflow is invalid (an operator setting in the wrong place, ...).
    #[error("invalid program: {0}")]
    InvalidProgram(String),
    /// The job could not be built or deployed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The job failed or was cancelled.
    #[error(transparent)]
    Job(#[from] JobError),
}
