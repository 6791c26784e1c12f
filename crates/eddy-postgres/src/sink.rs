//! The Postgres sink.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy::runtime::Result;
use eddy::runtime::sink::{
    Committer, CommittingSinkWriter, SinkWriter, SinkWriterContext, TwoPhaseCommittingSink,
};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, Statement};
use serde::{Deserialize, Serialize};

use crate::error::PostgresConnectorError;
use crate::value::SqlValue;
use crate::{connect, quote_ident, redact};

/// Postgres accepts at most this many parameters in one statement.
const MAX_PARAMETERS: usize = 65_535;

/// How rows are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Multi-row `INSERT … VALUES (…), (…)`.
    Insert,
    /// Binary `COPY … FROM STDIN`: the fastest way in.
    Copy,
    /// `INSERT … ON CONFLICT (key columns) DO UPDATE SET` the other columns: writing a row
    /// twice leaves one row, so at-least-once delivery gives an exactly-once table.
    Upsert {
        /// The columns of the table's primary key or of a unique index.
        key_columns: Vec<String>,
    },
}

/// What the sink promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Every batch is committed as it is written, and all are at every checkpoint; after a
    /// failure, rows since the last checkpoint are written again (use `Upsert` to absorb them).
    AtLeastOnce,
    /// Each checkpoint's rows are one transaction, prepared at the barrier and committed when
    /// the checkpoint completes. Needs `max_prepared_transactions` > 0 on the server.
    ExactlyOnce,
}

type RowFn<T> = Arc<dyn Fn(&T) -> Vec<SqlValue> + Send + Sync>;

struct SinkInner<T> {
    url: String,
    table: String,
    columns: Vec<String>,
    row: RowFn<T>,
    mode: WriteMode,
    guarantee: DeliveryGuarantee,
    batch_size: usize,
    prefix: String,
    max_retries: u32,
}

/// Writes a stream into a Postgres table. Build one with [`PostgresSink::builder`].
pub struct PostgresSink<T> {
    inner: Arc<SinkInner<T>>,
}

/// Builds a [`PostgresSink`].
pub struct PostgresSinkBuilder<T> {
    url: String,
    table: String,
    columns: Vec<String>,
    row: Option<RowFn<T>>,
    mode: WriteMode,
    guarantee: DeliveryGuarantee,
    batch_size: usize,
    prefix: Option<String>,
    max_retries: u32,
}

impl<T: 'static> PostgresSink<T> {
    /// A sink into `table` of the server at `url`; by default multi-row inserts of 1,000 rows,
    /// at-least-once, 3 retries after a lost connection.
    pub fn builder(url: impl Into<String>, table: impl Into<String>) -> PostgresSinkBuilder<T> {
        PostgresSinkBuilder {
            url: url.into(),
            table: table.into(),
            columns: Vec::new(),
            row: None,
            mode: WriteMode::Insert,
            guarantee: DeliveryGuarantee::AtLeastOnce,
            batch_size: 1000,
            prefix: None,
            max_retries: 3,
        }
    }
}

impl<T: 'static> PostgresSinkBuilder<T> {
    /// The columns written, and how a value becomes their values (in the same order).
    pub fn set_row<S: Into<String>>(
        mut self,
        columns: impl IntoIterator<Item = S>,
        row: impl Fn(&T) -> Vec<SqlValue> + Send + Sync + 'static,
    ) -> Self {
        self.columns = columns.into_iter().map(Into::into).collect();
        self.row = Some(Arc::new(row));
        self
    }

    /// How rows are written.
    pub fn set_write_mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// The delivery guarantee.
    pub fn set_delivery_guarantee(mut self, guarantee: DeliveryGuarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// Rows per batch.
    pub fn set_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// The prefix of the names of prepared transactions (exactly-once); unique per sink. By
    /// default `eddy-` and the table's name.
    pub fn set_transaction_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// How often a lost connection is re-established (with growing pauses) before the job
    /// fails.
    pub fn set_max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The sink, or what is wrong.
    pub fn build(self) -> Result<PostgresSink<T>, PostgresConnectorError> {
        let config = |m: String| PostgresConnectorError::Config(m);
        let row = self
            .row
            .ok_or_else(|| config("the sink needs its columns and a row function".into()))?;
        if self.columns.is_empty() {
            return Err(config("the sink needs at least one column".into()));
        }
        if let WriteMode::Upsert { key_columns } = &self.mode
            && (key_columns.is_empty() || key_columns.iter().any(|k| !self.columns.contains(k)))
        {
            return Err(config(format!(
                "upsert key columns {key_columns:?} must be among the columns written {:?}",
                self.columns
            )));
        }
        let prefix = self.prefix.unwrap_or_else(|| {
            format!(
                "eddy-{}",
                self.table
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            )
        });
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(config(format!(
                "transaction id prefix '{prefix}' may hold only letters, digits, '-', '_' and '.'"
            )));
        }
        Ok(PostgresSink {
            inner: Arc::new(SinkInner {
                url: self.url,
                table: self.table,
                columns: self.columns,
                row,
                mode: self.mode,
                guarantee: self.guarantee,
                batch_size: self.batch_size,
                prefix,
                max_retries: self.max_retries,
            }),
        })
    }
}

