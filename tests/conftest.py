"""Session-wide check: the tests leave no stale control socket in /run/tcpstack.

Every running stack serves `/run/tcpstack/net-<namespace inode>-<iface>.sock` and removes it
when it stops; one killed with SIGKILL cannot, and its socket stays until a later stack's
sweep (api/control.py). After each test the inodes of the namespaces this session made are
noted (their names carry our pid, tests/integration/netns.py); when the session ends, a
socket of one of them that nothing serves fails the run, naming the tests that used that
namespace. Sockets of other sessions running beside this one are never looked at."""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

RUN_DIR = Path("/run/tcpstack")
NETNS_DIR = Path("/run/netns")

_namespaces: defaultdict[int, list[str]] = defaultdict(list)  # inode -> tests that used it


def _note_namespaces(nodeid: str) -> None:
    mark = f"-{os.getpid()}-"
    try:
        entries = [entry for entry in NETNS_DIR.iterdir() if mark in entry.name]
    except OSError:
        return
    for entry in entries:
        try:
            inode = entry.stat().st_ino
        except OSError:
            continue
        if nodeid not in _namespaces[inode]:
            _namespaces[inode].append(nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    yield
    _note_namespaces(item.nodeid)  # before teardown deletes them


def _served(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True  # busy or unreachable, not refusing: leave it be
        return True


def stale_sockets() -> list[tuple[Path, list[str]]]:
    """The control sockets of this session's namespaces that nothing serves."""
    found = []
    for inode, tests in sorted(_namespaces.items()):
        for kind in ("net", "attach"):  # the stat sockets and the daemons' attach sockets
            for path in sorted(RUN_DIR.glob(f"{kind}-{inode}-*.sock")):
                if not _served(path):
                    found.append((path, tests))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = stale_sockets()
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", f"{len(left)} stale control socket(s) left in {RUN_DIR}",
                           red=True)
        for path, tests in left:
            reporter.write_line(f"{path} (its namespace was used by {', '.join(tests)})")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
