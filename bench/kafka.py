#!/usr/bin/env python3
"""Kafka connectors, Eddy against Apache Flink, on the same broker, topic, partitions,
parallelism and machine, in one run.

    python3 bench/kafka.py                          # 1,000,000 records, as in docs/benchmarks.md
    python3 bench/kafka.py --records 100000 --pipelines kafka-exactly-once

Starts an Apache Kafka broker (scripts/services.sh kafka-broker) and uses the Postgres that
scripts/services.sh starts, writes N JSON events (~90 bytes) to a 2-partition topic, and runs
each pipeline over all of them as a bounded job with checkpoints every second: Eddy's
(`cargo bench -p eddy-kafka --bench connectors -- --pipeline ...`, a release build) and Flink's
(bench/flink_kafka.py: Flink SQL with Flink's Kafka and JDBC connectors, from
bench/flink-connectors/pom.xml). Flink's JDBC connector has no two-phase commit in SQL, so
Kafka → Postgres is compared with upserts only. Measurements, as in bench/nexmark.py:
records/s over the job's net runtime, CPU seconds of every process of the run (records per
CPU second is the throughput per core), peak resident memory of those processes.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import nexmark
from nexmark import ROOT, TARGET, TOOLS, ensure_flink, log, measured

PIPELINES = ["kafka-at-least-once", "kafka-exactly-once", "postgres-upsert",
             "postgres-two-phase"]
FLINK_PIPELINES = {"kafka-at-least-once", "kafka-exactly-once", "postgres-upsert"}
POSTGRES = os.environ.get("EDDY_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def connector_jars():
    """Flink's connector jars, fetched once from Maven Central."""
    out = os.path.join(TOOLS, "flink-connectors")
    if not os.path.exists(os.path.join(out, ".complete")):
        log(f"fetching Flink's Kafka and JDBC connectors into {out}")
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(["mvn", "-q", "-B", "-f",
                        os.path.join(ROOT, "bench", "flink-connectors", "pom.xml"),
                        "dependency:copy-dependencies", "-DexcludeTransitive=true",
                        f"-DoutputDirectory={out}"], check=True)
        open(os.path.join(out, ".complete"), "w").close()
    return sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".jar"))


def build_connectors():
    """Builds the connector benchmark (release); returns its executable."""
    log("building the connector benchmark (release)")
    out = subprocess.run(["cargo", "bench", "--locked", "-p", "eddy-kafka", "--bench",
                          "connectors", "--no-run", "--message-format=json"],
                         cwd=ROOT, check=True, capture_output=True, text=True,
                         env=dict(os.environ, CARGO_TARGET_DIR=TARGET))
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("target", {}).get("name") == "connectors" and msg.get("executable"):
            return msg["executable"]
    sys.exit("cargo did not report the connectors executable")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(work):
    port = free_port()
    proc = subprocess.Popen(["bash", os.path.join(ROOT, "scripts", "services.sh"),
                             "kafka-broker", str(port), os.path.join(work, "kafka")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("the Kafka broker did not start")


def psql(sql):
    subprocess.run(["psql", "-X", "-q", "-d", POSTGRES, "-c", sql], check=True,
                   capture_output=True)


def psql_value(sql):
    out = subprocess.run(["psql", "-X", "-At", "-d", POSTGRES, "-c", sql], check=True,
                         capture_output=True, text=True)
    return int(out.stdout.strip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--pipelines", default=",".join(PIPELINES))
    ap.add_argument("--eddy-only", action="store_true")
    args = ap.parse_args()
    pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    unknown = [p for p in pipelines if p not in PIPELINES]
    if unknown:
        ap.error(f"unknown pipelines {unknown}; known: {PIPELINES}")

    subprocess.run(["bash", os.path.join(ROOT, "scripts", "services.sh"), "all"], check=True)
    exe = build_connectors()
    python = None if args.eddy_only else ensure_flink()
    jars = None if args.eddy_only else connector_jars()
    work = tempfile.mkdtemp(prefix="kafka-bench-")
    broker, brokers = start_broker(work)
    try:
        base = [exe, "--bench", "--bootstrap-servers", brokers, "--records", str(args.records)]
        subprocess.run(base + ["--produce"], check=True, stdout=subprocess.DEVNULL)
        log(f"{args.records} records in bench-in (2 partitions); parallelism "
            f"{args.parallelism}; {os.cpu_count()} cores")
        results = []
        for pipeline in pipelines:
            r = {"pipeline": pipeline}
            log(f"{pipeline}: Eddy")
            rep, peak, cpu = measured(base + ["--pipeline", pipeline,
                                              "--parallelism", str(args.parallelism)])
            r.update(eddy=args.records / rep["seconds"], eddy_cpu=cpu, eddy_rss=peak)
            if python and pipeline in FLINK_PIPELINES:
                log(f"{pipeline}: Flink")
                cmd = [python, os.path.join(ROOT, "bench", "flink_kafka.py"),
                       "--pipeline", pipeline, "--bootstrap-servers", brokers,
                       "--parallelism", str(args.parallelism), "--jars", ";".join(jars)]
                table = None
                if pipeline.startswith("kafka"):
                    topic = f"flink-out-{pipeline}"
                    subprocess.run(base + ["--create-topic", topic], check=True)
                    cmd += ["--topic", topic]
                else:
                    table = f"flink_bench_{os.getpid()}"
                    psql(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ("
                         "event_id VARCHAR(50) PRIMARY KEY, user_name VARCHAR(50) NOT NULL, "
                         "location VARCHAR(100) NOT NULL)")
                    user, host = POSTGRES.removeprefix("postgres://").split("@", 1)
                    cmd += ["--jdbc-url", f"jdbc:postgresql://{host}?user={user}",
                            "--table", table]
                rep, peak, cpu = measured(cmd)
                r.update(flink=args.records / rep["seconds"], flink_cpu=cpu, flink_rss=peak)
                written = (psql_value(f"SELECT count(*) FROM {table}") if table else
                           json.loads(subprocess.run(base + ["--count", topic], check=True,
                                                     capture_output=True, text=True)
                                      .stdout.splitlines()[-1])["records"])
                if table:
                    psql(f"DROP TABLE {table}")
                if written != args.records:
                    sys.exit(f"{pipeline}: Flink wrote {written} of {args.records} records")
            results.append(r)
            print_row(r, args, header=len(results) == 1)
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)


def print_row(r, args, header):
    if header:
        print("| pipeline | Eddy records/s | Flink records/s | ratio | Eddy records/CPU-s | "
              "Flink records/CPU-s | per-core ratio | Eddy peak MiB | Flink peak MiB | "
              "memory ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    f = r.get("flink")
    n = args.records
    cells = [
        r["pipeline"],
        nexmark.fmt_rate(r["eddy"]),
        nexmark.fmt_rate(f) if f else "-",
        f"{r['eddy'] / f:.1f}x" if f else "-",
        nexmark.fmt_rate(n / r["eddy_cpu"]),
        nexmark.fmt_rate(n / r["flink_cpu"]) if f else "-",
        f"{r['flink_cpu'] / r['eddy_cpu']:.1f}x" if f else "-",
        f"{r['eddy_rss'] / 2**20:.0f}",
        f"{r['flink_rss'] / 2**20:.0f}" if f else "-",
        f"1/{r['flink_rss'] / r['eddy_rss']:.0f}" if f else "-",
    ]
    print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
