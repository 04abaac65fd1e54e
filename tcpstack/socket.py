"""`tcpstack.socket`: a module shaped like Python's `socket`, whose sockets run on tcpstack.

    import tcpstack.socket as socket
    with socket.create_connection(("10.77.0.1", 80), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")

The stack runs in a background thread, brought up with the CLI's defaults on first use
(interface tcps0, address 10.77.0.2, kernel side 10.77.0.1/24) or chosen with
`use_stack(...)`; each socket may also name its own (`socket(..., stack=...)`). Its
descriptors are real (`fileno()` works with select, selectors and poll), so code written
for the socket module (http.client, urllib.request through a handler, socketserver,
selectors loops) runs on these sockets unchanged. The constants, `error`, `timeout`,
`gaierror` and the name functions are the socket module's own objects, so `except
socket.timeout` catches what these sockets raise. api/blocking.py tells how it works.
"""

from __future__ import annotations

import socket as _std
from typing import Any

from tcpstack.api.background import StackThread as StackThread
from tcpstack.api.blocking import _GLOBAL_DEFAULT_TIMEOUT as _GLOBAL_DEFAULT_TIMEOUT
from tcpstack.api.blocking import create_connection as create_connection
from tcpstack.api.blocking import create_server as create_server
from tcpstack.api.blocking import default_stack as default_stack
from tcpstack.api.blocking import socket as socket
from tcpstack.api.blocking import use_stack as use_stack

# The socket module's own objects, so code written for it works unchanged.
AF_INET = _std.AF_INET
AF_INET6 = _std.AF_INET6
AF_UNSPEC = _std.AF_UNSPEC
AI_NUMERICHOST = _std.AI_NUMERICHOST
AI_PASSIVE = _std.AI_PASSIVE
IPPROTO_IP = _std.IPPROTO_IP
IPPROTO_IPV6 = _std.IPPROTO_IPV6
IPPROTO_TCP = _std.IPPROTO_TCP
IPPROTO_UDP = _std.IPPROTO_UDP
MSG_DONTWAIT = _std.MSG_DONTWAIT
MSG_PEEK = _std.MSG_PEEK
MSG_WAITALL = _std.MSG_WAITALL
SHUT_RD = _std.SHUT_RD
SHUT_RDWR = _std.SHUT_RDWR
SHUT_WR = _std.SHUT_WR
SO_ERROR = _std.SO_ERROR
SO_KEEPALIVE = _std.SO_KEEPALIVE
SO_RCVBUF = _std.SO_RCVBUF
SO_REUSEADDR = _std.SO_REUSEADDR
SO_REUSEPORT = _std.SO_REUSEPORT
SO_SNDBUF = _std.SO_SNDBUF
SO_TYPE = _std.SO_TYPE
SOCK_CLOEXEC = _std.SOCK_CLOEXEC
SOCK_DGRAM = _std.SOCK_DGRAM
SOCK_NONBLOCK = _std.SOCK_NONBLOCK
SOCK_STREAM = _std.SOCK_STREAM
SOL_SOCKET = _std.SOL_SOCKET
SOMAXCONN = _std.SOMAXCONN
TCP_NODELAY = _std.TCP_NODELAY
error = _std.error
gaierror = _std.gaierror
getaddrinfo = _std.getaddrinfo
getdefaulttimeout = _std.getdefaulttimeout
getfqdn = _std.getfqdn
gethostbyname = _std.gethostbyname
gethostname = _std.gethostname
getnameinfo = _std.getnameinfo
has_ipv6 = _std.has_ipv6
herror = _std.herror
htonl = _std.htonl
htons = _std.htons
inet_aton = _std.inet_aton
inet_ntoa = _std.inet_ntoa
inet_ntop = _std.inet_ntop
inet_pton = _std.inet_pton
ntohl = _std.ntohl
ntohs = _std.ntohs
setdefaulttimeout = _std.setdefaulttimeout
timeout = _std.timeout

SocketType = socket

# The socket module's constants this module does not list (IP_TOS, TCP_MAXSEG, MSG_*, ...):
# the same objects, looked up when asked for.
_CONSTANT_PREFIXES = ("AF_", "SOCK_", "SOL_", "SO_", "IPPROTO_", "IP_", "IPV6_", "TCP_",
                      "MSG_", "AI_", "NI_", "EAI_", "INADDR_", "SHUT_")


def __getattr__(name: str) -> Any:
    if name.startswith(_CONSTANT_PREFIXES) and hasattr(_std, name):
        return getattr(_std, name)
    raise AttributeError(f"module 'tcpstack.socket' has no attribute {name!r}")
