//! The `streaming_ledger` example end to end against real Apache Kafka: setup, both
//! producers, the job at parallelism 1 and 2, and its outputs compared with an oracle that
//! replays each account's transactions in the order its partition holds them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use common::{Broker, Read};
use serde_json::Value;

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples/streaming_ledger")
}

fn ledger(broker: &Broker, args: &[&str]) {
    let out = Command::new(example())
        .args(args)
        .args(["--bootstrap-servers", &broker.bootstrap])
        .output()
        .expect("run the streaming_ledger example");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(records: &[Read]) -> Vec<Value> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    sorted
        .iter()
        .map(|r| serde_json::from_str(&r.value).unwrap())
        .collect()
}

/// Per account: the balances after its opening and each accepted transaction, in order; and
/// the rejected transactions.
type Outcome = (BTreeMap<u64, Vec<i64>>, BTreeSet<u64>);

/// Replays what the producers wrote, per account in partition order.
fn oracle(accounts: &[Value], transactions: &[Value]) -> Outcome {
    let mut balances: BTreeMap<u64, Vec<i64>> = accounts
        .iter()
        .map(|a| {
            (
                a["account_id"].as_u64().unwrap(),
                vec![a["balance"].as_i64().unwrap()],
            )
        })
        .collect();
    let mut rejected = BTreeSet::new();
    for t in transactions {
        let seq = balances
            .get_mut(&t["account_id"].as_u64().unwrap())
            .unwrap();
        let b = *seq.last().unwrap() + t["amount"].as_i64().unwrap();
        if b < 0 {
            rejected.insert(t["transaction_id"].as_u64().unwrap());
        } else {
            seq.push(b);
        }
    }
    (balances, rejected)
}

#[test]
fn balances_and_rejections_match_a_replay_of_each_account() {
    for p in ["1", "2"] {
        let broker = Broker::start();
        ledger(&broker, &["setup"]);
        // Transactions first: most of them wait in keyed state for their account.
        ledger(
            &broker,
            &[
                "produce-transactions",
                "--count",
                "3000",
                "--accounts",
                "40",
            ],
        );
        ledger(&broker, &["produce-accounts", "--accounts", "40"]);
        let accounts = json(&broker.read_all("accounts", 3, 40));
        let transactions = json(&broker.read_all("transactions", 3, 3000));
        assert_eq!((accounts.len(), transactions.len()), (40, 3000));
        let (balances, rejected) = oracle(&accounts, &transactions);
        assert!(!rejected.is_empty(), "the input overdraws no account");

        ledger(
            &broker,
            &[
                "run",
                "--bounded",
                "--parallelism",
                p,
                "--checkpoint-interval",
                "50",
            ],
        );
        let total = balances.values().map(Vec::len).sum();
        let mut got: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
        // An account's entries share a key, so its partition holds them in order.
        for v in json(&broker.read_all("balances", 3, total)) {
            let b = &v["Balance"];
            got.entry(b["account_id"].as_u64().unwrap())
                .or_default()
                .push(b["balance"].as_i64().unwrap());
        }
        assert_eq!(got, balances, "p={p}: balances");
        let got_rejected: BTreeSet<u64> = json(&broker.read_all("rejected", 1, rejected.len()))
            .iter()
            .map(|v| {
                v["Rejected"]["transaction"]["transaction_id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(got_rejected, rejected, "p={p}: rejected");
    }
}
