//! DataStream API oracle tests: every transformation and partitioner against a brute-force
//! computation on random input, at parallelism 1, 2 and 4.

use std::collections::{BTreeMap, BTreeSet};

use eddy::prelude::*;
use eddy::{JobStatus, RichMapFunction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PARALLELISMS: [u32; 3] = [1, 2, 4];

type Pair = (u32, i64);
type Aggregation = dyn Fn(KeyedStream<Pair, u32>) -> DataStream<Pair>;

fn random_pairs(seed: u64, n: usize, keys: u32) -> Vec<(u32, i64)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (rng.random_range(0..keys), rng.random_range(-1000..1000)))
        .collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn map_filter_flat_map_match_iterators() {
    let input: Vec<i64> = (0..5000).map(|i| (i * 7919) % 1013).collect();
    let expected: Vec<String> = sorted(
        input
            .iter()
            .map(|x| x * 3)
            .filter(|x| x % 2 == 0)
            .flat_map(|x| vec![x.to_string(); (x % 3) as usize])
            .collect(),
    );
    for p in PARALLELISMS {
        let env = StreamExecutionEnvironment::create_local_environment(p);
        let got = env
            .from_collection(input.clone())
            .rebalance()
            .map(|x| x * 3)
            .filter(|x| x % 2 == 0)
            .flat_map(|x: i64, out| {
                for _ in 0..(x % 3) {
                    out.collect(x.to_string());
                }
            })
            .execute_and_collect("map-filter-flatmap")
            .unwrap();
        assert_eq!(sorted(got), expected, "parallelism {p}");
    }
}

#[test]
fn keyed_aggregations_match_brute_force_in_streaming_and_batch() {
    let input = random_pairs(42, 20_000, 97);
    // Per key, in input order.
    let mut per_key: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for (k, v) in &input {
        per_key.entry(*k).or_default().push(*v);
    }
    for p in PARALLELISMS {
        for mode in [RuntimeMode::Streaming, RuntimeMode::Batch] {
            let run = |f: &Aggregation| {
                let env = StreamExecutionEnvironment::create_local_environment(p);
                env.set_runtime_mode(mode);
                let keyed = env
                    .from_collection(input.clone())
                    .key_by(|(k, _): &(u32, i64)| *k);
                f(keyed).execute_and_collect("agg").unwrap()
            };
            let check = |name: &str, got: Vec<(u32, i64)>, fold: &dyn Fn(&[i64]) -> i64| {
                // The last record emitted per key (streaming) or the only one (batch) is the
                // aggregate over all of the key's values; streaming emits one per input record.
                let mut last: BTreeMap<u32, i64> = BTreeMap::new();
                for (k, v) in &got {
                    last.insert(*k, *v);
                }
                let expected: BTreeMap<u32, i64> =
                    per_key.iter().map(|(k, vs)| (*k, fold(vs))).collect();
                assert_eq!(last, expected, "{name} p={p} {mode:?}");
                let expected_len = if mode == RuntimeMode::Batch {
                    per_key.len()
                } else {
                    input.len()
                };
                assert_eq!(got.len(), expected_len, "{name} p={p} {mode:?}");
            };
            check(
                "sum",
                run(&|k| k.sum(|t: &mut (u32, i64)| &mut t.1)),
                &|vs| vs.iter().sum(),
            );
            check(
                "min",
                run(&|k| k.min(|t: &mut (u32, i64)| &mut t.1)),
                &|vs| *vs.iter().min().unwrap(),
            );
            check(
                "max",
                run(&|k| k.max(|t: &mut (u32, i64)| &mut t.1)),
                &|vs| *vs.iter().max().unwrap(),
            );
            check(
                "reduce",
                run(&|k| k.reduce(|a, b| (a.0, a.1.wrapping_mul(31).wrapping_add(b.1)))),
                &|vs| {
                    vs[1..]
                        .iter()
                        .fold(vs[0], |a, b| a.wrapping_mul(31).wrapping_add(*b))
                },
            );
        }
    }
}

#[test]
fn min_by_and_max_by_keep_the_whole_first_extreme_record() {
    // (key, value, position): ties on value must keep the earlier position.
    let mut rng = StdRng::seed_from_u64(9);
    let input: Vec<(u32, i64, usize)> = (0..5000)
        .map(|i| (rng.random_range(0..20), rng.random_range(0..30), i))
        .collect();
    for p in PARALLELISMS {
        for (name, is_min) in [("min_by", true), ("max_by", false)] {
            let env = StreamExecutionEnvironment::create_local_environment(p);
            env.set_runtime_mode(RuntimeMode::Batch);
            let keyed = env
                .from_collection(input.clone())
                .key_by(|t: &(u32, i64, usize)| t.0);
            let stream = if is_min {
                keyed.min_by(|t: &(u32, i64, usize)| t.1)
            } else {
                keyed.max_by(|t: &(u32, i64, usize)| t.1)
            };
            let got: BTreeSet<_> = stream
                .execute_and_collect(name)
                .unwrap()
                .into_iter()
                .collect();
            let mut expected: BTreeMap<u32, (u32, i64, usize)> = BTreeMap::new();
            for t in &input {
                let e = expected.entry(t.0).or_insert(*t);
                if (is_min && t.1 < e.1) || (!is_min && t.1 > e.1) {
                    *e = *t;
                }
            }
            assert_eq!(got, expected.into_values().collect(), "{name} p={p}");
        }
    }
}