/// A prepared transaction: what the committer commits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreparedTransaction {
    /// Its global transaction id.
    pub gid: String,
}

impl<T> SinkInner<T> {
    /// Connects, retrying with growing pauses.
    fn connect_with_retries(&self, context: &str) -> Result<Client, PostgresConnectorError> {
        let mut last = String::new();
        for attempt in 0..=self.max_retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 << attempt.min(6)));
            }
            match connect(&self.url) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!("{e} (attempt {})", attempt + 1);
                    last = e.to_string();
                }
            }
        }
        Err(PostgresConnectorError::ConnectionLost {
            url: redact(&self.url),
            context: context.to_owned(),
            attempts: self.max_retries + 1,
            last,
        })
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `INSERT` (or upsert) of `rows` rows.
    fn insert_sql(&self, rows: usize) -> String {
        let n = self.columns.len();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote_ident(&self.table),
            self.column_list()
        );
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..n {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", r * n + c + 1));
            }
            sql.push(')');
        }
        if let WriteMode::Upsert { key_columns } = &self.mode {
            let keys: Vec<_> = key_columns.iter().map(|k| quote_ident(k)).collect();
            let updates: Vec<_> = self
                .columns
                .iter()
                .filter(|c| !key_columns.contains(c))
                .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                .collect();
            if updates.is_empty() {
                sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")));
            } else {
                sql.push_str(&format!(
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    keys.join(", "),
                    updates.join(", ")
                ));
            }
        }
        sql
    }

    /// Writes `rows` with `client` (inside or outside a transaction). `prepared` keeps the
    /// last insert statement of this connection with its row count: full batches reuse it.
    fn write_rows(
        &self,
        client: &mut Client,
        rows: &[Vec<SqlValue>],
        types: &[Type],
        prepared: &mut Option<(usize, Statement)>,
    ) -> Result<(), postgres::Error> {
        if self.mode == WriteMode::Copy {
            let copy = format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                quote_ident(&self.table),
                self.column_list()
            );
            let mut writer = BinaryCopyInWriter::new(client.copy_in(&copy)?, types);
            for row in rows {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    row.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                writer.write(&refs)?;
            }
            writer.finish()?;
            return Ok(());
        }
        let deduplicated;
        let rows = match &self.mode {
            WriteMode::Upsert { key_columns } => {
                deduplicated = self.last_per_key(rows, key_columns);
                &deduplicated[..]
            }
            _ => rows,
        };
        let per_statement = (MAX_PARAMETERS / self.columns.len())
            .min(self.batch_size)
            .max(1);
        for chunk in rows.chunks(per_statement) {
            let statement = match prepared {
                Some((n, statement)) if *n == chunk.len() => statement.clone(),
                _ => {
                    let statement = client.prepare(&self.insert_sql(chunk.len()))?;
                    *prepared = Some((chunk.len(), statement.clone()));
                    statement
                }
            };
            let params: Vec<&(dyn ToSql + Sync)> = chunk
                .iter()
                .flatten()
                .map(|v| v as &(dyn ToSql + Sync))
                .collect();
            client.execute(&statement, &params)?;
        }
        Ok(())
    }

    /// The last row of each key, in the order of those rows: one upsert statement may not
    /// touch a row twice.
    fn last_per_key(&self, rows: &[Vec<SqlValue>], key_columns: &[String]) -> Vec<Vec<SqlValue>> {
        let key_at: Vec<usize> = key_columns
            .iter()
            .filter_map(|k| self.columns.iter().position(|c| c == k))
            .collect();
        let key = |row: &Vec<SqlValue>| {
            format!("{:?}", key_at.iter().map(|i| &row[*i]).collect::<Vec<_>>())
        };
        let mut last = std::collections::HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            last.insert(key(row), i);
        }
        rows.iter()
            .enumerate()
            .filter(|(i, row)| last.get(&key(row)) == Some(i))
            .map(|(_, row)| row.clone())
            .collect()
    }

    /// The column types, for binary COPY.
    fn column_types(&self, client: &mut Client) -> Result<Vec<Type>, PostgresConnectorError> {
        let probe = format!(
            "SELECT {} FROM {} LIMIT 0",
            self.column_list(),
            quote_ident(&self.table)
        );
        let statement = client.prepare(&probe).map_err(|e| {
            PostgresConnectorError::statement(format!("reading the columns of '{}'", self.table), e)
        })?;
        Ok(statement
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect())
    }
}

