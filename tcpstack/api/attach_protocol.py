"""What the daemon (`tcpstack up`, api/daemon.py) and its clients (api/attach.py) say to each
other: JSON lines on a Unix stream socket, with descriptors passed beside them (SCM_RIGHTS),
and who may say it.

Where: `/run/tcpstack/attach-<inode of the network namespace>-<iface>.sock`, beside the
stat control socket of the same stack (api/control.py), named the same way so that
`--attach` finds the daemon of its own namespace and interface as `stat` does.

Each message is one JSON object on one line. A client sends requests, each with an `id` of
its choosing that the reply repeats; the daemon also sends events of its own (`accepted`)
at any time, so replies and events interleave:

    -> {"version": 1, "id": 1, "op": "listen", "port": 7, "backlog": 128}
    <- {"id": 1, "ok": true, "listener": 1, "port": 7}
    -> {"version": 1, "id": 2, "op": "connect", "host": "10.77.0.1", "port": 5000,
        "timeout": 10}
    <- {"id": 2, "ok": true, "fd": 1, "peer": ["10.77.0.1", 5000], "local": [...]}
    <- {"event": "accepted", "listener": 1, "fd": 1, "peer": ["10.77.0.1", 40000],
        "local": ["10.77.0.2", 7]}
    -> {"version": 1, "id": 7, "op": "udp", "port": 7, "remote": null}
    <- {"id": 7, "ok": true, "fd": 1, "local": ["10.77.0.2", 7]}
    -> {"version": 1, "id": 3, "op": "close", "listener": 1}
    <- {"id": 3, "ok": true}
    -> {"version": 1, "id": 4, "op": "status"}    (what this daemon holds, for its users)
    <- {"id": 4, "ok": true, "pid": 123, "clients": 1, "listeners": 0, "connections": 2,
        "udp": 1}
    -> {"version": 1, "id": 5, "op": "stop"}      (what `tcpstack down` sends)
    <- {"id": 5, "ok": true, "pid": 123}
    <- {"id": 6, "ok": false, "error": "port 7 is already listening"}

A message with `"fd": 1` carries one descriptor, sent in the same sendmsg as the line's
first byte: the receiver queues the descriptors it gets in order and gives the next one to
each line that says it carries one. A connection's descriptor is one end of a Unix
socketpair whose other end the daemon bridges to the TCP connection (api/bridge.py). A UDP
endpoint's (`udp`: bound to `port` of every address of the stack, connected to `remote`
when given) is one end of a SOCK_SEQPACKET socketpair, one datagram per message after an
address header (api/datagram_channel.py); the endpoint lasts as long as that descriptor.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcpstack.api.control import RUN_DIR, netns_inode

PROTOCOL_VERSION = 1
OPS = ("listen", "connect", "udp", "close", "status", "stop")
MAX_LINE = 1 << 16       # a longer line ends the connection: nobody needs one
MAX_FDS = 16             # descriptors one recvmsg takes at most


def attach_path(iface: str, run_dir: Path = RUN_DIR, netns: int | None = None) -> Path:
    """The daemon's socket for `iface` in the network namespace `netns` (default: ours)."""
    return run_dir / f"attach-{netns_inode() if netns is None else netns}-{iface}.sock"


class ProtocolError(Exception):
    """A message that breaks the protocol; the message says how, in one line."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


@dataclass
class Message:
    """One decoded line, and the descriptor it carried (or None)."""

    body: dict[str, Any]
    fd: int | None = None


class Decoder:
    """Turns what recvmsg returns (bytes, and the descriptors that came with them) into
    Messages. It owns the descriptors until a Message takes one; `close()` closes those
    no message took (a peer that sent more descriptors than it said)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        self._max_line = max_line

    def feed(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> Iterator[Message]:
        """Take what one recvmsg returned; iterating the result gives the complete lines in
        order, and raises ProtocolError on reaching a broken one (after those before it
        have been handled, as a peer that sent them would expect)."""
        self._fds.extend(fds)
        self._buffer += data
        return self._lines()

    def _lines(self) -> Iterator[Message]:
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            yield self._message(line)
        if len(self._buffer) > self._max_line:
            raise ProtocolError(f"a line longer than {self._max_line} bytes")

    def _message(self, line: bytes) -> Message:
        try:
            body = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError("a line that is not JSON") from None
        if not isinstance(body, dict):
            raise ProtocolError("a line that is not a JSON object")
        fd: int | None = None
        if body.get("fd"):
            if not self._fds:
                raise ProtocolError("a message that says it carries a descriptor came "
                                    "without one")
            fd = self._fds.popleft()
        return Message(body, fd)

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popleft())


def check_request(body: dict[str, Any]) -> str | None:
    """What is wrong with a client's request, in one line, or None. Checks the shape only;
    whether the port is free is the stack's to say."""
    if body.get("version") != PROTOCOL_VERSION:
        return (f"unsupported protocol version {body.get('version')!r} (this daemon speaks "
                f"{PROTOCOL_VERSION})")
    if not isinstance(body.get("id"), int):
        return "a request needs an integer id"
    op = body.get("op")
    if op not in OPS:
        return f"unknown op {op!r} (expected one of: {', '.join(OPS)})"
    if op in ("listen", "connect", "udp"):
        port = body.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            return f"invalid port {port!r}: must be 1-65535"
    if op == "connect":
        if not isinstance(body.get("host"), str):
            return "connect needs a host (an address as text)"
        timeout = body.get("timeout")
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            return f"invalid timeout {timeout!r}: a number of seconds above 0, or null"
    if op == "listen":
        backlog = body.get("backlog")
        if backlog is not None and not (isinstance(backlog, int) and 0 < backlog < 65536):
            return f"invalid backlog {backlog!r}: 1-65535, or null"
    if op == "udp" and body.get("remote") is not None:
        remote = body["remote"]
        if not (isinstance(remote, list) and len(remote) == 2 and isinstance(remote[0], str)
                and isinstance(remote[1], int) and not isinstance(remote[1], bool)
                and 0 < remote[1] < 65536):
            return f"invalid remote {remote!r}: [host, port 1-65535], or null"
    if op == "close" and not isinstance(body.get("listener"), int):
        return "close needs the listener's number"
    return None


# ------------------------------------------------------------------ who may attach


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a Unix socket: SO_PEERCRED's pid, uid and gid, and the
    supplementary groups of that process."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int]


def peer_groups(pid: int) -> frozenset[int]:
    """The supplementary groups of process `pid` (/proc/PID/status), empty if unknown:
    SO_PEERCRED gives only the primary group."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return frozenset()
    for line in status.splitlines():
        if line.startswith("Groups:"):
            return frozenset(int(g) for g in line.split()[1:])
    return frozenset()


def refusal(peer: Peer, group: int | None, group_name: str | None,
            owner_uid: int = 0) -> str | None:
    """Why `peer` may not use a daemon run by `owner_uid` that admits the group `group`
    (None: root only), in one line for the user; None when it may. Root and the daemon's
    own user always may."""
    if peer.uid in (0, owner_uid):
        return None
    if group is not None and (peer.gid == group or group in peer.groups):
        return None
    who = f"uid {peer.uid}"
    if group is None:
        return (f"permission denied: {who} is not root, and this tcpstack daemon admits "
                "root only (start it with --group NAME to admit a group)")
    name = group_name or str(group)
    return (f"permission denied: {who} is neither root nor in group {name}, the group this "
            "tcpstack daemon admits")
