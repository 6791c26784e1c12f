//! Configuration with Flink's keys.
//!
//! Values come from `config.yaml` (nested maps or flat dotted keys, as Flink 1.19+ reads it),
//! from `-D key=value` arguments, and from code. Every key Eddy reads is declared once in
//! [`options`] with its type, default and description. An unknown key or a value that does not
//! parse is an error that names the key and where it came from: a typo in a config file must not
//! silently fall back to a default.
//!
//! Keys that Flink defines but that have no meaning for Eddy (JVM heap sizes, for example) are
//! accepted and reported by [`Configuration::ignored_keys`], so an existing Flink `config.yaml`
//! loads unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::time::{format_duration, parse_duration, parse_memory_size};

/// A value type that configuration options can hold.
pub trait ConfigValue: Sized {
    /// Parses the textual form.
    fn parse_config(text: &str) -> std::result::Result<Self, String>;
    /// The textual form, as it would be written in `config.yaml`.
    fn to_config_string(&self) -> String;
}

macro_rules! config_value_fromstr {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn parse_config(text: &str) -> std::result::Result<Self, String> {
                text.trim().parse::<$t>().map_err(|e| e.to_string())
            }
            fn to_config_string(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
config_value_fromstr!(u16, u32, u64, i32, i64, usize, f64);

impl ConfigValue for bool {
    fn parse_config(text: &str) -> std::result::Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("expected 'true' or 'false'".into()),
        }
    }
    fn to_config_string(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for String {
    fn parse_config(text: &str) -> std::result::Result<Self, String> {
        Ok(text.to_string())
    }
    fn to_config_string(&self) -> String {
        self.clone()
    }
}

impl ConfigValue for Duration {
    fn parse_config(text: &str) -> std::result::Result<Self, String> {
        parse_duration(text)
    }
    fn to_config_string(&self) -> String {
        format_duration(*self)
    }
}

/// A number of bytes, written with an optional unit (`32kb`, `1 gb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemorySize(pub u64);

impl ConfigValue for MemorySize {
    fn parse_config(text: &str) -> std::result::Result<Self, String> {
        parse_memory_size(text).map(MemorySize)
    }
    fn to_config_string(&self) -> String {
        format!("{}b", self.0)
    }
}

/// Defines an enum whose values are written in Flink's UPPER_CASE style; parsing ignores case
/// and treats `-` and `_` alike.
macro_rules! config_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl ConfigValue for $name {
            fn parse_config(text: &str) -> std::result::Result<Self, String> {
                let norm = text.trim().to_ascii_lowercase().replace('_', "-");
                $(
                    if norm == $text.to_ascii_lowercase().replace('_', "-") $(|| norm == $alias)* {
                        return Ok($name::$variant);
                    }
                )+
                Err(format!("expected one of: {}", [$($text),+].join(", ")))
            }
            fn to_config_string(&self) -> String {
                match self { $($name::$variant => $text.to_string()),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_config_string())
            }
        }
    };
}

config_enum!(
    /// Whether a job runs with streaming or batch semantics (`execution.runtime-mode`).
    RuntimeMode {
        /// Continuous, incremental results; works for bounded and unbounded input.
        Streaming = "STREAMING",
        /// Only final results; every source must be bounded.
        Batch = "BATCH",
        /// BATCH when every source is bounded, STREAMING otherwise.
        Automatic = "AUTOMATIC",
    }
);

config_enum!(
    /// The checkpointing guarantee (`execution.checkpointing.mode`).
    CheckpointingModeOption {
        /// Aligned barriers.
        ExactlyOnce = "EXACTLY_ONCE",
        /// No alignment.
        AtLeastOnce = "AT_LEAST_ONCE",
    }
);

config_enum!(
    /// What happens to externalized checkpoints when a job is cancelled.
    ExternalizedCheckpointRetention {
        /// Delete the checkpoints on cancel.
        DeleteOnCancellation = "DELETE_ON_CANCELLATION",
        /// Keep them, so the job can be resumed from one.
        RetainOnCancellation = "RETAIN_ON_CANCELLATION",
        /// Do not externalize checkpoints.
        NoExternalizedCheckpoints = "NO_EXTERNALIZED_CHECKPOINTS",
    }
);

config_enum!(
    /// The keyed state backend (`state.backend.type`).
    StateBackendType {
        /// In-memory hash maps per key group, full snapshots.
        HashMap = "hashmap",
        /// An embedded LSM tree on local disk, incremental snapshots.
        Lsm = "lsm" | "fjall" | "rocksdb",
    }
);

