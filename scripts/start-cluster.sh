#!/usr/bin/env bash
# Starts a local Eddy cluster: one JobManager and N TaskManagers (default 1), in the background,
# each with a pid file and a log file, as Flink's bin/start-cluster.sh does.
#
#   scripts/start-cluster.sh [N] [-D key=value ...]
#
# Configuration: config.yaml in $EDDY_CONF_DIR, then the -D overrides. Logs go to
# $EDDY_LOG_DIR (default ./log), pid files to $EDDY_PID_DIR (default /tmp). The binary is
# $EDDY_BIN, or target/release/eddy (built if missing). Stop with scripts/stop-cluster.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

N=1
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    N=$1
    shift
fi
export EDDY_LOG_DIR="${EDDY_LOG_DIR:-$PWD/log}"
PID_DIR="${EDDY_PID_DIR:-/tmp}"
BIN="${EDDY_BIN:-${CARGO_TARGET_DIR:-target}/release/eddy}"
if [[ ! -x $BIN ]]; then
    cargo build --release -p eddy-cluster --bin eddy
fi
mkdir -p "$EDDY_LOG_DIR" "$PID_DIR"

start() {
    local name=$1
    shift
    local pidfile="$PID_DIR/eddy-$name.pid"
    if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "$name is already running (pid $(cat "$pidfile"))"
        return
    fi
    nohup "$BIN" "$@" >"$EDDY_LOG_DIR/eddy-$name.out" 2>&1 </dev/null &
    echo $! >"$pidfile"
    echo "Started $name (pid $!)"
}

start jobmanager "$@" jobmanager
for i in $(seq 0 $((N - 1))); do
    start "taskmanager-$i" "$@" -D "taskmanager.resource-id=taskmanager-$i" taskmanager \
        --work-dir "/tmp/eddy-taskmanager"
done
