//! The word_count example against a brute-force count, at parallelism 1, 2 and 4.

mod common;

use common::*;

#[test]
fn word_count_matches_brute_force_at_every_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    // Several files of different sizes in nested directories: every subtask reads some.
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("nested")).unwrap();
    let mut all_text = String::new();
    for (i, lines) in [3000, 50, 0, 700, 1, 1200].into_iter().enumerate() {
        let text = random_text(i as u64, lines);
        let path = if i % 2 == 0 {
            input.join(format!("part{i}.txt"))
        } else {
            input.join("nested").join(format!("part{i}.txt"))
        };
        std::fs::write(path, &text).unwrap();
        all_text.push_str(&text);
    }
    let expected = brute_force_counts(&all_text);
    assert!(expected.len() > 10);

    for parallelism in [1, 2, 4] {
        let out = dir.path().join(format!("out-{parallelism}"));
        run_example(
            "word_count",
            &[
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--parallelism",
                &parallelism.to_string(),
                // Small network buffers: many batches cross the keyed exchange.
                "-D",
                "taskmanager.memory.segment-size=4kb",
            ],
        );
        let got = read_counts(&out);
        assert_eq!(got, expected, "parallelism {parallelism}");
    }
}

#[test]
fn word_count_reads_a_socket_and_prints_running_counts() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"to be or\nnot to be\n").unwrap();
        // Closing the connection ends the job.
    });
    let out = run_example(
        "word_count",
        &["--hostname", "127.0.0.1", "--port", &port.to_string()],
    );
    server.join().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["(be,1)", "(be,2)", "(not,1)", "(or,1)", "(to,1)", "(to,2)"],
        "running counts, one line per update"
    );
}

#[test]
fn word_count_reports_a_missing_input_path() {
    let out = std::process::Command::new(example_bin("word_count"))
        .args(["--input", "/no/such/dir/input.txt"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/no/such/dir/input.txt"), "{stderr}");
    assert!(stderr.contains("File Source"), "{stderr}");
}
