"""Runs one Nexmark query on Apache Flink (PyFlink's local mini cluster) over the JSON files
written by `nexmark generate`, and prints a JSON line with the job's net runtime.

Used by nexmark.py; run with the Python of the virtual environment that holds apache-flink.
"""

import argparse
import json
import os
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

from nexmark_sql import QUERIES, SOURCE, UPDATING, VIEWS, WINDOW_QUERIES

QUERIES = {**QUERIES, **WINDOW_QUERIES}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--query", required=True, choices=sorted(QUERIES))
    ap.add_argument("--input", required=True)
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--output", help="write the result rows as CSV here (default: blackhole)")
    args = ap.parse_args()

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    # The settings of the reference benchmark's flink-conf.yaml that apply to a local run.
    for key, value in {
        "parallelism.default": str(args.parallelism),
        "pipeline.object-reuse": "true",
        "table.exec.mini-batch.enabled": "true",
        "table.exec.mini-batch.allow-latency": "2 s",
        "table.exec.mini-batch.size": "50000",
        "table.optimizer.distinct-agg.split.enabled": "true",
    }.items():
        conf.set(key, value)

    t_env.execute_sql(SOURCE.format(path=os.path.abspath(args.input)))
    for view in VIEWS:
        t_env.execute_sql(view)
    columns, select = QUERIES[args.query]

    started = time.time()
    if args.output and args.query in UPDATING:
        # The file system sink takes only appends: collect the changelog and keep the last row
        # per key.
        final = {}
        with t_env.sql_query(select).execute().collect() as rows:
            for row in rows:
                kind = str(row.get_row_kind())
                key = tuple(row[i] for i in range(UPDATING[args.query]))
                if kind.endswith("DELETE") or kind.endswith("UPDATE_BEFORE"):
                    final.pop(key, None)
                else:
                    final[key] = row
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, "result.csv"), "w") as f:
            for row in final.values():
                f.write(",".join(str(v) for v in row) + "\n")
        net = time.time() - started
    else:
        connector = (
            f"'connector' = 'filesystem', 'path' = 'file://{os.path.abspath(args.output)}', "
            "'format' = 'csv'"
            if args.output
            else "'connector' = 'blackhole'"
        )
        t_env.execute_sql(f"CREATE TABLE sink ({columns}) WITH ({connector})")
        result = t_env.execute_sql(f"INSERT INTO sink {select}")
        job = result.get_job_client().get_job_execution_result().result()
        net = job.get_net_runtime() / 1000.0
    print(json.dumps({"engine": "flink", "query": args.query, "seconds": net,
                      "wall": time.time() - started}), flush=True)


if __name__ == "__main__":
    main()
