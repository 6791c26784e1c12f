//! Metrics: counters, gauges, meters and histograms in scoped groups, as Flink's metric system.
//!
//! Every task and operator gets a [`MetricGroup`] whose scope names the job, task, operator and
//! subtask. The built-in I/O metrics (`numRecordsIn`, `numRecordsOut`, their per-second rates,
//! `busyTimeMsPerSecond`, `idleTimeMsPerSecond`, `backPressuredTimeMsPerSecond`) use the same
//! names and meanings as Flink's. Users register their own metrics through the runtime context.
//!
//! Updating a metric is a relaxed atomic add; rates and per-second times are computed by
//! [`MetricRegistry::update_views`], which the cluster calls once a second (Flink's `View`
//! update), so the hot path never reads a clock for metrics.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

/// The time span over which meters compute their rate (Flink's `MeterView` default).
pub const METER_TIME_SPAN: Duration = Duration::from_secs(60);

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter that also reports its rate of events per second.
#[derive(Debug)]
pub struct Meter {
    counter: Arc<Counter>,
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl Meter {
    /// A meter over an existing counter (Flink's `MeterView(counter)`).
    pub fn over(counter: Arc<Counter>) -> Self {
        let now = Instant::now();
        Meter {
            samples: Mutex::new(VecDeque::from([(now, counter.count())])),
            counter,
        }
    }

    /// Records `n` events.
    #[inline]
    pub fn mark_event(&self, n: u64) {
        self.counter.inc_by(n);
    }

    /// Events so far.
    pub fn count(&self) -> u64 {
        self.counter.count()
    }

    /// Events per second over the last [`METER_TIME_SPAN`] (or since the meter was created).
    pub fn rate(&self) -> f64 {
        let samples = self.samples.lock();
        match (samples.front(), samples.back()) {
            (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => {
                (c1 - c0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn update(&self, now: Instant) {
        let mut samples = self.samples.lock();
        samples.push_back((now, self.counter.count()));
        while samples.len() > 2
            && samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > METER_TIME_SPAN)
        {
            samples.pop_front();
        }
    }
}

/// Accumulated time spent in a state (idle, back-pressured), reported as ms per second.
#[derive(Debug)]
pub struct TimeGauge {
    total_nanos: AtomicU64,
    last: Mutex<(Instant, u64)>,
    per_second: AtomicU64,
}

impl Default for TimeGauge {
    fn default() -> Self {
        TimeGauge {
            total_nanos: AtomicU64::new(0),
            last: Mutex::new((Instant::now(), 0)),
            per_second: AtomicU64::new(0),
        }
    }
}

impl TimeGauge {
    /// Adds time spent in the state.
    #[inline]
    pub fn add(&self, d: Duration) {
        self.total_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Total time in the state.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_nanos.load(Ordering::Relaxed))
    }

    /// Milliseconds spent in the state per second, over the last update period.
    pub fn ms_per_second(&self) -> u64 {
        self.per_second.load(Ordering::Relaxed)
    }

    fn update(&self, now: Instant) {
        let total = self.total_nanos.load(Ordering::Relaxed);
        let mut last = self.last.lock();
        let wall = now.duration_since(last.0).as_nanos() as u64;
        if wall > 0 {
            let ms = (total.saturating_sub(last.1) as u128 * 1000 / wall as u128).min(1000);
            self.per_second.store(ms as u64, Ordering::Relaxed);
        }
        *last = (now, total);
    }
}

/// A distribution of values with percentiles (backed by an HDR histogram).
pub struct Histogram(Mutex<hdrhistogram::Histogram<u64>>);

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Histogram")
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram with three significant digits.
    pub fn new() -> Self {
        #[allow(clippy::expect_used)]
        let h =
            hdrhistogram::Histogram::new(3).expect("3 significant figures is a valid precision");
        Histogram(Mutex::new(h))
    }

    /// Records a value.
    pub fn update(&self, value: u64) {
        self.0.lock().saturating_record(value);
    }

    /// Summary statistics.
    pub fn statistics(&self) -> HistogramStatistics {
        let h = self.0.lock();
        HistogramStatistics {
            count: h.len(),
            min: h.min(),
            max: h.max(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        }
    }
}

/// A histogram's summary.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HistogramStatistics {
    /// Number of values.
    pub count: u64,
    /// Smallest value.
    pub min: u64,
    /// Largest value.
    pub max: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
}

/// A gauge: a value read on demand.
pub type GaugeFn = Arc<dyn Fn() -> f64 + Send + Sync>;

/// A registered metric.
#[derive(Clone)]
pub enum Metric {
    /// A counter.
    Counter(Arc<Counter>),
    /// A gauge.
    Gauge(GaugeFn),
    /// A meter.
    Meter(Arc<Meter>),
    /// A histogram.
    Histogram(Arc<Histogram>),
    /// A time-in-state gauge, reported in ms per second.
    Time(Arc<TimeGauge>),
}

/// The value of a metric at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MetricValue {
    /// A count.
    Count(u64),
    /// A gauge value.
    Gauge(f64),
    /// A meter: rate per second.
    Rate(f64),
    /// A histogram summary.
    Histogram(HistogramStatistics),
}

impl MetricValue {
    /// The value as a number (a histogram gives its count).
    pub fn as_f64(&self) -> f64 {
        match self {
            MetricValue::Count(c) => *c as f64,
            MetricValue::Gauge(g) | MetricValue::Rate(g) => *g,
            MetricValue::Histogram(h) => h.count as f64,
        }
    }
}

impl Metric {
    /// Reads the metric.
    pub fn value(&self) -> MetricValue {
        match self {
            Metric::Counter(c) => MetricValue::Count(c.count()),
            Metric::Gauge(g) => MetricValue::Gauge(g()),
            Metric::Meter(m) => MetricValue::Rate(m.rate()),
            Metric::Histogram(h) => MetricValue::Histogram(h.statistics()),
            Metric::Time(t) => MetricValue::Gauge(t.ms_per_second() as f64),
        }
    }
}

/// One metric's identity and value, as returned by [`MetricRegistry::snapshot`].
#[derive(Clone, Debug, Serialize)]
pub struct MetricSnapshot {
    /// Scope variables, e.g. `job_name`, `task_name`, `operator_name`, `subtask_index`.
    pub variables: BTreeMap<String, String>,
    /// Scope components joined by `.`, e.g. `wordcount.Map.0`.
    pub scope: String,
    /// The metric's name, e.g. `numRecordsIn`.
    pub name: String,
    /// The value.
    pub value: MetricValue,
}

struct Registered {
    scope: Arc<Scope>,
    name: String,
    metric: Metric,
}

/// All metrics of one process (a mini cluster or a TaskManager).
#[derive(Default)]
pub struct MetricRegistry {
    metrics: RwLock<Vec<Registered>>,
}

impl fmt::Debug for MetricRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetricRegistry({} metrics)", self.metrics.read().len())
    }
}

