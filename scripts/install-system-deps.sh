#!/usr/bin/env bash
# Installs the system tools tcpstack's demo, tests and benchmark drive, only those missing.
set -euo pipefail
# The README's tour uses jq, pv and tcpdump as well (tests/integration/test_readme.py runs it);
# `make bench` drives ab, wrk, nginx (the reference server) and ethtool (veth offloads off);
# ab (apache2-utils) is also the load test's client (tests/integration/test_load.py);
# gcc builds the optional compiled build (`make compiled`, which CI checks).
declare -A pkg_for=( [ip]=iproute2 [curl]=curl [nc]=netcat-openbsd [ping]=iputils-ping [dot]=graphviz
                     [jq]=jq [pv]=pv [tcpdump]=tcpdump [ab]=apache2-utils [wrk]=wrk [nginx]=nginx
                     [ethtool]=ethtool [gcc]=gcc )
missing=()
for tool in "${!pkg_for[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
done
if ((${#missing[@]})); then
    if [[ $EUID -ne 0 ]]; then
        echo "error: missing tools (${missing[*]}); run as root or install them" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # nginx's package starts its service on port 80 of the root namespace unless a policy
    # forbids it (Docker images ship one); the bench runs its own nginx in a namespace.
    policy=/usr/sbin/policy-rc.d
    made_policy=""
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    status=0
    apt-get install -y -qq "${missing[@]}" >/dev/null || status=$?
    [[ -n $made_policy ]] && rm -f "$policy"
    exit "$status"
fi