impl<T: Send + 'static> TwoPhaseCommittingSink<T> for PostgresSink<T> {
    type Writer = PostgresWriter<T>;
    type Committer = PostgresCommitter;

    fn create_writer(
        &self,
        ctx: &SinkWriterContext,
        _restored: &[PreparedTransaction],
    ) -> Result<PostgresWriter<T>> {
        let sink = self.inner.clone();
        let mut client = sink.connect_with_retries("opening the sink")?;
        let types = sink.column_types(&mut client)?;
        let mut writer = PostgresWriter {
            sink,
            client,
            types,
            prepared: None,
            buffer: Vec::new(),
            transaction: None,
        };
        if writer.sink.guarantee == DeliveryGuarantee::ExactlyOnce {
            check_prepared_transactions(&mut writer.client, &writer.sink.url)?;
            let run = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            writer.transaction = Some(Transaction {
                prefix: format!(
                    "{}-{}-{run}",
                    writer.sink.prefix, ctx.task_info.subtask_index
                ),
                next: 0,
                dirty: false,
            });
            writer.begin()?;
        }
        Ok(writer)
    }

    fn create_committer(&self, _ctx: &SinkWriterContext) -> Result<PostgresCommitter> {
        Ok(PostgresCommitter {
            url: self.inner.url.clone(),
            max_retries: self.inner.max_retries,
            client: None,
        })
    }

    fn abort_leftovers(
        &self,
        ctx: &SinkWriterContext,
        restored: &[PreparedTransaction],
    ) -> Result<()> {
        if self.inner.guarantee != DeliveryGuarantee::ExactlyOnce {
            return Ok(());
        }
        let mut client = self
            .inner
            .connect_with_retries("resolving prepared transactions")?;
        let pattern = format!("{}-%", self.inner.prefix.replace('_', "\\_"));
        let rows = client
            .query(
                "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE $1",
                &[&pattern],
            )
            .map_err(|e| PostgresConnectorError::statement("listing prepared transactions", e))?;
        for row in rows {
            let gid: String = row.get(0);
            // `{prefix}-{subtask}-{run}-{n}`
            let subtask = gid
                .strip_prefix(&format!("{}-", self.inner.prefix))
                .and_then(|rest| rest.split('-').next())
                .and_then(|s| s.parse::<u32>().ok());
            if !subtask.is_some_and(|s| ctx.cleans_up_after(s))
                || restored.iter().any(|r| r.gid == gid)
            {
                continue;
            }
            tracing::info!("rolling back prepared transaction '{gid}' of an earlier attempt");
            client
                .batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
                .map_err(|e| {
                    PostgresConnectorError::statement(format!("rolling back '{gid}'"), e)
                })?;
        }
        Ok(())
    }
}

fn check_prepared_transactions(client: &mut Client, url: &str) -> Result<()> {
    let max: String = client
        .query_one("SHOW max_prepared_transactions", &[])
        .map_err(|e| PostgresConnectorError::statement("reading max_prepared_transactions", e))?
        .get(0);
    if max.trim() == "0" {
        return Err(PostgresConnectorError::Config(format!(
            "exactly-once delivery needs prepared transactions, but the server at {} has max_prepared_transactions = 0; set it above the sink's parallelism (postgresql.conf, then restart the server), or write at-least-once with WriteMode::Upsert",
            redact(url)
        ))
        .into());
    }
    Ok(())
}

struct Transaction {
    /// `{prefix}-{subtask}-{run}`: unique per writer, so attempts never reuse a name.
    prefix: String,
    next: u64,
    /// Whether rows were written since `BEGIN`.
    dirty: bool,
}

/// Writes the rows of one subtask.
pub struct PostgresWriter<T> {
    sink: Arc<SinkInner<T>>,
    client: Client,
    types: Vec<Type>,
    /// The last insert statement prepared on `client`, with its row count.
    prepared: Option<(usize, Statement)>,
    buffer: Vec<Vec<SqlValue>>,
    transaction: Option<Transaction>,
}

impl<T> PostgresWriter<T> {
    fn begin(&mut self) -> Result<()> {
        self.client
            .batch_execute("BEGIN")
            .map_err(|e| PostgresConnectorError::statement("starting a transaction", e))?;
        Ok(())
    }

