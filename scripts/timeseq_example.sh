#!/usr/bin/env bash
# Make docs/timeseq-example.png, the time-sequence graph the README shows (as root):
# tcpstack serves a 20 MB file in a throwaway namespace with `--pcap`, curl downloads it,
# and `tcpstack plot` draws the capture with the cwnd trace beside it.
#
#     bash scripts/timeseq_example.sh                 # 1% loss on tcpstack's link (--impair)
#     IMPAIR= bash scripts/timeseq_example.sh         # a clean link
#     OUT=/tmp/x.png SIZE=5000000 bash scripts/timeseq_example.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=scripts/netns.sh
source "$here/netns.sh"
tcpstack_bin=$(command -v tcpstack || echo "$repo/.venv/bin/tcpstack")
IMPAIR=${IMPAIR-loss=1%,seed=7}
SIZE=${SIZE:-20000000}
OUT=${OUT:-$repo/docs/timeseq-example.png}
http_scratch tcpstack-timeseq "$SIZE"
impair=()
[[ -n $IMPAIR ]] && impair=(--impair "$IMPAIR")
ip netns exec "$NS" "$tcpstack_bin" "${impair[@]}" --pcap "$tmp/run.pcap" \
    listen 80 --http "$tmp/www" 2>"$tmp/tcpstack.log" &
pid=$!
wait_for_log "$tmp/tcpstack.log" "listening on" 20 "$pid"
ip netns exec "$NS" curl -sS --noproxy '*' --max-time 120 -o /dev/null http://10.77.0.2/big.bin
kill "$pid"
wait "$pid"
pid=""
"$tcpstack_bin" plot "$tmp/run.pcap" -o "$OUT"
