//! Kafka transactions over the wire protocol (`kafka-protocol`), for what librdkafka can't do:
//! learning a producer's id and epoch, and committing a transaction whose producer died with
//! its process.
//!
//! The exactly-once sink writes through librdkafka's transactional producer. At a checkpoint
//! barrier it flushes, asks the transaction coordinator for the transaction's producer id and
//! epoch (`DescribeTransactions`), and keeps them in the checkpoint. If the process dies after
//! the checkpoint completed but before the commit, the restored job commits the transaction
//! itself with `EndTxn` under that id and epoch, as Flink's `KafkaCommitter` does by
//! resuming a producer: nothing else may initialize the transactional id first, since that
//! would abort the transaction.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeTransactionsRequest, EndTxnRequest, FindCoordinatorRequest,
    ProducerId, RequestHeader, ResponseHeader, TransactionalId,
};
use kafka_protocol::protocol::{
    Decodable, HeaderVersion, Request, StrBytes, encode_request_header_into_buffer,
};

use crate::error::KafkaConnectorError;

/// How long one request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long retriable answers (coordinator moving or loading, a concurrent transaction step)
/// are retried.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// The newest `EndTxn` version used: version 5 moves to transactions version 2 (KIP-890), in
/// which ending a transaction bumps the epoch. librdkafka's transactions are version 1.
const END_TXN_MAX_VERSION: i16 = 4;

/// A transaction's producer: what `EndTxn` needs besides the transactional id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerIdentity {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
}

/// A transaction as its coordinator describes it.
#[derive(Clone, Debug)]
pub(crate) struct TransactionDescription {
    /// `Empty`, `Ongoing`, `PrepareCommit`, `CompleteCommit`, `PrepareAbort`, ...
    pub state: String,
    pub producer: ProducerIdentity,
}

/// How committing a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CommitOutcome {
    /// Committed now, or committed before under the same epoch.
    Committed,
    /// The transactional id was initialized again since (a newer epoch fenced this one): the
    /// transaction was either committed or aborted before; which one the broker no longer says.
    Fenced(String),
    /// The broker aborted the transaction (its timeout expired, or it was never open).
    Lost(String),
}

struct Connection {
    stream: TcpStream,
    correlation: i32,
    versions: HashMap<i16, (i16, i16)>,
}

fn protocol_error(context: &str, reason: impl std::fmt::Display) -> KafkaConnectorError {
    KafkaConnectorError::Protocol {
        context: context.to_owned(),
        reason: reason.to_string(),
    }
}

impl Connection {
    fn open(address: &str) -> Result<Connection, String> {
        let addr = address
            .to_socket_addrs()
            .map_err(|e| format!("resolving {address}: {e}"))?
            .next()
            .ok_or_else(|| format!("{address} resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| format!("{address}: {e}"))?;
        let mut conn = Connection {
            stream,
            correlation: 0,
            versions: HashMap::new(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("eddy"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = conn.send(&request, 3)?;
        if response.error_code != 0 {
            return Err(format!(
                "ApiVersions answered {}",
                code_name(response.error_code)
            ));
        }
        conn.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(conn)
    }

    /// The newest version of `R` both sides speak, at most `max`.
    fn version<R: Request>(&self, max: i16) -> Result<i16, String> {
        let (broker_min, broker_max) = self.versions.get(&R::KEY).copied().ok_or_else(|| {
            format!(
                "the broker does not support API {:?}",
                ApiKey::try_from(R::KEY)
            )
        })?;
        let version = broker_max.min(R::VERSIONS.max).min(max);
        if version < broker_min.max(R::VERSIONS.min) {
            return Err(format!(
                "no common version of API {:?} (broker {broker_min}..{broker_max})",
                ApiKey::try_from(R::KEY)
            ));
        }
        Ok(version)
    }

    fn call<R: Request>(&mut self, request: &R, max: i16) -> Result<R::Response, String> {
        let version = self.version::<R>(max)?;
        self.send(request, version)
    }

    fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, String> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("eddy-kafka-sink")));
        let mut body = BytesMut::new();
        encode_request_header_into_buffer(&mut body, &header).map_err(|e| e.to_string())?;
        request
            .encode(&mut body, version)
            .map_err(|e| e.to_string())?;
        let len = i32::try_from(body.len()).map_err(|e| e.to_string())?;
        self.stream
            .write_all(&len.to_be_bytes())
            .and_then(|()| self.stream.write_all(&body))
            .map_err(|e| format!("sending: {e}"))?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| format!("reading the answer: {e}"))?;
        let size = usize::try_from(i32::from_be_bytes(size))
            .map_err(|_| "a negative answer size".to_string())?;
        let mut answer = vec![0u8; size];
        self.stream
            .read_exact(&mut answer)
            .map_err(|e| format!("reading the answer: {e}"))?;
        let mut answer = Bytes::from(answer);
        let header = ResponseHeader::decode(
            &mut answer,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .map_err(|e| format!("decoding the answer's header: {e}"))?;
        if header.correlation_id != self.correlation {
            return Err(format!(
                "answer to request {} where {} was expected",
                header.correlation_id, self.correlation
            ));
        }
        <R::Response as Decodable>::decode(&mut answer, version)
            .map_err(|e| format!("decoding the answer: {e}"))
    }
}

fn code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e} ({code})"),
        None => "NONE".into(),
    }
}

