#!/usr/bin/env bash
# REGISTER with digest over TLS, sipfront beside Kamailio's `tls` module,
# on one certificate (an EC P-256 CA and leaf for `localhost`, made here
# with openssl). Each server gets the same load from
# examples/tls_register_load.rs (Debian's SIPp has no TLS): USERS
# registrations by CONNS concurrent clients, first each client on one
# connection (`reuse`), then a new connection and full handshake per
# registration (`new`). Prints, per server and mode: registrations/s,
# failures and the server's CPU µs per registration (utime+stime of all
# its threads and processes, from /proc), plus the CPU the rest of the
# machine used meanwhile beyond the two (foreign_cpu_pct; over 5 the
# figures are contaminated).
#
# Usage: benches/tls_register/run.sh [USERS=20000] [CONNS=50]
# Env:   SIPFRONT=path (default target/release/sipfront, built if missing)
#        LOAD=path (default target/release/examples/tls_register_load)
#        ONLY=sipfront|kamailio
set -euo pipefail

USERS=${1:-20000}
CONNS=${2:-50}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/benches/tls_register"
BIN=${SIPFRONT:-$ROOT/target/release/sipfront}
LOAD=${LOAD:-$ROOT/target/release/examples/tls_register_load}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin sipfront)
[ -x "$LOAD" ] || (cd "$ROOT" && cargo build --release --example tls_register_load)

WORK=$(mktemp -d /tmp/sipfront-tlsreg.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do ss -ltn | grep -q "127.0.0.1:$1 " && return 0; sleep 0.1; done; return 1; }

# One certificate for both servers.
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=bench CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout key.pem -out leaf.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext.cnf
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile ext.cnf -out cert.pem 2>/dev/null

# Whole-machine CPU ticks (user+nice+system+irq+softirq+steal) from /proc/stat.
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }
TCK=$(getconf CLK_TCK); NCPU=$(nproc)

# run LABEL PORT PID: both modes against one server.
run() {
  local label=$1 port=$2 pid=$3 mode out m0 m1
  for mode in reuse new; do
    m0=$(machine_ticks)
    out=$("$LOAD" "127.0.0.1:$port" localhost ca.pem "$USERS" "$CONNS" "$mode" "$pid" 2>"$WORK/load.err")
    m1=$(machine_ticks)
    # Foreign: what the machine used beyond the server and the load client.
    python3 - "$label" "$out" "$((m1 - m0))" "$TCK" "$NCPU" <<'PY'
import sys
label, out, ticks, tck, ncpu = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
f = dict(kv.split("=", 1) for kv in out.split())
used = ticks / tck - float(f.get("server_cpu_s", 0)) - float(f["client_cpu_s"])
print(f"{label} {out} foreign_cpu_pct={max(used, 0) / (float(f['secs']) * ncpu) * 100:.0f}")
PY
    [ -s "$WORK/load.err" ] && cat "$WORK/load.err"
  done
}

ONLY=${ONLY:-both}
if [ "$ONLY" != kamailio ]; then
  PORT=$(free_port)
  {
    printf '[server]\nrealm = "sipfront.local"\n[registrar]\nkeepalive_s = 0\npersist = false\n'
    printf '[security]\nrate_limit = 0\n'
    printf '[[listen]]\ntransport = "udp"\naddress = "127.0.0.1:0"\n'
    printf '[[listen]]\ntransport = "tls"\naddress = "127.0.0.1:%s"\ncert = "%s/cert.pem"\nkey = "%s/key.pem"\n' \
      "$PORT" "$WORK" "$WORK"
    printf '[http]\naddress = "127.0.0.1:0"\n[store]\npath = "%s/sf.db"\n' "$WORK"
    python3 -c "
import sys
for i in range($USERS):
    print(f'[[trunk]]\nid = {i + 1}\nname = \"u{100000 + i}\"\npassword = \"s3cret\"')"
  } > sipfront.toml
  (RUST_LOG=warn exec "$BIN" run --config sipfront.toml 2>sipfront.log) &
  SF=$!; PIDS+=("$SF")
  wait_port "$PORT" || { cat sipfront.log; exit 1; }
  run sipfront "$PORT" "$SF"
  kill "$SF"; wait "$SF" 2>/dev/null || true
fi

if [ "$ONLY" != sipfront ]; then
  PORT=$(free_port)
  cat > tls.cfg <<CFG
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = $WORK/key.pem
certificate = $WORK/cert.pem
CFG
  kamailio -f "$HERE/kamailio-tls-registrar.cfg" -DD -E -Y "$WORK" -m 1024 -M 16 -x tlsf -X tlsf \
    -A "TLS_PORT=$PORT" -A "TLS_CFG=\"$WORK/tls.cfg\"" >kam.log 2>&1 &
  KAM=$!; PIDS+=("$KAM")
  wait_port "$PORT" || { cat kam.log; exit 1; }
  run kamailio "$PORT" "$KAM"
  # -DD keeps the tree under $KAM; stop each of its processes by PID.
  for p in $(pgrep -P "$KAM" || true); do kill "$p" 2>/dev/null || true; done
  kill "$KAM" 2>/dev/null || true; wait "$KAM" 2>/dev/null || true
fi
