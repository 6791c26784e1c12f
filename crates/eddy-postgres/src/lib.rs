//! Postgres connectors for Eddy, on tokio-postgres (through its synchronous `postgres` client,
//! which runs tokio-postgres on a runtime of its own: a sink writer is called from a task
//! thread and must block anyway).
//!
//! - [`PostgresSink`] writes batches with binary `COPY` or multi-row `INSERT`s, or upserts
//!   (`INSERT … ON CONFLICT … DO UPDATE`), which make at-least-once delivery idempotent. With
//!   [`DeliveryGuarantee::ExactlyOnce`] it writes each checkpoint's rows in one transaction,
//!   prepared at the barrier (`PREPARE TRANSACTION`) and committed when the checkpoint
//!   completes (`COMMIT PREPARED`); prepared transactions an earlier attempt left are resolved
//!   on restore.
//! - [`PostgresSource`] reads a table or a query, bounded.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod error;
mod sink;
mod source;
#[cfg(feature = "testing")]
pub mod testing;
mod value;

pub use error::PostgresConnectorError;
pub use sink::{
    DeliveryGuarantee, PostgresCommitter, PostgresSink, PostgresSinkBuilder, PostgresWriter,
    PreparedTransaction, WriteMode,
};
pub use source::{PostgresSource, PostgresSourceReader, PostgresSplit};
pub use value::SqlValue;

/// Connects to `url` (`postgres://user@host:port/db` or `host=… user=…`), without TLS.
pub fn connect(url: &str) -> Result<postgres::Client, PostgresConnectorError> {
    postgres::Client::connect(url, postgres::NoTls).map_err(|e| PostgresConnectorError::Connect {
        url: redact(url),
        reason: error::describe(&e),
    })
}

/// `url` without its password.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_info = &url[scheme + 3..at];
            match user_info.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &user_info[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Quotes an identifier (`events`, `public.events`) for SQL.
pub(crate) fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://eddy:secret@db:5432/x"),
            "postgres://eddy:***@db:5432/x"
        );
        assert_eq!(redact("postgres://eddy@db/x"), "postgres://eddy@db/x");
    }

    #[test]
    fn identifiers_are_quoted_per_part() {
        assert_eq!(quote_ident("public.events"), "\"public\".\"events\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