impl MetricRegistry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(MetricRegistry::default())
    }

    /// The root group for a scope.
    pub fn root_group(self: &Arc<Self>) -> MetricGroup {
        MetricGroup {
            registry: self.clone(),
            scope: Arc::new(Scope::default()),
        }
    }

    fn register(&self, scope: &Arc<Scope>, name: &str, metric: Metric) {
        self.metrics.write().push(Registered {
            scope: scope.clone(),
            name: name.to_string(),
            metric,
        });
    }

    /// Recomputes rates and per-second times. Called about once a second.
    pub fn update_views(&self) {
        let now = Instant::now();
        for r in self.metrics.read().iter() {
            match &r.metric {
                Metric::Meter(m) => m.update(now),
                Metric::Time(t) => t.update(now),
                _ => {}
            }
        }
    }

    /// Every metric's current value.
    pub fn snapshot(&self) -> Vec<MetricSnapshot> {
        self.metrics
            .read()
            .iter()
            .map(|r| MetricSnapshot {
                variables: r.scope.variables.clone(),
                scope: r.scope.components.join("."),
                name: r.name.clone(),
                value: r.metric.value(),
            })
            .collect()
    }

    /// Drops every metric whose scope has `variable == value` (e.g. a finished job's metrics).
    pub fn remove_where(&self, variable: &str, value: &str) {
        self.remove_where_all(&[(variable, value)]);
    }

    /// Removes every metric whose scope has all of `variables` with those values.
    pub fn remove_where_all(&self, variables: &[(&str, &str)]) {
        self.metrics.write().retain(|r| {
            !variables
                .iter()
                .all(|(k, v)| r.scope.variables.get(*k).map(String::as_str) == Some(*v))
        });
    }
}

