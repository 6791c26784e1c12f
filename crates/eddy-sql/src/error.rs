//! The one error type of the SQL layer.

use datafusion_common::DataFusionError;

/// The result of SQL operations.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// What went wrong with a statement, its plan or the job that runs it.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement is not valid SQL; `line` and `column` are 1-based.
    #[error("SQL parse error at line {line}, column {column}: {message}")]
    Parse {
        /// Line of the offending token.
        line: u64,
        /// Column of the offending token.
        column: u64,
        /// What was expected and what was found.
        message: String,
    },
    /// The statement is valid SQL but refers to something that does not exist or does not fit.
    #[error("{0}")]
    Validation(String),
    /// The statement is valid but uses something Eddy does not run yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Planning or evaluating an expression failed.
    #[error("{}", plan_message(.0))]
    Plan(#[from] DataFusionError),
    /// Building or running the job failed.
    #[error(transparent)]
    Job(#[from] eddy::Error),
    /// An Arrow computation failed.
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Reading a SQL file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl SqlError {
    /// A [`SqlError::Validation`] with `message`.
    pub fn validation(message: impl Into<String>) -> Self {
        SqlError::Validation(message.into())
    }

    /// A [`SqlError::Unsupported`] with `message`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        SqlError::Unsupported(message.into())
    }
}

/// DataFusion's message without its "Error during planning:" style prefixes, and with the
/// message of one of our own errors wrapped in it.
fn plan_message(e: &DataFusionError) -> String {
    match e {
        DataFusionError::External(inner) => inner.to_string(),
        DataFusionError::Context(context, inner) => format!("{context}: {}", plan_message(inner)),
        DataFusionError::Plan(message) => message.clone(),
        DataFusionError::SchemaError(inner, _) => inner.to_string(),
        DataFusionError::Diagnostic(_, inner) => plan_message(inner),
        DataFusionError::NotImplemented(message) => format!("unsupported: {message}"),
        DataFusionError::Execution(message) => message.clone(),
        DataFusionError::ArrowError(inner, _) => inner.to_string(),
        other => other.to_string(),
    }
}

/// The names in `candidates` nearest to `name`, for "did you mean" hints.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    let lower = name.to_lowercase();
    let best = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, c)) => format!("; did you mean '{c}'?"),
        None => String::new(),
    }
}