/// Tags each record with the subtask that saw it.
#[derive(Clone)]
struct TagSubtask(u32);

impl RichMapFunction<i64, (u32, i64)> for TagSubtask {
    fn open(&mut self, ctx: &RuntimeContext) -> eddy::FunctionResult<()> {
        self.0 = ctx.get_index_of_this_subtask();
        Ok(())
    }
    fn map(&mut self, v: i64) -> eddy::FunctionResult<(u32, i64)> {
        Ok((self.0, v))
    }
}

#[test]
fn partitioners_route_as_flink_does() {
    let n = 4000i64;
    for p in [2u32, 4] {
        let run = |f: &dyn Fn(DataStream<i64>) -> DataStream<i64>| {
            let env = StreamExecutionEnvironment::create_local_environment(p);
            let src = env.from_sequence(1, n);
            f(src)
                .rich_map(|| TagSubtask(0))
                .execute_and_collect("route")
                .unwrap()
        };
        let per_subtask = |got: &[(u32, i64)]| {
            let mut c = BTreeMap::new();
            for (s, _) in got {
                *c.entry(*s).or_insert(0) += 1;
            }
            c
        };
        // broadcast: every record to every subtask.
        let got = run(&|s| s.broadcast());
        assert_eq!(got.len() as i64, n * p as i64);
        assert!(
            per_subtask(&got).values().all(|&c| c == n),
            "broadcast p={p}"
        );
        // global: everything to subtask 0.
        let got = run(&|s| s.global());
        assert_eq!(per_subtask(&got), BTreeMap::from([(0, n)]), "global p={p}");
        // rebalance: round-robin, so every subtask gets a fair share.
        let got = run(&|s| s.rebalance());
        assert_eq!(got.len() as i64, n);
        for (_, c) in per_subtask(&got) {
            assert!(
                (c - n / p as i64).abs() <= p as i64 * 2,
                "rebalance p={p}: {c}"
            );
        }
        // forward: the sequence source's split i is read by subtask i and stays there.
        let got = run(&|s| s.forward());
        let chunk = n / p as i64;
        for (s, v) in &got {
            assert_eq!(
                (v - 1) / chunk,
                i64::from(*s),
                "forward p={p}: {v} went to {s}"
            );
        }
        // shuffle and rescale: nothing lost or duplicated.
        for (name, f) in [
            (
                "shuffle",
                &(|s: DataStream<i64>| s.shuffle()) as &dyn Fn(DataStream<i64>) -> DataStream<i64>,
            ),
            ("rescale", &|s: DataStream<i64>| s.rescale()),
        ] {
            let got: Vec<i64> = sorted(run(f).into_iter().map(|(_, v)| v).collect());
            assert_eq!(got, (1..=n).collect::<Vec<_>>(), "{name} p={p}");
        }
    }
}

#[test]
fn key_by_sends_each_key_to_one_subtask() {
    let input = random_pairs(3, 10_000, 500);
    for p in PARALLELISMS {
        let env = StreamExecutionEnvironment::create_local_environment(p);
        let got = env
            .from_collection(input.clone())
            .key_by(|(k, _): &(u32, i64)| *k)
            .reduce(|a, _| a)
            .map(|(k, _)| k as i64)
            .rich_map(|| TagSubtask(0))
            .execute_and_collect("key routing")
            .unwrap();
        let mut owner: BTreeMap<i64, u32> = BTreeMap::new();
        for (s, k) in got {
            let o = owner.entry(k).or_insert(s);
            assert_eq!(*o, s, "key {k} reached two subtasks at p={p}");
            let kg = eddy_core_key_group(k as u32);
            let expected = kg as u64 * p as u64 / 128;
            assert_eq!(u64::from(s), expected, "key {k} (group {kg}) at p={p}");
        }
    }
}

fn eddy_core_key_group(k: u32) -> u32 {
    eddy_core::keys::assign_to_key_group(&k, 128).unwrap()
}