#[derive(Default, Debug)]
struct Scope {
    components: Vec<String>,
    variables: BTreeMap<String, String>,
}

/// A named scope in which metrics are registered (Flink's `MetricGroup`).
#[derive(Clone)]
pub struct MetricGroup {
    registry: Arc<MetricRegistry>,
    scope: Arc<Scope>,
}

impl fmt::Debug for MetricGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetricGroup({})", self.scope.components.join("."))
    }
}

impl MetricGroup {
    /// A group that belongs to no registry: metrics registered in it are counted but not
    /// reported. Useful in tests.
    pub fn unregistered() -> Self {
        MetricRegistry::new().root_group()
    }

    /// A child group named `name` (Flink's `addGroup(name)`).
    pub fn add_group(&self, name: &str) -> MetricGroup {
        let mut components = self.scope.components.clone();
        components.push(name.to_string());
        MetricGroup {
            registry: self.registry.clone(),
            scope: Arc::new(Scope {
                components,
                variables: self.scope.variables.clone(),
            }),
        }
    }

    /// A child group that also defines a scope variable (Flink's `addGroup(key, value)`).
    pub fn add_group_with_variable(&self, key: &str, value: &str) -> MetricGroup {
        let mut components = self.scope.components.clone();
        components.push(value.to_string());
        let mut variables = self.scope.variables.clone();
        variables.insert(key.to_string(), value.to_string());
        MetricGroup {
            registry: self.registry.clone(),
            scope: Arc::new(Scope {
                components,
                variables,
            }),
        }
    }

    /// The scope variables of this group.
    pub fn variables(&self) -> &BTreeMap<String, String> {
        &self.scope.variables
    }

    /// Registers and returns a counter.
    pub fn counter(&self, name: &str) -> Arc<Counter> {
        let c = Arc::new(Counter::default());
        self.registry
            .register(&self.scope, name, Metric::Counter(c.clone()));
        c
    }

    /// Registers `counter`, which its owner updates, under `name`.
    pub fn register_counter(&self, name: &str, counter: Arc<Counter>) {
        self.registry
            .register(&self.scope, name, Metric::Counter(counter));
    }

    /// Registers a gauge that reads `f` when reported.
    pub fn gauge(&self, name: &str, f: impl Fn() -> f64 + Send + Sync + 'static) {
        self.registry
            .register(&self.scope, name, Metric::Gauge(Arc::new(f)));
    }

    /// Registers and returns a meter with its own counter.
    pub fn meter(&self, name: &str) -> Arc<Meter> {
        let m = Arc::new(Meter::over(Arc::new(Counter::default())));
        self.registry
            .register(&self.scope, name, Metric::Meter(m.clone()));
        m
    }

    /// Registers a meter over an existing counter (Flink's `meter(name, new MeterView(counter))`).
    pub fn meter_over(&self, name: &str, counter: Arc<Counter>) -> Arc<Meter> {
        let m = Arc::new(Meter::over(counter));
        self.registry
            .register(&self.scope, name, Metric::Meter(m.clone()));
        m
    }

    /// Registers and returns a histogram.
    pub fn histogram(&self, name: &str) -> Arc<Histogram> {
        let h = Arc::new(Histogram::new());
        self.registry
            .register(&self.scope, name, Metric::Histogram(h.clone()));
        h
    }

    /// Registers and returns a time-in-state gauge reported in ms per second.
    pub fn time_gauge(&self, name: &str) -> Arc<TimeGauge> {
        let t = Arc::new(TimeGauge::default());
        self.registry
            .register(&self.scope, name, Metric::Time(t.clone()));
        t
    }
}

