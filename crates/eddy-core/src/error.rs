//! The error type of `eddy-core`.

use std::path::PathBuf;

/// A `Result` whose error is [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Errors raised while reading configuration or encoding keys.
///
/// Every variant names what was wrong and where it came from (a key, a file, a value), so that a
/// user can fix it without reading Eddy's source.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A configuration key that Eddy does not know.
    #[error("unknown configuration key '{key}' (from {origin}){}", suggestion_text(.suggestion))]
    UnknownConfigKey {
        /// The key as written.
        key: String,
        /// Where the key came from: a file path or `-D`.
        origin: String,
        /// The closest known key, if one is close.
        suggestion: Option<String>,
    },
    /// A configuration value that could not be parsed for its key.
    #[error("invalid value '{value}' for configuration key '{key}' (from {origin}): {reason}")]
    InvalidConfigValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// Where the value came from.
        origin: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A configuration file that could not be read or parsed.
    #[error("cannot read configuration file {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A `-D` argument that is not of the form `key=value`.
    #[error("malformed dynamic property '{0}': expected -D key=value")]
    MalformedDynamicProperty(String),
    /// A key that could not be encoded for hashing (its `Serialize` impl failed).
    #[error("cannot encode key for hashing: {0}")]
    KeyEncoding(String),
    /// An invalid graph or job setting found while building a job.
    #[error("invalid job: {0}")]
    InvalidJob(String),
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("; did you mean '{s}'?"),
        None => String::new(),
    }
}
