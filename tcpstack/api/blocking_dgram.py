"""UDP sockets of the socket facade: `tcpstack.socket.socket(AF_INET, SOCK_DGRAM)`.

The descriptor is one end of a SOCK_SEQPACKET socketpair, which keeps datagram
boundaries; each message carries one datagram after a small header with its address (the
source on the way in, the destination on the way out: api/datagram_channel.py), so recvfrom and
sendto keep their shape, a datagram longer than recv's buffer is cut as a kernel cuts it,
and `select` sees the descriptor readable exactly when a datagram waits. The stack's side is
a UDP endpoint (Stack.create_datagram_endpoint) made at bind, connect or the first sendto.
An error the endpoint reports (ECONNREFUSED from a port unreachable, for a connected
socket; EMSGSIZE beyond the MTU) is raised by the next recv, as Linux reports a pending
error on a UDP socket.
"""

from __future__ import annotations

import errno
import socket as _std
from typing import Any

from tcpstack.api.background import DatagramLink, oserror
from tcpstack.api.blocking import _REMEMBERED, _as_family, _int_value, _unspecified, socket
from tcpstack.api.datagram_channel import (
    DATAGRAM_HEADER,
    MAX_DATAGRAM,
    datagram_header,
    parse_datagram_header,
)

# Headers of IPv4 and UDP: the largest payload one datagram can carry.
_MAX_PAYLOAD = MAX_DATAGRAM - 28


class DatagramSocket(socket):
    """A UDP socket on tcpstack: see the module docstring."""

    __slots__ = ("_dgram", "_peer")

    _KIND = _std.SOCK_DGRAM
    _PROTOCOL = _std.IPPROTO_UDP
    _PAIR = _std.SOCK_SEQPACKET

    def __init__(self, family: int = _std.AF_INET, type: int = _std.SOCK_DGRAM,
                 proto: int = 0, fileno: int | None = None, *, stack: Any = None) -> None:
        super().__init__(family, type, proto, fileno, stack=stack)
        self._dgram: DatagramLink | None = None
        self._peer: tuple[Any, ...] | None = None

    def __repr__(self) -> str:
        return (f"<tcpstack.socket.socket fd={self.fileno()}, family={self.family!r}, "
                f"type=SOCK_DGRAM, laddr={self._local}>")

    def _endpoint(self, local: tuple[str, int] | None = None,
                  remote: tuple[str, int] | None = None) -> DatagramLink:
        """The stack's endpoint, made now if there is none yet (an unbound socket binds
        an ephemeral port at its first sendto, as the kernel does)."""
        if self._dgram is None:
            far = self._far
            assert far is not None
            self._dgram = self.side.open_datagram(far, local, remote,
                                                  self._options.get("receive_buffer"))
            self._far = None
            self._local = _as_family(self._dgram.sockname, self.family)
        return self._dgram

    def bind(self, address: Any) -> None:
        self._check_open()
        if self._dgram is not None:
            raise oserror(errno.EINVAL)
        host, port = self._resolve(address)
        self._endpoint(local=(host, port))

    def connect(self, address: Any) -> None:
        self._check_open()
        host, port = self._resolve(address)
        if port == 0:
            raise oserror(errno.EINVAL, "a datagram socket connects to a port (1-65535)")
        if self._dgram is None:
            self._endpoint(remote=(host, port))
        else:
            self._dgram.connect(host, port)
        self._peer = _as_family((host, port), self.family)
        self._state = "connected"

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    def listen(self, backlog: int = 0) -> None:
        raise oserror(errno.EOPNOTSUPP)

    def accept(self) -> tuple[socket, tuple[Any, ...]]:
        raise oserror(errno.EOPNOTSUPP)

    # ------------------------------------------------------------------ sending

    def sendto(self, data: Any, *args: Any) -> int:
        if len(args) not in (1, 2):
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        flags, address = (0, args[0]) if len(args) == 1 else args
        self._check_open()
        host, port = self._resolve(address)
        if port == 0:
            raise oserror(errno.EINVAL)
        return self._send(datagram_header(host, port), data, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._check_open()
        if self._peer is None:
            raise oserror(errno.EDESTADDRREQ)
        return self._send(datagram_header(None, 0), data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.send(data, flags)

    def _send(self, header: bytes, data: Any, flags: int) -> int:
        payload = memoryview(data).cast("B")
        if len(payload) > min(_MAX_PAYLOAD, self.side.datagram_limit(self.family)):
            raise oserror(errno.EMSGSIZE)  # (a smaller path MTU: at the next recv)
        self._endpoint()
        _std.socket.sendmsg(self, [header, payload], [], flags)
        return len(payload)

    # ------------------------------------------------------------------ receiving

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        self._check_open()
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        while True:
            message = _std.socket.recv(self, DATAGRAM_HEADER.size + bufsize, flags)
            if len(message) < DATAGRAM_HEADER.size:
                if message:
                    continue  # never written by the stack's side: not ours to show
                return b"", None  # shut down, or the stack went away
            host, port = parse_datagram_header(message)
            if host == "":
                raise oserror(port)  # a pending error, reported once
            address = self._peer if host is None else _as_family((host, port), self.family)
            return message[DATAGRAM_HEADER.size:], address

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self.recvfrom(bufsize, flags)[0]

    def recvfrom_into(self, buffer: Any, nbytes: int = 0,
                      flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        size = nbytes or len(view)
        data, address = self.recvfrom(size, flags)
        view[:len(data)] = data
        return len(data), address

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return self.recvfrom_into(buffer, nbytes, flags)[0]

    # ------------------------------------------------------------------ the rest

    def getpeername(self) -> tuple[Any, ...]:
        self._check_open()
        if self._peer is None:
            raise oserror(errno.ENOTCONN)
        return self._peer

    def getsockname(self) -> tuple[Any, ...]:
        self._check_open()
        return self._local if self._local is not None else _unspecified(self.family)

    def shutdown(self, how: int) -> None:
        self._check_open()
        if self._peer is None:
            raise oserror(errno.ENOTCONN)
        _std.socket.shutdown(self, how)

    def setsockopt(self, level: int, optname: int, value: Any,
                   optlen: int | None = None) -> None:
        self._check_open()
        key = (level, optname)
        if key == (_std.SOL_SOCKET, _std.SO_RCVBUF):
            number = _int_value(value)
            if number <= 0:
                raise oserror(errno.EINVAL)
            self._options["receive_buffer"] = number  # the endpoint's queue, at its making
        elif key in _REMEMBERED or key == (_std.SOL_SOCKET, _std.SO_BROADCAST):
            self._remembered[key] = _int_value(value)
        else:
            raise oserror(errno.ENOPROTOOPT)

    def _option_value(self, level: int, optname: int) -> int:
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_RCVBUF):
            return self._options.get("receive_buffer", 212_992)  # Linux's rmem_default
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_BROADCAST):
            return self._remembered.get((level, optname), 0)
        if level == _std.SOL_SOCKET and optname in (_std.SO_TYPE, _std.SO_DOMAIN,
                                                    _std.SO_PROTOCOL, _std.SO_REUSEADDR,
                                                    _std.SO_REUSEPORT):
            return super()._option_value(level, optname)
        if (level, optname) == (_std.SOL_SOCKET, _std.SO_ERROR):
            return 0
        raise oserror(errno.ENOPROTOOPT)

    def _real_close(self, _ss: Any = _std.socket) -> None:
        super()._real_close()
        if self._dgram is not None:
            self._dgram.close()
            self._dgram = None
