"""The OSError subclasses the stack raises to its applications, each with the errno a socket
call would set in its place. A module of their own because the compiled build
(scripts/build_compiled.py) leaves it interpreted: mypyc compiles no subclass of OSError."""

from __future__ import annotations


class ConnectionLimit(OSError):
    """The stack holds `TcpConfig.max_connections` connections: no more until some close
    (an OSError with EAGAIN, as a socket call that cannot get resources now)."""


class AddressInUse(OSError):
    """The port is bound already (EADDRINUSE)."""
