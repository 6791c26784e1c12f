//! Stop with a savepoint at one parallelism, resume at another: keyed state follows its key
//! groups, list state is redistributed, sources resume their splits, and the two runs together
//! write exactly what one undisturbed run writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use eddy::prelude::*;
use eddy::windowing::{
    ProcessWindowContext, ProcessWindowFunction, TimeWindow, TumblingEventTimeWindows,
};
use eddy::{FunctionResult, ListStateDescriptor, OperatorListState};
use std::sync::Mutex;

const N: i64 = 4_000;
const KEYS: i64 = 17;
const WINDOW: i64 = 100;

/// Counts records in even-split list state (one element per subtask at snapshot time) and
/// reports its total at the end.
struct CountingMap {
    state: Option<OperatorListState<u64>>,
    restored: u64,
    seen: u64,
    totals: Arc<Mutex<Vec<u64>>>,
}

impl RichMapFunction<(i64, i64), (i64, i64)> for CountingMap {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        let state = ctx
            .get_operator_state_store()
            .get_list_state(&ListStateDescriptor::<u64>::new("seen"))?;
        self.restored = state.get().iter().sum();
        self.state = Some(state);
        Ok(())
    }

    fn map(&mut self, v: (i64, i64)) -> FunctionResult<(i64, i64)> {
        self.seen += 1;
        Ok(v)
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> FunctionResult<()> {
        if let Some(s) = &self.state {
            s.update(vec![self.restored + self.seen]);
        }
        Ok(())
    }

    fn close(&mut self) -> FunctionResult<()> {
        self.totals.lock().unwrap().push(self.restored + self.seen);
        Ok(())
    }
}

struct FormatWindow;

impl ProcessWindowFunction<(i64, i64), String, i64, TimeWindow> for FormatWindow {
    fn process(
        &mut self,
        key: &i64,
        ctx: &mut ProcessWindowContext<'_, TimeWindow>,
        elements: Vec<(i64, i64)>,
        out: &mut Collector<'_, String>,
    ) -> FunctionResult<()> {
        for (_, sum) in elements {
            out.collect(format!("window {key} {} {sum}", ctx.window().start));
        }
        Ok(())
    }
}

struct Run {
    output: Vec<String>,
    totals: Vec<u64>,
}

/// Runs the job at `parallelism`, from `savepoint` if given; with `stop_after`, stops with a
/// savepoint into `dir` once that many records were read and returns its path too.
fn run(
    parallelism: u32,
    savepoint: Option<&str>,
    stop_after: Option<u64>,
    dir: &std::path::Path,
) -> (Run, Option<String>) {
    let mut conf = Configuration::new();
    if let Some(path) = savepoint {
        conf.set_string("execution.savepoint.path", path);
    }
    conf.set_string("taskmanager.memory.segment-size", "1kb");
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.set_parallelism(parallelism);
    let read = Arc::new(AtomicU64::new(0));
    // Until the savepoint is requested, records past the stop point trickle in, so that the
    // job is still running when the request comes.
    let released = Arc::new(AtomicBool::new(stop_after.is_none()));
    let hold_after = stop_after.unwrap_or(0);
    let totals = Arc::new(Mutex::new(Vec::new()));
    let records = env
        .from_sequence(0, N - 1)
        .uid("numbers")
        .map({
            let (read, released) = (read.clone(), released.clone());
            move |x| {
                let n = read.fetch_add(1, Ordering::SeqCst);
                if n >= hold_after && !released.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                } else if x % 16 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                (x % KEYS, x)
            }
        })
        .uid("pairs")
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps()
                .with_timestamp_assigner(|v: &(i64, i64), _| v.1),
        )
        .uid("timestamps")
        .rich_map({
            let totals = totals.clone();
            move || CountingMap {
                state: None,
                restored: 0,
                seen: 0,
                totals: totals.clone(),
            }
        })
        .uid("counting");
    let sums = records
        .clone()
        .key_by(|v: &(i64, i64)| v.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .uid("sums")
        .map(|(k, s)| format!("sum {k} {s}"));
    let windows = records
        .key_by(|v: &(i64, i64)| v.0)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(
            WINDOW as u64,
        )))
        .reduce_with(|a, b| (a.0, a.1 + b.1), || FormatWindow)
        .uid("windows");
    let handle = sums.union([windows]).collect_async();
    let client = env.execute_async("rescaling").unwrap();
    let mut path = None;
    if let Some(n) = stop_after {
        while read.load(Ordering::SeqCst) < n {
            assert!(
                client.wait_timeout(Duration::from_millis(1)).is_none(),
                "the job ended before the savepoint"
            );
        }
        path = Some(
            client
                .stop_with_savepoint(false, Some(dir.to_str().unwrap()))
                .unwrap(),
        );
        released.store(true, Ordering::SeqCst);
    }
    client.get_job_execution_result().unwrap();
    let totals = totals.lock().unwrap().clone();
    (
        Run {
            output: handle.take(),
            totals,
        },
        path,
    )
}

/// Per key: how many running sums and the largest; and every window result.
fn summarize(lines: &[String]) -> (BTreeMap<i64, (usize, i64)>, Vec<String>) {
    let mut sums: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    let mut windows = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        if f[0] == "sum" {
            let e = sums.entry(f[1].parse().unwrap()).or_default();
            e.0 += 1;
            e.1 = e.1.max(f[2].parse().unwrap());
        } else {
            windows.push(l.clone());
        }
    }
    windows.sort();
    (sums, windows)
}

fn oracle() -> (BTreeMap<i64, (usize, i64)>, Vec<String>) {
    let mut sums: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    let mut windows: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for x in 0..N {
        let e = sums.entry(x % KEYS).or_default();
        e.0 += 1;
        e.1 += x;
        *windows.entry((x % KEYS, x - x % WINDOW)).or_default() += x;
    }
    let mut w: Vec<String> = windows
        .into_iter()
        .map(|((k, s), sum)| format!("window {k} {s} {sum}"))
        .collect();
    w.sort();
    (sums, w)
}

fn rescale(from: u32, to: u32) {
    let dir = tempfile::tempdir().unwrap();
    let (first, path) = run(from, None, Some(N as u64 / 3), dir.path());
    let path = path.unwrap();
    assert!(
        std::path::Path::new(&path).join("_metadata").is_file(),
        "{path}"
    );
    let (second, _) = run(to, Some(&path), None, dir.path());
    let mut all = first.output;
    all.extend(second.output);
    assert_eq!(summarize(&all), oracle(), "{from} -> {to}");
    // The even-split counters were dealt out to the new subtasks, none lost or doubled.
    assert_eq!(second.totals.len(), to as usize);
    assert_eq!(
        second.totals.iter().sum::<u64>(),
        N as u64,
        "{from} -> {to}"
    );
}

#[test]
fn savepoint_at_parallelism_2_resumes_at_4() {
    rescale(2, 4);
}

#[test]
fn savepoint_at_parallelism_4_resumes_at_2() {
    rescale(4, 2);
}
