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

step "cargo test (unit, integration, examples, doc tests)"
cargo test --workspace --locked

step "all checks passed"
