#!/usr/bin/env python3
"""Nexmark, Eddy against Apache Flink, on the same input, parallelism and machine, in one run.

For each query: generate one set of JSON files, run the query on Flink (PyFlink's local
cluster, Flink SQL) and on Eddy (the DataStream queries of crates/eddy-nexmark), check that both
produced the same rows, and print throughput, CPU time, peak memory and the Eddy / Flink ratios.

    python3 bench/nexmark.py                      # the full run, as in docs/benchmarks.md
    python3 bench/nexmark.py --events 200000 --eddy-only --queries q0,q5   # a smoke run
    python3 bench/nexmark.py --sql --queries q0,q1   # also the reference SQL on `eddy sql`

Flink comes from `pip install apache-flink` into a virtual environment under
~/.cache/eddy-tools (created on first use; Java 17 must be on the PATH). Measurements:
- events/s: events in the input divided by the job's runtime (Flink: the job's net runtime as
  Flink reports it, so its planning and cluster start-up are not counted; Eddy: `execute()`);
- CPU s: user + system time of every process of the run (Flink: the Python driver and its JVM);
- events/s per core: events/s divided by the parallelism (each engine runs p subtasks per
  operator on the machine's cores);
- CPU s: user + system seconds of every process of the run, start-up included (Flink's includes
  the JVM's start, class loading and SQL planning);
- peak memory: the largest sum of the resident set sizes of those processes, sampled every 50 ms.
"""

import argparse
import collections
import csv
import datetime
import decimal
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from nexmark_sql import QUERIES as REFERENCE_SQL, SOURCE, UPDATING, VIEWS, WINDOW_QUERIES

SQL = {**REFERENCE_SQL, **WINDOW_QUERIES}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.expanduser("~/.cache/eddy-tools")
VENV = os.path.join(TOOLS, "flink-venv")
FLINK_VERSION = "2.3.0"
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/eddy-target"))
NEXMARK = None  # the binary, once built
QUERIES = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q11", "q14", "q15", "q16",
           "q17", "q18", "q20", "q21", "q22"]
# The queries `eddy sql` runs as the reference writes them (the statements of nexmark_sql.py,
# unchanged); the others need SQL features Eddy does not have yet (joins, OVER, session
# windows, updating aggregations).
SQL_QUERIES = ["q0", "q1", "q2", "q14", "q21", "q22"]
EDDY = None  # the `eddy` binary, for --sql
# Queries whose reference leaves ties to arrival order, and the columns both engines must agree
# on: q18 keeps each bidder's last bid per auction by `dateTime` alone, so of two bids in the
# same millisecond either may be kept; its key and time must match.
COMPARED_COLUMNS = {"q18": (0, 1, 5)}
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def ensure_flink():
    python = os.path.join(VENV, "bin", "python")
    probe = [python, "-c", "import pyflink"]
    if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    log(f"installing apache-flink {FLINK_VERSION} into {VENV}")
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", f"apache-flink=={FLINK_VERSION}"],
                   check=True)
    return python


def build_binary(package, binary, profile):
    """Builds `binary` of the cargo package `package`; returns its path."""
    log(f"building the {binary} binary ({profile})")
    cmd = ["cargo", "build", "--locked", "-p", package, "--bin", binary]
    if profile == "release":
        cmd.append("--release")
    subprocess.run(cmd, cwd=ROOT, check=True, env=dict(os.environ, CARGO_TARGET_DIR=TARGET))
    return os.path.join(TARGET, profile, binary)


def build_eddy(profile):
    """The nexmark binary (the DataStream queries and the generator)."""
    return build_binary("eddy-nexmark", "nexmark", profile)


def build_eddy_cli(profile):
    """The `eddy` binary, whose `sql` client runs the SQL."""
    return build_binary("eddy-cluster", "eddy", profile)


