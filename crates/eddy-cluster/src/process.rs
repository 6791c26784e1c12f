//! Resource figures of a native process, read from `/proc`, and their names in Flink's metric
//! system (`Status.JVM.*`), where Flink's dashboard looks for them.
//!
//! A JVM's heap is the memory its garbage collector manages; a native process's counterpart is
//! its anonymous resident memory (what the allocator handed out and the program touched), and
//! its non-heap part the resident file-backed pages (code, mapped files). A TaskManager's
//! figures include its worker processes, which run its tasks.

use std::sync::OnceLock;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The resource use of one process, or of a process and its workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessMetrics {
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
    /// Anonymous resident memory (heap and stacks), in bytes.
    pub anon_bytes: u64,
    /// File-backed and shared resident memory (code, mapped files), in bytes.
    pub file_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// CPU time used (user and system), in nanoseconds.
    pub cpu_time_ns: u64,
    /// Share of the machine's CPUs used since the previous reading, 0 to 1.
    pub cpu_load: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The limit on open file descriptors.
    pub max_fds: u64,
    /// Physical memory of the machine, in bytes.
    pub physical_memory: u64,
    /// Processes counted.
    pub processes: u64,
}

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

fn proc_status_kb(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// One process's figures (without the CPU load, which needs two readings).
fn read_pid(pid: &str) -> Option<ProcessMetrics> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    let cpu_ticks = ticks(11) + ticks(12);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0);
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcessMetrics {
        rss_bytes: proc_status_kb(&status, "VmRSS:") * 1024,
        anon_bytes: proc_status_kb(&status, "RssAnon:") * 1024,
        file_bytes: (proc_status_kb(&status, "RssFile:") + proc_status_kb(&status, "RssShmem:"))
            * 1024,
        threads: status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
            .unwrap_or(0),
        cpu_time_ns: cpu_ticks * (1_000_000_000 / TICKS_PER_SECOND),
        cpu_load: 0.0,
        open_fds,
        max_fds,
        physical_memory: 0,
        processes: 1,
    })
}

fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .map(|m| proc_status_kb(&m, "MemTotal:") * 1024)
        .unwrap_or(0)
}

impl ProcessMetrics {
    /// This process and the processes `children` (worker pids) together; the CPU load is over
    /// the time since the previous call.
    pub fn read(children: &[u32]) -> Self {
        let mut total = read_pid("self").unwrap_or_default();
        for pid in children {
            if let Some(m) = read_pid(&pid.to_string()) {
                total.rss_bytes += m.rss_bytes;
                total.anon_bytes += m.anon_bytes;
                total.file_bytes += m.file_bytes;
                total.threads += m.threads;
                total.cpu_time_ns += m.cpu_time_ns;
                total.open_fds += m.open_fds;
                total.processes += 1;
            }
        }
        total.physical_memory = physical_memory();
        static PREVIOUS: OnceLock<Mutex<(Instant, u64)>> = OnceLock::new();
        let previous = PREVIOUS.get_or_init(|| Mutex::new((Instant::now(), total.cpu_time_ns)));
        let mut p = previous.lock();
        let elapsed = p.0.elapsed().as_nanos() as f64;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        if elapsed > 0.0 && total.cpu_time_ns >= p.1 {
            total.cpu_load = ((total.cpu_time_ns - p.1) as f64 / elapsed / cpus).min(1.0);
        }
        *p = (Instant::now(), total.cpu_time_ns);
        total
    }

    /// The figures under Flink's metric names.
    pub fn flink_metrics(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("Status.JVM.Memory.Heap.Used", self.anon_bytes as f64),
            ("Status.JVM.Memory.Heap.Committed", self.anon_bytes as f64),
            ("Status.JVM.Memory.Heap.Max", self.physical_memory as f64),
            ("Status.JVM.Memory.NonHeap.Used", self.file_bytes as f64),
            (
                "Status.JVM.Memory.NonHeap.Committed",
                self.file_bytes as f64,
            ),
            ("Status.JVM.Memory.NonHeap.Max", -1.0),
            ("Status.JVM.Threads.Count", self.threads as f64),
            ("Status.JVM.CPU.Time", self.cpu_time_ns as f64),
            ("Status.JVM.CPU.Load", self.cpu_load),
            ("Status.JVM.FileDescriptor.Open", self.open_fds as f64),
            ("Status.JVM.FileDescriptor.Max", self.max_fds as f64),
            ("Status.Memory.RSS", self.rss_bytes as f64),
            ("Status.Process.Count", self.processes as f64),
        ]
    }
}

/// What Linux's one-letter thread state (`/proc/*/stat`) means.
fn state_name(letter: &str) -> &'static str {
    match letter {
        "R" => "RUNNING",
        "S" => "SLEEPING",
        "D" => "WAITING ON I/O",
        "T" => "STOPPED",
        "t" => "STOPPED BY A TRACER",
        "Z" => "ZOMBIE",
        "I" => "IDLE",
        _ => "UNKNOWN",
    }
}

