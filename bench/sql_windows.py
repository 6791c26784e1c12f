#!/usr/bin/env python3
"""SQL window aggregations, Eddy against Apache Flink: the same statements (nexmark_sql.py's
WINDOW_QUERIES over the Nexmark bid view), input, parallelism and machine, in one run.

    python3 bench/sql_windows.py --events 2000000

Measurements as in nexmark.py: events/s over the job's runtime, CPU seconds and peak memory of
every process of the run; then both engines' rows are compared.
"""

import argparse
import os
import shutil
import subprocess
import tempfile

import nexmark
from nexmark_sql import WINDOW_QUERIES


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--queries", default=",".join(WINDOW_QUERIES))
    args = ap.parse_args()
    nexmark.NEXMARK = nexmark.build_eddy("release")
    nexmark.EDDY = nexmark.build_eddy_cli("release")
    python = nexmark.ensure_flink()
    work = tempfile.mkdtemp(prefix="sql-windows-")
    inp = os.path.join(work, "input")
    subprocess.run([nexmark.NEXMARK, "generate", "--events", str(args.events), "--files",
                    str(args.parallelism), "--out", inp], check=True, capture_output=True)
    print("| query | Eddy SQL ev/s | Eddy CPU s | Eddy MiB | Flink SQL ev/s | Flink CPU s | "
          "Flink MiB | speed × | memory ÷ | rows | check |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    failed = []
    for q in args.queries.split(","):
        nexmark.log(f"{q}: Eddy SQL")
        rep, e_rss, e_cpu = nexmark.run_eddy_sql(q, args, inp, work)
        e_eps = args.events / rep["seconds"]
        nexmark.log(f"{q}: Flink SQL")
        rep, f_rss, f_cpu = nexmark.run_flink(python, q, args, inp)
        f_eps = args.events / rep["seconds"]
        out_e, out_f = os.path.join(work, f"eddy-{q}"), os.path.join(work, f"flink-{q}")
        nexmark.run_eddy_sql(q, args, inp, work, output=out_e)
        nexmark.run_flink(python, q, args, inp, output=out_f)
        eddy_rows, flink_rows = nexmark.read_rows(out_e, None), nexmark.read_rows(out_f, None)
        check, difference = nexmark.compare(eddy_rows, flink_rows)
        if difference:
            failed.append(f"{q}: {difference}")
        print(f"| {q} | {nexmark.fmt_rate(e_eps)} | {e_cpu:.1f} | {e_rss / 2**20:.0f} | "
              f"{nexmark.fmt_rate(f_eps)} | {f_cpu:.1f} | {f_rss / 2**20:.0f} | "
              f"{e_eps / f_eps:.1f} | {f_rss / e_rss:.0f} | {sum(eddy_rows.values())} | "
              f"{check} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise SystemExit("\n".join(failed))


if __name__ == "__main__":
    main()
