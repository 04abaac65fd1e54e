#!/usr/bin/env bash
# Loss recovery against the kernel's TCP (as root): tcpstack serves a 20 MB file over a link
# that drops 1% of the packets each way (`--impair loss=1%,seed=S`), curl downloads it, and
# each run prints the time the download took and the stack's recovery counters.
#
#     bash scripts/loss_bench.sh                  # seeds 1..9
#     SEEDS="7 8" SIZE=5000000 bash scripts/loss_bench.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
# shellcheck source=scripts/netns.sh
source "$here/netns.sh"
tcpstack_bin=$(command -v tcpstack || echo "$repo/.venv/bin/tcpstack")
SEEDS=${SEEDS:-1 2 3 4 5 6 7 8 9}
SIZE=${SIZE:-20000000}
http_scratch tcpstack-lossbench "$SIZE"
for seed in $SEEDS; do
    ip netns exec "$NS" "$tcpstack_bin" --impair "loss=1%,seed=$seed" \
        listen 80 --http "$tmp/www" 2>"$tmp/tcpstack.log" &
    pid=$!
    wait_for_log "$tmp/tcpstack.log" "listening on" 20 "$pid"
    took=$(ip netns exec "$NS" curl -sS --noproxy '*' --max-time 120 -o /dev/null \
        -w '%{time_total}' http://10.77.0.2/big.bin)
    kill "$pid"
    wait "$pid" || true
    pid=""
    counters=$(grep -o 'counters: .*' "$tmp/tcpstack.log" | tr ' ' '\n' |
        grep -E '^(retrans_segs|rto_timeouts|fast_retransmits|sack_recoveries|lost_retransmits|tlp_probes|rack_losses)=' |
        tr '\n' ' ' || true)
    echo "seed $seed: ${took} s  ${counters}"
done