/// Whether an answer's error means: wait and ask again, perhaps another broker.
fn retriable(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::CoordinatorLoadInProgress
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::NotCoordinator
                | ResponseError::ConcurrentTransactions
                | ResponseError::RequestTimedOut
                | ResponseError::NotEnoughReplicas
                | ResponseError::NotEnoughReplicasAfterAppend
        )
    )
}

/// What an answer says: done, ask again (perhaps another broker), or give up.
enum Attempt<T> {
    Done(T),
    Retry(String),
    Fail(String),
}

/// Talks to the transaction coordinators of a cluster.
pub(crate) struct TransactionClient {
    bootstrap: Vec<String>,
    connections: HashMap<String, Connection>,
}

impl TransactionClient {
    /// A client of the cluster at `bootstrap` (`host:port,...`); connects on first use.
    pub fn new(bootstrap: &str) -> TransactionClient {
        TransactionClient {
            bootstrap: bootstrap
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            connections: HashMap::new(),
        }
    }

    fn connection(&mut self, address: &str) -> Result<&mut Connection, String> {
        if !self.connections.contains_key(address) {
            let conn = Connection::open(address)?;
            self.connections.insert(address.to_owned(), conn);
        }
        self.connections
            .get_mut(address)
            .ok_or_else(|| "connection vanished".to_string())
    }