#[test]
fn union_merges_streams() {
    for p in PARALLELISMS {
        let env = StreamExecutionEnvironment::create_local_environment(p);
        let a = env.from_sequence(1, 1000);
        let b = env.from_sequence(1001, 1500);
        let c = env.from_collection(vec![-1i64, -2]);
        let got = sorted(
            a.union([b, c])
                .map(|x| x)
                .execute_and_collect("union")
                .unwrap(),
        );
        let mut expected: Vec<i64> = (1..=1500).collect();
        expected.extend([-1, -2]);
        assert_eq!(got, sorted(expected), "p={p}");
    }
}

#[test]
fn chaining_follows_flinks_rule() {
    let vertices = |build: &dyn Fn(&StreamExecutionEnvironment)| {
        let env = StreamExecutionEnvironment::create_local_environment(2);
        build(&env);
        let (graph, _) = env.get_job_graph("chains").unwrap();
        graph
            .vertices
            .iter()
            .map(|v| v.name.clone())
            .collect::<Vec<_>>()
    };
    // Same parallelism and forward: one chain.
    assert_eq!(
        vertices(&|env| {
            env.from_sequence(1, 10).map(|x| x).filter(|_| true).print();
        }),
        vec!["Source: Sequence Source -> Map -> Filter -> Print to Std. Out"]
    );
    // A keyed exchange breaks the chain; different parallelism breaks it too.
    assert_eq!(
        vertices(&|env| {
            env.from_sequence(1, 10)
                .key_by(|x| *x)
                .reduce(|a, b| a + b)
                .map(|x| x)
                .set_parallelism(1)
                .print()
                .set_parallelism(1);
        }),
        vec![
            "Source: Sequence Source",
            "Keyed Reduce",
            "Map -> Print to Std. Out"
        ]
    );
    // disable_chaining, start_new_chain and slot sharing groups.
    assert_eq!(
        vertices(&|env| {
            env.from_sequence(1, 10)
                .map(|x| x)
                .disable_chaining()
                .filter(|_| true)
                .map(|x| x)
                .start_new_chain()
                .map(|x| x + 1)
                .slot_sharing_group("other")
                .print();
        }),
        vec![
            "Source: Sequence Source",
            "Map",
            "Filter",
            "Map",
            "Map -> Print to Std. Out"
        ]
    );
    // Chaining disabled for the whole job.
    let env = StreamExecutionEnvironment::create_local_environment(1);
    env.disable_operator_chaining();
    env.from_sequence(1, 3).map(|x| x).print();
    assert_eq!(env.get_job_graph("x").unwrap().0.vertices.len(), 3);
}

#[test]
fn operator_ids_are_stable_and_uids_win() {
    let build = || {
        let env = StreamExecutionEnvironment::create_local_environment(2);
        env.from_sequence(1, 10)
            .map(|x| x)
            .uid("my-map")
            .key_by(|x| *x)
            .sum(|x: &mut i64| x)
            .print();
        env.get_job_graph("ids").unwrap().0
    };
    let a = build();
    let b = build();
    let ids = |g: &eddy_core::graph::JobGraph| {
        g.vertices
            .iter()
            .flat_map(|v| v.operators.iter().map(|o| o.operator_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b), "same program, same ids");
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_ne!(a.job_id, b.job_id);
    let map = a.vertices[0]
        .operators
        .iter()
        .find(|o| o.uid.as_deref() == Some("my-map"))
        .unwrap();
    assert_eq!(
        map.operator_id,
        eddy_core::ids::OperatorId::from_uid("my-map")
    );
    // The graph is plain data: it round-trips through JSON.
    let json = serde_json::to_string(&a).unwrap();
    let back: eddy_core::graph::JobGraph = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
}

#[test]
fn program_mistakes_are_reported_at_execute() {
    let env = StreamExecutionEnvironment::create_local_environment(2);
    let a = env.from_sequence(1, 10);
    let b = env.from_sequence(1, 10);
    a.union([b]).set_parallelism(3).print();
    let err = env.execute("bad").unwrap_err().to_string();
    assert!(err.contains("set_parallelism()"), "{err}");

    let env = StreamExecutionEnvironment::create_local_environment(1);
    env.from_collection(vec![1i64]).set_parallelism(2).print();
    let err = env.execute("bad").unwrap_err().to_string();
    assert!(err.contains("non-parallel"), "{err}");

    let env = StreamExecutionEnvironment::create_local_environment(2);
    env.from_sequence(1, 10)
        .map(|x| x)
        .set_parallelism(3)
        .forward()
        .print();
    let err = env.execute("bad").unwrap_err().to_string();
    assert!(err.contains("forward()"), "{err}");

    let env = StreamExecutionEnvironment::create_local_environment(1);
    env.set_runtime_mode(RuntimeMode::Batch);
    env.from_source(
        eddy::connectors::datagen::DataGeneratorSource::new(|i| i as i64, u64::MAX),
        WatermarkStrategy::no_watermarks(),
        "gen",
    )
    .print();
    let err = env.execute("bad").unwrap_err().to_string();
    assert!(err.contains("BATCH") && err.contains("unbounded"), "{err}");

    let env = StreamExecutionEnvironment::create_local_environment(1);
    let err = env.execute("empty").unwrap_err().to_string();
    assert!(err.contains("no operators"), "{err}");
}

#[test]
fn configuration_reaches_the_job() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "parallelism:\n  default: 3\npipeline.max-parallelism: 64\n",
    )
    .unwrap();
    let mut conf = Configuration::load_from_dir(dir.path()).unwrap();
    conf.apply_dynamic_properties(["-Dexecution.buffer-timeout.interval=5 ms"])
        .unwrap();
    let env = StreamExecutionEnvironment::with_configuration(conf);
    env.from_sequence(1, 10)
        .key_by(|x| *x)
        .sum(|x: &mut i64| x)
        .print();
    let (graph, _) = env.get_job_graph("conf").unwrap();
    assert!(graph.vertices.iter().all(|v| v.parallelism == 3));
    assert!(graph.vertices.iter().all(|v| v.max_parallelism == 64));

    let mut bad = Configuration::new();
    bad.set_string("execution.buffer-timeout.interval", "soon");
    let env = StreamExecutionEnvironment::with_configuration(bad);
    env.from_sequence(1, 3).print();
    let err = env.execute("bad config").unwrap_err().to_string();
    assert!(err.contains("execution.buffer-timeout.interval"), "{err}");
}

