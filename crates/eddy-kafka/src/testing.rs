//! Real Apache Kafka brokers for tests and benchmarks (feature `testing`).
//!
//! [`KafkaCluster::start`] runs one or more brokers in KRaft mode (each node both broker and
//! controller) on free loopback ports, in a temporary directory, from the jars that
//! `scripts/services.sh` fetches from Maven Central (`EDDY_KAFKA_LIBS`, by default
//! `$HOME/.cache/eddy-tools/kafka-VERSION/libs`). A node can be killed with SIGKILL and started
//! again on the same log directory, which is how tests take a broker away under a running job.
//!
//! Each broker runs under a small shell that kills it when its standard input closes, so a
//! broker never outlives the process that started it, even one that is killed itself.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

use crate::error::KafkaConnectorError;

/// The cluster id every test cluster is formatted with.
const CLUSTER_ID: &str = "ZWRkeS10ZXN0LWNsdXN0ZQ";

/// How long a cluster may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(120);

fn setup_error(what: impl std::fmt::Display) -> KafkaConnectorError {
    KafkaConnectorError::Config(format!("starting a test Kafka broker: {what}"))
}

/// The directory of Kafka's jars.
fn libs() -> Result<PathBuf, KafkaConnectorError> {
    let dir = match std::env::var_os("EDDY_KAFKA_LIBS") {
        Some(d) => PathBuf::from(d),
        None => {
            let tools = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/eddy-tools");
            std::fs::read_dir(&tools)
                .ok()
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("kafka-"))
                })
                .max()
                .map(|p| p.join("libs"))
                .unwrap_or_else(|| tools.join("kafka/libs"))
        }
    };
    if !dir.is_dir() {
        return Err(setup_error(format!(
            "no Kafka jars in {} (run scripts/services.sh kafka, or set EDDY_KAFKA_LIBS)",
            dir.display()
        )));
    }
    Ok(dir)
}

/// A free port on the loopback interface.
pub fn free_port() -> Result<u16, KafkaConnectorError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(setup_error)
}

/// A running broker process and the shell that kills it when its input closes.
struct Process {
    java_pid: String,
    shell: Child,
    stdin: Option<ChildStdin>,
}

impl Process {
    fn kill(mut self) {
        let _ = Command::new("kill").args(["-9", &self.java_pid]).status();
        self.stdin.take();
        let _ = self.shell.wait();
    }
}

struct Node {
    id: usize,
    port: u16,
    dir: PathBuf,
    process: Option<Process>,
}

/// One or more Kafka brokers on loopback; stopped on drop.
pub struct KafkaCluster {
    nodes: Vec<Node>,
    libs: PathBuf,
    bootstrap: String,
    _dir: tempfile::TempDir,
}

impl KafkaCluster {
    /// Starts `brokers` nodes and waits until every one of them serves metadata. With three or
    /// more, topics default to replication 3 with `min.insync.replicas` 2.
    pub fn start(brokers: usize) -> Result<KafkaCluster, KafkaConnectorError> {
        KafkaCluster::start_with(brokers, &[])
    }

