//! The chaos suite's short variant: two minutes of TaskManager and leading-JobManager kills,
//! paused processes and checkpoint storage faults, each at least twice, under the Kafka →
//! windows → Postgres and Kafka pipeline on a cluster of three JobManagers with high
//! availability and three TaskManagers; nothing may be lost or duplicated in either sink.
//! `examples/chaos.rs` is the suite; `docs/reliability.md` has a ten-minute run.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples")
        .join(name)
}

#[test]
fn two_minutes_of_kills_pauses_and_storage_faults_lose_and_duplicate_nothing() {
    let report = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(example("chaos"))
        .args(["--duration-secs", "120"])
        .args(["--taskmanager-kill-every", "20"])
        .args(["--jobmanager-kill-every", "40"])
        .args(["--pause-every", "35"])
        .args(["--storage-fault-every", "30"])
        .args(["--min-each", "2"])
        .arg("--eddy")
        .arg(env!("CARGO_BIN_EXE_eddy"))
        .arg("--report")
        .arg(report.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the chaos suite failed:\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap();
    for sink in ["postgres", "kafka"] {
        assert_eq!(report[sink]["lost"], 0, "{report}");
        assert_eq!(report[sink]["duplicated"], 0, "{report}");
        assert_eq!(report[sink]["wrong"], 0, "{report}");
        assert!(
            report[sink]["rows"].as_u64().unwrap() >= report["windows_expected"].as_u64().unwrap(),
            "{report}"
        );
    }
    assert!(report["windows_expected"].as_u64().unwrap() > 0, "{report}");
    for (kind, n) in report["failures"].as_object().unwrap() {
        assert!(n.as_u64().unwrap() >= 2, "{kind}: {report}");
    }
    assert_eq!(report["failures"].as_object().unwrap().len(), 4, "{report}");
    println!("{stdout}");
}