def tree(root):
    """The pids of `root` and all its descendants."""
    children = collections.defaultdict(list)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children[ppid].append(int(pid))
        except (OSError, IndexError, ValueError):
            pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def sample(pid):
    """(resident bytes, cpu ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return rss, int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def last_json(out):
    """The last line of `out` that is a JSON object."""
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def measured(cmd, env=None, report=last_json):
    """Runs `cmd`; returns (its stdout's `report`, peak RSS bytes, CPU seconds)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    peak, cpu = 0, {}
    stop = threading.Event()

    def watch():
        nonlocal peak
        while not stop.is_set():
            total = 0
            for pid in tree(proc.pid):
                s = sample(pid)
                if s:
                    total += s[0]
                    cpu[pid] = s[1]
            peak = max(peak, total)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return report(out), peak, sum(cpu.values()) / TICKS


TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


def normalize(value):
    """One CSV field, so that both engines' spellings of the same value compare equal."""
    v = value.strip()
    if re.fullmatch(r"-?\d+", v):
        return int(v)
    if re.fullmatch(r"-?\d+(\.\d*)?([eE][+-]?\d+)?", v):
        return decimal.Decimal(v).normalize()
    if TIMESTAMP.match(v):
        t = datetime.datetime.fromisoformat(v.replace(" ", "T"))
        return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return v


PART = re.compile(r"-(\d+)-(\d+)(\.[^-]*)?$")


def part_order(name):
    """Part files in the order their subtask wrote them: by subtask, then counter
    (`part-<run>-<subtask>-<counter>`); other files by name."""
    m = PART.search(name.removesuffix(".inprogress"))
    return (0, int(m.group(1)), int(m.group(2)), name) if m else (1, 0, 0, name)


def read_rows(directory, key_columns):
    """The rows of every file under `directory` (hidden in-progress files included). For an
    updating query, only the last row per key (its first `key_columns` columns) counts: a key's
    rows come from one subtask, whose part files are read in the order it wrote them."""
    rows = []
    latest = {}
    for base, _, files in os.walk(directory):
        for name in sorted(files, key=part_order):
            if name.endswith(".crc") or name == "_SUCCESS":
                continue
            with open(os.path.join(base, name), newline="") as f:
                parsed = [tuple(normalize(x) for x in r) for r in csv.reader(f) if r]
            if key_columns:
                latest.update((r[:key_columns], r) for r in parsed)
            else:
                rows.extend(parsed)
    rows.extend(latest.values())
    return collections.Counter(rows)


def project(rows, columns):
    """A multiset of rows reduced to `columns`."""
    out = collections.Counter()
    for r, n in rows.items():
        out[tuple(r[i] for i in columns)] += n
    return out


def compare(eddy, flink):
    if eddy == flink:
        return "same", ""
    only_e = list((eddy - flink).elements())[:3]
    only_f = list((flink - eddy).elements())[:3]
    return "DIFFERENT", f"only Eddy: {only_e}; only Flink: {only_f}"


def run_eddy(query, args, inp, output=None, generator=False):
    cmd = [NEXMARK, "run", "--query", query, "-p", str(args.parallelism)]
    cmd += ["--events", str(args.events)] if generator else ["--input", inp]
    if output:
        cmd += ["--output", output]
    return measured(cmd)


def sql_report(out):
    """The job's runtime, from `eddy sql`'s "[INFO] Job … finished in N ms." line."""
    m = re.search(r"finished in (\d+) ms", out)
    if not m:
        raise RuntimeError(f"eddy sql printed no job runtime:\n{out[-2000:]}")
    return {"seconds": int(m.group(1)) / 1000}


def run_eddy_sql(query, args, inp, work, output=None):
    """The query's reference SQL, run by `eddy sql -f` as Flink runs it (flink_nexmark.py)."""
    columns, select = SQL[query]
    connector = (f"'connector' = 'filesystem', 'path' = 'file://{os.path.abspath(output)}', "
                 "'format' = 'csv'" if output else "'connector' = 'blackhole'")
    script = os.path.join(work, f"{query}.sql")
    with open(script, "w") as f:
        f.write(SOURCE.format(path=os.path.abspath(inp)) + ";\n")
        for view in VIEWS:
            f.write(view + ";\n")
        f.write(f"CREATE TABLE sink ({columns}) WITH ({connector});\n")
        f.write(f"INSERT INTO sink {select};\n")
    cmd = [EDDY, "sql", "-D", f"parallelism.default={args.parallelism}", "-f", script]
    return measured(cmd, report=sql_report)


def run_flink(python, query, args, inp, output=None):
    cmd = [python, os.path.join(ROOT, "bench", "flink_nexmark.py"), "--query", query,
           "--input", inp, "--parallelism", str(args.parallelism)]
    if output:
        cmd += ["--output", output]
    return measured(cmd)


def fmt_rate(x):
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def chart(results, path):
    """A bar chart of events/s per query, Eddy beside Flink, as SVG."""
    width, height, left, bottom = 760, 360, 70, 40
    queries = [r["query"] for r in results]
    top = max(max(r["eddy_eps"], r.get("flink_eps") or 0) for r in results) * 1.1
    group = (width - left - 20) / len(queries)
    bar = group * 0.35
    scale = (height - bottom - 30) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
             f'Nexmark events/s, parallelism {results[0]["parallelism"]}, same input</text>']
    for i in range(5):
        y = height - bottom - i * (height - bottom - 30) / 4
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">'
                     f'{fmt_rate(top / 1.1 * 1.1 * i / 4)}</text>')
    for i, r in enumerate(results):
        x = left + i * group + group * 0.12
        for j, (key, color) in enumerate([("eddy_eps", "#1f77b4"), ("flink_eps", "#ff7f0e")]):
            v = r.get(key) or 0
            h = v * scale
            parts.append(f'<rect x="{x + j * bar}" y="{height - bottom - h}" width="{bar - 2}" '
                         f'height="{h}" fill="{color}"/>')
        parts.append(f'<text x="{x + bar}" y="{height - bottom + 16}" text-anchor="middle">'
                     f'{r["query"]}</text>')
    parts.append(f'<rect x="{width - 170}" y="30" width="12" height="12" fill="#1f77b4"/>'
                 f'<text x="{width - 152}" y="40">Eddy</text>'
                 f'<rect x="{width - 100}" y="30" width="12" height="12" fill="#ff7f0e"/>'
                 f'<text x="{width - 82}" y="40">Flink {FLINK_VERSION}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--queries", default=",".join(QUERIES))
    ap.add_argument("--eddy-only", action="store_true",
                    help="skip Flink (checks Eddy's output against the file run only)")
    ap.add_argument("--no-check", action="store_true", help="skip the output comparison runs")
    ap.add_argument("--profile", choices=["release", "debug"], default="release",
                    help="the build of Eddy to run (debug only for smoke runs)")
    ap.add_argument("--work-dir", help="keep the input and outputs here")
    ap.add_argument("--chart", help="write an SVG chart of the results here")
    ap.add_argument("--json", help="write the results as JSON here")
    ap.add_argument("--sql", action="store_true",
                    help=f"also run the reference SQL on Eddy ({', '.join(SQL_QUERIES)})")
    args = ap.parse_args()
    queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    unknown = [q for q in queries if q not in QUERIES]
    if unknown:
        ap.error(f"unknown queries {unknown}; known: {QUERIES}")

    global NEXMARK, EDDY
    NEXMARK = build_eddy(args.profile)
    if args.sql:
        EDDY = build_eddy_cli(args.profile)
    python = None if args.eddy_only else ensure_flink()
    work = args.work_dir or tempfile.mkdtemp(prefix="nexmark-")
    inp = os.path.join(work, "input")
    if not os.path.exists(os.path.join(inp, "_manifest.json")):
        log(f"generating {args.events} events into {inp}")
        subprocess.run([NEXMARK, "generate", "--events", str(args.events), "--files",
                        str(args.parallelism), "--out", inp], check=True)
    size = sum(os.path.getsize(os.path.join(inp, f)) for f in os.listdir(inp))
    cores = os.cpu_count()
    log(f"input: {args.events} events, {size / 2**20:.0f} MiB; parallelism {args.parallelism};"
        f" {cores} cores")

    results = []
    for q in queries:
        r = {"query": q, "parallelism": args.parallelism, "events": args.events}
        log(f"{q}: Eddy")
        rep, peak, cpu = run_eddy(q, args, inp)
        r.update(eddy_eps=args.events / rep["seconds"], eddy_cpu=cpu, eddy_rss=peak)
        rep, peak, cpu = run_eddy(q, args, inp, generator=True)
        r.update(eddy_gen_eps=args.events / rep["seconds"], eddy_gen_rss=peak)
        sql = args.sql and q in SQL_QUERIES
        if sql:
            log(f"{q}: Eddy SQL")
            rep, peak, cpu = run_eddy_sql(q, args, inp, work)
            r.update(sql_eps=args.events / rep["seconds"], sql_cpu=cpu, sql_rss=peak)
        if python:
            log(f"{q}: Flink")
            rep, peak, cpu = run_flink(python, q, args, inp)
            r.update(flink_eps=args.events / rep["seconds"], flink_cpu=cpu, flink_rss=peak)
        if not args.no_check:
            out_e = os.path.join(work, f"eddy-{q}")
            shutil.rmtree(out_e, ignore_errors=True)
            run_eddy(q, args, inp, output=out_e)
            eddy_rows = read_rows(out_e, UPDATING.get(q))
            r["rows"] = sum(eddy_rows.values())
            if sql:
                out_s = os.path.join(work, f"sql-{q}")
                shutil.rmtree(out_s, ignore_errors=True)
                run_eddy_sql(q, args, inp, work, output=out_s)
                # SQL against the DataStream version here; against Flink below, through it.
                r["sql_check"], r["sql_difference"] = compare(read_rows(out_s, None), eddy_rows)
            if python:
                out_f = os.path.join(work, f"flink-{q}")
                shutil.rmtree(out_f, ignore_errors=True)
                log(f"{q}: checking against Flink")
                run_flink(python, q, args, inp, output=out_f)
                flink_rows = read_rows(out_f, UPDATING.get(q))
                if q in COMPARED_COLUMNS:
                    eddy_rows, flink_rows = (project(rows, COMPARED_COLUMNS[q])
                                             for rows in (eddy_rows, flink_rows))
                r["check"], r["difference"] = compare(eddy_rows, flink_rows)
            else:
                r["check"] = "not compared" if r["rows"] else "NO ROWS"
        results.append(r)
        print_row(r, header=len(results) == 1)

    if args.sql:
        print()
        print_sql_table([r for r in results if "sql_eps" in r])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.chart and python:
        chart(results, args.chart)
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    bad = [r["query"] for r in results if r.get("check") in ("DIFFERENT", "NO ROWS")
           or r.get("sql_check") == "DIFFERENT"]
    if bad:
        for r in results:
            if r.get("difference"):
                log(f"{r['query']}: {r['difference']}")
            if r.get("sql_difference"):
                log(f"{r['query']} (SQL against DataStream): {r['sql_difference']}")
        sys.exit(f"outputs differ for {bad}")


def print_row(r, header):
    """One Markdown table row of results (and the header before the first)."""
    p = r["parallelism"]
    cols = ["query", "Eddy ev/s", "Eddy ev/s/core", "Eddy CPU s", "Eddy MiB", "Eddy gen ev/s",
            "Flink ev/s", "Flink ev/s/core", "Flink CPU s", "Flink MiB", "speed ×",
            "memory ÷", "rows", "check"]
    if header:
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---" for _ in cols) + "|")
    f = r.get("flink_eps")
    cells = [
        r["query"],
        fmt_rate(r["eddy_eps"]),
        fmt_rate(r["eddy_eps"] / p),
        f"{r['eddy_cpu']:.1f}",
        f"{r['eddy_rss'] / 2**20:.0f}",
        fmt_rate(r["eddy_gen_eps"]),
        fmt_rate(f) if f else "-",
        fmt_rate(f / p) if f else "-",
        f"{r['flink_cpu']:.1f}" if f else "-",
        f"{r['flink_rss'] / 2**20:.0f}" if f else "-",
        f"{r['eddy_eps'] / f:.1f}" if f else "-",
        f"{r['flink_rss'] / r['eddy_rss']:.0f}" if f else "-",
        str(r.get("rows", "-")),
        r.get("check", "-"),
    ]
    print("| " + " | ".join(cells) + " |", flush=True)


def print_sql_table(results):
    """The SQL runs: Eddy SQL against Eddy's DataStream version and against Flink SQL."""
    cols = ["query", "Eddy SQL ev/s", "Eddy SQL CPU s", "Eddy SQL MiB", "DataStream ev/s",
            "SQL ÷ DataStream", "Flink SQL ev/s", "SQL × Flink", "memory ÷ Flink",
            "SQL = DataStream"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in results:
        f = r.get("flink_eps")
        cells = [
            r["query"],
            fmt_rate(r["sql_eps"]),
            f"{r['sql_cpu']:.1f}",
            f"{r['sql_rss'] / 2**20:.0f}",
            fmt_rate(r["eddy_eps"]),
            f"{r['sql_eps'] / r['eddy_eps']:.2f}",
            fmt_rate(f) if f else "-",
            f"{r['sql_eps'] / f:.1f}" if f else "-",
            f"{r['flink_rss'] / r['sql_rss']:.0f}" if f else "-",
            r.get("sql_check", "-"),
        ]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
