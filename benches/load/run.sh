#!/usr/bin/env bash
# Load test of the B2BUA call path on loopback:
#   SIPp UAC (a trunk's PBX, 127.0.0.1) -> sipfront -> SIPp UAS (the upstream).
# Bounded in calls and time. Prints achieved calls/s, failed calls, sipfront
# CPU ms per call (utime+stime from /proc/PID/stat) and its RSS.
#
# Usage: benches/load/run.sh [RATE_CPS=500] [SECONDS=10] [udp|tcp]
# Env:   SIPFRONT=path/to/binary (default: target/release/sipfront, built if missing)
#        FLOOD_PPS=20000: meanwhile flood sipfront from 127.0.0.5 (junk and
#        unauthenticated INVITEs, flood.py) for the same SECONDS.
#        WEBHOOK=blackhole: [webhooks] call_status_url points at a local TCP
#        listener that accepts and never answers (every event times out);
#        WEBHOOK=ok: at a local receiver answering 200 to every POST;
#        WEBHOOK_URL=URL: the global call-status webhook is URL.
#        MEDIA=relay: the trunk's calls are anchored in an rtpengine the script
#        starts in userspace mode (Debian rtpengine-daemon); prints its CPU too.
#        CLUSTER=redis: sipfront is a fleet node ([cluster]) on a redis-server
#        the script starts (Debian redis-server, unix socket); the trunk gets a
#        channel limit, so every call asks Redis; prints Redis round trips per
#        call and redis-server's CPU.
set -euo pipefail

RATE=${1:-500}
SECS=${2:-10}
TRANSPORT=${3:-udp}
CALLS=$((RATE * SECS))
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${SIPFRONT:-$ROOT/target/release/sipfront}
command -v sipp >/dev/null || { echo "sipp not installed (apt-get install -y sip-tester)" >&2; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin sipfront)

