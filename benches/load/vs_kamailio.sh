#!/usr/bin/env bash
# Maximum calls/s side by side: sipfront `workers = 1` and `2`, then Kamailio with
# 4 workers, plain relaying over an IP trunk (the shared harness's uac-rr.xml), one
# bounded run each (CALLS at RATE, loopback). Prints bench.sh's line per proxy.
# usage: benches/load/vs_kamailio.sh RATE CALLS
# Env: BENCH=dir of the shared harness (default ../shared/bench beside the repo),
#      SIPFRONT=binary (default target/release/sipfront). Needs kamailio and sipp.
set -u
RATE=$1; CALLS=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
[ -x "$BENCH/bench.sh" ] || { echo "no bench.sh in $BENCH (set BENCH)" >&2; exit 1; }
BIN=${SIPFRONT:-$ROOT/target/release/sipfront}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin sipfront)
# bench.sh writes runs/ beside itself: work on a copy.
B=$(mktemp -d /tmp/sipfront-vs.XXXXXX); cp -r "$BENCH"/. "$B"; cd "$B"
export SIPP_EXTRA="-s 12125550199"
for w in 1 2; do
  d=$(mktemp -d)
  cat > $d/sf.toml <<T
[server]
workers = $w
[[listen]]
transport = "udp"
address = "127.0.0.1:15060"
[http]
address = "127.0.0.1:0"
[security]
rate_limit = 0
[store]
path = "$d/sf.db"
[[upstream]]
name = "uas"
uri = "sip:127.0.0.1:15080;transport=udp"
ping_interval_s = 0
[rates]
file = "$ROOT/config/rates.csv"
[[trunk]]
id = 1
name = "trunk1"
password = "s3cret"
host_request = "127.0.0.1"
[[http.api_key]]
name = "b"
key = "bench-key-0123456789"
T
  RUST_LOG=warn $BIN run --config $d/sf.toml 2>$d/log &
  pid=$!; sleep 1.5
  NOWAIT=${NOWAIT:-} PROXY_PID=$pid ./bench.sh sipfront-w$w 15060 $RATE $CALLS 0 uac-rr.xml
  kill $pid; wait $pid 2>/dev/null; rm -rf $d
done
./kam-start.sh 4 >/dev/null
PROXY_PID=$(cat kam.pid) NOWAIT=${NOWAIT:-} ./bench.sh kamailio-4 15060 $RATE $CALLS 0 uac-rr.xml
./kam-stop.sh >/dev/null 2>&1
