//! Text lines from a TCP socket (Flink's `socketTextStream`), for `nc -l 9000` style examples.
//!
//! The source connects as a client, reads lines separated by a delimiter, and ends when the
//! server closes the connection, unless it is told to reconnect (`max_retry`). It has a single
//! split, so it runs with parallelism 1.

use std::io::{ErrorKind, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use eddy_runtime::source::{
    Boundedness, InputStatus, ReaderOutput, Source, SourceReader, SourceReaderContext, SourceSplit,
};
use eddy_runtime::{Result, RuntimeError};
use serde::{Deserialize, Serialize};

/// How long one read waits for data before the task checks its mailbox.
const READ_TIMEOUT: Duration = Duration::from_millis(20);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before reconnecting (Flink's `DEFAULT_CONNECTION_RETRY_SLEEP`).
const RETRY_SLEEP: Duration = Duration::from_millis(500);

/// Reads text lines from `host:port`.
#[derive(Clone, Debug)]
pub struct SocketTextStreamSource {
    host: String,
    port: u16,
    delimiter: u8,
    max_retry: i64,
}

impl SocketTextStreamSource {
    /// Lines separated by `\n` from `host:port`; ends when the server closes the connection.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        SocketTextStreamSource {
            host: host.into(),
            port,
            delimiter: b'\n',
            max_retry: 0,
        }
    }

    /// Uses `delimiter` between records.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Reconnects up to `max_retry` times after the server closes the connection; `-1`
    /// reconnects forever (Flink's `maxRetry`).
    pub fn with_max_retry(mut self, max_retry: i64) -> Self {
        self.max_retry = max_retry;
        self
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The only split of a socket source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SocketSplit;

impl SourceSplit for SocketSplit {
    fn split_id(&self) -> String {
        "socket".into()
    }
}

impl Source<String> for SocketTextStreamSource {
    type Split = SocketSplit;
    type Reader = SocketReader;

    fn boundedness(&self) -> Boundedness {
        Boundedness::ContinuousUnbounded
    }

    fn enumerate_splits(&self, _parallelism: u32) -> Result<Vec<SocketSplit>> {
        Ok(vec![SocketSplit])
    }

    fn create_reader(&self, _ctx: &SourceReaderContext) -> Result<SocketReader> {
        Ok(SocketReader {
            source: self.clone(),
            stream: None,
            assigned: false,
            buffer: Vec::new(),
            retries: 0,
            done: false,
        })
    }
}

/// Reads a [`SocketTextStreamSource`].
pub struct SocketReader {
    source: SocketTextStreamSource,
    stream: Option<TcpStream>,
    assigned: bool,
    buffer: Vec<u8>,
    retries: i64,
    done: bool,
}

impl SocketReader {
    fn connect(&mut self) -> Result<()> {
        let address = self.source.address();
        let err = |e| RuntimeError::io(format!("cannot connect to socket {address}"), e);
        let addrs: Vec<_> = address.to_socket_addrs().map_err(err)?.collect();
        let mut last =
            std::io::Error::new(ErrorKind::NotFound, "the host name resolved to no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(err)?;
                    tracing::info!(%address, "connected to socket");
                    self.stream = Some(stream);
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        Err(err(last))
    }

    fn emit_lines(&mut self, output: &mut ReaderOutput<String>) {
        let delim = self.source.delimiter;
        let mut start = 0;
        while let Some(pos) = self.buffer[start..].iter().position(|&b| b == delim) {
            let mut line = &self.buffer[start..start + pos];
            if delim == b'\n'
                && let Some(l) = line.strip_suffix(b"\r")
            {
                line = l;
            }
            output.collect(String::from_utf8_lossy(line).into_owned());
            start += pos + 1;
        }
        self.buffer.drain(..start);
    }
}

impl SourceReader<String> for SocketReader {
    type Split = SocketSplit;

    fn add_splits(&mut self, splits: Vec<SocketSplit>) -> Result<()> {
        if !splits.is_empty() && !self.assigned {
            self.assigned = true;
            self.connect()?;
        }
        Ok(())
    }

    fn poll_next(&mut self, output: &mut ReaderOutput<String>) -> Result<InputStatus> {
        if !self.assigned || self.done {
            return Ok(InputStatus::EndOfInput);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(InputStatus::EndOfInput);
        };
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk) {
            Ok(0) => {
                let retry = self.source.max_retry == -1 || self.retries < self.source.max_retry;
                self.stream = None;
                if retry {
                    self.retries += 1;
                    std::thread::sleep(RETRY_SLEEP);
                    self.connect()?;
                    return Ok(InputStatus::NothingAvailable);
                }
                // The connection is closed for good: the rest of the buffer is the last record.
                self.emit_lines(output);
                if !self.buffer.is_empty() {
                    let rest = std::mem::take(&mut self.buffer);
                    output.collect(String::from_utf8_lossy(&rest).into_owned());
                }
                self.done = true;
                Ok(InputStatus::EndOfInput)
            }
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                self.emit_lines(output);
                Ok(InputStatus::MoreAvailable)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Ok(InputStatus::NothingAvailable)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(InputStatus::MoreAvailable),
            Err(e) => Err(RuntimeError::io(
                format!("cannot read from socket {}", self.source.address()),
                e,
            )),
        }
    }

    fn wait_available(&mut self, _timeout: Duration) {
        // Reads already wait up to READ_TIMEOUT for data.
    }

    fn close(&mut self) -> Result<()> {
        self.stream = None;
        Ok(())
    }
}
