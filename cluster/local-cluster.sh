#!/usr/bin/env bash
# A two-node Ray cluster and an MLflow tracking server on this machine, loopback only.
#
#   cluster/local-cluster.sh start    # Ray head + one Ray worker node + mlflow server
#   cluster/local-cluster.sh status   # which of them run, and the addresses to use
#   cluster/local-cluster.sh stop     # stop exactly the processes that `start` recorded
#
# Every service runs in its own session; its pid (= session id) goes to $STATE/pids/. `stop`
# signals those sessions only (SIGTERM, then SIGKILL after a grace period), never by name.
# `start` writes $STATE/cluster.env (RAY_ADDRESS, RAY_DASHBOARD, MLFLOW_TRACKING_URI, ...);
# `source` it, or read it, to reach the cluster.
#
# Settings, from the environment:
#   LOCAL_CLUSTER_DIR  state directory: pids, ports, logs, Ray temp dirs, MLflow store
#                      (default cluster/.state; keep it short, Ray puts unix sockets under it)
#   PYTHON             Python with the project installed (default .venv/bin/python, else python3)
#   HEAD_CPUS          CPUs the head node offers to trials (default 1)
#   WORKER_CPUS        CPUs of the worker node (default 1)
#   WORKER_GPUS        GPUs of the worker node (default 0)
#   OBJECT_STORE_BYTES object store per node (default 200000000)
#   RAY_PORT DASHBOARD_PORT MLFLOW_PORT   fixed ports (default: free ports picked at start)
#   START_TIMEOUT      seconds to wait for each service (default 120)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${LOCAL_CLUSTER_DIR:-$ROOT/cluster/.state}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
PYBIN="$(dirname "$(command -v "$PYTHON")")"
RAY="$PYBIN/ray"
HEAD_CPUS="${HEAD_CPUS:-1}"
WORKER_CPUS="${WORKER_CPUS:-1}"
WORKER_GPUS="${WORKER_GPUS:-0}"
OBJECT_STORE_BYTES="${OBJECT_STORE_BYTES:-200000000}"
START_TIMEOUT="${START_TIMEOUT:-120}"
SERVICES=(mlflow head worker)  # start order; stop goes in reverse

die() { echo "local-cluster: $*" >&2; exit 1; }
pidfile() { echo "$STATE/pids/$1.pid"; }

# The recorded pid of a service if that process still runs and is the one we started.
live_pid() {
    local file pid
    file="$(pidfile "$1")"
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    # a recycled pid would not carry our state directory in its command line
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$STATE" || return 1
    echo "$pid"
}

# Processes still in the session led by $1 (the service and everything it started).
session_members() { ps -e -o pid=,sid= | awk -v s="$1" '$2 == s {print $1}'; }

stop_service() {
    local name="$1" pid waited=0
    if ! pid="$(live_pid "$name")"; then
        rm -f "$(pidfile "$name")"
        return 0
    fi
    echo "local-cluster: stopping $name (session $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    while [[ -n "$(session_members "$pid")" && $waited -lt 20 ]]; do
        sleep 0.5
        waited=$((waited + 1))
    done
    if [[ -n "$(session_members "$pid")" ]]; then
        echo "local-cluster: $name did not stop in 10 s, sending SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || true
        for member in $(session_members "$pid"); do kill -KILL "$member" 2>/dev/null || true; done
    fi
    rm -f "$(pidfile "$name")"
}

stop_all() {
    local i
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_service "${SERVICES[$i]}"; done
}

# Start "$@" as a session leader with its output in $STATE/logs/$name.log; record its pid.
launch() {
    local name="$1"
    shift
    setsid "$@" > "$STATE/logs/$name.log" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid" > "$(pidfile "$name")"
    sleep 0.2
    if [[ "$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ')" != "$pid" ]]; then
        die "$name (pid $pid) is not running in its own session; see $STATE/logs/$name.log"
    fi
}