config_enum!(
    /// The restart strategy (`restart-strategy.type`).
    RestartStrategyType {
        /// Never restart: the first failure fails the job.
        None = "none" | "off" | "disable",
        /// A fixed number of attempts with a fixed delay.
        FixedDelay = "fixed-delay" | "fixeddelay",
        /// Restart while failures per interval stay under a limit.
        FailureRate = "failure-rate" | "failurerate",
        /// Exponentially growing delay, reset after a stable period (Flink 2's default).
        ExponentialDelay = "exponential-delay" | "exponentialdelay",
    }
);

config_enum!(
    /// How JobManagers find and replace their leader (`high-availability.type`).
    HighAvailabilityType {
        /// One JobManager, no failover of the JobManager itself.
        None = "NONE",
        /// Several JobManagers elect a leader in ZooKeeper, which also holds the pointers to job
        /// graphs, programs and completed checkpoints in `high-availability.storageDir`.
        ZooKeeper = "ZOOKEEPER",
    }
);

config_enum!(
    /// What a task failure restarts (`jobmanager.execution.failover-strategy`).
    FailoverStrategy {
        /// Every task of the job.
        Full = "full",
        /// The failed task's pipelined region: the tasks connected to it by exchanges.
        Region = "region",
    }
);

/// A typed configuration option: its key, the older keys it falls back to, and its default.
pub struct ConfigOption<T> {
    /// The key, e.g. `parallelism.default`.
    pub key: &'static str,
    /// Deprecated keys read when `key` is absent.
    pub fallback_keys: &'static [&'static str],
    /// The default in textual form, if the option has one.
    pub default: Option<&'static str>,
    /// What the option does.
    pub description: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> ConfigOption<T> {
    /// Declares an option (used by [`options`]).
    pub const fn new(
        key: &'static str,
        fallback_keys: &'static [&'static str],
        default: Option<&'static str>,
        description: &'static str,
    ) -> Self {
        ConfigOption {
            key,
            fallback_keys,
            default,
            description,
            _type: PhantomData,
        }
    }
}

/// Static facts about an option, independent of its value type.
#[derive(Clone, Copy, Debug)]
pub struct OptionInfo {
    /// The key.
    pub key: &'static str,
    /// Deprecated keys.
    pub fallback_keys: &'static [&'static str],
    /// The default, as text.
    pub default: Option<&'static str>,
    /// What it does.
    pub description: &'static str,
    /// Checks a textual value.
    pub validate: fn(&str) -> std::result::Result<(), String>,
}