    /// Writes the buffered rows. Outside a transaction a lost connection is re-established
    /// and the batch written again; inside one, the transaction is lost with the connection,
    /// and the job must go back to its last checkpoint.
    fn write_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let context = || {
            format!(
                "writing {} rows into '{}'",
                self.buffer.len(),
                self.sink.table
            )
        };
        let mut attempt = 0;
        loop {
            let written = self.sink.write_rows(
                &mut self.client,
                &self.buffer,
                &self.types,
                &mut self.prepared,
            );
            match written {
                Ok(()) => break,
                Err(e) if connection_lost(&self.client, &e) && self.transaction.is_none() => {
                    attempt += 1;
                    if attempt > self.sink.max_retries {
                        return Err(PostgresConnectorError::ConnectionLost {
                            url: redact(&self.sink.url),
                            context: context(),
                            attempts: attempt,
                            last: e.to_string(),
                        }
                        .into());
                    }
                    tracing::warn!("{}: {e}; reconnecting", context());
                    self.client = self.sink.connect_with_retries(&context())?;
                    self.prepared = None;
                }
                Err(e) => return Err(PostgresConnectorError::statement(context(), e).into()),
            }
        }
        if let Some(t) = self.transaction.as_mut() {
            t.dirty = true;
        }
        self.buffer.clear();
        Ok(())
    }
}

impl<T: 'static> SinkWriter<T> for PostgresWriter<T> {
    fn write(&mut self, value: T, _timestamp: Option<i64>) -> Result<()> {
        self.buffer.push((self.sink.row)(&value));
        if self.buffer.len() >= self.sink.batch_size {
            self.write_buffer()?;
        }
        Ok(())
    }

    fn flush(&mut self, _end_of_input: bool) -> Result<()> {
        self.write_buffer()
    }

    fn close(&mut self) -> Result<()> {
        if self.transaction.is_some() && !self.client.is_closed() {
            // Rows since the last barrier belong to no checkpoint.
            if let Err(e) = self.client.batch_execute("ROLLBACK") {
                tracing::warn!("rolling back the open transaction: {e}");
            }
        }
        Ok(())
    }
}

impl<T: 'static> CommittingSinkWriter<T> for PostgresWriter<T> {
    type Committable = PreparedTransaction;

    fn prepare_commit(&mut self) -> Result<Vec<PreparedTransaction>> {
        self.write_buffer()?;
        let Some(t) = self.transaction.as_mut() else {
            return Ok(Vec::new());
        };
        if !t.dirty {
            return Ok(Vec::new());
        }
        let gid = format!("{}-{}", t.prefix, t.next);
        t.next += 1;
        t.dirty = false;
        self.client
            .batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))
            .map_err(|e| PostgresConnectorError::statement(format!("preparing '{gid}'"), e))?;
        self.begin()?;
        Ok(vec![PreparedTransaction { gid }])
    }
}

/// Commits prepared transactions when their checkpoint completes.
pub struct PostgresCommitter {
    url: String,
    max_retries: u32,
    client: Option<Client>,
}

/// Whether `e` means the connection is gone: the client saw it close, or the server said it is
/// closing it (a terminated backend, a shutdown: SQLSTATE class 57P) or the connection failed
/// (class 08) — the server's last message may arrive before the client notices the close.
fn connection_lost(client: &Client, e: &postgres::Error) -> bool {
    client.is_closed()
        || e.is_closed()
        || e.code().is_some_and(|c| {
            let code = c.code();
            code.starts_with("08") || code.starts_with("57P")
        })
}

impl Committer<PreparedTransaction> for PostgresCommitter {
    fn commit(&mut self, committables: Vec<PreparedTransaction>) -> Result<()> {
        for c in committables {
            let mut attempt = 0;
            loop {
                let client = match self.client.as_mut() {
                    Some(client) if !client.is_closed() => client,
                    _ => self.client.insert(connect(&self.url)?),
                };
                match client.batch_execute(&format!("COMMIT PREPARED '{}'", c.gid)) {
                    Ok(()) => break,
                    Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {
                        // Committed before the failure that made us commit it again.
                        tracing::info!("prepared transaction '{}' was committed before", c.gid);
                        break;
                    }
                    Err(e) if connection_lost(client, &e) && attempt < self.max_retries => {
                        attempt += 1;
                        tracing::warn!("committing '{}': {e}; reconnecting", c.gid);
                        std::thread::sleep(Duration::from_millis(100 << attempt.min(6)));
                    }
                    Err(e) => {
                        return Err(PostgresConnectorError::statement(
                            format!("committing '{}'", c.gid),
                            e,
                        )
                        .into());
                    }
                }
            }
        }
        Ok(())
    }
}