    /// [`KafkaCluster::start`] with broker properties of the caller's added to (or replacing)
    /// the defaults.
    pub fn start_with(
        brokers: usize,
        properties: &[(&str, &str)],
    ) -> Result<KafkaCluster, KafkaConnectorError> {
        let libs = libs()?;
        let dir = tempfile::Builder::new()
            .prefix("eddy-kafka-")
            .tempdir()
            .map_err(setup_error)?;
        let ports: Vec<(u16, u16)> = (0..brokers)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<Result<_, KafkaConnectorError>>()?;
        let voters: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1))
            .collect();
        let replication = brokers.min(3);
        let min_isr = if replication >= 3 { 2 } else { 1 };
        let mut nodes = Vec::new();
        for (i, (port, controller)) in ports.iter().enumerate() {
            let node_dir = dir.path().join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&node_dir).map_err(setup_error)?;
            let properties = format!(
                "process.roles=broker,controller\n\
                 node.id={id}\n\
                 controller.quorum.voters={voters}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 controller.listener.names=CONTROLLER\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 log.dirs={logs}\n\
                 num.partitions=1\n\
                 default.replication.factor={replication}\n\
                 min.insync.replicas={min_isr}\n\
                 offsets.topic.replication.factor={replication}\n\
                 offsets.topic.num.partitions=4\n\
                 transaction.state.log.replication.factor={replication}\n\
                 transaction.state.log.min.isr={min_isr}\n\
                 transaction.state.log.num.partitions=4\n\
                 share.coordinator.state.topic.replication.factor={replication}\n\
                 share.coordinator.state.topic.min.isr={min_isr}\n\
                 group.initial.rebalance.delay.ms=0\n\
                 auto.create.topics.enable=false\n\
                 {extra}",
                id = i + 1,
                voters = voters.join(","),
                logs = node_dir.join("data").display(),
                extra = properties
                    .iter()
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect::<String>(),
            );
            std::fs::write(node_dir.join("server.properties"), properties).map_err(setup_error)?;
            std::fs::write(
                node_dir.join("log4j2.properties"),
                format!(
                    "appender.file.type=File\n\
                     appender.file.name=file\n\
                     appender.file.fileName={}\n\
                     appender.file.layout.type=PatternLayout\n\
                     appender.file.layout.pattern=[%d] %p %m (%c)%n\n\
                     rootLogger.level=INFO\n\
                     rootLogger.appenderRef.file.ref=file\n\
                     logger.kafka.name=org.apache.kafka\n\
                     logger.kafka.level=INFO\n",
                    node_dir.join("server.log").display()
                ),
            )
            .map_err(setup_error)?;
            nodes.push(Node {
                id: i + 1,
                port: *port,
                dir: node_dir,
                process: None,
            });
        }
        // Format every node's log directory, in parallel: each is a JVM start.
        let formats: Vec<Child> = nodes
            .iter()
            .map(|n| {
                java(&libs, &n.dir, true)
                    .args(["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c"])
                    .arg(n.dir.join("server.properties"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| setup_error(format!("running java: {e}")))
            })
            .collect::<Result<_, _>>()?;
        for f in formats {
            let out = f.wait_with_output().map_err(setup_error)?;
            if !out.status.success() {
                return Err(setup_error(format!(
                    "formatting the log directory failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let bootstrap = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = KafkaCluster {
            nodes,
            libs,
            bootstrap,
            _dir: dir,
        };
        for i in 0..brokers {
            cluster.launch(i)?;
        }
        cluster.wait_ready(brokers)?;
        Ok(cluster)
    }

    /// The bootstrap servers, `127.0.0.1:PORT,...`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The number of nodes.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Kills node `i` (0-based) with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(p) = self.nodes.get_mut(i).and_then(|n| n.process.take()) {
            p.kill();
        }
    }

    /// Starts node `i` again on its log directory and waits until the whole cluster serves
    /// metadata again.
    pub fn restart(&mut self, i: usize) -> Result<(), KafkaConnectorError> {
        self.kill(i);
        self.launch(i)?;
        self.wait_ready(self.nodes.len())
    }

    fn launch(&mut self, i: usize) -> Result<(), KafkaConnectorError> {
        let node = &mut self.nodes[i];
        let mut cmd = java(&self.libs, &node.dir, false);
        cmd.arg("kafka.Kafka")
            .arg(node.dir.join("server.properties"));
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let log = node.dir.join("stdout.log");
        // The shell starts the broker, reports its pid, and kills it once its own input closes.
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(r#"log="$1"; shift; "$@" >>"$log" 2>&1 & pid=$!; echo "$pid"; read _; kill -9 "$pid" 2>/dev/null; wait "$pid""#)
            .arg("sh")
            .arg(&log)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| setup_error(format!("running sh: {e}")))?;
        let mut line = String::new();
        if let Some(out) = shell.stdout.take() {
            BufReader::new(out)
                .read_line(&mut line)
                .map_err(setup_error)?;
        }
        // Nothing is ever written to the shell; its input only has to stay open.
        let stdin = shell.stdin.take();
        node.process = Some(Process {
            java_pid: line.trim().to_owned(),
            shell,
            stdin,
        });
        Ok(())
    }

    fn wait_ready(&mut self, brokers: usize) -> Result<(), KafkaConnectorError> {
        let deadline = Instant::now() + START_TIMEOUT;
        for node in &self.nodes {
            if node.process.is_none() {
                continue;
            }
            while TcpStream::connect(("127.0.0.1", node.port)).is_err() {
                if Instant::now() > deadline {
                    return Err(self.not_started(node, "did not listen"));
                }
                if !is_running(node) {
                    return Err(self.not_started(node, "exited"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .map_err(setup_error)?;
        loop {
            let seen = producer
                .client()
                .fetch_metadata(None, Duration::from_secs(5))
                .map(|m| m.brokers().len())
                .unwrap_or(0);
            if seen >= brokers {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(setup_error(format!(
                    "{seen} of {brokers} brokers registered within {} s",
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn not_started(&self, node: &Node, what: &str) -> KafkaConnectorError {
        let log = std::fs::read_to_string(node.dir.join("stdout.log")).unwrap_or_default();
        let server = std::fs::read_to_string(node.dir.join("server.log")).unwrap_or_default();
        let tail = |s: &str| {
            let lines: Vec<_> = s.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        setup_error(format!(
            "broker {} {what}:\n{}\n{}",
            node.id,
            tail(&log),
            tail(&server)
        ))
    }
}

fn is_running(node: &Node) -> bool {
    node.process
        .as_ref()
        .is_some_and(|p| Path::new("/proc").join(&p.java_pid).exists())
}

/// `java` with the broker's class path and JVM settings; `quick` for short-lived tools.
fn java(libs: &Path, node_dir: &Path, quick: bool) -> Command {
    let mut cmd = Command::new(
        std::env::var_os("JAVA_HOME")
            .map(|h| PathBuf::from(h).join("bin/java"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("java")),
    );
    cmd.arg("-cp").arg(format!("{}/*", libs.display()));
    if quick {
        cmd.args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]);
    } else {
        cmd.args([
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
        ]);
    }
    cmd.arg(format!(
        "-Dlog4j2.configurationFile={}",
        node_dir.join("log4j2.properties").display()
    ));
    cmd
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(p) = node.process.take() {
                p.kill();
            }
        }
    }
}
