"""socketserver on tcpstack.socket, inside a namespace: a `socketserver.TCPServer` subclass
whose socket is a facade socket, serving DIR over HTTP on 10.77.0.2:PORT with the standard
library's own SimpleHTTPRequestHandler. Prints "ready" once listening; SIGTERM stops it
(exit 0) after printing how many requests it handled."""

from __future__ import annotations

import functools
import http.server
import signal
import socketserver
import sys
import threading
from typing import Any

import tcpstack.socket as ts


class FacadeTCPServer(socketserver.TCPServer):
    """TCPServer, its socket from tcpstack.socket; everything else is the library's."""

    allow_reuse_address = True
    handled = 0

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler, bind_and_activate=False)
        self.socket.close()  # the kernel socket TCPServer made: never bound
        self.socket = ts.socket(self.address_family, self.socket_type)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        FacadeTCPServer.handled += 1
        super().process_request(request, client_address)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    directory, port = sys.argv[1], int(sys.argv[2])
    handler = functools.partial(QuietHandler, directory=directory)
    server = FacadeTCPServer(("", port), handler)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    serving.start()
    print("ready", server.server_address, type(server.socket).__module__, flush=True)
    stopped.wait()
    server.shutdown()
    serving.join(10)
    server.server_close()
    print("handled", FacadeTCPServer.handled, flush=True)


if __name__ == "__main__":
    main()