macro_rules! options {
    ($(#[doc = $doc:literal] $name:ident : $t:ty = $key:literal $([$($fb:literal),*])? $(, default $def:literal)?;)*) => {
        $(
            #[doc = $doc]
            pub const $name: ConfigOption<$t> = ConfigOption::new(
                $key,
                &[$($($fb),*)?],
                options!(@default $($def)?),
                $doc.trim_ascii(),
            );
        )*

        /// Every option Eddy reads, for validation and documentation.
        pub const ALL: &[OptionInfo] = &[$(
            OptionInfo {
                key: $key,
                fallback_keys: &[$($($fb),*)?],
                default: options!(@default $($def)?),
                description: $doc.trim_ascii(),
                validate: |v| <$t as ConfigValue>::parse_config(v).map(|_| ()),
            }
        ),*];
    };
    (@default $def:literal) => { Some($def) };
    (@default) => { None };
}

/// Every configuration option Eddy reads, with Flink's keys.
pub mod options {
    use super::*;

    options! {
        /// Default parallelism of every operator.
        PARALLELISM_DEFAULT: u32 = "parallelism.default", default "1";
        /// Number of key groups; -1 derives it from the parallelism (at least 128).
        MAX_PARALLELISM: i32 = "pipeline.max-parallelism", default "-1";
        /// The job's name.
        PIPELINE_NAME: String = "pipeline.name";
        /// Whether operators are chained into tasks.
        OPERATOR_CHAINING: bool = "pipeline.operator-chaining.enabled" ["pipeline.operator-chaining"], default "true";
        /// How often sources emit periodic watermarks.
        AUTO_WATERMARK_INTERVAL: Duration = "pipeline.auto-watermark-interval", default "200 ms";
        /// STREAMING, BATCH or AUTOMATIC.
        RUNTIME_MODE: RuntimeMode = "execution.runtime-mode", default "STREAMING";
        /// Whether output buffers are flushed on a timer at all.
        BUFFER_TIMEOUT_ENABLED: bool = "execution.buffer-timeout.enabled", default "true";
        /// The longest a record waits in an output buffer before it is sent; 0 sends every record once the batch it came in is processed.
        BUFFER_TIMEOUT: Duration = "execution.buffer-timeout.interval" ["execution.buffer-timeout"], default "100 ms";
        /// NONE or ZOOKEEPER: whether JobManagers elect a leader and recover running jobs when it dies.
        HA_TYPE: HighAvailabilityType = "high-availability.type" ["high-availability"], default "NONE";
        /// ZooKeeper servers (`host:port,host:port`) for high availability.
        HA_ZOOKEEPER_QUORUM: String = "high-availability.zookeeper.quorum";
        /// The ZooKeeper node under which every cluster keeps its high-availability data.
        HA_ZOOKEEPER_ROOT: String = "high-availability.zookeeper.path.root", default "/flink";
        /// This cluster's node under the root; JobManagers with the same id form one cluster.
        HA_CLUSTER_ID: String = "high-availability.cluster-id" ["high-availability.zookeeper.path.namespace"], default "/default";
        /// Where the leader writes job graphs, programs and checkpoint pointers before it acknowledges them; ZooKeeper holds only pointers to them. Must be shared by every JobManager.
        HA_STORAGE_DIR: String = "high-availability.storageDir" ["high-availability.zookeeper.storageDir"];
        /// The ZooKeeper session timeout: a leader silent this long loses its leadership.
        HA_ZOOKEEPER_SESSION_TIMEOUT: Duration = "high-availability.zookeeper.client.session-timeout", default "60 s";
        /// How long a process tries to reach ZooKeeper before it gives up with an error.
        HA_ZOOKEEPER_CONNECTION_TIMEOUT: Duration = "high-availability.zookeeper.client.connection-timeout", default "15 s";
        /// Slots each TaskManager offers.
        TASK_SLOTS: u32 = "taskmanager.numberOfTaskSlots", default "1";
        /// The TaskManager's id (default: generated).
        TASKMANAGER_RESOURCE_ID: String = "taskmanager.resource-id";
        /// The address a TaskManager's workers accept data connections on.
        TASKMANAGER_HOST: String = "taskmanager.host", default "127.0.0.1";
        /// Size of one network buffer; a record batch holds about this many bytes.
        SEGMENT_SIZE: MemorySize = "taskmanager.memory.segment-size", default "32kb";
        /// Exclusive buffers per input channel: the channel's credit.
        BUFFERS_PER_CHANNEL: u32 = "taskmanager.network.memory.buffers-per-channel", default "2";
        /// Floating buffers shared by an input gate's channels.
        FLOATING_BUFFERS_PER_GATE: u32 = "taskmanager.network.memory.floating-buffers-per-gate", default "8";
        /// Port of the REST API and web UI.
        REST_PORT: u16 = "rest.port", default "8081";
        /// Address clients use to reach the REST API.
        REST_ADDRESS: String = "rest.address", default "localhost";
        /// Address the REST server binds to.
        REST_BIND_ADDRESS: String = "rest.bind-address", default "localhost";
        /// A directory of web dashboard files served by the REST server in place of Eddy's own page, for any path the REST API does not answer: Flink's dashboard (the `web/` folder of a Flink distribution's `flink-dist` jar) works against Eddy's REST API.
        WEB_DASHBOARD_DIR: String = "web.dashboard.dir";
        /// Address of the JobManager's RPC endpoint.
        JOBMANAGER_RPC_ADDRESS: String = "jobmanager.rpc.address", default "localhost";
        /// Port of the JobManager's RPC endpoint.
        JOBMANAGER_RPC_PORT: u16 = "jobmanager.rpc.port", default "6123";
        /// Checkpoint interval; unset disables checkpointing.
        CHECKPOINTING_INTERVAL: Duration = "execution.checkpointing.interval";
        /// EXACTLY_ONCE or AT_LEAST_ONCE.
        CHECKPOINTING_MODE: CheckpointingModeOption = "execution.checkpointing.mode", default "EXACTLY_ONCE";
        /// A checkpoint not completed within this time is aborted.
        CHECKPOINTING_TIMEOUT: Duration = "execution.checkpointing.timeout", default "10 min";
        /// Minimum pause between the end of one checkpoint and the start of the next.
        CHECKPOINTING_MIN_PAUSE: Duration = "execution.checkpointing.min-pause", default "0 ms";
        /// Checkpoints that may be in progress at once.
        CHECKPOINTING_MAX_CONCURRENT: u32 = "execution.checkpointing.max-concurrent-checkpoints", default "1";
        /// Consecutive failed checkpoints tolerated before the job fails.
        CHECKPOINTING_TOLERABLE_FAILURES: u32 = "execution.checkpointing.tolerable-failed-checkpoints", default "0";
        /// Completed checkpoints kept.
        CHECKPOINTING_NUM_RETAINED: u32 = "execution.checkpointing.num-retained" ["state.checkpoints.num-retained"], default "1";
        /// What happens to checkpoints on cancel.
        CHECKPOINTING_EXTERNALIZED: ExternalizedCheckpointRetention = "execution.checkpointing.externalized-checkpoint-retention", default "NO_EXTERNALIZED_CHECKPOINTS";
        /// Whether checkpoints persist in-flight data instead of aligning barriers.
        CHECKPOINTING_UNALIGNED: bool = "execution.checkpointing.unaligned.enabled" ["execution.checkpointing.unaligned"], default "false";
        /// With unaligned checkpoints: how long barriers stay aligned before a task switches to unaligned (0: unaligned at once).
        CHECKPOINTING_ALIGNED_TIMEOUT: Duration = "execution.checkpointing.aligned-checkpoint-timeout" ["execution.checkpointing.alignment-timeout"], default "0 ms";
        /// Where checkpoints are written: a path, `file://` or `s3://` URL.
        CHECKPOINTS_DIR: String = "execution.checkpointing.dir" ["state.checkpoints.dir"];
        /// Default directory for savepoints.
        SAVEPOINTS_DIR: String = "execution.checkpointing.savepoint-dir" ["state.savepoints.dir"];
        /// Whether the LSM backend uploads only new files.
        CHECKPOINTING_INCREMENTAL: bool = "execution.checkpointing.incremental" ["state.backend.incremental"], default "false";
        /// hashmap or lsm.
        STATE_BACKEND: StateBackendType = "state.backend.type" ["state.backend"], default "hashmap";
        /// LSM backend: entries of each state kept deserialized in memory in front of the LSM tree.
        LSM_CACHE_ENTRIES: u32 = "state.backend.lsm.cache-entries", default "262144";
        /// LSM backend: size of each state's in-memory write buffer (memtable) before it is flushed to disk.
        LSM_MEMTABLE_SIZE: MemorySize = "state.backend.lsm.memtable-size", default "16mb";
        /// LSM backend: block cache of each operator subtask's LSM tree.
        LSM_BLOCK_CACHE_SIZE: MemorySize = "state.backend.lsm.block-cache-size", default "16mb";
        /// LSM backend: incremental checkpoints after which the next one writes a full snapshot.
        LSM_MAX_DELTAS: u32 = "state.backend.lsm.max-incremental-checkpoints", default "10";
        /// Local directories for temporary files (the LSM backend's working files); `;`-separated.
        IO_TMP_DIRS: String = "io.tmp.dirs";
        /// Savepoint or retained checkpoint to restore the job from.
        SAVEPOINT_PATH: String = "execution.savepoint.path";
        /// Whether state in the savepoint that no operator of the job claims is skipped instead of failing the restore.
        SAVEPOINT_IGNORE_UNCLAIMED_STATE: bool = "execution.savepoint.ignore-unclaimed-state", default "false";
        /// full or region: what a task failure restarts.
        FAILOVER_STRATEGY: FailoverStrategy = "jobmanager.execution.failover-strategy", default "region";
        /// Restart strategy; defaults to exponential-delay when checkpointing is on, none otherwise.
        RESTART_STRATEGY: RestartStrategyType = "restart-strategy.type" ["restart-strategy"];
        /// fixed-delay: attempts before the job fails.
        FIXED_DELAY_ATTEMPTS: u32 = "restart-strategy.fixed-delay.attempts", default "1";
        /// fixed-delay: pause between attempts.
        FIXED_DELAY_DELAY: Duration = "restart-strategy.fixed-delay.delay", default "1 s";
        /// failure-rate: failures allowed per interval.
        FAILURE_RATE_MAX_FAILURES: u32 = "restart-strategy.failure-rate.max-failures-per-interval", default "1";
        /// failure-rate: the interval.
        FAILURE_RATE_INTERVAL: Duration = "restart-strategy.failure-rate.failure-rate-interval", default "1 min";
        /// failure-rate: pause between attempts.
        FAILURE_RATE_DELAY: Duration = "restart-strategy.failure-rate.delay", default "1 s";
        /// exponential-delay: first pause.
        EXP_DELAY_INITIAL: Duration = "restart-strategy.exponential-delay.initial-backoff", default "1 s";
        /// exponential-delay: longest pause.
        EXP_DELAY_MAX: Duration = "restart-strategy.exponential-delay.max-backoff", default "1 min";
        /// exponential-delay: growth factor.
        EXP_DELAY_MULTIPLIER: f64 = "restart-strategy.exponential-delay.backoff-multiplier", default "1.5";
        /// exponential-delay: a job running this long without failure resets the backoff.
        EXP_DELAY_RESET_THRESHOLD: Duration = "restart-strategy.exponential-delay.reset-backoff-threshold", default "1 h";
        /// exponential-delay: random jitter, as a fraction of the pause.
        EXP_DELAY_JITTER: f64 = "restart-strategy.exponential-delay.jitter-factor", default "0.1";
        /// exponential-delay: attempts before the job fails.
        EXP_DELAY_ATTEMPTS: u32 = "restart-strategy.exponential-delay.attempts-before-reset-backoff", default "4294967295";
        /// Port, or range of ports (`9249-9260`), of each process's Prometheus endpoint: a process takes the first free one.
        PROMETHEUS_PORT: String = "metrics.reporter.prom.port", default "9249-9260";
        /// Interval of latency markers; 0 disables them.
        LATENCY_INTERVAL: Duration = "metrics.latency.interval", default "0 ms";
        /// Checkpoints whose statistics the JobManager keeps for the REST API and dashboards.
        WEB_CHECKPOINTS_HISTORY: u32 = "web.checkpoints.history", default "10";
        /// Finished jobs the JobManager remembers.
        JOBSTORE_MAX_CAPACITY: u32 = "jobstore.max-capacity", default "64";
        /// Application mode: whether the cluster shuts down once its job has ended.
        SHUTDOWN_ON_APPLICATION_FINISH: bool = "execution.shutdown-on-application-finish", default "true";
        /// Heartbeat interval between TaskManagers and the JobManager.
        HEARTBEAT_INTERVAL: Duration = "heartbeat.interval", default "10 s";
        /// A TaskManager silent this long is declared lost.
        HEARTBEAT_TIMEOUT: Duration = "heartbeat.timeout", default "50 s";
        /// How long a job waits for cancelled tasks to stop before it abandons them.
        TASK_CANCELLATION_TIMEOUT: Duration = "task.cancellation.timeout", default "180 s";
        /// How long a job waits for slots before it fails.
        SLOT_REQUEST_TIMEOUT: Duration = "slot.request.timeout", default "5 min";
    }
}

/// Flink keys, and key prefixes, that Eddy accepts but does not use (JVM memory, Kubernetes,
/// high availability, ...). They are reported by [`Configuration::ignored_keys`].
pub const IGNORED_FLINK_PREFIXES: &[&str] = &[
    "env.",
    "jobmanager.memory.",
    "taskmanager.memory.",
    "jobmanager.bind-host",
    "taskmanager.bind-host",
    "taskmanager.host",
    // High-availability keys of Flink's that Eddy's ZooKeeper layout has no use for.
    "high-availability.jobmanager.port",
    "high-availability.job-delay",
    "high-availability.kubernetes.",
    "high-availability.zookeeper.client.acl",
    "high-availability.zookeeper.client.max-retry-attempts",
    "high-availability.zookeeper.client.retry-wait",
    "high-availability.zookeeper.client.tolerate-suspended-connections",
    "high-availability.zookeeper.client.ensemble-tracker",
    "high-availability.zookeeper.path.jobgraphs",
    "high-availability.zookeeper.path.checkpoints",
    "high-availability.zookeeper.path.checkpoint-counter",
    "high-availability.zookeeper.path.running-registry",
    "kubernetes.",
    "security.",
    "web.",
    "blob.",
    "classloader.",
    "akka.",
    "pekko.",
    "cluster.",
    "yarn.",
    "pipeline.object-reuse",
    "pipeline.jars",
    "pipeline.classpaths",
    "metrics.reporter.",
    "metrics.reporters",
    "s3.",
    "fs.",
];

/// Where a configuration value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// A configuration file.
    File(PathBuf),
    /// A `-D key=value` argument.
    DynamicProperty,
    /// Set from code.
    Code,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::DynamicProperty => write!(f, "-D argument"),
            Origin::Code => write!(f, "code"),
        }
    }
}