free_ports() {
    "$PYTHON" - "$1" <<'EOF'
import socket
import sys

sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

# Wait until $2 answers 200 (with the Ray token as bearer, which MLflow ignores).
wait_http() {
    local name="$1" url="$2" waited=0
    local probe="import urllib.request as u, pathlib, sys
token = pathlib.Path(sys.argv[2]).read_text().strip()
u.urlopen(u.Request(sys.argv[1], headers={'Authorization': 'Bearer ' + token}), timeout=5)"
    until "$PYTHON" -c "$probe" "$url" "$RAY_AUTH_TOKEN_PATH" 2>/dev/null; do
        live_pid "$name" > /dev/null || fail_start "$name exited during start"
        [[ $waited -lt $START_TIMEOUT ]] || fail_start "$name not ready after ${START_TIMEOUT}s"
        sleep 1
        waited=$((waited + 1))
    done
}

# Wait until the cluster reports $1 alive nodes.
wait_nodes() {
    "$PYTHON" - "$1" "$RAY_DASHBOARD" "$START_TIMEOUT" <<'EOF' || fail_start "Ray nodes did not join"
import sys
import time

from ray.util.state import list_nodes

wanted, address, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
deadline = time.time() + timeout
while True:
    try:
        alive = list_nodes(address=address, filters=[("state", "=", "ALIVE")], timeout=10)
    except Exception:  # the dashboard is still starting
        alive = []
    if len(alive) >= wanted:
        sys.exit(0)
    if time.time() > deadline:
        print(f"{len(alive)} of {wanted} Ray nodes alive after {timeout:.0f}s", file=sys.stderr)
        sys.exit(1)
    time.sleep(1)
EOF
}

fail_start() {
    echo "local-cluster: start failed: $*" >&2
    for name in "${SERVICES[@]}"; do
        [[ -s "$STATE/logs/$name.log" ]] || continue
        echo "--- last lines of $STATE/logs/$name.log" >&2
        tail -n 15 "$STATE/logs/$name.log" >&2
    done
    stop_all
    exit 1
}

cmd_start() {
    local name
    for name in "${SERVICES[@]}"; do
        if live_pid "$name" > /dev/null; then
            die "already running ($name); see \`$0 status\` or run \`$0 stop\` first"
        fi
    done
    [[ -x "$RAY" ]] || die "no ray executable next to $PYTHON (set PYTHON to the project's Python)"
    mkdir -p "$STATE/pids" "$STATE/logs" "$STATE/mlflow/artifacts"
    # 8 free ports: GCS, dashboard, MLflow, Ray client server, 2 dashboard agents, 2 metrics
    read -r -a ports <<< "$(free_ports 8)"
    RAY_PORT="${RAY_PORT:-${ports[0]}}"
    DASHBOARD_PORT="${DASHBOARD_PORT:-${ports[1]}}"
    MLFLOW_PORT="${MLFLOW_PORT:-${ports[2]}}"
    RAY_DASHBOARD="http://127.0.0.1:$DASHBOARD_PORT"
    MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT"

    # Ray token authentication with this cluster's own token: every client needs
    # RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (both in cluster.env).
    RAY_AUTH_TOKEN_PATH="$STATE/ray_auth_token"
    (umask 077 && "$PYTHON" -c "import secrets; print(secrets.token_hex(32))" \
        > "$RAY_AUTH_TOKEN_PATH")
    # The nodes find the venv's python / normstudy (job entrypoints) and the tracking server
    # through their environment, as the cluster configs in cluster/ do on real clusters.
    export PATH="$PYBIN:$PATH" MLFLOW_TRACKING_URI RAY_USAGE_STATS_ENABLED=0 \
        RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH

    # no background GenAI job workers (7 processes MLflow would otherwise start)
    launch mlflow env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$PYTHON" -m mlflow server \
        --backend-store-uri "sqlite:///$STATE/mlflow/mlflow.db" \
        --artifacts-destination "$STATE/mlflow/artifacts" \
        --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1
    launch head "$RAY" start --head --block --disable-usage-stats \
        --node-ip-address 127.0.0.1 --port "$RAY_PORT" \
        --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
        --ray-client-server-port "${ports[3]}" \
        --dashboard-agent-listen-port "${ports[4]}" --metrics-export-port "${ports[6]}" \
        --num-cpus "$HEAD_CPUS" --num-gpus 0 --object-store-memory "$OBJECT_STORE_BYTES" \
        --min-worker-port 0 --max-worker-port 0 --temp-dir "$STATE/ray"
    wait_http mlflow "$MLFLOW_TRACKING_URI/health"
    wait_http head "$RAY_DASHBOARD/api/version"
    launch worker "$RAY" start --block --disable-usage-stats \
        --address "127.0.0.1:$RAY_PORT" --node-ip-address 127.0.0.1 \
        --dashboard-agent-listen-port "${ports[5]}" --metrics-export-port "${ports[7]}" \
        --num-cpus "$WORKER_CPUS" --num-gpus "$WORKER_GPUS" \
        --object-store-memory "$OBJECT_STORE_BYTES" \
        --min-worker-port 0 --max-worker-port 0 --temp-dir "$STATE/ray-worker"
    wait_nodes 2

    cat > "$STATE/cluster.env" <<EOF
export RAY_ADDRESS=127.0.0.1:$RAY_PORT
export RAY_DASHBOARD=$RAY_DASHBOARD
export RAY_CLIENT=ray://127.0.0.1:${ports[3]}
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH
export MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI
export HEAD_PID=$(cat "$(pidfile head)")
export WORKER_PID=$(cat "$(pidfile worker)")
export MLFLOW_PID=$(cat "$(pidfile mlflow)")
EOF
    cmd_status
}

cmd_status() {
    local name pid running=0
    for name in "${SERVICES[@]}"; do
        if pid="$(live_pid "$name")"; then
            echo "$name: running (pid $pid)"
            running=$((running + 1))
        else
            echo "$name: stopped"
        fi
    done
    if [[ $running -gt 0 && -f "$STATE/cluster.env" ]]; then
        # shellcheck disable=SC1091
        source "$STATE/cluster.env"
        echo
        echo "Ray:        normstudy run SPEC --address $RAY_ADDRESS --tracking-uri $MLFLOW_TRACKING_URI"
        echo "Ray jobs:   normstudy submit SPEC --address $RAY_DASHBOARD --storage /abs/path"
        echo "dashboard:  $RAY_DASHBOARD"
        echo "MLflow UI:  $MLFLOW_TRACKING_URI"
        echo "state:      $STATE (logs in $STATE/logs)"
    fi
    [[ $running -eq ${#SERVICES[@]} ]]
}

case "${1:-}" in
    start) cmd_start ;;
    stop) stop_all; rm -f "$STATE/cluster.env" ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
