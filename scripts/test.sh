#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, docs, and all tests (unit, integration, doc tests,
# and the examples, which the integration tests run against brute-force oracles).
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds are slow on small machines: reuse one build directory outside the clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/eddy-target}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

# The servers the tests talk to: Postgres on 127.0.0.1:5432 (installed from Debian's packages
# and started when nothing listens there), Apache Kafka's and Apache ZooKeeper's jars from Maven
# Central (each Kafka or high-availability test starts its own servers from them) and Flink's
# CLI from PyPI. See scripts/services.sh.
step "test servers and tools (Postgres, Apache Kafka, Apache ZooKeeper, Apache Flink's CLI)"
source scripts/services.sh
ensure_postgres
ensure_kafka
ensure_zookeeper
ensure_flink
TOOLS="$EDDY_TOOLS"

# The web UI test drives a headless Chromium through chromedriver (Debian's packages).
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    step "installing chromium and chromium-driver (for the web UI test)"
    _apt_install chromium chromium-driver
fi

step "cargo test (unit, integration, examples, doc tests; Kafka and Postgres against real servers)"
cargo test --workspace --locked --no-fail-fast

# Checkpoints on S3 (the `s3` feature) against a real S3-compatible server, s3s-fs.
if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    step "installing s3s-fs (an S3-compatible server) into $TOOLS"
    cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$TOOLS"
fi
step "cargo test --features s3 (checkpoints and savepoints on S3)"
EDDY_S3S_FS="$TOOLS/bin/s3s-fs" cargo test --locked --features s3 --test s3

# The Nexmark harness, Eddy's side, on a small input (the Flink side is too heavy for CI).
step "Nexmark smoke run (every query, Eddy only; the reference SQL of six against the DataStream versions)"
python3 bench/nexmark.py --events 30000 --eddy-only --profile debug --sql

step "all checks passed"
