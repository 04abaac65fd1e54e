# Network-namespace helpers for tcpstack's scripts. Source this file, don't run it:
#
#     source scripts/netns.sh
#     netns_create demo-42                       # new namespace, loopback up
#     netns_exec demo-42 ip addr                 # run a command inside it
#     wait_for_log tcpstack.log "listening on" 10 "$pid"   # poll a log, bounded
#     netns_delete demo-42                       # remove it (no error if already gone)
#
# All of them need root (or CAP_NET_ADMIN + CAP_SYS_ADMIN). Nothing here touches the
# root namespace's interfaces, addresses or routes.

# netns_create NAME: add namespace NAME and bring its loopback up.
netns_create() {
    local name=$1
    ip netns add "$name" || return
    ip -n "$name" link set lo up || { ip netns delete "$name"; return 1; }
}

# netns_delete NAME: delete namespace NAME if it exists. Interfaces inside it (a TUN, a veth)
# go with it; processes still running in it keep it alive, so stop those first.
netns_delete() {
    local name=$1
    if ip netns list | awk '{print $1}' | grep -qxF -- "$name"; then
        ip netns delete "$name"
    fi
}

# netns_exec NAME CMD [ARGS...]: run CMD inside namespace NAME. To start a background process
# whose pid you need, write "ip netns exec NAME CMD &" instead: a backgrounded shell function
# runs in a subshell, so $! would be that subshell's pid, not CMD's (ip netns exec itself execs
# into CMD, so there $! is CMD's own pid).
netns_exec() {
    local name=$1
    shift
    ip netns exec "$name" "$@"
}

# wait_for_log FILE PATTERN TIMEOUT [PID]: wait until FILE has a line matching PATTERN (grep -E),
# for at most TIMEOUT seconds. Returns 0 once it matches, 1 on timeout, 2 as soon as the optional
# PID has exited without the line showing up (no point waiting for a dead process).
wait_for_log() {
    local file=$1 pattern=$2 timeout=$3 pid=${4:-}
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if [[ -f $file ]] && grep -qE -- "$pattern" "$file"; then
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            grep -qE -- "$pattern" "$file" 2>/dev/null && return 0
            return 2
        fi
        sleep 0.1
    done
    return 1
}

# http_scratch PREFIX SIZE: for a script that serves a file from a throwaway namespace. Sets NS
# (PREFIX-<pid>, created, loopback up), tmp (a temp folder holding www/big.bin, SIZE random
# bytes) and pid (empty: store the server's pid there), and on exit stops $pid and removes
# both.
http_scratch() {
    NS="$1-$$"
    tmp=$(mktemp -d)
    pid=""
    trap _http_scratch_cleanup EXIT
    mkdir "$tmp/www"
    head -c "$2" /dev/urandom >"$tmp/www/big.bin"
    netns_create "$NS"
}

_http_scratch_cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    netns_delete "$NS" || true
    rm -rf "$tmp"
}