/// The threads of process `pid` (`self` for this one) as Flink's thread dump lists them:
/// `{"threadName", "stringifiedThreadInfo"}`, the latter with the thread's id, state, CPU time
/// and the kernel function it waits in. A native process has no portable way to sample its own
/// threads' stacks, so no stack is shown.
fn threads_of(pid: &str, process: &str) -> Vec<serde_json::Value> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut threads: Vec<(u64, serde_json::Value)> = tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_string_lossy().to_string();
            let dir = t.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let name = name.trim();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ms = |i: usize| {
                fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0) * 1000
                    / TICKS_PER_SECOND
            };
            let state = state_name(fields.first().copied().unwrap_or(""));
            let wchan = std::fs::read_to_string(dir.join("wchan")).unwrap_or_default();
            let waits = match wchan.trim() {
                "" | "0" => String::new(),
                w => format!("\n\twaiting in {w}"),
            };
            let info = format!(
                "\"{name}\" tid={tid} {state} ({process})\n\tCPU time: user {} ms, system {} ms{waits}\n",
                ms(11),
                ms(12),
            );
            Some((
                tid.parse().unwrap_or(0),
                serde_json::json!({ "threadName": name, "stringifiedThreadInfo": info }),
            ))
        })
        .collect();
    threads.sort_by_key(|(tid, _)| *tid);
    threads.into_iter().map(|(_, t)| t).collect()
}

/// A thread dump of this process (named `process`) and of the processes `children` (its
/// workers), in the shape of Flink's `ThreadDumpInfo`: `{"threadInfos": [...]}`.
pub fn thread_dump(process: &str, children: &[u32]) -> serde_json::Value {
    let mut infos = threads_of("self", process);
    for pid in children {
        infos.extend(threads_of(
            &pid.to_string(),
            &format!("worker process {pid}"),
        ));
    }
    serde_json::json!({ "threadInfos": infos })
}

/// What this process writes to standard output: the file's last `limit` bytes when it goes
/// to a file, otherwise a line saying where it goes.
pub fn stdout_text(limit: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let target = std::fs::read_link("/proc/self/fd/1");
    let file = target
        .as_ref()
        .ok()
        .filter(|t| t.is_file())
        .and_then(|t| std::fs::File::open(t).ok());
    match (file, &target) {
        (Some(mut f), _) => {
            let len = f.metadata().map_or(0, |m| m.len());
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(limit)));
            let mut bytes = Vec::new();
            let _ = f.take(limit).read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        }
        (None, Ok(t)) => format!(
            "This process's standard output goes to {}, not to a file.\n",
            t.display()
        ),
        (None, Err(e)) => format!("This process's standard output is unknown: {e}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_threads_and_cpu_time() {
        let busy: u64 = (0..2_000_000u64).map(|i| i * i % 7).sum();
        assert!(busy > 0);
        let m = ProcessMetrics::read(&[]);
        assert!(m.rss_bytes > 0 && m.anon_bytes > 0 && m.anon_bytes <= m.rss_bytes);
        assert!(m.threads >= 1);
        assert!(m.cpu_time_ns > 0);
        assert!(m.open_fds >= 3 && m.max_fds >= m.open_fds);
        assert!(m.physical_memory > m.rss_bytes);
        assert_eq!(m.processes, 1);
        assert!((0.0..=1.0).contains(&m.cpu_load));
    }

    #[test]
    fn the_thread_dump_lists_this_processs_threads_and_a_childs() {
        let named = std::thread::Builder::new()
            .name("dump-me".into())
            .spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        // The thread may not have reached its sleep yet on a busy machine: dump until it has.
        let mut attempts = 0;
        let (infos, text) = loop {
            let dump = thread_dump("test", &[child.id()]);
            let infos = dump["threadInfos"].as_array().unwrap().clone();
            let text = infos
                .iter()
                .find(|t| t["threadName"] == "dump-me")
                .expect("the named thread is listed")["stringifiedThreadInfo"]
                .as_str()
                .unwrap()
                .to_string();
            attempts += 1;
            if text.contains("SLEEPING") || attempts == 100 {
                break (infos, text);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        named.join().unwrap();
        assert!(
            text.starts_with("\"dump-me\" tid=") && text.contains("(test)"),
            "{text}"
        );
        assert!(
            text.contains("SLEEPING") && text.contains("CPU time"),
            "{text}"
        );
        let sleeper = infos
            .iter()
            .find(|t| t["threadName"] == "sleep")
            .expect("the child's thread is listed");
        let text = sleeper["stringifiedThreadInfo"].as_str().unwrap();
        assert!(
            text.contains(&format!("worker process {}", child.id())),
            "{text}"
        );
    }

    #[test]
    fn a_child_process_adds_to_the_figures() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let sleeper = read_pid(&child.id().to_string()).unwrap();
        let both = ProcessMetrics::read(&[child.id()]);
        let gone = ProcessMetrics::read(&[u32::MAX]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(both.processes, 2);
        assert!(sleeper.rss_bytes > 0 && sleeper.threads == 1);
        assert!(both.threads > sleeper.threads && both.rss_bytes > sleeper.rss_bytes);
        assert_eq!(gone.processes, 1, "a pid that is gone is skipped");
    }
}