/// A set of configuration values keyed by Flink's dotted keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    values: BTreeMap<String, (String, Origin)>,
}

impl Configuration {
    /// An empty configuration: every option has its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `config.yaml` text. Nested maps become dotted keys, lists become `;`-joined values.
    /// Unknown keys and malformed values are errors.
    pub fn from_yaml_str(text: &str, path: &Path) -> Result<Self> {
        let docs =
            yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| CoreError::ConfigFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let mut conf = Configuration::new();
        if let Some(doc) = docs.first() {
            let origin = Origin::File(path.to_path_buf());
            match doc {
                yaml_rust2::Yaml::Hash(_) => flatten_yaml("", doc, &origin, &mut conf)?,
                yaml_rust2::Yaml::Null => {}
                _ => {
                    return Err(CoreError::ConfigFile {
                        path: path.to_path_buf(),
                        reason: "the top level must be a map of keys to values".into(),
                    });
                }
            }
        }
        conf.validate()?;
        Ok(conf)
    }

    /// Reads `config.yaml` (or, failing that, the legacy `flink-conf.yaml`) in `dir`.
    pub fn load_from_dir(dir: &Path) -> Result<Self> {
        for name in ["config.yaml", "flink-conf.yaml"] {
            let path = dir.join(name);
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|e| CoreError::ConfigFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                return Self::from_yaml_str(&text, &path);
            }
        }
        Err(CoreError::ConfigFile {
            path: dir.join("config.yaml"),
            reason: "no such file".into(),
        })
    }

    /// The configuration a program starts with: `config.yaml` from the directory named by the
    /// `EDDY_CONF_DIR` environment variable (if set), then the `-D key=value` arguments found in
    /// the process's command line, then those in the `EDDY_DYNAMIC_PROPERTIES` environment
    /// variable (space-separated `key=value` pairs, set by `eddy run`).
    pub fn from_environment() -> Result<Self> {
        let mut conf = match std::env::var_os("EDDY_CONF_DIR") {
            Some(dir) => Self::load_from_dir(Path::new(&dir))?,
            None => Configuration::new(),
        };
        conf.apply_dynamic_properties(std::env::args().skip(1))?;
        if let Ok(props) = std::env::var("EDDY_DYNAMIC_PROPERTIES") {
            for kv in props.split_whitespace() {
                conf.apply_dynamic_property(kv)?;
            }
        }
        Ok(conf)
    }

    /// Applies every `-D key=value` or `-Dkey=value` found in `args`; other arguments are left
    /// to the program.
    pub fn apply_dynamic_properties<I, S>(&mut self, args: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut iter = args.into_iter();
        while let Some(arg) = iter.next() {
            let arg = arg.as_ref();
            if arg == "-D" {
                match iter.next() {
                    Some(kv) => self.apply_dynamic_property(kv.as_ref())?,
                    None => return Err(CoreError::MalformedDynamicProperty("-D".into())),
                }
            } else if let Some(kv) = arg.strip_prefix("-D") {
                self.apply_dynamic_property(kv)?;
            }
        }
        Ok(())
    }

    /// Applies one `key=value` pair.
    pub fn apply_dynamic_property(&mut self, kv: &str) -> Result<()> {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| CoreError::MalformedDynamicProperty(kv.to_string()))?;
        let key = k.trim().to_string();
        check_key(&key, &Origin::DynamicProperty)?;
        check_value(&key, v.trim(), &Origin::DynamicProperty)?;
        self.values
            .insert(key, (v.trim().to_string(), Origin::DynamicProperty));
        Ok(())
    }

    /// Sets a raw value from code (validated by [`Configuration::validate`]).
    pub fn set_string(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.values.insert(key.into(), (value.into(), Origin::Code));
    }

    /// Sets a typed option.
    pub fn set<T: ConfigValue>(&mut self, option: &ConfigOption<T>, value: T) {
        self.set_string(option.key, value.to_config_string());
    }

    /// Removes a key.
    pub fn remove(&mut self, key: &str) {
        self.values.remove(key);
    }

    /// The raw value of a key, if set.
    pub fn get_string(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    /// Whether the option (or one of its fallback keys) is set.
    pub fn contains<T>(&self, option: &ConfigOption<T>) -> bool {
        self.raw(option).is_some()
    }

    fn raw<T>(&self, option: &ConfigOption<T>) -> Option<(&str, &(String, Origin))> {
        std::iter::once(option.key)
            .chain(option.fallback_keys.iter().copied())
            .find_map(|k| self.values.get(k).map(|v| (k, v)))
    }

    /// The option's value, if set or defaulted.
    pub fn get_optional<T: ConfigValue>(&self, option: &ConfigOption<T>) -> Result<Option<T>> {
        match self.raw(option) {
            Some((key, (value, origin))) => {
                T::parse_config(value)
                    .map(Some)
                    .map_err(|reason| CoreError::InvalidConfigValue {
                        key: key.to_string(),
                        value: value.clone(),
                        origin: origin.to_string(),
                        reason,
                    })
            }
            None => {
                match option.default {
                    Some(d) => T::parse_config(d).map(Some).map_err(|reason| {
                        CoreError::InvalidConfigValue {
                            key: option.key.to_string(),
                            value: d.to_string(),
                            origin: "built-in default".into(),
                            reason,
                        }
                    }),
                    None => Ok(None),
                }
            }
        }
    }

    /// The option's value or its default. An option without a default that is not set is an
    /// error naming the key.
    pub fn get<T: ConfigValue>(&self, option: &ConfigOption<T>) -> Result<T> {
        self.get_optional(option)?
            .ok_or_else(|| CoreError::InvalidConfigValue {
                key: option.key.to_string(),
                value: String::new(),
                origin: "built-in default".into(),
                reason: "the option has no default and is not set".into(),
            })
    }

    /// Copies every value of `other` over this configuration.
    pub fn merge(&mut self, other: &Configuration) {
        for (k, v) in &other.values {
            self.values.insert(k.clone(), v.clone());
        }
    }

    /// Every key and raw value, sorted by key.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.values
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// Keys that are set but have no effect in Eddy (Flink JVM settings and the like).
    pub fn ignored_keys(&self) -> Vec<&str> {
        self.values
            .keys()
            .filter(|k| find_option(k).is_none() && is_ignored_flink_key(k))
            .map(|k| k.as_str())
            .collect()
    }

    /// Checks that every key is known and every value parses for its key.
    pub fn validate(&self) -> Result<()> {
        for (k, (v, origin)) in &self.values {
            check_key(k, origin)?;
            check_value(k, v, origin)?;
        }
        Ok(())
    }
}

