#!/usr/bin/env bash
# Installs the system tools tcpstack's demo, tests and benchmark drive, only those missing.
set -euo pipefail
# The README's tour uses jq, pv and tcpdump as well (tests/integration/test_readme.py runs it).
# ab (apache2-utils) is the load test's client (tests/integration/test_load.py).
declare -A pkg_for=( [ip]=iproute2 [curl]=curl [nc]=netcat-openbsd [ping]=iputils-ping [dot]=graphviz
                     [jq]=jq [pv]=pv [tcpdump]=tcpdump [ab]=apache2-utils )
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
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
