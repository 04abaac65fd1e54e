"""The control socket every running Stack serves, and the client `tcpstack stat` uses.

Where: `/run/tcpstack/net-<inode of /proc/self/ns/net>-<iface>.sock`. Tests and users run
many stacks at once, each in its own network namespace and all named tcps0, while /run is
shared between namespaces: the namespace's inode and the interface name together pick out
exactly one stack, the one `tcpstack stat --iface IFACE` run in the same namespace means.
The socket is owner-only (0600) and removed when the stack closes. One left behind by a
killed stack refuses connections: the next stack on that interface replaces it, and every
stack that starts removes such leftovers (a path-bound Unix socket can be reached from any
network namespace, so a refusal means the same from everywhere: nothing serves it).

Protocol: the client sends one JSON object on one line, the server answers with one JSON
object on one line and closes.

    -> {"version": 1, "command": "snapshot"}
    <- {"version": 1, "ok": true, "snapshot": {...}}     (see snapshot.py)
    <- {"version": 1, "ok": false, "error": "unknown command 'x' (expected: snapshot)"}
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from tcpstack.api.snapshot import SNAPSHOT_VERSION, Snapshot

log = logging.getLogger("tcpstack")

RUN_DIR = Path("/run/tcpstack")
PROTOCOL_VERSION = 1
COMMANDS = ("snapshot",)
MAX_LINE = 1 << 16        # a request longer than this is refused
REQUEST_TIMEOUT = 5.0     # seconds a client may take to send its request line
MAX_REPLY = 64 << 20      # a client stops reading a reply beyond this
STALE_AGE = 10.0          # seconds a refusing socket file must have existed to be swept


def netns_inode() -> int:
    """The inode of this process's network namespace: equal for two processes exactly when
    they share the namespace (what `ip netns identify` and `lsns` compare)."""
    return os.stat("/proc/self/ns/net").st_ino


def control_path(iface: str, run_dir: Path = RUN_DIR, netns: int | None = None) -> Path:
    """The socket of the stack on `iface` in the network namespace whose inode is `netns`
    (by default this process's)."""
    return run_dir / f"net-{netns_inode() if netns is None else netns}-{iface}.sock"


class ControlError(Exception):
    """The control socket cannot answer; the message is one line for the user."""


class NoStackRunning(ControlError):
    """Nothing serves the control socket: it does not exist, or is left from a dead stack."""

    def __init__(self, path: Path, stale: bool) -> None:
        self.path = path
        self.stale = stale
        why = "stale control socket" if stale else "no control socket"
        super().__init__(f"{why} at {path}")


class ControlSocketInUse(ControlError):
    """Another live stack already serves this control socket."""


def answers(path: Path) -> bool:
    """Whether a server accepts connections on the Unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def sweep_stale(run_dir: Path = RUN_DIR, min_age: float = STALE_AGE,
                pattern: str = "net-*.sock") -> int:
    """Remove the socket files in `run_dir` matching `pattern` (the daemons' attach
    sockets are `attach-*.sock`) that nothing serves any more; how many. Files younger
    than `min_age` are left alone: their stack may be starting."""
    removed = 0
    now = time.time()
    try:
        entries = list(run_dir.glob(pattern))
    except OSError:
        return 0
    for path in entries:
        try:
            if now - path.lstat().st_mtime < min_age or answers(path):
                continue
            path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


def file_identity(path: Path) -> tuple[int, int]:
    """(st_dev, st_ino) of the socket file just made, to know it again at removal."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def unlink_if_ours(path: Path, identity: tuple[int, int] | None) -> None:
    """Remove the socket file at `path` if it is still the one we made: a successor that
    found it unanswered may have put its own there."""
    if identity is None:
        return
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == identity:
            path.unlink()


# What a control socket serves: a snapshot now, or one to wait for (several workers').
SnapshotSource = Callable[[], Snapshot | Awaitable[Snapshot]]


class ControlServer:
    """Serves `snapshot()` on a Unix socket on the running loop; a snapshot source may be a
    coroutine, for what must be fetched off the loop first (the TUN's own counters, from
    the kernel) or from elsewhere (several workers)."""

    def __init__(self, path: Path, snapshot: SnapshotSource) -> None:
        self.path = path
        self._snapshot = snapshot
        self._server: asyncio.AbstractServer | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if answers(self.path):
                raise ControlSocketInUse(
                    f"another tcpstack already serves {self.path} (same interface, same "
                    "network namespace)")
            self.path.unlink()  # left by a stack that was killed
        sweep_stale(self.path.parent)
        self._server = await asyncio.start_unix_server(self._handle, str(self.path),
                                                       limit=MAX_LINE)
        os.chmod(self.path, 0o600)
        self._identity = file_identity(self.path)

    def remove(self) -> None:
        """Stop accepting and remove the socket file (if it is still ours)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        unlink_if_ours(self.path, self._identity)
        self._identity = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
            except TimeoutError:
                reply = _error("no request line within "
                               f"{REQUEST_TIMEOUT:g}s")
            except ValueError:
                reply = _error(f"request line longer than {MAX_LINE} bytes")
            else:
                reply = await answer(line, self._snapshot)
            writer.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.debug("control client went away: %s", exc)
        finally:
            writer.close()


async def answer(line: bytes, snapshot: SnapshotSource) -> dict[str, Any]:
    """The reply to one request line."""
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return _error("the request is not a JSON object on one line")
    if not isinstance(request, dict):
        return _error("the request is not a JSON object on one line")
    version = request.get("version")
    if version != PROTOCOL_VERSION:
        return _error(f"unsupported protocol version {version!r} "
                      f"(this stack speaks {PROTOCOL_VERSION})")
    command = request.get("command")
    if command == "snapshot":
        try:
            value = snapshot()
            if inspect.isawaitable(value):
                value = await value
        except ControlError as exc:  # e.g. a worker that did not answer
            return _error(str(exc))
        return {"version": PROTOCOL_VERSION, "ok": True, "snapshot": value}
    return _error(f"unknown command {command!r} (expected: {', '.join(COMMANDS)})")


def _error(message: str) -> dict[str, Any]:
    return {"version": PROTOCOL_VERSION, "ok": False, "error": message}


def request(path: Path, command: str = "snapshot", timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the control socket at `path` and return the reply object.
    Raises NoStackRunning when nothing serves there, ControlError for any other failure."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise NoStackRunning(path, stale=False) from None
        except ConnectionRefusedError:
            raise NoStackRunning(path, stale=True) from None
        except PermissionError:
            raise ControlError(f"permission denied on {path} (run as root)") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps({"version": PROTOCOL_VERSION, "command": command})
                         .encode() + b"\n")
            chunks: list[bytes] = []
            size = 0
            while size < MAX_REPLY:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if chunk.endswith(b"\n"):
                    break
        except TimeoutError:
            raise ControlError(f"no answer from {path} within {timeout:g}s") from None
        except OSError as exc:
            raise ControlError(f"control socket {path} failed: {exc.strerror or exc}") from None
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"unreadable reply from {path}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"unreadable reply from {path}")
    if not reply.get("ok"):
        raise ControlError(f"the stack refused the request: {reply.get('error', '?')}")
    return reply


def query_snapshot(path: Path, timeout: float = 5.0) -> Snapshot:
    reply = request(path, "snapshot", timeout)
    snapshot = reply.get("snapshot")
    if not isinstance(snapshot, dict) or snapshot.get("version") != SNAPSHOT_VERSION:
        raise ControlError(f"unexpected snapshot layout from {path}")
    return cast(Snapshot, snapshot)
