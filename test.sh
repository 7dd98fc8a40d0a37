#!/usr/bin/env bash
# The whole sipfront test suite, from a fresh machine: installs what the tests
# need when it is missing (SIPp, baresip), then format, lint, build and every test.
# CI runs this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v baresip >/dev/null 2>&1 || missing+=(baresip)
command -v svmap >/dev/null 2>&1 || missing+=(sipvicious)
command -v kamailio >/dev/null 2>&1 || missing+=(kamailio)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
command -v rtpengine >/dev/null 2>&1 || [ -x /usr/sbin/rtpengine ] || missing+=(rtpengine-daemon)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing ${missing[*]} (SIPp is Debian's sip-tester; baresip is the softphone the registrar test drives; sipvicious the scanner the hardening test runs; kamailio the carrier of tests/carrier.rs; dnsmasq the DNS server the RFC 3263 tests start; rtpengine-daemon the media relay tests/media.rs starts in userspace mode; postgresql the fleet store tests/fleet_pg.rs starts as a throwaway cluster; redis-server the fleet store tests/cluster.rs starts; systemd for systemd-analyze, which tests/service.rs runs on contrib/sipfront.service)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi
for comp in rustfmt clippy; do
    if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
        rustup component add "$comp"
    fi
done

echo "== sipp: $(command -v sipp), baresip: $(command -v baresip), svmap: $(command -v svmap)"
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo build (the binary the integration tests start)"
cargo build --bins
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "== cargo test --doc"
cargo test --doc 2>&1 | tee -a "$log"
echo "== cargo test --all-targets --no-fail-fast"
cargo test --all-targets --no-fail-fast 2>&1 | tee -a "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
