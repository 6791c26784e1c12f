#!/usr/bin/env python3
"""Latency, Eddy against Apache Flink, on the same generator rates, pipelines and machine, in
one run.

Both engines run the cases of crates/eddy-benchmarks/src/bin/latency_bench.rs (Flink: the same
pipelines in bench/flink-latency/LatencyJob.java, a DataStream program run on the jars of
PyFlink's local mini cluster): a rate-limited generator at parallelism 2 stamps each event with
the time it was due, and the sink records how long after that it arrived (for the window case:
how long after the window's end its result arrived). Cases: passthrough, keyed map across a
hash exchange, 100 ms tumbling windows over 1,000 keys; each at 10k, 100k and 1M events/s with
execution.buffer-timeout 0, 1 and 100 ms. Eddy runs in the mini cluster and on two
TaskManagers; Flink in its mini cluster.

    python3 bench/latency.py                          # the full run, as in docs/benchmarks.md
    python3 bench/latency.py --cases keyed-map --rates 100000 --timeouts 1 --seconds 6

Figures are microseconds: p50, p99, p99.9 and max after a warm-up, and the rate the sources
reached (events/s over all subtasks). The ratio is Flink's p99 over Eddy's.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

from nexmark import ROOT, TARGET, TOOLS, VENV, ensure_flink, log

JOB = os.path.join(ROOT, "bench", "flink-latency", "LatencyJob.java")
CLASSES = os.path.join(TOOLS, "flink-latency-classes")


def pyflink_lib():
    libs = glob.glob(os.path.join(VENV, "lib", "python3*", "site-packages", "pyflink", "lib"))
    if not libs:
        sys.exit(f"no pyflink under {VENV}")
    return libs[0]


def build_flink_job(lib):
    stamp = os.path.join(CLASSES, "LatencyJob.class")
    if os.path.exists(stamp) and os.path.getmtime(stamp) >= os.path.getmtime(JOB):
        return
    log("compiling bench/flink-latency/LatencyJob.java")
    os.makedirs(CLASSES, exist_ok=True)
    subprocess.run(["javac", "-d", CLASSES, "-cp", os.path.join(lib, "*"), JOB], check=True)


def build_eddy():
    log("building latency_bench and eddy (release)")
    subprocess.run(["cargo", "build", "--locked", "--release", "-p", "eddy-cluster", "--bin",
                    "eddy", "-p", "eddy-benchmarks", "--bin", "latency_bench"],
                   cwd=ROOT, check=True, env=dict(os.environ, CARGO_TARGET_DIR=TARGET))
    return os.path.join(TARGET, "release", "latency_bench")


def quantile(counts, q):
    """The smallest recorded value with at least q of all values at or below it."""
    total = sum(n for _, n in counts)
    rank, seen = q * total, 0
    for v, n in counts:
        seen += n
        if seen >= rank:
            return v
    return counts[-1][0]


def flink_case(lib, case, rate, timeout, args):
    with tempfile.TemporaryDirectory() as out:
        cmd = ["java", "-cp", f"{os.path.join(lib, '*')}:{CLASSES}", "LatencyJob", case,
               str(rate), str(timeout), str(args.seconds), str(args.warmup), "2", out]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"Flink failed on {case} {rate} {timeout}: {done.stderr[-2000:]}")
        merged = {}
        for path in glob.glob(os.path.join(out, "sink-*.txt")):
            with open(path) as f:
                for line in f:
                    v, n = line.split()
                    merged[int(v)] = merged.get(int(v), 0) + int(n)
        events, seconds = 0, 0.0
        for path in glob.glob(os.path.join(out, "source-*.json")):
            with open(path) as f:
                r = json.load(f)
            events += r["events"]
            seconds = max(seconds, r["seconds"])
    counts = sorted(merged.items())
    if not counts:
        sys.exit(f"Flink's sinks recorded nothing on {case} {rate} {timeout}")
    return {
        "engine": "flink", "deployment": "mini", "case": case, "rate": rate,
        "buffer_timeout_ms": timeout, "p50_us": quantile(counts, 0.5),
        "p99_us": quantile(counts, 0.99), "p999_us": quantile(counts, 0.999),
        "max_us": counts[-1][0], "samples": sum(n for _, n in counts),
        "reached_rate": events / seconds if seconds else 0.0,
    }


def eddy_case(bench, case, rate, timeout, args):
    cmd = [bench, "run", "--case", case, "--rate", str(rate), "--buffer-timeout-ms",
           str(timeout), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"Eddy failed on {case} {rate} {timeout}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ms(us):
    return f"{us / 1000:.2f}" if us < 100_000 else f"{us / 1000:.0f}"


def rate(r):
    return f"{r / 1e6:.2f}M" if r >= 1e6 * 0.995 else f"{r / 1e3:.0f}k"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="passthrough,keyed-map,window")
    ap.add_argument("--rates", default="10000,100000,1000000")
    ap.add_argument("--timeouts", default="0,1,100", help="buffer timeouts in ms")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-cluster", action="store_true", help="skip Eddy on two TaskManagers")
    ap.add_argument("--eddy-only", action="store_true")
    args = ap.parse_args()
    cases = [(c, int(r), int(t)) for c in args.cases.split(",")
             for r in args.rates.split(",") for t in args.timeouts.split(",")]

    bench = build_eddy()
    lib = None
    if not args.eddy_only:
        ensure_flink()
        lib = pyflink_lib()
        build_flink_job(lib)

    rows = []
    for case, r, t in cases:
        log(f"{case} at {r} events/s, buffer timeout {t} ms")
        eddy = eddy_case(bench, case, r, t, args)
        flink = None if args.eddy_only else flink_case(lib, case, r, t, args)
        rows.append((eddy, flink))
    cluster = {}
    if not args.no_cluster:
        log("Eddy on two TaskManagers")
        done = subprocess.run(
            [bench, "all", "--json", "--deployments", "cluster", "--cases", args.cases,
             "--rates", args.rates, "--buffer-timeouts-ms", args.timeouts,
             "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
            capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"Eddy's cluster run failed: {done.stderr[-2000:]}")
        for line in done.stdout.splitlines():
            f = json.loads(line)
            cluster[(f["case"], f["rate"], f["buffer_timeout_ms"])] = f

    print("Latency in ms (p50 / p99 / p99.9 / max) and the rate the sources reached; "
          "parallelism 2")
    print()
    print("| case | events/s | buffer timeout | Eddy mini cluster | reached | "
          "Flink mini cluster | reached | Flink p99 / Eddy p99 | Eddy, two TaskManagers | reached |")
    print("|---|---:|---:|---|---:|---|---:|---:|---|---:|")

    def figs(f):
        return " / ".join(ms(f[k]) for k in ("p50_us", "p99_us", "p999_us", "max_us"))

    for eddy, flink in rows:
        c = cluster.get((eddy["case"], eddy["rate"], eddy["buffer_timeout_ms"]))
        cells = [eddy["case"], rate(eddy["rate"]), f"{eddy['buffer_timeout_ms']} ms",
                 figs(eddy), rate(eddy["reached_rate"])]
        if flink:
            cells += [figs(flink), rate(flink["reached_rate"]),
                      f"{flink['p99_us'] / eddy['p99_us']:.1f}x"]
        else:
            cells += ["-", "-", "-"]
        cells += [figs(c), rate(c["reached_rate"])] if c else ["-", "-"]
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()
    with open(os.path.join(tempfile.gettempdir(), "latency.json"), "w") as f:
        json.dump({"rows": rows, "cluster": list(cluster.values())}, f)


if __name__ == "__main__":
    main()
