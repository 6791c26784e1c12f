//! A bounded Postgres source: the rows of a table or a query.

use std::sync::Arc;

use eddy::runtime::Result;
use eddy::runtime::source::{
    Boundedness, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext, SourceSplit,
};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Row};
use serde::{Deserialize, Serialize};

use crate::error::PostgresConnectorError;
use crate::{connect, quote_ident};

type RowFn<T> = Arc<dyn Fn(&Row) -> Result<T, String> + Send + Sync>;

/// Reads the rows of a query once (a bounded source with one split). A checkpoint holds how
/// many rows were emitted; after a restore the query runs again and skips them, so the query
/// must return its rows in a stable order (`ORDER BY` a key) for the restore to be exact. The
/// reader fetches the rows of the query when it starts and holds them until they are emitted.
pub struct PostgresSource<T> {
    url: String,
    query: String,
    row: RowFn<T>,
}

impl<T: Send + 'static> PostgresSource<T> {
    /// The rows of `query`, each turned into a value by `row`.
    pub fn query(
        url: impl Into<String>,
        query: impl Into<String>,
        row: impl Fn(&Row) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        PostgresSource {
            url: url.into(),
            query: query.into(),
            row: Arc::new(row),
        }
    }

    /// Every row of `table`, ordered by `order_by` (a column or a list of them).
    pub fn table(
        url: impl Into<String>,
        table: &str,
        order_by: &str,
        row: impl Fn(&Row) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        Self::query(
            url,
            format!("SELECT * FROM {} ORDER BY {order_by}", quote_ident(table)),
            row,
        )
    }
}

/// The one split of a query: how many rows were emitted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PostgresSplit {
    /// Rows emitted so far.
    pub emitted: u64,
}

impl SourceSplit for PostgresSplit {
    fn split_id(&self) -> String {
        "query".into()
    }
}

impl<T: Send + 'static> Source<T> for PostgresSource<T> {
    type Split = PostgresSplit;
    type Reader = PostgresSourceReader<T>;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn enumerate_splits(&self, _parallelism: u32) -> Result<Vec<PostgresSplit>> {
        Ok(vec![PostgresSplit { emitted: 0 }])
    }

    fn create_reader(&self, _ctx: &SourceReaderContext) -> Result<PostgresSourceReader<T>> {
        Ok(PostgresSourceReader {
            url: self.url.clone(),
            query: self.query.clone(),
            row: self.row.clone(),
            split: None,
            rows: None,
        })
    }
}

/// Reads the query's rows in one subtask.
pub struct PostgresSourceReader<T> {
    url: String,
    query: String,
    row: RowFn<T>,
    split: Option<PostgresSplit>,
    /// The rows not emitted yet, in reverse order.
    rows: Option<Vec<Row>>,
}

impl<T: Send + 'static> SourceReader<T> for PostgresSourceReader<T> {
    type Split = PostgresSplit;

    fn add_splits(&mut self, splits: Vec<PostgresSplit>) -> Result<()> {
        if let Some(s) = splits.into_iter().next() {
            self.split = Some(s);
        }
        Ok(())
    }

    fn poll_next(&mut self, output: &mut ReaderOutput<T>) -> Result<InputStatus> {
        let Some(split) = self.split.as_mut() else {
            return Ok(InputStatus::EndOfInput);
        };
        if self.rows.is_none() {
            let mut client: Client = connect(&self.url)?;
            let context = || format!("running the source query '{}'", self.query);
            let rows: Vec<Row> = client
                .query_raw(self.query.as_str(), std::iter::empty::<&str>())
                .map_err(|e| PostgresConnectorError::statement(context(), e))?
                .skip(split.emitted as usize)
                .collect()
                .map_err(|e| PostgresConnectorError::statement(context(), e))?;
            self.rows = Some(rows.into_iter().rev().collect());
        }
        let Some(rows) = self.rows.as_mut() else {
            return Ok(InputStatus::EndOfInput);
        };
        while output.remaining() > 0 {
            let Some(row) = rows.pop() else {
                self.split = None;
                return Ok(InputStatus::EndOfInput);
            };
            let value = (self.row)(&row).map_err(|e| {
                PostgresConnectorError::Config(format!(
                    "row {} of '{}' cannot be read: {e}",
                    split.emitted + 1,
                    self.query
                ))
            })?;
            output.collect(value);
            split.emitted += 1;
        }
        Ok(InputStatus::MoreAvailable)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<PostgresSplit>> {
        Ok(self.split.iter().cloned().collect())
    }
}
