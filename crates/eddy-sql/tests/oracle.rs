//! SQL against brute force: random rows in a JSON file, a query with filters, CASE, string and
//! arithmetic functions and casts, written exactly once to CSV files by `INSERT INTO`, at
//! parallelism 1, 2 and 4, the input spread over several files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use eddy::StreamExecutionEnvironment;
use eddy::runtime::config::Configuration;
use eddy_sql::StreamTableEnvironment;
use rand::{Rng, SeedableRng};

struct Row {
    id: i64,
    user: Option<String>,
    amount: i64,
    ts_ms: i64,
}

fn random_rows(n: usize, seed: u64) -> Vec<Row> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let users = ["ann", "bo", "cy", "dee", "eve", "fritz"];
    (0..n)
        .map(|i| Row {
            id: i as i64,
            user: (!rng.random_bool(0.1))
                .then(|| users[rng.random_range(0..users.len())].to_string()),
            amount: rng.random_range(-500..5_000),
            ts_ms: 1_700_000_000_000 + rng.random_range(0..86_400_000),
        })
        .collect()
}

fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let mut s = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac != 0 {
        // Shortest of 3 digits, as the JSON/CSV writers print fractions.
        write!(s, ".{frac:03}").unwrap();
    }
    s
}

/// What the query computes, row by row.
fn expected(rows: &[Row]) -> BTreeMap<i64, String> {
    rows.iter()
        .filter(|r| r.amount > 0 && r.user.as_deref() != Some("eve"))
        .map(|r| {
            let user = r.user.clone().unwrap_or_else(|| "anonymous".into());
            let size = if r.amount >= 1000 { "big" } else { "small" };
            let cents = r.amount * 100 + r.id % 7;
            (
                r.id,
                format!(
                    "{},{},{},{},{},{}",
                    r.id,
                    user.to_uppercase(),
                    size,
                    cents,
                    user.len(),
                    timestamp(r.ts_ms)
                ),
            )
        })
        .collect()
}

fn json_lines(rows: &[Row]) -> String {
    let mut text = String::new();
    for r in rows {
        let user = match &r.user {
            Some(u) => format!("\"{u}\""),
            None => "null".into(),
        };
        writeln!(
            text,
            "{{\"id\": {}, \"user\": {user}, \"amount\": {}, \"ts\": \"{}\"}}",
            r.id,
            r.amount,
            timestamp(r.ts_ms)
        )
        .unwrap();
    }
    text
}

#[test]
fn filters_and_projections_match_brute_force_at_parallelism_1_2_and_4() {
    let rows = random_rows(20_000, 7);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for (i, chunk) in rows.chunks(2_500).enumerate() {
        std::fs::write(input.join(format!("part-{i}.json")), json_lines(chunk)).unwrap();
    }
    let want = expected(&rows);
    for parallelism in [1, 2, 4] {
        let out = dir.path().join(format!("out-{parallelism}"));
        let mut config = Configuration::new();
        config.set_string("parallelism.default", parallelism.to_string());
        let env = StreamExecutionEnvironment::with_configuration(config);
        let tenv = StreamTableEnvironment::create(&env);
        let script = format!(
            "CREATE TABLE events (id BIGINT, `user` STRING, amount INT, ts TIMESTAMP(3),
                WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE results (id BIGINT, who STRING, size STRING, cents BIGINT, len INT, ts TIMESTAMP(3))
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             CREATE VIEW named AS SELECT id, COALESCE(`user`, 'anonymous') AS who, amount, ts FROM events;
             INSERT INTO results
             SELECT id, UPPER(who), CASE WHEN amount >= 1000 THEN 'big' ELSE 'small' END,
                    CAST(amount AS BIGINT) * 100 + id % 7, CHAR_LENGTH(who), ts
             FROM named WHERE amount > 0 AND who <> 'eve'",
            input.display(),
            out.display()
        );
        for result in tenv.execute_script(&script).unwrap() {
            result.await_completion().unwrap();
        }
        let mut got = BTreeMap::new();
        for entry in std::fs::read_dir(&out).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                !name.starts_with('.'),
                "an uncommitted file is left: {name}"
            );
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let id: i64 = line.split(',').next().unwrap().parse().unwrap();
                assert!(
                    got.insert(id, line.to_string()).is_none(),
                    "p = {parallelism}: row {id} written twice"
                );
            }
        }
        assert_eq!(got.len(), want.len(), "p = {parallelism}: row count");
        for (id, line) in &want {
            assert_eq!(got.get(id), Some(line), "p = {parallelism}: row {id}");
        }
    }
}

/// Several files over the same hours, as the Nexmark generator writes them: a subtask reads
/// one file after another, so its event time goes back at each new file. Watermarks are per
/// file split, so no row is late; every window's count and sum match brute force.
#[test]
fn window_aggregates_over_files_that_each_cover_the_same_hours_match_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut want: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for file in 0..6 {
        let mut text = String::new();
        let mut ts = 1_700_000_000_000i64;
        for _ in 0..3_000 {
            ts += rng.random_range(0..40);
            let key: i64 = rng.random_range(0..5);
            let value: i64 = rng.random_range(0..1000);
            writeln!(
                text,
                "{{\"k\": {key}, \"v\": {value}, \"ts\": \"{}\"}}",
                timestamp(ts)
            )
            .unwrap();
            let e = want.entry((key, ts - ts.rem_euclid(5_000))).or_default();
            e.0 += 1;
            e.1 += value;
        }
        std::fs::write(input.join(format!("part-{file}.json")), text).unwrap();
    }
    for parallelism in [1, 2, 4] {
        let mut config = Configuration::new();
        config.set_string("parallelism.default", parallelism.to_string());
        let env = StreamExecutionEnvironment::with_configuration(config);
        let tenv = StreamTableEnvironment::create(&env);
        tenv.execute_sql(&format!(
            "CREATE TABLE t (k BIGINT, v BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            input.display()
        ))
        .unwrap();
        let result = tenv
            .execute_sql(
                "SELECT k, window_start, COUNT(*), SUM(v)
                 FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '5' SECOND))
                 GROUP BY k, window_start, window_end",
            )
            .unwrap();
        let mut got = BTreeMap::new();
        for line in result.rows() {
            // +I[k, 2023-11-14 22:13:20.000, n, sum]
            let fields: Vec<&str> = line[3..line.len() - 1].split(", ").collect();
            let k: i64 = fields[0].parse().unwrap();
            let n: i64 = fields[2].parse().unwrap();
            let sum: i64 = fields[3].parse().unwrap();
            assert!(got.insert((k, fields[1].to_string()), (n, sum)).is_none());
        }
        let want: BTreeMap<(i64, String), (i64, i64)> = want
            .iter()
            .map(|((k, start), v)| ((*k, format!("{}.000", timestamp(*start))), *v))
            .collect();
        assert_eq!(got, want, "p = {parallelism}");
    }
}
