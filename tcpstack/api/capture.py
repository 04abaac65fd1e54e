"""`--pcap FILE`: every packet in and out to a pcap file, and the connections' cwnd traces
to `FILE.cwnd.json` beside it when the stack closes.

    {"version": 1, "clock": "unix",
     "connections": [{"local": "10.77.0.2:80", "peer": "10.77.0.1:40000", "closed": true,
                      "samples": [[1718000000.123456, 14600, null], ...]}]}

A sample is [time, cwnd, ssthresh] in bytes, ssthresh null while unset. Times are on the
pcap's clock (seconds since the epoch): the connections sample `loop.time()`, which is
converted with the offset between the two clocks taken when the capture starts. A connection
that closes while the capture runs keeps its trace: the Stack hands it over on the
connection's CLOSED event. Kept traces are bounded (MAX_KEPT_SAMPLES in all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tcpstack.api.snapshot import endpoint
from tcpstack.io.pcap import PcapWriter
from tcpstack.tcp.congestion.base import SSTHRESH_UNSET
from tcpstack.tcp.connection import Connection

log = logging.getLogger("tcpstack")

FLUSH_INTERVAL = 0.2          # seconds between writes of the pending pcap records
MAX_KEPT_SAMPLES = 1_000_000  # cwnd samples kept from closed connections, in all


def sidecar_path(pcap: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(pcap)}.cwnd.json")


class Capture:
    """Owns the pcap writer while a Stack runs; `tap` is the driver tap that feeds it."""

    def __init__(self, path: str | os.PathLike[str], loop: asyncio.AbstractEventLoop) -> None:
        self.path = Path(path)
        self._writer = PcapWriter(path)
        self._loop = loop
        self._offset = time.time() - loop.time()  # wall clock minus loop clock
        self._closed: list[dict[str, Any]] = []
        self._kept_samples = 0
        self._dropped_traces = 0
        self._timer: asyncio.TimerHandle | None = loop.call_later(FLUSH_INTERVAL, self._tick)

    @property
    def packets(self) -> int:
        return self._writer.packets

    def tap(self, packet: bytes, outgoing: bool) -> None:
        self._writer.write(packet)

    def _tick(self) -> None:
        try:
            self._writer.flush()
        except OSError as exc:
            log.warning("capture %s: write failed, capture stopped: %s", self.path, exc)
            self._writer.close()
            return
        self._timer = self._loop.call_later(FLUSH_INTERVAL, self._tick)

    def connection_closed(self, conn: Connection) -> None:
        """Keep the trace of a connection that is going away."""
        n = len(conn.cwnd_trace or ())
        if self._kept_samples + n > MAX_KEPT_SAMPLES:
            self._dropped_traces += 1
            return
        self._kept_samples += n
        self._closed.append(self._trace(conn, closed=True))

    def _trace(self, conn: Connection, closed: bool) -> dict[str, Any]:
        offset = self._offset
        return {
            "local": endpoint(conn.local_addr, conn.local_port),
            "peer": endpoint(conn.remote_addr, conn.remote_port),
            "closed": closed,
            "samples": [[round(t + offset, 6), cwnd,
                         None if ssthresh >= SSTHRESH_UNSET else ssthresh]
                        for t, cwnd, ssthresh in conn.cwnd_trace or ()],
        }

    def close(self, live: Iterable[Connection]) -> None:
        """Finish the pcap file and write the cwnd sidecar (closed and live connections)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self._writer.close()
        finally:
            traces = self._closed + [self._trace(c, closed=False) for c in live]
            if self._dropped_traces:
                log.warning("capture: %d closed connections' cwnd traces not kept (over %d "
                            "samples)", self._dropped_traces, MAX_KEPT_SAMPLES)
            target = sidecar_path(self.path)
            tmp = target.with_name(target.name + ".tmp")
            try:
                tmp.write_text(json.dumps({"version": 1, "clock": "unix",
                                           "connections": traces}, separators=(",", ":")))
                tmp.replace(target)
            except OSError as exc:
                log.warning("cannot write %s: %s", target, exc)
                with contextlib.suppress(OSError):
                    tmp.unlink()
