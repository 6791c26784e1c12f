//! SQL jobs across failures: a window aggregation whose job fails once mid-stream and recovers
//! from its latest checkpoint, and one stopped with a savepoint and resumed at another
//! parallelism; both write exactly the rows brute force computes, once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eddy::StreamExecutionEnvironment;
use eddy::runtime::config::Configuration;
use eddy_sql::arrow::array::{AsArray, BooleanArray};
use eddy_sql::arrow::datatypes::{DataType, Int64Type};
use eddy_sql::datafusion_common::{DataFusionError, Result as DfResult};
use eddy_sql::datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use eddy_sql::{StreamTableEnvironment, TableResult};

const ROWS: i64 = 4000;

/// `fail_once(id)`: true, but fails the job the first time it sees `id == AT`.
#[derive(Debug)]
struct FailOnce {
    armed: Arc<AtomicBool>,
    signature: Signature,
}

const AT: i64 = 1500;

impl PartialEq for FailOnce {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for FailOnce {}
impl std::hash::Hash for FailOnce {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "fail_once".hash(state);
    }
}

impl ScalarUDFImpl for FailOnce {
    fn name(&self) -> &str {
        "fail_once"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let ids = args.args[0].to_array(args.number_rows)?;
        let ids = ids.as_primitive::<Int64Type>();
        if ids.iter().any(|id| id == Some(AT)) && self.armed.swap(false, Ordering::SeqCst) {
            return Err(DataFusionError::Execution(format!(
                "injected failure at id {AT}"
            )));
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(
            vec![true; ids.len()],
        ))))
    }
}

/// The statements of the job: ids 0..ROWS at `rate` rows/s, 10 ms of event time apart, in
/// one-second tumbling windows per `id % 7`.
fn script(out: &Path, rate: u32) -> String {
    format!(
        "CREATE TABLE seq (id BIGINT, ts AS TO_TIMESTAMP_MILLIS(id * 10),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'datagen', 'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
               'fields.id.end' = '{}', 'rows-per-second' = '{rate}');
         CREATE VIEW ev AS SELECT id, id % 7 AS k, (id * 31) % 101 AS v, ts FROM seq WHERE fail_once(id);
         CREATE TABLE out (k BIGINT, window_start TIMESTAMP(3), n BIGINT, total BIGINT, top BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         INSERT INTO out
         SELECT k, window_start, COUNT(*), SUM(v), MAX(v)
         FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         GROUP BY k, window_start, window_end",
        ROWS - 1,
        out.display()
    )
}

fn expected() -> BTreeMap<(i64, i64), String> {
    let mut windows: BTreeMap<(i64, i64), (i64, i64, i64)> = BTreeMap::new();
    for id in 0..ROWS {
        let (k, v, w) = (id % 7, (id * 31) % 101, id * 10 / 1000);
        let e = windows.entry((k, w)).or_insert((0, 0, i64::MIN));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.max(v);
    }
    windows
        .into_iter()
        .map(|((k, w), (n, total, top))| {
            (
                (k, w),
                format!("{k},1970-01-01 00:00:{w:02},{n},{total},{top}"),
            )
        })
        .collect()
}

fn read_output(dir: &Path) -> BTreeMap<(i64, i64), String> {
    let mut got = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let fields: Vec<&str> = line.split(',').collect();
            let k: i64 = fields[0].parse().unwrap();
            let w: i64 = fields[1][17..19].parse().unwrap();
            assert!(
                got.insert((k, w), line.to_string()).is_none(),
                "written twice: {line}"
            );
        }
    }
    got
}

fn environment(
    parallelism: u32,
    dir: &Path,
    savepoint: Option<&str>,
) -> StreamExecutionEnvironment {
    let mut conf = Configuration::new();
    conf.set_string("parallelism.default", parallelism.to_string());
    conf.set_string("execution.checkpointing.interval", "100 ms");
    conf.set_string(
        "execution.checkpointing.dir",
        dir.join("checkpoints").display().to_string(),
    );
    conf.set_string("restart-strategy.type", "fixed-delay");
    conf.set_string("restart-strategy.fixed-delay.delay", "10 ms");
    if let Some(path) = savepoint {
        conf.set_string("execution.savepoint.path", path);
    }
    StreamExecutionEnvironment::with_configuration(conf)
}

fn table_environment(
    env: &StreamExecutionEnvironment,
    armed: bool,
) -> (StreamTableEnvironment, Arc<AtomicBool>) {
    let tenv = StreamTableEnvironment::create(env);
    let flag = Arc::new(AtomicBool::new(armed));
    tenv.create_temporary_function(ScalarUDF::new_from_impl(FailOnce {
        armed: flag.clone(),
        signature: Signature::any(1, Volatility::Volatile),
    }));
    (tenv, flag)
}

fn submit(tenv: &StreamTableEnvironment, sql: &str) -> TableResult {
    let mut results = tenv.execute_script(sql).unwrap();
    results.pop().unwrap()
}

#[test]
fn a_window_aggregation_recovers_from_a_failure_with_exactly_the_brute_force_rows() {
    let want = expected();
    for parallelism in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let env = environment(parallelism, dir.path(), None);
        let (tenv, armed) = table_environment(&env, true);
        submit(&tenv, &script(&out, 8000))
            .await_completion()
            .unwrap();
        assert!(
            !armed.load(Ordering::SeqCst),
            "p = {parallelism}: the failure was not injected"
        );
        assert_eq!(read_output(&out), want, "p = {parallelism}");
    }
}

#[test]
fn a_sql_job_stopped_with_a_savepoint_resumes_at_another_parallelism() {
    let want = expected();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let env = environment(2, dir.path(), None);
    let (tenv, _) = table_environment(&env, false);
    let TableResult::Job(client) = submit(&tenv, &script(&out, 2000)) else {
        panic!("INSERT INTO did not start a job");
    };
    std::thread::sleep(Duration::from_millis(700));
    let savepoint = client
        .stop_with_savepoint(
            false,
            Some(&dir.path().join("savepoints").display().to_string()),
        )
        .unwrap();
    let first = read_output(&out);
    assert!(
        first.len() < want.len(),
        "the job ended before the savepoint"
    );

    let env = environment(3, dir.path(), Some(&savepoint));
    let (tenv, _) = table_environment(&env, false);
    submit(&tenv, &script(&out, 2000))
        .await_completion()
        .unwrap();
    assert_eq!(read_output(&out), want);
}
