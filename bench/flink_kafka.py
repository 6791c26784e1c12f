"""Runs one of the connector pipelines of bench/kafka.py on Apache Flink (PyFlink's local mini
cluster, Flink SQL with Flink's Kafka and JDBC connectors) over the topic `bench-in`, and
prints a JSON line with the job's net runtime.

Used by kafka.py; run with the Python of the virtual environment that holds apache-flink.
"""

import argparse
import json
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

SOURCE = """
CREATE TABLE events (
    event_id STRING,
    user_name STRING,
    location STRING,
    amount DOUBLE
) WITH (
    'connector' = 'kafka',
    'topic' = 'bench-in',
    'properties.bootstrap.servers' = '{brokers}',
    'properties.group.id' = 'flink-bench',
    'scan.startup.mode' = 'earliest-offset',
    'scan.bounded.mode' = 'latest-offset',
    'format' = 'json'
)
"""

KAFKA_SINK = """
CREATE TABLE sink (v STRING) WITH (
    'connector' = 'kafka',
    'topic' = '{topic}',
    'properties.bootstrap.servers' = '{brokers}',
    'format' = 'raw',
    'sink.delivery-guarantee' = '{guarantee}',
    'sink.transactional-id-prefix' = '{topic}',
    'properties.transaction.timeout.ms' = '60000'
)
"""

POSTGRES_SINK = """
CREATE TABLE sink (
    event_id STRING,
    user_name STRING,
    location STRING,
    PRIMARY KEY (event_id) NOT ENFORCED
) WITH (
    'connector' = 'jdbc',
    'url' = '{url}',
    'table-name' = '{table}',
    'sink.buffer-flush.max-rows' = '5000'
)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", required=True,
                    choices=["kafka-at-least-once", "kafka-exactly-once", "postgres-upsert"])
    ap.add_argument("--bootstrap-servers", required=True)
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--jars", required=True, help="connector jars, separated by ';'")
    ap.add_argument("--topic", help="the output topic")
    ap.add_argument("--jdbc-url", help="the Postgres JDBC URL")
    ap.add_argument("--table", help="the Postgres table")
    args = ap.parse_args()

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    for key, value in {
        "parallelism.default": str(args.parallelism),
        "pipeline.jars": ";".join(f"file://{j}" for j in args.jars.split(";")),
        "execution.checkpointing.interval": "1 s",
        "pipeline.object-reuse": "true",
        # Upserts straight into Postgres, as Eddy's sink does: no ON CONFLICT clause (Flink
        # 2.3 asks for one when an append-only query feeds a sink with a primary key) and no
        # materializing operator in front of the sink.
        "table.exec.sink.require-on-conflict": "false",
        "table.exec.sink.upsert-materialize": "NONE",
    }.items():
        conf.set(key, value)

    t_env.execute_sql(SOURCE.format(brokers=args.bootstrap_servers))
    if args.pipeline.startswith("kafka"):
        guarantee = args.pipeline.removeprefix("kafka-")
        t_env.execute_sql(KAFKA_SINK.format(topic=args.topic, brokers=args.bootstrap_servers,
                                            guarantee=guarantee))
        insert = ("INSERT INTO sink SELECT CONCAT(event_id, ',', user_name, ',', location) "
                  "FROM events")
    else:
        t_env.execute_sql(POSTGRES_SINK.format(url=args.jdbc_url, table=args.table))
        insert = "INSERT INTO sink SELECT event_id, user_name, location FROM events"

    started = time.time()
    job = t_env.execute_sql(insert).get_job_client().get_job_execution_result().result()
    print(json.dumps({"engine": "flink", "pipeline": args.pipeline,
                      "seconds": job.get_net_runtime() / 1000.0,
                      "wall": time.time() - started}), flush=True)


if __name__ == "__main__":
    main()
