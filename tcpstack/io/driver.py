"""Runs a NetworkStack on an asyncio loop over a TunDevice.

Readiness of the TUN descriptor drains packets in a batch (until EAGAIN or a cap), then one
`service` pass flushes the stack, writes its packets, hands its events to the application
and re-arms the single loop timer for the stack's next deadline. Application calls ask for a
service pass through the stack's `request_service`, which is `kick`, coalesced to one per loop
iteration.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from tcpstack.io.impairment import ImpairedPath, Impairment
from tcpstack.link.tun import TunDevice
from tcpstack.net import offload
from tcpstack.stack import NetworkStack
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent

log = logging.getLogger("tcpstack")

EventHandler = Callable[[Connection, ConnEvent], None]
PacketTap = Callable[[bytes, bool], None]  # (packet, outgoing)

MAX_LOGGED_INTERNAL_ERRORS = 10
READ_BATCH = 512  # packets per readiness callback, so output and timers are not starved


class StackDriver:
    def __init__(self, stack: NetworkStack, tun: TunDevice,
                 loop: asyncio.AbstractEventLoop | None = None,
                 impairment: Impairment | None = None) -> None:
        self.stack = stack
        self.tun = tun
        self.loop = loop or asyncio.get_running_loop()
        self.on_event: EventHandler | None = None
        self.tap: PacketTap | None = None  # sees every packet in and out (for --pcap)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._service_scheduled = False
        self._running = False
        stack.request_service = self.kick
        # A software lossy link between the TUN and the stack, for fault tests (--impair).
        self._inbound: ImpairedPath | None = None
        self._outbound: ImpairedPath | None = None
        if impairment is not None:
            rng = random.Random(impairment.seed)
            self._inbound = ImpairedPath(impairment, self.loop, self._receive_late, rng)
            self._outbound = ImpairedPath(impairment, self.loop, self._write_one, rng)

    def start(self) -> None:
        self._running = True
        self.loop.add_reader(self.tun.fd, self._on_readable)

    def stop(self) -> None:
        if self._running:
            self.loop.remove_reader(self.tun.fd)
            self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def now(self) -> float:
        return self.loop.time()

    def kick(self) -> None:
        """A connection changed: run a service pass soon."""
        if not self._service_scheduled:
            self._service_scheduled = True
            self.loop.call_soon(self._service)

    def _on_readable(self) -> None:
        read = self.tun.read
        receive = self.stack.receive
        tap = self.tap
        vnet = self.tun.offload
        inbound = self._inbound
        now = self.loop.time()
        for _ in range(READ_BATCH):
            try:
                packet = read()
            except BlockingIOError:
                break
            except OSError as exc:
                log.warning("TUN read failed: %s", exc)
                break
            if vnet:
                trusted = offload.checksum_trusted(packet)
                ip_packet = memoryview(packet)[offload.HEADER_LEN:]
                if tap is not None:
                    tap(bytes(ip_packet), False)
                try:
                    receive(ip_packet, now, trusted)
                except Exception:
                    self._internal_error()
                continue
            if tap is not None:
                tap(packet, False)
            if inbound is not None:
                inbound.send(packet)
                continue
            try:
                receive(packet, now)
            except Exception:  # a bug must cost one packet, not the stack
                self._internal_error()
        self._service()

    def _internal_error(self) -> None:
        counters = self.stack.counters
        counters["internal_errors"] += 1
        if counters["internal_errors"] <= MAX_LOGGED_INTERNAL_ERRORS:
            log.exception("internal error while processing a packet (dropped)")

    def _receive_late(self, packet: bytes) -> None:
        """A packet the impaired link delivers after its delay."""
        try:
            self.stack.receive(packet, self.loop.time())
        except Exception:
            self._internal_error()
        self.kick()

    def _on_timer(self) -> None:
        # asyncio may run a timer up to its clock resolution early; treat it as on time.
        now = max(self.loop.time(), self._timer_at or 0.0)
        self._timer = None
        self._timer_at = None
        self.stack.on_timer(now)
        self._service()

    def _service(self) -> None:
        self._service_scheduled = False
        stack = self.stack
        for _ in range(16):  # events may make the application send: flush again, bounded
            stack.flush(self.loop.time())
            if stack.output:
                self._write(stack.output)
                stack.output.clear()
            if not stack.events:
                break
            events = stack.events
            stack.events = []
            handler = self.on_event
            if handler is not None:
                for conn, event in events:
                    handler(conn, event)
        self._arm_timer()

    def _write(self, packets: list[bytes]) -> None:
        if self._outbound is not None:
            for packet in packets:
                self._outbound.send(packet)
            return
        for packet in packets:
            self._write_one(packet)

    def _write_one(self, packet: bytes) -> None:
        if self.tap is not None:
            self.tap(packet[offload.HEADER_LEN:] if self.tun.offload else packet, True)
        try:
            self.tun.write(packet)
        except BlockingIOError:
            self.stack.counters["tun_write_drops"] += 1
        except OSError as exc:
            self.stack.counters["tun_write_errors"] += 1
            log.debug("TUN write failed: %s", exc)

    def _arm_timer(self) -> None:
        deadline = self.stack.next_deadline()
        if deadline is None or deadline == self._timer_at:
            return
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= deadline:
                return  # the armed timer fires first; it re-arms for later deadlines
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)
