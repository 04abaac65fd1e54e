"""A kernel UDP server for the tests: on 0.0.0.0:PORT, each datagram back to its sender in
upper case. Prints "ready" once bound; runs until killed."""

from __future__ import annotations

import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, addr = sock.recvfrom(65535)
    sock.sendto(data.upper(), addr)
