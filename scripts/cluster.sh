#!/usr/bin/env bash
# A local Spark standalone cluster on 127.0.0.1: scripts/cluster.sh start|stop|status [WORKERS]
# Uses the pyspark of the project's venv. Prints the master URL on start.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
RUN=${COS_CLUSTER_DIR:-$ROOT/work/cluster}
WORKERS=${2:-${SPARK_WORKER_INSTANCES:-2}}
CORES=${CORES_PER_WORKER:-1}
MEMORY=${WORKER_MEMORY:-2g}
PORT=${SPARK_MASTER_PORT:-7077}
export SPARK_LOCAL_IP=127.0.0.1 SPARK_MASTER_HOST=127.0.0.1
export PYSPARK_PYTHON=$PY SPARK_HOME=$("$PY" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')
CLASS=$SPARK_HOME/bin/spark-class
MASTER_URL=spark://127.0.0.1:$PORT

start_daemon() {  # name, class, args...
  local name=$1; shift
  mkdir -p "$RUN/logs"
  nohup "$CLASS" "$@" >"$RUN/logs/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

wait_for() {  # pattern, log file
  for _ in $(seq 1 60); do
    grep -q "$1" "$2" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "cluster.sh: timed out waiting for '$1' in $2" >&2
  return 1
}

case "${1:-}" in
  start)
    "$0" stop >/dev/null 2>&1 || true
    start_daemon master org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$PORT" --webui-port 0
    wait_for "Starting Spark master" "$RUN/logs/master.log"
    wait_for "I have been elected leader" "$RUN/logs/master.log"
    for i in $(seq 1 "$WORKERS"); do
      start_daemon "worker$i" org.apache.spark.deploy.worker.Worker --host 127.0.0.1 \
        --cores "$CORES" --memory "$MEMORY" --webui-port 0 --work-dir "$RUN/worker$i" "$MASTER_URL"
    done
    for i in $(seq 1 "$WORKERS"); do
      wait_for "Successfully registered with master" "$RUN/logs/worker$i.log"
    done
    echo "$MASTER_URL"
    ;;
  stop)
    for pidfile in "$RUN"/*.pid; do
      [ -e "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    done
    echo "stopped"
    ;;
  status)
    up=0
    for pidfile in "$RUN"/*.pid; do
      [ -e "$pidfile" ] || continue
      if kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "$(basename "$pidfile" .pid): running"; up=1; fi
    done
    [ $up = 1 ] && echo "$MASTER_URL" || { echo "not running"; exit 3; }
    ;;
  *)
    echo "usage: scripts/cluster.sh start|stop|status [WORKERS]" >&2
    exit 2
    ;;
esac
