#!/usr/bin/env bash
# A single-node HDFS (one NameNode, one DataNode) on 127.0.0.1 for tests and demos:
#   scripts/hdfs.sh start|stop|status [RUN_DIR]
# `start` and `status` print the hdfs://127.0.0.1:PORT URI as their last line.
# The Hadoop 2.7 jars come from the pyspark 2.4.8 sdist on PyPI, fetched once into
# ${COS_CACHE_DIR:-~/.cache/caffeonspark}/hadoop (`scripts/hdfs.sh fetch` does only that).
# COS_HDFS_OWNER_PID=<pid>: stop the daemons by themselves once that process has exited.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=python3
CACHE=${COS_CACHE_DIR:-$HOME/.cache/caffeonspark}/hadoop
JARS=$CACHE/jars
RUN=${2:-${COS_HDFS_DIR:-/tmp/cos-hdfs-${USER:-$(id -un)}}}
case "$RUN" in /*) ;; *) RUN=$PWD/$RUN ;; esac
WAIT_S=${COS_HDFS_WAIT_S:-120}
# a small test HDFS: little heap, quick JIT and one GC thread start faster on a busy machine
read -r -a JAVA_OPTS <<<"${COS_HDFS_JAVA_OPTS:--Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC}"
NN_CLASS=org.apache.hadoop.hdfs.server.namenode.NameNode
DN_CLASS=org.apache.hadoop.hdfs.server.datanode.DataNode

fail() { echo "hdfs.sh: $*" >&2; exit 1; }

fetch() {  # download the sdist once, keep only its deps/jars; safe to run concurrently
  [ -e "$JARS/.complete" ] && return 0
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock -w 900 9 || fail "timed out waiting for another fetch (lock $CACHE/.lock)"
  if [ ! -e "$JARS/.complete" ]; then
    local tmp
    tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
    echo "hdfs.sh: fetching the Hadoop 2.7 jars (pyspark 2.4.8 sdist, ~220 MB) into $CACHE" >&2
    # its setup.py fails under build isolation, so the fetching Python needs setuptools+wheel
    "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        pyspark==2.4.8 -d "$tmp" >&2 \
        || { rm -rf "$tmp"; fail "pip download of pyspark==2.4.8 failed"; }
    tar -xzf "$tmp/pyspark-2.4.8.tar.gz" -C "$tmp" pyspark-2.4.8/deps/jars \
        || { rm -rf "$tmp"; fail "cannot extract deps/jars from $tmp/pyspark-2.4.8.tar.gz"; }
    rm -rf "$JARS"
    mv "$tmp/pyspark-2.4.8/deps/jars" "$JARS"
    touch "$JARS/.complete"
    rm -rf "$tmp"
  fi
  exec 9>&-
}

free_ports() {  # N free TCP ports on 127.0.0.1, one per line; the first is $2 if it is free
  "$PY" - "$1" "${2:-0}" <<'EOF'
import socket, sys
count, preferred = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(count):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", preferred if i == 0 else 0))
    except OSError:
        s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }

write_conf() {  # config files under $RUN/conf; the NameNode keeps its port when it can
  local ports previous=""
  if [ -e "$RUN/conf/core-site.xml" ]; then previous=$(uri | sed 's/.*://'); fi
  mapfile -t ports < <(free_ports 5 "${COS_HDFS_PORT:-$previous}")
  if [ -n "${COS_HDFS_PORT:-}" ] && [ "${ports[0]}" != "$COS_HDFS_PORT" ]; then
    fail "COS_HDFS_PORT=$COS_HDFS_PORT: port already in use on 127.0.0.1"
  fi
  # the jars lack Hadoop's web apps; empty folders let the HTTP servers (JMX) start
  mkdir -p "$RUN/conf/webapps/hdfs" "$RUN/conf/webapps/datanode" "$RUN/logs"
  { echo '<?xml version="1.0"?><configuration>'
    prop fs.defaultFS "hdfs://127.0.0.1:${ports[0]}"
    prop hadoop.tmp.dir "$RUN/tmp"
    echo '</configuration>'; } >"$RUN/conf/core-site.xml"
  { echo '<?xml version="1.0"?><configuration>'
    prop dfs.namenode.name.dir "file://$RUN/name"
    prop dfs.datanode.data.dir "file://$RUN/data"
    prop dfs.replication 1
    prop dfs.permissions.enabled false
    prop dfs.webhdfs.enabled false
    prop dfs.namenode.safemode.extension 0
    prop dfs.namenode.datanode.registration.ip-hostname-check false
    prop dfs.namenode.http-address "127.0.0.1:${ports[1]}"
    prop dfs.datanode.address "127.0.0.1:${ports[2]}"
    prop dfs.datanode.http.address "127.0.0.1:${ports[3]}"
    prop dfs.datanode.ipc.address "127.0.0.1:${ports[4]}"
    prop dfs.datanode.hostname 127.0.0.1
    prop dfs.heartbeat.interval 1
    echo '</configuration>'; } >"$RUN/conf/hdfs-site.xml"
  cat >"$RUN/conf/log4j.properties" <<'EOF'
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{yy/MM/dd HH:mm:ss} %p %c{2}: %m%n
EOF
}

conf_value() {  # the value of property $1 in $RUN/conf/*-site.xml
  grep -ho "<name>$1</name><value>[^<]*" "$RUN"/conf/*-site.xml | sed 's/.*<value>//'
}

uri() { conf_value fs.defaultFS; }

java_run() {  # class, args... (foreground)
  (cd "$RUN" && java "${JAVA_OPTS[@]}" -Djava.net.preferIPv4Stack=true \
      -Dhadoop.log.dir="$RUN/logs" -cp "$RUN/conf:$JARS/*" "$@")
}

start_daemon() {  # name, class; the pid file holds the java pid (the subshell execs it)
  (cd "$RUN" && exec nohup java "${JAVA_OPTS[@]}" -Djava.net.preferIPv4Stack=true \
      -Dhadoop.log.dir="$RUN/logs" -cp "$RUN/conf:$JARS/*" "$2") \
    >"$RUN/logs/$1.log" 2>&1 </dev/null &
  echo $! >"$RUN/$1.pid"
}

alive() { [ -e "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

nn_state() {  # "<safemode text>|<live datanodes>" from the NameNode's JMX servlet
  local bean=Hadoop:service=NameNode,name=NameNodeInfo
  curl -sf --max-time 2 "http://$(conf_value dfs.namenode.http-address)/jmx?qry=$bean" \
    | "$PY" -c 'import json, sys
bean = json.load(sys.stdin)["beans"][0]
print(bean.get("Safemode", "?") + "|" + str(len(json.loads(bean.get("LiveNodes", "{}")))))' \
    2>/dev/null || true
}

log_tails() {
  for name in namenode datanode; do
    [ -e "$RUN/logs/$name.log" ] || continue
    echo "---- last lines of $RUN/logs/$name.log" >&2
    tail -n 25 "$RUN/logs/$name.log" | cut -c1-300 >&2
  done
}

wait_ready() {  # until safe mode is off and one DataNode is live, at most $WAIT_S seconds
  local deadline=$((SECONDS + WAIT_S)) state=""
  while [ $SECONDS -lt $deadline ]; do
    for name in namenode datanode; do
      if ! alive "$name"; then
        log_tails
        echo "hdfs.sh: the $name exited during start (logs above, in $RUN/logs)" >&2
        return 1
      fi
    done
    state=$(nn_state)
    case "$state" in
      "|"[1-9]*) return 0 ;;
    esac
    sleep 0.5
  done
  log_tails
  echo "hdfs.sh: HDFS not ready after ${WAIT_S}s (NameNode safe mode|live datanodes:" \
       "'${state:-no answer}'; logs in $RUN/logs)" >&2
  return 1
}

stop_daemons() {
  for name in datanode namenode; do
    [ -e "$RUN/$name.pid" ] || continue
    pid=$(cat "$RUN/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
  done
}

stop_all() {
  if [ -e "$RUN/watch.pid" ]; then
    kill "$(cat "$RUN/watch.pid")" 2>/dev/null || true
    rm -f "$RUN/watch.pid"
  fi
  stop_daemons
}

watch_owner() {  # stop the daemons once process $1 (e.g. a test session) is gone
  local owner=$1
  (while kill -0 "$owner" 2>/dev/null && alive namenode; do sleep 2; done
   stop_daemons; rm -f "$RUN/watch.pid") >/dev/null 2>&1 </dev/null &
  echo $! >"$RUN/watch.pid"
}

case "${1:-}" in
  fetch)
    fetch
    echo "$JARS"
    ;;
  start)
    if alive namenode && alive datanode; then
      wait_ready || exit 1
      uri
      exit 0
    fi
    stop_all
    fetch
    mkdir -p "$RUN"
    write_conf
    if [ ! -e "$RUN/name/current/VERSION" ]; then
      if ! java_run "$NN_CLASS" -format -nonInteractive >"$RUN/logs/format.log" 2>&1; then
        tail -n 25 "$RUN/logs/format.log" | cut -c1-300 >&2
        fail "NameNode format failed (log: $RUN/logs/format.log)"
      fi
    fi
    start_daemon namenode "$NN_CLASS"
    start_daemon datanode "$DN_CLASS"
    [ -z "${COS_HDFS_OWNER_PID:-}" ] || watch_owner "$COS_HDFS_OWNER_PID"
    if ! wait_ready; then
      stop_all
      exit 1
    fi
    uri
    ;;
  stop)
    stop_all
    echo "stopped"
    ;;
  status)
    if alive namenode && alive datanode; then
      echo "namenode: running (pid $(cat "$RUN/namenode.pid"))"
      echo "datanode: running (pid $(cat "$RUN/datanode.pid"))"
      state=$(nn_state)
      if [ -z "$state" ]; then
        echo "namenode: no answer on http://$(conf_value dfs.namenode.http-address)/jmx"
      else
        safemode=${state%%|*}
        echo "safe mode: ${safemode:-off}, live datanodes: ${state##*|}"
      fi
      uri
    else
      echo "not running"
      exit 3
    fi
    ;;
  *)
    echo "usage: scripts/hdfs.sh start|stop|status|fetch [RUN_DIR]" >&2
    exit 2
    ;;
esac