    /// Runs `attempt` against the coordinator of `transactional_id` until it is done or fails,
    /// retrying on retriable answers and lost connections for [`RETRY_FOR`].
    fn with_coordinator<T>(
        &mut self,
        context: &str,
        transactional_id: &str,
        mut attempt: impl FnMut(&mut Connection) -> Result<Attempt<T>, String>,
    ) -> Result<T, KafkaConnectorError> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut backoff = Duration::from_millis(20);
        loop {
            let why = match self.coordinator(transactional_id) {
                Ok(address) => match self.connection(&address).and_then(&mut attempt) {
                    Ok(Attempt::Done(t)) => return Ok(t),
                    Ok(Attempt::Retry(why)) => why,
                    Ok(Attempt::Fail(why)) => return Err(protocol_error(context, why)),
                    // The connection failed: drop it and ask again.
                    Err(why) => {
                        self.connections.remove(&address);
                        why
                    }
                },
                Err(why) => why,
            };
            if Instant::now() > deadline {
                return Err(protocol_error(
                    context,
                    format!("gave up after {} s: {why}", RETRY_FOR.as_secs()),
                ));
            }
            tracing::debug!("{context}: {why}; retrying");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// The address of the transaction coordinator of `transactional_id`.
    fn coordinator(&mut self, transactional_id: &str) -> Result<String, String> {
        let mut last = format!("no bootstrap servers in {:?}", self.bootstrap);
        for server in self.bootstrap.clone() {
            let conn = match self.connection(&server) {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            // Version 4 on asks for several keys at once.
            let key = StrBytes::from_string(transactional_id.to_owned());
            let request = FindCoordinatorRequest::default().with_key_type(1);
            let response = match conn
                .version::<FindCoordinatorRequest>(i16::MAX)
                .and_then(|v| {
                    let request = if v >= 4 {
                        request.with_coordinator_keys(vec![key])
                    } else {
                        request.with_key(key)
                    };
                    conn.send(&request, v)
                }) {
                Ok(r) => r,
                Err(e) => {
                    self.connections.remove(&server);
                    last = format!("{server}: {e}");
                    continue;
                }
            };
            let (code, host, port) = match response.coordinators.first() {
                Some(c) => (c.error_code, c.host.to_string(), c.port),
                None => (
                    response.error_code,
                    response.host.to_string(),
                    response.port,
                ),
            };
            if code != 0 {
                last = format!("finding the coordinator: {}", code_name(code));
                continue;
            }
            return Ok(format!("{host}:{port}"));
        }
        Err(last)
    }

    /// Describes `transactional_id`'s current transaction.
    pub fn describe(
        &mut self,
        transactional_id: &str,
    ) -> Result<TransactionDescription, KafkaConnectorError> {
        let context = format!("describing transaction '{transactional_id}'");
        let id = TransactionalId(StrBytes::from_string(transactional_id.to_owned()));
        self.with_coordinator(&context, transactional_id, |conn| {
            let request =
                DescribeTransactionsRequest::default().with_transactional_ids(vec![id.clone()]);
            let response = conn.call(&request, i16::MAX)?;
            let Some(state) = response.transaction_states.first() else {
                return Err("an empty answer".into());
            };
            if retriable(state.error_code) {
                return Ok(Attempt::Retry(code_name(state.error_code)));
            }
            if state.error_code != 0 {
                return Ok(Attempt::Fail(code_name(state.error_code)));
            }
            Ok(Attempt::Done(TransactionDescription {
                state: state.transaction_state.to_string(),
                producer: ProducerIdentity {
                    producer_id: state.producer_id.0,
                    producer_epoch: state.producer_epoch,
                },
            }))
        })
    }

    /// Commits the transaction of `producer` under `transactional_id` (`EndTxn`).
    pub fn commit(
        &mut self,
        transactional_id: &str,
        producer: ProducerIdentity,
    ) -> Result<CommitOutcome, KafkaConnectorError> {
        let context = format!("committing transaction '{transactional_id}'");
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_owned(),
            )))
            .with_producer_id(ProducerId(producer.producer_id))
            .with_producer_epoch(producer.producer_epoch)
            .with_committed(true);
        let outcome = self.with_coordinator(&context, transactional_id, |conn| {
            let code = conn.call(&request, END_TXN_MAX_VERSION)?.error_code;
            let name = code_name(code);
            Ok(match ResponseError::try_from_code(code) {
                None => Attempt::Done(CommitOutcome::Committed),
                Some(_) if retriable(code) => Attempt::Retry(name),
                Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch) => {
                    Attempt::Done(CommitOutcome::Fenced(name))
                }
                Some(
                    ResponseError::InvalidTxnState
                    | ResponseError::TransactionalIdNotFound
                    | ResponseError::InvalidProducerIdMapping,
                ) => Attempt::Done(CommitOutcome::Lost(name)),
                Some(_) => Attempt::Fail(name),
            })
        })?;
        let CommitOutcome::Fenced(reason) = &outcome else {
            return Ok(outcome);
        };
        // A newer epoch: if nothing happened under it but an abort, that abort was the
        // coordinator's, of this very transaction (its timeout passed).
        let now = self.describe(transactional_id)?;
        if now.state == "CompleteAbort"
            && now.producer.producer_id == producer.producer_id
            && i32::from(now.producer.producer_epoch) == i32::from(producer.producer_epoch) + 1
        {
            return Ok(CommitOutcome::Lost(format!(
                "{reason}; the coordinator aborted it and moved to epoch {}",
                now.producer.producer_epoch
            )));
        }
        Ok(outcome)
    }
}