/// The built-in I/O metrics of one operator.
#[derive(Clone, Debug)]
pub struct OperatorIoMetrics {
    /// Records received.
    pub num_records_in: Arc<Counter>,
    /// Records emitted.
    pub num_records_out: Arc<Counter>,
    /// The last watermark the operator received.
    pub input_watermark: Arc<WatermarkGauge>,
    /// The last watermark the operator emitted.
    pub output_watermark: Arc<WatermarkGauge>,
}

impl OperatorIoMetrics {
    /// Registers `numRecordsIn`, `numRecordsOut`, their `PerSecond` meters,
    /// `currentInputWatermark` and `currentOutputWatermark` in `group`.
    pub fn register(group: &MetricGroup) -> Self {
        let num_records_in = group.counter("numRecordsIn");
        let num_records_out = group.counter("numRecordsOut");
        group.meter_over("numRecordsInPerSecond", num_records_in.clone());
        group.meter_over("numRecordsOutPerSecond", num_records_out.clone());
        let input_watermark = Arc::new(WatermarkGauge::default());
        let output_watermark = Arc::new(WatermarkGauge::default());
        let (i, o) = (input_watermark.clone(), output_watermark.clone());
        group.gauge("currentInputWatermark", move || i.get() as f64);
        group.gauge("currentOutputWatermark", move || o.get() as f64);
        OperatorIoMetrics {
            num_records_in,
            num_records_out,
            input_watermark,
            output_watermark,
        }
    }
}

/// The built-in time metrics of one task.
#[derive(Clone, Debug)]
pub struct TaskTimeMetrics {
    /// Time spent waiting for input.
    pub idle: Arc<TimeGauge>,
    /// Time spent waiting for output buffers (back pressure).
    pub back_pressured: Arc<TimeGauge>,
}

impl TaskTimeMetrics {
    /// Registers `idleTimeMsPerSecond`, `backPressuredTimeMsPerSecond` (over the given gauge,
    /// which the task's writers update) and `busyTimeMsPerSecond` (the rest of each second) in
    /// `group`, and the times since the task started: `accumulatedIdleTimeMs`,
    /// `accumulatedBackPressuredTimeMs` and `accumulatedBusyTimeMs`.
    pub fn register(group: &MetricGroup, back_pressured: Arc<TimeGauge>) -> Self {
        let idle = group.time_gauge("idleTimeMsPerSecond");
        group.registry.register(
            &group.scope,
            "backPressuredTimeMsPerSecond",
            Metric::Time(back_pressured.clone()),
        );
        let (i, b) = (idle.clone(), back_pressured.clone());
        group.gauge("busyTimeMsPerSecond", move || {
            1000f64 - (i.ms_per_second() + b.ms_per_second()).min(1000) as f64
        });
        let started = Instant::now();
        let (i, b) = (idle.clone(), back_pressured.clone());
        group.gauge("accumulatedIdleTimeMs", move || {
            i.total().as_millis() as f64
        });
        group.gauge("accumulatedBackPressuredTimeMs", move || {
            b.total().as_millis() as f64
        });
        let (i, b) = (idle.clone(), back_pressured.clone());
        group.gauge("accumulatedBusyTimeMs", move || {
            let waiting = i.total() + b.total();
            started.elapsed().saturating_sub(waiting).as_millis() as f64
        });
        TaskTimeMetrics {
            idle,
            back_pressured,
        }
    }
}

/// A watermark gauge value holder (`currentInputWatermark`, `currentOutputWatermark`).
#[derive(Debug)]
pub struct WatermarkGauge(AtomicI64);

impl Default for WatermarkGauge {
    fn default() -> Self {
        WatermarkGauge(AtomicI64::new(i64::MIN))
    }
}

impl WatermarkGauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, wm: i64) {
        self.0.store(wm, Ordering::Relaxed);
    }

    /// Reads the value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Renders metrics in Prometheus's text format, named after Flink's scopes under `process`
