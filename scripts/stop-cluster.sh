#!/usr/bin/env bash
# Stops the JobManager and TaskManagers started by scripts/start-cluster.sh.
set -euo pipefail
PID_DIR="${EDDY_PID_DIR:-/tmp}"
shopt -s nullglob
for pidfile in "$PID_DIR"/eddy-taskmanager-*.pid "$PID_DIR"/eddy-jobmanager.pid; do
    name=$(basename "$pidfile" .pid)
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        echo "Stopped ${name#eddy-} (pid $pid)"
    fi
    rm -f "$pidfile"
done
