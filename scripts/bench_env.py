"""The processes and the machine of `make bench` (scripts/bench.py): starting servers in a
namespace and waiting until they are ready, running clients while watching that the servers
stay up, stopping them all, and reading a process tree's CPU time and RSS from /proc."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 15.0  # seconds for a server to come up
STOP_TIMEOUT = 5.0  # seconds for a process to exit on SIGTERM before SIGKILL
IP_TIMEOUT = 10.0  # seconds for any `ip` command
POLL = 0.05


class BenchError(Exception):
    """The benchmark could not run or measure; the message says why."""


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        # `ip netns exec` enters the namespace and execs the command: the same pid.
        return self.popen.pid


class Processes:
    """Every process started here, so that a failure or an interrupt can stop them all."""

    def __init__(self, tmp: Path, env: Mapping[str, str]) -> None:
        self.tmp = tmp
        self.env = dict(env)
        self.running: list[Process] = []
        self.started = 0

    def spawn(self, name: str, ns: str, cmd: list[str], ready: str | Callable[[], bool],
              timeout: float = START_TIMEOUT, env: Mapping[str, str] | None = None) -> Process:
        """Start `cmd` in `ns` (in its own session, so Ctrl-C reaches it only through our
        cleanup) and wait until its log shows `ready`, or `ready()` is true; `env`: what
        to set on top of the environment of every process."""
        self.started += 1
        log = self.tmp / f"{self.started:04d}-{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     env={**self.env, **(env or {})}, start_new_session=True)
        proc = Process(name, popen, log)
        self.running.append(proc)
        deadline = time.monotonic() + timeout
        while not (ready() if callable(ready) else ready in log.read_text(errors="replace")):
            if popen.poll() is not None:
                self.running.remove(proc)
                raise BenchError(f"{name} exited with status {popen.returncode} before it was "
                                 f"ready:\n{tail(log)}")
            if time.monotonic() > deadline:
                self.stop(proc)
                raise BenchError(f"{name} not ready after {timeout:.0f} s:\n{tail(log)}")
            time.sleep(POLL)
        return proc

    def check(self, cmd: list[str], timeout: float) -> str:
        """Run a client to its end and return its stdout; fails early if a server dies."""
        deadline = time.monotonic() + timeout
        with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=self.env) as client:
            try:
                while True:
                    try:
                        out, err = client.communicate(timeout=0.2)
                        break
                    except subprocess.TimeoutExpired:
                        self.check_alive()
                        if time.monotonic() > deadline:
                            raise BenchError(f"{shlex.join(cmd[4:])} did not finish in "
                                             f"{timeout:.0f} s") from None
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait(STOP_TIMEOUT)
        if client.returncode != 0:
            self.check_alive()  # a dead server is the better explanation
            last = (err.strip() or out.strip()).splitlines()[-3:]
            raise BenchError(f"{shlex.join(cmd[4:])} failed (exit {client.returncode}): "
                             + " / ".join(last))
        return out

    def check_alive(self) -> None:
        for proc in self.running:
            if proc.popen.poll() is not None:
                raise BenchError(f"{proc.name} exited with status {proc.popen.returncode}:\n"
                                 f"{tail(proc.log)}")

    def stop(self, proc: Process) -> None:
        if proc in self.running:
            self.running.remove(proc)
        popen = proc.popen
        if popen.poll() is not None:
            return
        popen.terminate()
        try:
            popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(STOP_TIMEOUT)

    def stop_all(self) -> None:
        """Cleanup: one process that will not stop must not keep the rest (and the
        namespaces after them) alive."""
        for proc in reversed(list(self.running)):
            try:
                self.stop(proc)
            except (subprocess.TimeoutExpired, OSError) as exc:
                print(f"bench: could not stop {proc.name} (pid {proc.pid}): {exc}")


def ip(*args: str) -> None:
    cmd = ["ip", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=IP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{shlex.join(cmd)} hung for {IP_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"{shlex.join(cmd)} failed: {done.stderr.strip()}")


def run_quiet(cmd: list[str]) -> str:
    """Run a command whose failure is not an error (cleanup, probing); its stdout."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=IP_TIMEOUT)
    except (subprocess.TimeoutExpired, OSError):
        return ""
    return done.stdout


def tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])


# --- /proc -----------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (workers, nginx's worker processes)."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                todo.extend(int(c) for c in children)
        except OSError:
            continue
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process tree, in seconds."""
    ticks = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


# --- the machine -----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(cmd: list[str], pick: Callable[[str], str]) -> str:
        out = run_quiet(cmd) or ""
        try:
            return pick(out) or "unknown"
        except IndexError:
            return "unknown"

    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "curl": version(["curl", "--version"], lambda s: s.split("\n")[0].split(" (")[0]),
        "nginx": nginx.strip().split(": ")[-1] if nginx else "unknown",
        "wrk": version(["wrk", "-v"], lambda s: s.split("\n")[0].split(" [")[0]),
    }


def revision(repo: Path) -> str:
    """The commit of the tcpstack tree measured, '+dirty' when it has uncommitted changes."""
    commit = run_quiet(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"]).strip()
    if not commit:
        return "unknown"
    dirty = run_quiet(["git", "-C", str(repo), "status", "--porcelain", "--", "tcpstack"])
    return commit + ("+dirty" if dirty.strip() else "")
