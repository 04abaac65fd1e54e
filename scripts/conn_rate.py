#!/usr/bin/env python3
"""New connections per second: `ab -n N -c C` fetching a 100-byte file over HTTP/1.0 (one
connection per request), from tcpstack with 1 and with 2 workers and from the same HTTP
application (tcpstack's services/http.py) on the kernel's own TCP over a veth pair.

Runs interleaved (kernel, 1 worker, 2 workers, then again), prints each run, the medians,
and the CPU seconds the stack's processes spent per 1000 connections (utime + stime from
/proc/PID/stat, the supervisor and every worker). As root:

    .venv/bin/python scripts/conn_rate.py [--runs 3] [--requests 5000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TCPSTACK = Path(sys.executable).parent / "tcpstack"
CLK_TCK = os.sysconf("SC_CLK_TCK")
KERNEL_APP = """
import asyncio, logging, sys
from pathlib import Path
from tcpstack.services.http import file_server
logging.getLogger("tcpstack").setLevel(logging.WARNING)
async def main():
    server = await asyncio.start_server(file_server(Path(sys.argv[1])), "10.78.0.1", 80,
                                        backlog=4096)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def ab(ns: str, url: str, requests: int, concurrency: int) -> float:
    out = sh("ip", "netns", "exec", ns, "ab", "-q", "-n", str(requests), "-c",
             str(concurrency), url).stdout
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    if failed:
        raise SystemExit(f"ab: {failed} failed requests:\n{out}")
    return float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def run_tcpstack(workers: int, root: Path, args: argparse.Namespace) -> tuple[float, float]:
    ns = f"cr-{os.getpid()}-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, TCPSTACK, "-q", "--workers",
                                 str(workers), "listen", "80", "--http", str(root),
                                 "--backlog", "4096"], stderr=subprocess.DEVNULL)
        try:
            snap = json.loads(sh("ip", "netns", "exec", ns, TCPSTACK, "stat", "--wait", "20",
                                 "--json").stdout)
            pids = [proc.pid] + [w["pid"] for w in snap.get("workers", [])]
            before = cpu_seconds(pids)
            rate = ab(ns, "http://10.77.0.2/small", args.requests, args.concurrency)
            cpu = cpu_seconds(pids) - before
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        sh("ip", "netns", "del", ns, check=False)
    return rate, cpu * 1000 / args.requests


def run_kernel(root: Path, args: argparse.Namespace) -> tuple[float, float]:
    tag = secrets.token_hex(3)
    server_ns, client_ns = f"crk-s-{tag}", f"crk-c-{tag}"
    sh("ip", "netns", "add", server_ns)
    sh("ip", "netns", "add", client_ns)
    try:
        for ns in (server_ns, client_ns):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", server_ns, "link", "add", "crk0", "type", "veth", "peer", "name",
           "crk1", "netns", client_ns)
        sh("ip", "-n", server_ns, "addr", "add", "10.78.0.1/24", "dev", "crk0")
        sh("ip", "-n", client_ns, "addr", "add", "10.78.0.2/24", "dev", "crk1")
        sh("ip", "-n", server_ns, "link", "set", "crk0", "up")
        sh("ip", "-n", client_ns, "link", "set", "crk1", "up")
        proc = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c",
                                 KERNEL_APP, str(root)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            time.sleep(0.5)  # the veth's carrier
            before = cpu_seconds([proc.pid])
            rate = ab(client_ns, "http://10.78.0.1/small", args.requests, args.concurrency)
            cpu = cpu_seconds([proc.pid]) - before
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        sh("ip", "netns", "del", server_ns, check=False)
        sh("ip", "netns", "del", client_ns, check=False)
    return rate, cpu * 1000 / args.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", default="1,2", help="worker counts to run (e.g. 1,2)")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "small").write_bytes(os.urandom(100))
        os.chmod(tmp, 0o755)
        for run in range(args.runs):
            kinds = [("kernel", lambda: run_kernel(root, args))] + [
                (f"tcpstack {n} worker{'s' if n > 1 else ''}",
                 lambda n=n: run_tcpstack(n, root, args)) for n in counts]  # type: ignore[misc]
            for name, measure in kinds:
                rate, cpu = measure()
                results.setdefault(name, []).append((rate, cpu))
                print(f"run {run + 1} {name}: {rate:.0f} conn/s, {cpu:.3f} CPU s per 1000",
                      flush=True)
    print()
    print("| server | median conn/s | runs (conn/s) | median CPU s / 1000 conn |")
    print("| --- | ---: | --- | ---: |")
    for name, runs in results.items():
        rates = [r for r, _ in runs]
        cpus = [c for _, c in runs]
        print(f"| {name} | {statistics.median(rates):.0f} | "
              f"{', '.join(f'{r:.0f}' for r in rates)} | {statistics.median(cpus):.3f} |")


if __name__ == "__main__":
    main()