fn flatten_yaml(
    prefix: &str,
    node: &yaml_rust2::Yaml,
    origin: &Origin,
    conf: &mut Configuration,
) -> Result<()> {
    use yaml_rust2::Yaml;
    let Yaml::Hash(map) = node else {
        return Ok(());
    };
    for (k, v) in map {
        let key_part = yaml_scalar(k).ok_or_else(|| CoreError::ConfigFile {
            path: match origin {
                Origin::File(p) => p.clone(),
                _ => PathBuf::new(),
            },
            reason: format!("a key under '{prefix}' is not a scalar"),
        })?;
        let key = if prefix.is_empty() {
            key_part
        } else {
            format!("{prefix}.{key_part}")
        };
        match v {
            Yaml::Hash(_) if find_option(&key).is_none() => flatten_yaml(&key, v, origin, conf)?,
            Yaml::Hash(m) => {
                // A map value for a map-typed option: Flink writes it as `k1:v1,k2:v2`.
                let text = m
                    .iter()
                    .filter_map(|(a, b)| Some(format!("{}:{}", yaml_scalar(a)?, yaml_scalar(b)?)))
                    .collect::<Vec<_>>()
                    .join(",");
                conf.values.insert(key, (text, origin.clone()));
            }
            Yaml::Array(items) => {
                let text = items
                    .iter()
                    .filter_map(yaml_scalar)
                    .collect::<Vec<_>>()
                    .join(";");
                conf.values.insert(key, (text, origin.clone()));
            }
            Yaml::Null => {}
            other => {
                if let Some(text) = yaml_scalar(other) {
                    conf.values.insert(key, (text, origin.clone()));
                }
            }
        }
    }
    Ok(())
}