WORK=$(mktemp -d /tmp/sipfront-load.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
SF_PORT=$(free_port); UAS_PORT=$(free_port)
TFLAG=""; [ "$TRANSPORT" = tcp ] && TFLAG="-t t1"

cat > "$WORK/sipfront.toml" <<TOML
[[listen]]
transport = "udp"
address = "127.0.0.1:$SF_PORT"
[[listen]]
transport = "tcp"
address = "127.0.0.1:$SF_PORT"
[http]
address = "127.0.0.1:0"
[[upstream]]
name = "uas"
uri = "sip:127.0.0.1:$UAS_PORT;transport=$TRANSPORT"
ping_interval_s = 0
[rates]
file = "$ROOT/config/rates.csv"
[[trunk]]
id = 1
name = "load"
password = "x"
host_request = "127.0.0.1"
TOML
if [ "${CLUSTER:-}" = redis ]; then
  command -v redis-server >/dev/null || { echo "redis-server not installed (apt-get install -y redis-server)" >&2; exit 1; }
  # Still in [[trunk]]: a limit the load never reaches, checked fleet-wide.
  printf 'channels_restrict = true\nmax_channels = 1000000\n' >> "$WORK/sipfront.toml"
  redis-server --port 0 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 --save "" \
    --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!; PIDS+=("$REDIS_PID")
  for _ in $(seq 50); do [ -S "$WORK/redis.sock" ] && break; sleep 0.1; done
fi
if [ "${MEDIA:-}" = relay ]; then
  RTPE=$(command -v rtpengine || echo /usr/sbin/rtpengine)
  [ -x "$RTPE" ] || { echo "rtpengine not installed (apt-get install -y rtpengine-daemon)" >&2; exit 1; }
  NG_PORT=$(free_port)
  "$RTPE" --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:$NG_PORT --foreground \
    --log-stderr --log-level=4 --delete-delay=0 --config-file=none \
    --pidfile="$WORK/rtpengine.pid" --port-min=30000 --port-max=39999 2>"$WORK/rtpengine.log" &
  RTPE_PID=$!; PIDS+=("$RTPE_PID")
  printf 'media = "relay"\n[media]\nrtpengine = ["127.0.0.1:%s"]\n' "$NG_PORT" >> "$WORK/sipfront.toml"
fi
if [ "${WEBHOOK:-}" = blackhole ]; then
  HOLE_PORT=$(free_port)
  python3 -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(1024); held=[]
while True: held.append(s.accept()[0])' "$HOLE_PORT" &
  PIDS+=("$!")
  WEBHOOK_URL="http://127.0.0.1:$HOLE_PORT/calls"
fi
if [ "${WEBHOOK:-}" = ok ]; then
  HOOK_PORT=$(free_port)
  python3 -c 'import asyncio,sys
async def serve(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            n = next((int(l.split(b":")[1]) for l in head.lower().split(b"\r\n") if l.startswith(b"content-length:")), 0)
            await r.readexactly(n)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    except Exception:
        w.close()
async def main():
    s = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    await s.serve_forever()
asyncio.run(main())' "$HOOK_PORT" &
  PIDS+=("$!")
  WEBHOOK_URL="http://127.0.0.1:$HOOK_PORT/calls"
fi
if [ -n "${WEBHOOK_URL:-}" ]; then
  printf '[webhooks]\ncall_status_url = "%s"\n' "$WEBHOOK_URL" >> "$WORK/sipfront.toml"
fi
if [ -n "${REDIS_PID:-}" ]; then
  HTTP_PORT=$(free_port)
  sed -i "s/^address = \"127.0.0.1:0\"/address = \"127.0.0.1:$HTTP_PORT\"/" "$WORK/sipfront.toml"
  printf '[[http.api_key]]\nname = "load"\nkey = "load"\n[cluster]\nredis = "redis+unix://%s/redis.sock"\nnode = "load-1"\n' \
    "$WORK" >> "$WORK/sipfront.toml"
fi
metric() { { curl -s -H 'Authorization: Bearer load' "http://127.0.0.1:${HTTP_PORT:-0}/metrics" || true; } | awk -v n="$1" '$1 == n {print $2}'; }

(cd "$WORK" && RUST_LOG=warn exec "$BIN" run --config "$WORK/sipfront.toml" 2>"$WORK/sipfront.log") &
SF_PID=$!; PIDS+=("$SF_PID")
for _ in $(seq 100); do grep -q ready "$WORK/sipfront.log" 2>/dev/null && break; sleep 0.1; done
# RUST_LOG=warn hides the ready line: wait for the port instead.
for _ in $(seq 50); do ss -lun 2>/dev/null | grep -q ":$SF_PORT " && break; sleep 0.1; done

(cd "$WORK" && exec sipp -sn uas -i 127.0.0.1 -p "$UAS_PORT" $TFLAG -nostdin -buff_size 4194304 \
   -timeout $((SECS + 40))s >"$WORK/uas.out" 2>&1) &
UAS_PID=$!; PIDS+=("$UAS_PID")
sleep 0.5

TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/${1:-$SF_PID}/stat"; }
if [ -n "${FLOOD_PPS:-}" ]; then
  python3 "$ROOT/benches/load/flood.py" "127.0.0.1:$SF_PORT" "$FLOOD_PPS" "$SECS" >"$WORK/flood.out" 2>&1 &
  PIDS+=("$!")
fi
T0=$(cpu_ticks); START=$(date +%s.%N)
[ -n "${RTPE_PID:-}" ] && R0=$(cpu_ticks "$RTPE_PID")
[ -n "${REDIS_PID:-}" ] && { D0=$(cpu_ticks "$REDIS_PID"); RT0=$(metric sipfront_cluster_redis_round_trips_total); }
set +e
(cd "$WORK" && sipp -sn uac -s 12125551234 -i 127.0.0.1 $TFLAG -r "$RATE" -m "$CALLS" -l $((RATE * 4)) \
   -nostdin -buff_size 4194304 -timeout $((SECS + 30))s -timeout_error -trace_stat -stf "$WORK/stat.csv" \
   "127.0.0.1:$SF_PORT" >"$WORK/uac.out" 2>&1)
RC=$?
set -e
END=$(date +%s.%N); T1=$(cpu_ticks)
[ -n "${RTPE_PID:-}" ] && R1=$(cpu_ticks "$RTPE_PID")
# The calls' ends are written just after their BYE: let the last go out.
[ -n "${REDIS_PID:-}" ] && { sleep 1; D1=$(cpu_ticks "$REDIS_PID"); RT1=$(metric sipfront_cluster_redis_round_trips_total); }
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SF_PID/status")
HWM_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SF_PID/status")

counter() { grep -E "^\s*$1" "$WORK/uac.out" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}'; }
OK=$(counter "Successful call"); FAILED=$(counter "Failed call")
OK=${OK:-0}; FAILED=${FAILED:-unknown}
# INVITE sent to 200 received, as SIPp's uac scenario times it (rtd).
RTD=$(python3 -c 'import csv,sys; r=list(csv.reader(open(sys.argv[1]),delimiter=";")); print(r[-1][r[0].index("ResponseTime1(C)")])' "$WORK/stat.csv" 2>/dev/null || true)
python3 - "$OK" "$FAILED" "$START" "$END" "$T0" "$T1" "$TCK" "$RSS_KB" "$HWM_KB" "$RATE" "$SECS" "$TRANSPORT" "$RC" <<'PY'
import sys
ok, failed, start, end, t0, t1, tck, rss, hwm, rate, secs, tr, rc = sys.argv[1:]
ok = int(ok); wall = float(end) - float(start)
cpu_ms = (int(t1) - int(t0)) * 1000.0 / int(tck)
print(f"target {rate} calls/s for {secs} s over {tr} (sipp uac exit {rc})")
print(f"achieved calls/s : {ok / wall:.0f}  ({ok} successful in {wall:.1f} s)")
print(f"failed calls     : {failed}")
print(f"sipfront CPU     : {cpu_ms:.0f} ms total, {cpu_ms / max(ok, 1):.3f} ms per call")
print(f"sipfront RSS     : {int(rss) / 1024:.1f} MiB now, {int(hwm) / 1024:.1f} MiB peak")
PY
[ -n "${RTD:-}" ] && echo "INVITE to 200    : $RTD (SIPp response time, cumulative average)"
[ -n "${RTPE_PID:-}" ] && echo "rtpengine CPU    : $(( (R1 - R0) * 1000 / TCK )) ms total"
if [ -n "${REDIS_PID:-}" ]; then
  echo "redis-server CPU : $(( (D1 - D0) * 1000 / TCK )) ms total"
  python3 -c 'import sys; rt=int(sys.argv[2])-int(sys.argv[1]); ok=max(int(sys.argv[3]),1); print(f"Redis round trips: {rt} ({rt/ok:.2f} per call; unknown verdicts {sys.argv[4]})")' \
    "${RT0:-0}" "${RT1:-0}" "$OK" "$(metric sipfront_cluster_channel_asks_unknown_total)"
fi
# The webhook dispatcher's warnings (failures are logged at 1, 2, 4, … of them).
[ -n "${WEBHOOK_URL:-}" ] && { grep -h webhook "$WORK/sipfront.log" | tail -1 || true; }
[ -n "${FLOOD_PPS:-}" ] && { wait "${PIDS[-1]}" 2>/dev/null || true; cat "$WORK/flood.out"; }
exit 0
