#!/usr/bin/env bash
# tcpstack demo (`make demo`, as root): serve a small site from the userspace stack inside a
# throwaway network namespace, fetch it with curl, check a 10 MB download byte for byte, ping
# the stack, show its access log, stop it. Everything it creates (the namespace, the TUN
# interface in it, the temp dir) is removed on the way out, also on failure or Ctrl-C.
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
    echo "demo: must run as root (it creates a network namespace and a TUN device)" >&2
    exit 1
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=scripts/netns.sh
source "$here/netns.sh"

# `make demo` puts the venv first on PATH; run directly, fall back to the repo's venv.
tcpstack_bin=$(command -v tcpstack || echo "$repo/.venv/bin/tcpstack")
if [[ ! -x $tcpstack_bin ]]; then
    echo "demo: tcpstack not found; run 'make deps' first (or 'make demo')" >&2
    exit 1
fi

NS="tcpstack-demo-$$"
STACK=10.77.0.2
BIG_SIZE=10000000
tmp=""
pid=""
ns_created=0
ok=0

step() { printf '==> %s\n' "$*"; }
fail() {
    printf 'demo FAILED: %s\n' "$*" >&2
    if [[ -n $tmp && -s $tmp/tcpstack.log ]]; then
        echo "--- last lines of tcpstack's log:" >&2
        tail -n 15 "$tmp/tcpstack.log" | sed 's/^/    /' >&2
    fi
    exit 1
}

# Stop tcpstack with SIGTERM (then SIGKILL after 5 s); returns its exit status.
stop_tcpstack() {
    local status=0
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "demo: tcpstack did not stop on SIGTERM within 5 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || status=$?
    pid=""
    return "$status"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_tcpstack || true
    if ((ns_created)); then
        # Safety net: anything still running in our own namespace was started by this script.
        local stray
        for stray in $(ip netns pids "$NS" 2>/dev/null); do
            kill -KILL "$stray" 2>/dev/null || true
        done
        netns_delete "$NS" 2>/dev/null || true
    fi
    [[ -n $tmp ]] && rm -rf "$tmp"
    if ((ok)); then
        echo "demo OK"
    elif ((rc == 0)); then
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo; fail "interrupted"' INT TERM

step "creating network namespace $NS"
netns_create "$NS" || fail "could not create network namespace $NS"
ns_created=1

tmp=$(mktemp -d -t tcpstack-demo.XXXXXX)
site=$tmp/site
mkdir "$site"
step "creating a demo site in $site (index.html and a 10 MB random big.bin)"
cat >"$site/index.html" <<'EOF'
<!doctype html>
<html>
  <head><title>tcpstack demo</title></head>
  <body><h1>Hello from tcpstack!</h1>
    <p>This page came over a userspace TCP/IP stack written in Python, through a TUN device.</p>
  </body>
</html>
EOF
head -c "$BIG_SIZE" /dev/urandom >"$site/big.bin"

step "starting 'tcpstack listen 80 --http $site' inside $NS"
# Not netns_exec: a backgrounded function would leave $! as a subshell's pid, not tcpstack's.
ip netns exec "$NS" "$tcpstack_bin" listen 80 --http "$site" >"$tmp/tcpstack.log" 2>&1 &
pid=$!
waited=0
wait_for_log "$tmp/tcpstack.log" "listening on" 10 "$pid" || waited=$?
case $waited in
    0) ;;
    2) fail "tcpstack exited before it was listening" ;;
    *) fail "tcpstack was not listening after 10 s" ;;
esac
sed -n 's/^tcpstack: //p' "$tmp/tcpstack.log" | sed 's/^/    /'

step "GET http://$STACK/ with curl:"
page=$(netns_exec "$NS" curl -sS --fail --max-time 10 "http://$STACK/") \
    || fail "curl could not fetch http://$STACK/"
printf '%s\n' "$page" | sed 's/^/    /'

step "GET http://$STACK/big.bin (10 MB) with curl"
stats=$(netns_exec "$NS" curl -sS --fail --max-time 30 -o "$tmp/big.download" \
            -w '%{size_download} %{time_total} %{speed_download}' "http://$STACK/big.bin") \
    || fail "curl could not fetch http://$STACK/big.bin"
read -r size secs speed <<<"$stats"
awk -v n="$size" -v t="$secs" -v s="$speed" \
    'BEGIN { printf "    %d bytes in %.2f s: %.0f Mbit/s\n", n, t, s * 8 / 1e6 }'
[[ $size -eq $BIG_SIZE ]] || fail "downloaded $size bytes, expected $BIG_SIZE"

step "comparing sha256 of the download with the original"
want=$(sha256sum <"$site/big.bin" | cut -d' ' -f1)
got=$(sha256sum <"$tmp/big.download" | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "sha256 mismatch: sent $want, received $got"
echo "    sha256 matches: $got"

step "ping $STACK once"
reply=$(netns_exec "$NS" ping -c 1 -W 2 "$STACK" 2>&1) || fail "no ping reply from $STACK"
grep -m1 'bytes from' <<<"$reply" | sed 's/^/    /'

step "tcpstack's access log:"
grep -E '"(GET|HEAD) ' "$tmp/tcpstack.log" | sed 's/^tcpstack: //; s/^/    /' \
    || fail "no access-log lines in tcpstack's log"

step "stopping tcpstack (SIGTERM)"
status=0
stop_tcpstack || status=$?
((status == 0)) || fail "tcpstack exited with status $status"
grep -q 'counters:' "$tmp/tcpstack.log" || fail "tcpstack did not print its counters on exit"
sed -n 's/^tcpstack: \(counters: .*\)/    \1/p' "$tmp/tcpstack.log" | fold -s -w 96 \
    | sed '2,$s/^/    /'
ok=1
