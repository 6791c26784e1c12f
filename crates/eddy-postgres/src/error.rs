//! The error type of the Postgres connectors.

use eddy::runtime::RuntimeError;

/// What went wrong in a Postgres source or sink.
#[derive(Debug, thiserror::Error)]
pub enum PostgresConnectorError {
    /// The connector is configured wrongly.
    #[error("postgres connector configuration: {0}")]
    Config(String),
    /// The server could not be reached.
    #[error("connecting to {url}: {reason}")]
    Connect {
        /// The server, without a password.
        url: String,
        /// The client's error, with its causes.
        reason: String,
    },
    /// A statement failed; names what was being done.
    #[error("{context}: {reason}")]
    Statement {
        /// What was being done: the table, the transaction.
        context: String,
        /// The client's error, with its causes (the server's message, detail and hint).
        reason: String,
    },
    /// The connection was lost and could not be re-established in time.
    #[error(
        "connection to {url} lost while {context}, and {attempts} attempts to go on failed: {last}"
    )]
    ConnectionLost {
        /// The server, without a password.
        url: String,
        /// What was being done.
        context: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        last: String,
    },
}

impl PostgresConnectorError {
    pub(crate) fn statement(context: impl std::fmt::Display, source: postgres::Error) -> Self {
        PostgresConnectorError::Statement {
            context: context.to_string(),
            reason: describe(&source),
        }
    }
}

/// The client's error with everything it knows: the server's message, detail and hint, or
/// the chain of causes (a value that could not be converted, a refused connection).
pub(crate) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} ({})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

impl From<PostgresConnectorError> for RuntimeError {
    fn from(e: PostgresConnectorError) -> Self {
        match e {
            PostgresConnectorError::Config(_) => RuntimeError::user(e),
            other => RuntimeError::io("postgres", std::io::Error::other(other)),
        }
    }
}