fn yaml_scalar(y: &yaml_rust2::Yaml) -> Option<String> {
    use yaml_rust2::Yaml;
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The declared option for `key` (its main key or a fallback key).
pub fn find_option(key: &str) -> Option<&'static OptionInfo> {
    options::ALL
        .iter()
        .find(|o| o.key == key || o.fallback_keys.contains(&key))
}

fn is_ignored_flink_key(key: &str) -> bool {
    IGNORED_FLINK_PREFIXES.iter().any(|p| key.starts_with(p))
}

fn check_key(key: &str, origin: &Origin) -> Result<()> {
    if find_option(key).is_some() || is_ignored_flink_key(key) {
        return Ok(());
    }
    let suggestion = options::ALL
        .iter()
        .map(|o| (strsim::normalized_damerau_levenshtein(key, o.key), o.key))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_string());
    Err(CoreError::UnknownConfigKey {
        key: key.to_string(),
        origin: origin.to_string(),
        suggestion,
    })
}

fn check_value(key: &str, value: &str, origin: &Origin) -> Result<()> {
    if let Some(opt) = find_option(key) {
        (opt.validate)(value).map_err(|reason| CoreError::InvalidConfigValue {
            key: key.to_string(),
            value: value.to_string(),
            origin: origin.to_string(),
            reason,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::options::*;
    use super::*;

    fn yaml(text: &str) -> Result<Configuration> {
        Configuration::from_yaml_str(text, Path::new("/etc/eddy/config.yaml"))
    }

    #[test]
    fn nested_and_flat_yaml_agree() {
        let nested =
            yaml("parallelism:\n  default: 4\ntaskmanager:\n  numberOfTaskSlots: 2\n").unwrap();
        let flat = yaml("parallelism.default: 4\ntaskmanager.numberOfTaskSlots: 2\n").unwrap();
        assert_eq!(nested.get(&PARALLELISM_DEFAULT).unwrap(), 4);
        assert_eq!(flat.get(&PARALLELISM_DEFAULT).unwrap(), 4);
        assert_eq!(nested.get(&TASK_SLOTS).unwrap(), 2);
        assert_eq!(nested.to_map(), flat.to_map());
    }

    #[test]
    fn defaults_apply() {
        let c = Configuration::new();
        assert_eq!(c.get(&PARALLELISM_DEFAULT).unwrap(), 1);
        assert_eq!(c.get(&BUFFER_TIMEOUT).unwrap(), Duration::from_millis(100));
        assert_eq!(c.get(&RUNTIME_MODE).unwrap(), RuntimeMode::Streaming);
        assert_eq!(c.get_optional(&CHECKPOINTING_INTERVAL).unwrap(), None);
        assert_eq!(c.get(&REST_PORT).unwrap(), 8081);
    }

    #[test]
    fn unknown_key_names_key_and_suggests() {
        let err = yaml("parallelism.defualt: 4\n").unwrap_err().to_string();
        assert!(err.contains("parallelism.defualt"), "{err}");
        assert!(err.contains("/etc/eddy/config.yaml"), "{err}");
        assert!(err.contains("did you mean 'parallelism.default'"), "{err}");
    }

    #[test]
    fn malformed_value_names_key() {
        let err = yaml("parallelism.default: many\n").unwrap_err().to_string();
        assert!(err.contains("'parallelism.default'"), "{err}");
        assert!(err.contains("many"), "{err}");
        let mut c = Configuration::new();
        let err = c
            .apply_dynamic_properties(["-D", "execution.buffer-timeout.interval=soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("execution.buffer-timeout.interval"), "{err}");
        assert!(err.contains("-D argument"), "{err}");
    }

    #[test]
    fn dynamic_properties_override_and_fallbacks_work() {
        let mut c = yaml("parallelism.default: 4\nstate.checkpoints.dir: /tmp/cp\n").unwrap();
        c.apply_dynamic_properties([
            "--input",
            "x",
            "-Dparallelism.default=8",
            "-D",
            "rest.port=9000",
        ])
        .unwrap();
        assert_eq!(c.get(&PARALLELISM_DEFAULT).unwrap(), 8);
        assert_eq!(c.get(&REST_PORT).unwrap(), 9000);
        assert_eq!(c.get(&CHECKPOINTS_DIR).unwrap(), "/tmp/cp");
        assert!(c.apply_dynamic_properties(["-D", "nokey"]).is_err());
    }

    #[test]
    fn flink_jvm_keys_are_accepted_and_reported() {
        let c = yaml("jobmanager:\n  memory:\n    process:\n      size: 1600m\nenv:\n  java:\n    opts:\n      all: -Xmx1g\n").unwrap();
        assert_eq!(
            c.ignored_keys(),
            vec!["env.java.opts.all", "jobmanager.memory.process.size"]
        );
    }

    #[test]
    fn enums_parse_like_flink() {
        assert_eq!(
            RuntimeMode::parse_config("batch").unwrap(),
            RuntimeMode::Batch
        );
        assert_eq!(
            RestartStrategyType::parse_config("fixeddelay").unwrap(),
            RestartStrategyType::FixedDelay
        );
        assert_eq!(
            CheckpointingModeOption::parse_config("at-least-once").unwrap(),
            CheckpointingModeOption::AtLeastOnce
        );
        assert!(RuntimeMode::parse_config("sometimes").is_err());
    }

    #[test]
    fn missing_config_dir_names_path() {
        let err = Configuration::load_from_dir(Path::new("/nonexistent/conf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/conf/config.yaml"), "{err}");
    }
}