#[test]
fn job_result_carries_accumulators_and_metrics_count_records() {
    #[derive(Clone, Default)]
    struct Counting(Option<eddy::runtime::accumulators::LongCounter>);
    impl RichMapFunction<i64, i64> for Counting {
        fn open(&mut self, ctx: &RuntimeContext) -> eddy::FunctionResult<()> {
            self.0 = Some(ctx.get_long_counter("seen")?);
            Ok(())
        }
        fn map(&mut self, v: i64) -> eddy::FunctionResult<i64> {
            if let Some(c) = &self.0 {
                c.add(1);
            }
            Ok(v)
        }
    }
    let env = StreamExecutionEnvironment::create_local_environment(3);
    env.from_sequence(1, 999)
        .rich_map(Counting::default)
        .name("Counting")
        .rebalance()
        .filter(|x| x % 3 == 0)
        .name("Thirds")
        .sink_to(eddy::connectors::discard::DiscardingSink);
    let client = env.execute_async("accumulate").unwrap();
    let result = client.get_job_execution_result().unwrap();
    assert_eq!(client.job_status(), JobStatus::Finished);
    assert_eq!(
        result.accumulator_result("seen").and_then(|v| v.as_long()),
        Some(999)
    );
    let metrics = client.metrics();
    let total = |op: &str, name: &str| -> f64 {
        metrics
            .iter()
            .filter(|m| {
                m.variables.get("operator_name").map(String::as_str) == Some(op) && m.name == name
            })
            .map(|m| m.value.as_f64())
            .sum()
    };
    assert_eq!(total("Counting", "numRecordsIn"), 999.0);
    assert_eq!(total("Thirds", "numRecordsIn"), 999.0);
    assert_eq!(total("Thirds", "numRecordsOut"), 333.0);
    for name in [
        "busyTimeMsPerSecond",
        "idleTimeMsPerSecond",
        "backPressuredTimeMsPerSecond",
    ] {
        assert!(metrics.iter().any(|m| m.name == name), "{name} missing");
    }
}

#[test]
fn buffer_timeout_flushes_slow_streams_and_minus_one_waits_for_full_buffers() {
    use eddy::connectors::datagen::DataGeneratorSource;
    let run = |timeout_ms: i64| {
        let env = StreamExecutionEnvironment::create_local_environment(1);
        env.set_buffer_timeout(timeout_ms);
        let handle = env
            .from_source(
                DataGeneratorSource::new(|i| i as i64, u64::MAX).with_rate_limit(20.0),
                WatermarkStrategy::no_watermarks(),
                "slow",
            )
            .rebalance()
            .collect_async();
        let client = env.execute_async("timeout").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let seen = handle.len();
        client.cancel();
        assert!(client.get_job_execution_result().is_err());
        assert_eq!(client.job_status(), JobStatus::Canceled);
        seen
    };
    // 20 records/s never fill a buffer: without a timeout nothing arrives.
    assert_eq!(run(-1), 0);
    // With a timeout the records arrive.
    assert!(run(20) > 5);
    assert!(run(0) > 5);
}
