//! The [`StreamExecutionEnvironment`]: where a program's dataflow is built and executed.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use eddy_connectors::collection::CollectionSource;
use eddy_connectors::file::FileSource;
use eddy_connectors::sequence::NumberSequenceSource;
use eddy_connectors::socket::SocketTextStreamSource;
use eddy_core::config::{Configuration, RuntimeMode, options};
use eddy_core::graph::JobGraph;
use eddy_runtime::executor::{JobClient, JobExecutionResult, launch};
use eddy_runtime::factories::SourceFactory;
use eddy_runtime::graph::{StreamGraph, build_job_graph};
use eddy_runtime::registry::UserCodeRegistry;
use eddy_runtime::source::Source;

use crate::Data;
use crate::datastream::DataStream;
use crate::error::{Error, Result};
use crate::watermark::WatermarkStrategy;

pub(crate) struct EnvInner {
    pub(crate) config: Configuration,
    pub(crate) graph: StreamGraph,
    /// Mistakes found while the program was built, reported by `execute`.
    pub(crate) errors: Vec<String>,
    /// Sources that can only run with parallelism 1.
    pub(crate) non_parallel: HashSet<u32>,
}

/// The context in which a program is built and run (Flink's `StreamExecutionEnvironment`).
///
/// Transformations only describe the dataflow; nothing runs until [`execute`](Self::execute).
/// Cloning the environment gives another handle on the same program.
///
/// # Examples
///
/// ```
/// use eddy_datastream::StreamExecutionEnvironment;
///
/// let env = StreamExecutionEnvironment::create_local_environment(2);
/// let result = env
///     .from_sequence(1, 100)
///     .map(|x| x * 2)
///     .filter(|x| x % 3 == 0)
///     .execute_and_collect("doubles")
///     .unwrap();
/// assert_eq!(result.len(), 33);
/// ```
#[derive(Clone)]
pub struct StreamExecutionEnvironment {
    pub(crate) inner: Rc<RefCell<EnvInner>>,
}

impl StreamExecutionEnvironment {
    /// The environment for this program: configuration from `config.yaml` in `EDDY_CONF_DIR`
    /// (if set) and from `-D key=value` arguments. Without a cluster configured, `execute` runs
    /// the job in this process (the mini cluster).
    pub fn get_execution_environment() -> Result<Self> {
        Ok(Self::with_configuration(Configuration::from_environment()?))
    }

    /// An environment with the given configuration.
    pub fn with_configuration(config: Configuration) -> Self {
        StreamExecutionEnvironment {
            inner: Rc::new(RefCell::new(EnvInner {
                config,
                graph: StreamGraph::default(),
                errors: Vec::new(),
                non_parallel: HashSet::new(),
            })),
        }
    }

    /// A local environment with the given default parallelism and otherwise default settings.
    pub fn create_local_environment(parallelism: u32) -> Self {
        let env = Self::with_configuration(Configuration::new());
        env.set_parallelism(parallelism);
        env
    }

    pub(crate) fn record_error(&self, message: String) {
        self.inner.borrow_mut().errors.push(message);
    }

    /// Sets the default parallelism of every operator (`parallelism.default`).
    pub fn set_parallelism(&self, parallelism: u32) -> &Self {
        self.inner
            .borrow_mut()
            .config
            .set(&options::PARALLELISM_DEFAULT, parallelism);
        self
    }

    /// The default parallelism.
    pub fn get_parallelism(&self) -> u32 {
        self.inner
            .borrow()
            .config
            .get(&options::PARALLELISM_DEFAULT)
            .unwrap_or(1)
    }

    /// Sets the number of key groups (`pipeline.max-parallelism`): the upper bound for rescaling
    /// keyed state.
    pub fn set_max_parallelism(&self, max_parallelism: u32) -> &Self {
        self.inner
            .borrow_mut()
            .config
            .set(&options::MAX_PARALLELISM, max_parallelism as i32);
        self
    }

    /// How long records may wait in an output buffer, in ms (Flink's `setBufferTimeout`): `0`
    /// sends every record as soon as the batch it came in has been processed; `-1` sends
    /// buffers only when they are full.
    pub fn set_buffer_timeout(&self, timeout_millis: i64) -> &Self {
        let mut inner = self.inner.borrow_mut();
        match timeout_millis {
            -1 => inner.config.set(&options::BUFFER_TIMEOUT_ENABLED, false),
            t if t >= 0 => {
                inner.config.set(&options::BUFFER_TIMEOUT_ENABLED, true);
                inner
                    .config
                    .set(&options::BUFFER_TIMEOUT, Duration::from_millis(t as u64));
            }
            t => inner.errors.push(format!(
                "set_buffer_timeout({t}): the timeout must be -1, 0 or positive"
            )),
        }
        drop(inner);
        self
    }

    /// STREAMING, BATCH or AUTOMATIC (`execution.runtime-mode`).
    pub fn set_runtime_mode(&self, mode: RuntimeMode) -> &Self {
        self.inner
            .borrow_mut()
            .config
            .set(&options::RUNTIME_MODE, mode);
        self
    }

