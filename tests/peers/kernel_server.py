"""A kernel-socket server for `tcpstack connect` tests, run inside a namespace.

Modes (first argument), each serving one connection on 0.0.0.0:PORT, then exiting:
  count-then-reply  read until the peer's FIN, then send "got N bytes sha256 H" and close
                    (the peer half-closed first and still receives);
  banner-then-count send a banner and shut down writing at once, then read until FIN and
                    write "got N bytes sha256 H" to the file given as third argument
                    (we half-closed first and still receive);
  reset             accept, then close with SO_LINGER 0, which sends a RST;
  slow-reader       a small receive buffer, one byte read every 10 ms for SECONDS (fourth
                    argument), then the rest at full speed; reports like banner-then-count;
  eof-then-close    read until the peer's FIN or RST, print "eof N" or "reset N" (bytes),
                    then close;
  eof-then-hold     the same, then keep the socket open, as a server that does not finish
                    would, and print "closed" once the RST that must end it arrives.
Prints "ready" once listening."""

from __future__ import annotations

import hashlib
import socket
import struct
import sys
import time


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if mode == "slow-reader":  # inherited by the accepted socket; the kernel doubles it
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(30)
    print("ready", flush=True)
    conn, _ = srv.accept()
    conn.settimeout(30)
    if mode in ("eof-then-close", "eof-then-hold"):
        _report_eof_then(conn, hold=mode == "eof-then-hold")
        return
    if mode == "reset":
        conn.recv(1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        return
    if mode == "banner-then-count":
        conn.sendall(b"banner from the kernel\n")
        conn.shutdown(socket.SHUT_WR)
    digest = hashlib.sha256()
    total = 0
    if mode == "slow-reader":
        slow_until = time.monotonic() + float(sys.argv[4])
        while time.monotonic() < slow_until and (byte := conn.recv(1)):
            digest.update(byte)
            total += 1
            time.sleep(0.01)
    while chunk := conn.recv(1 << 16):
        digest.update(chunk)
        total += len(chunk)
    report = f"got {total} bytes sha256 {digest.hexdigest()}\n"
    if mode == "count-then-reply":
        conn.sendall(report.encode())
    else:
        with open(sys.argv[3], "w") as f:
            f.write(report)
    conn.close()


def _report_eof_then(conn: socket.socket, hold: bool) -> None:
    got = 0
    try:
        while chunk := conn.recv(65536):
            got += len(chunk)
        print(f"eof {got}", flush=True)
    except ConnectionResetError:
        print(f"reset {got}", flush=True)
        return
    if not hold:
        conn.close()
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != 8:  # CLOSE_WAIT
            print("closed", flush=True)
            break
        time.sleep(0.01)
    time.sleep(30)


if __name__ == "__main__":
    main()
