"""An HTTP client on tcpstack's socket facade: the standard library's urllib.request and
http.client, unchanged, their connections made by `tcpstack.socket.create_connection`.

    sudo python examples/http_client.py http://10.77.0.1:8000/file   # a kernel-side server

It brings up the default stack (interface tcps0, stack 10.77.0.2, kernel side 10.77.0.1/24)
in a background thread, fetches the URL and prints the status, the length and the sha256 of
the body, and which address the request left from.
"""

from __future__ import annotations

import hashlib
import http.client
import sys
import urllib.request
from typing import Any

import tcpstack.socket


class TcpstackHTTPConnection(http.client.HTTPConnection):
    """http.client's connection, made by the facade (HTTPConnection sets
    `_create_connection` per instance, so it is replaced there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = tcpstack.socket.create_connection

    def connect(self) -> None:
        super().connect()
        host, port = self.sock.getsockname()[:2]
        print(f"connected from {host}:{port}", flush=True)


class TcpstackHTTPHandler(urllib.request.HTTPHandler):
    """What urllib.request opens http:// URLs with."""

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(TcpstackHTTPConnection, req)


def main(url: str) -> None:
    opener = urllib.request.build_opener(TcpstackHTTPHandler)
    with opener.open(url, timeout=30) as response:
        body = response.read()
        print(response.status, len(body), hashlib.sha256(body).hexdigest(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://10.77.0.1:8000/")