    /// Takes a checkpoint every `interval` (Flink's `enableCheckpointing`), exactly-once unless
    /// `execution.checkpointing.mode` says otherwise. Checkpoints go to
    /// `execution.checkpointing.dir` (a temporary directory if unset).
    pub fn enable_checkpointing(&self, interval: Duration) -> &Self {
        self.inner
            .borrow_mut()
            .config
            .set(&options::CHECKPOINTING_INTERVAL, interval);
        self
    }

    /// Turns off operator chaining for the whole job.
    pub fn disable_operator_chaining(&self) -> &Self {
        self.inner
            .borrow_mut()
            .config
            .set(&options::OPERATOR_CHAINING, false);
        self
    }

    /// Applies every value of `config` to this environment's configuration.
    pub fn configure(&self, config: &Configuration) -> &Self {
        self.inner.borrow_mut().config.merge(config);
        self
    }

    /// A copy of the configuration.
    pub fn get_config(&self) -> Configuration {
        self.inner.borrow().config.clone()
    }

    /// A stream from a [`Source`] (Flink's `fromSource`).
    pub fn from_source<T, S>(
        &self,
        source: S,
        watermark_strategy: WatermarkStrategy<T>,
        source_name: &str,
    ) -> DataStream<T>
    where
        T: Data,
        S: Source<T>,
    {
        let node = self.inner.borrow_mut().graph.add_node(
            format!("Source: {source_name}"),
            Arc::new(SourceFactory::new(source, watermark_strategy)),
        );
        DataStream::from_node(self.clone(), node)
    }

    fn non_parallel_source<T: Data, S: Source<T>>(&self, source: S, name: &str) -> DataStream<T> {
        let stream = self.from_source(source, WatermarkStrategy::no_watermarks(), name);
        if let Some(node) = stream.node {
            let mut inner = self.inner.borrow_mut();
            inner.non_parallel.insert(node);
            if let Some(n) = inner.graph.node_mut(node) {
                n.parallelism = Some(1);
            }
        }
        stream
    }

    /// A stream of the elements of `items`, in order, from a non-parallel source (Flink's
    /// `fromCollection`).
    pub fn from_collection<T: Data>(&self, items: Vec<T>) -> DataStream<T> {
        self.non_parallel_source(CollectionSource::new(items), "Collection Source")
    }

    /// The numbers `from..=to`, read in parallel (Flink's `fromSequence`).
    pub fn from_sequence(&self, from: i64, to: i64) -> DataStream<i64> {
        self.from_source(
            NumberSequenceSource::new(from, to),
            WatermarkStrategy::no_watermarks(),
            "Sequence Source",
        )
    }

    /// The lines of a file, or of every file in a directory, read in parallel.
    pub fn read_text_file(&self, path: impl Into<PathBuf>) -> DataStream<String> {
        self.from_source(
            FileSource::for_text_lines(path),
            WatermarkStrategy::no_watermarks(),
            "File Source",
        )
    }

    /// Lines read from a TCP socket (Flink's `socketTextStream`); ends when the server closes
    /// the connection.
    pub fn socket_text_stream(&self, hostname: &str, port: u16) -> DataStream<String> {
        self.non_parallel_source(SocketTextStreamSource::new(hostname, port), "Socket Stream")
    }

    /// Builds the JobGraph of the program as it is now, without running it.
    pub fn get_job_graph(&self, job_name: &str) -> Result<(JobGraph, UserCodeRegistry)> {
        let inner = self.inner.borrow();
        if let Some(first) = inner.errors.first() {
            return Err(Error::InvalidProgram(first.clone()));
        }
        inner.config.validate()?;
        for &node in &inner.non_parallel {
            if let Some(n) = inner.graph.nodes.get(node as usize)
                && n.parallelism.is_some_and(|p| p != 1)
            {
                return Err(Error::InvalidProgram(format!(
                    "'{}' is not a parallel source; its parallelism must be 1",
                    n.name
                )));
            }
        }
        Ok(build_job_graph(&inner.graph, job_name, &inner.config)?)
    }

    /// The JobGraph as pretty JSON (Flink's `getExecutionPlan`).
    pub fn get_execution_plan(&self) -> Result<String> {
        let (graph, _) = self.get_job_graph("plan")?;
        serde_json::to_string_pretty(&graph)
            .map_err(|e| Error::InvalidProgram(format!("cannot render the plan: {e}")))
    }

    /// Starts the job and returns at once with a client to watch or cancel it. The program's
    /// dataflow is cleared, so the environment can build another job.
    pub fn execute_async(&self, job_name: &str) -> Result<JobClient> {
        let (job, registry) = self.get_job_graph(job_name)?;
        {
            let mut inner = self.inner.borrow_mut();
            inner.graph = StreamGraph::default();
            inner.non_parallel.clear();
        }
        for key in job.config.ignored_keys() {
            tracing::warn!(key, "configuration key has no effect in Eddy");
        }
        Ok(launch(job, registry)?)
    }

    /// Runs the job and blocks until it ends (Flink's `execute`).
    pub fn execute(&self, job_name: &str) -> Result<JobExecutionResult> {
        let client = self.execute_async(job_name)?;
        Ok(client.get_job_execution_result()?)
    }
}
