//! The high_speed_detection example against a socket server that types lines, as `nc` would.

mod common;

use std::io::Write;

#[test]
fn alerts_above_threshold_and_skips_malformed_lines() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for line in [
            "Toyota, 67",
            "Ferrari, 180",
            "garbage",
            "Tesla,101.5",
            "Mini, 100",
            ", 5",
        ] {
            conn.write_all(format!("{line}\n").as_bytes()).unwrap();
        }
    });
    let out = common::run_example(
        "high_speed_detection",
        &[
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--threshold",
            "100",
        ],
    );
    server.join().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let alerts: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        alerts,
        vec![
            "HIGH SPEED ALERT: Ferrari at 180 (threshold 100)",
            "HIGH SPEED ALERT: Tesla at 101.5 (threshold 100)",
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipping malformed line \"garbage\""),
        "{stderr}"
    );
}