/// (`taskmanager` or `jobmanager`: `flink_taskmanager_job_task_operator_numRecordsIn`) with the
/// scope variables as labels. Each item is a metric's variables, name and value.
pub fn prometheus_text<'a>(
    process: &str,
    metrics: impl IntoIterator<Item = (&'a BTreeMap<String, String>, &'a str, f64)>,
) -> String {
    fn clean(s: &str) -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (variables, name, value) in metrics {
        let scope = if variables.contains_key("operator_id") {
            "_job_task_operator"
        } else if variables.contains_key("task_id") {
            "_job_task"
        } else if variables.contains_key("job_id") {
            "_job"
        } else {
            ""
        };
        let labels: Vec<String> = variables
            .iter()
            .map(|(k, v)| {
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{}=\"{v}\"", clean(k))
            })
            .collect();
        let value = if value.is_finite() {
            value.to_string()
        } else {
            "NaN".to_string()
        };
        by_name
            .entry(format!("flink_{}{scope}_{}", clean(process), clean(name)))
            .or_default()
            .push(if labels.is_empty() {
                format!(" {value}")
            } else {
                format!("{{{}}} {value}", labels.join(","))
            });
    }
    let mut out = String::new();
    for (name, samples) in by_name {
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for s in samples {
            out.push_str(&name);
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn prometheus_text_names_metrics_by_scope_and_escapes_labels() {
        let op: BTreeMap<String, String> = [
            ("job_id".to_string(), "j1".to_string()),
            ("task_id".to_string(), "t".to_string()),
            ("operator_id".to_string(), "o".to_string()),
            ("operator_name".to_string(), "say \"hi\"".to_string()),
        ]
        .into();
        let task: BTreeMap<String, String> = [("task_id".to_string(), "t".to_string())].into();
        let text = super::prometheus_text(
            "taskmanager",
            [
                (&op, "numRecordsIn", 42.0),
                (&task, "busyTimeMsPerSecond", f64::NAN),
            ],
        );
        assert!(text.contains("# TYPE flink_taskmanager_job_task_operator_numRecordsIn gauge\n"));
        assert!(text.contains(
            "flink_taskmanager_job_task_operator_numRecordsIn{job_id=\"j1\",operator_id=\"o\",operator_name=\"say \\\"hi\\\"\",task_id=\"t\"} 42\n"
        ), "{text}");
        assert!(text.contains("flink_taskmanager_job_task_busyTimeMsPerSecond{task_id=\"t\"} NaN"));
        let none = BTreeMap::new();
        let text = super::prometheus_text("jobmanager", [(&none, "numRunningJobs", 1.0)]);
        assert_eq!(
            text,
            "# TYPE flink_jobmanager_numRunningJobs gauge\nflink_jobmanager_numRunningJobs 1\n"
        );
    }

    use super::*;

    #[test]
    fn counters_meters_and_scopes() {
        let reg = MetricRegistry::new();
        let g = reg
            .root_group()
            .add_group_with_variable("job_name", "wc")
            .add_group_with_variable("operator_name", "Map");
        let io = OperatorIoMetrics::register(&g);
        io.num_records_in.inc_by(10);
        reg.update_views();
        let snap = reg.snapshot();
        let rec_in = snap.iter().find(|m| m.name == "numRecordsIn").unwrap();
        assert_eq!(rec_in.value, MetricValue::Count(10));
        assert_eq!(rec_in.scope, "wc.Map");
        assert_eq!(rec_in.variables["operator_name"], "Map");
        reg.remove_where("job_name", "wc");
        assert!(reg.snapshot().is_empty());
    }

    #[test]
    fn time_gauge_reports_ms_per_second() {
        let t = TimeGauge::default();
        let start = *t.last.lock();
        t.add(Duration::from_millis(250));
        t.update(start.0 + Duration::from_millis(500));
        assert_eq!(t.ms_per_second(), 500);
    }

    #[test]
    fn histogram_percentiles() {
        let h = Histogram::new();
        for v in 1..=100 {
            h.update(v);
        }
        let s = h.statistics();
        assert_eq!(s.count, 100);
        assert_eq!(s.min, 1);
        assert_eq!(s.max, 100);
        assert_eq!(s.p50, 50);
    }
}
