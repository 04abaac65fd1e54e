"""Runs a NetworkStack on an asyncio loop over a TunDevice.

The driver only moves bytes and keeps one loop timer: readiness of the TUN descriptor drains
it until EAGAIN, in batches that each go to one of the stack's service passes
(`NetworkStack.service`: receive, events, flush), before the loop runs anything else; the
stack's timer deadline arms one `call_at`, which runs `NetworkStack.on_timer`, the same pass
for timers. After each pass the driver writes what the stack sent and re-arms the timer. An
application call made outside a pass asks for one through the stack's `request_service`,
which is `kick` here: coalesced, and dropped when a pass runs first, since that pass flushes
whatever changed; a kicked pass drains the TUN too.

Why a pass that handed the application events holds the next loop turn: those events woke
the application's tasks (a StreamReader's waiter, a drain), which asyncio runs on the next
iteration, each scheduled with `call_soon` during the pass. The driver schedules its own
`call_soon` after them, so it runs in that same iteration once every task the pass woke has
taken its step: if they wrote (or read, or closed), that is the kicked pass, and a reply
leaves in the iteration of its write, as from a kernel socket, instead of one iteration
later; their writes still share one pass, and nothing of the application runs inside
`write`. If they did nothing, the turn costs one empty callback. That pass does not read
the TUN first, as other kicked passes do: the drain before it found the TUN empty an
iteration ago, and whatever came since makes the descriptor readable for the loop's next
poll, so a read would almost always be one more EAGAIN per reply.

Why drain until EAGAIN: the kernel holds the packets it routes to us in a ring of
txqueuelen packets and drops what finds it full, so the queue must be emptied as fast as it
fills, not one batch per loop iteration while the application's tasks and timers take their
turn. (A drain whose first packet came alone is found to be over by a zero-timeout poll,
cheaper than the read that would end it with EAGAIN; see _read_batch.) The bound is time:
after READ_BUDGET seconds of passes the driver yields to the loop (the descriptor is still
readable, so it is back at the next iteration), which keeps timers and the application's
tasks running under any load.

Busy polling (`busy_poll`, off by default, as Linux's net.core.busy_poll is): after each
pass the driver keeps a callback ready, one loop turn after another, for `busy_poll`
seconds, so the loop polls its descriptors (the TUN's among them) without sleeping and a
packet that comes within that time is read at once, instead of after a wakeup (some 40 us
of a round trip on the project's VMs, docs/PERFORMANCE.md). It is a callback, not a
selector of our own, so it works on whatever loop runs the stack; each turn first yields
the CPU (sched_yield) to any process waiting for it, often the peer itself on a machine
with few cores. The price is a CPU kept busy while traffic flows and for `busy_poll` after.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import select
from collections.abc import Callable

from tcpstack.io.impairment import ImpairedPath, Impairment
from tcpstack.link.tun import TunDevice
from tcpstack.net.checksum import Bytes
from tcpstack.stack import EventHandler, NetworkStack, OutPacket, packet_bytes

log = logging.getLogger("tcpstack")

PacketTap = Callable[[bytes, bool], None]  # (packet, outgoing)

READ_BATCH = 256  # packets per service pass: its output goes out before the next batch
READ_BUDGET = 0.02  # seconds of passes per readiness callback before the loop gets a turn


class StackDriver:
    def __init__(self, stack: NetworkStack, tun: TunDevice,
                 loop: asyncio.AbstractEventLoop | None = None,
                 impairment: Impairment | None = None, busy_poll: float = 0.0) -> None:
        self.stack = stack
        self.tun = tun
        self.loop = loop or asyncio.get_running_loop()
        self.tap: PacketTap | None = None  # sees every packet in and out (for --pcap)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # A pass asked for by kick, or a turn held for the application's reactions (below),
        # which becomes a pass if a kick comes before it runs.
        self._pass_soon: asyncio.Handle | None = None
        self._kicked_for = False  # whether _pass_soon has been asked for a pass
        self._held = False  # whether _pass_soon is a held turn (it reads no TUN)
        self._delivered = 0  # stack.events_delivered when the driver last looked
        self._late: list[Bytes] = []  # packets the impaired link delivered since the last pass
        self._running = False
        self.busy_poll = busy_poll  # seconds the loop keeps polling after a pass (0: off)
        self._polling_until = 0.0
        self._poller: asyncio.Handle | None = None  # the ready callback of busy polling
        # poll(0) of the descriptor while started: whether a packet waits (see _read_batch).
        self._waiting: Callable[[int], list[tuple[int, int]]] | None = None
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
        poller = select.poll()
        poller.register(self.tun.fd, select.POLLIN)
        self._waiting = poller.poll

    def stop(self) -> None:
        if self._running:
            self.loop.remove_reader(self.tun.fd)
            self._running = False
            self._waiting = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pass_soon is not None:
            self._pass_soon.cancel()
            self._pass_soon = None
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    def now(self) -> float:
        return self.loop.time()

    @property
    def on_event(self) -> EventHandler | None:
        """The application's handler, which the stack calls within each pass."""
        return self.stack.on_event

    @on_event.setter
    def on_event(self, handler: EventHandler | None) -> None:
        self.stack.on_event = handler

    def kick(self) -> None:
        """Run a service pass soon: once per loop iteration however often it is asked (in
        this one, when a turn is held for the application's reactions)."""
        self._kicked_for = True
        if self._pass_soon is None:
            self._held = False
            self._pass_soon = self.loop.call_soon(self._kicked)

    def _kicked(self) -> None:
        self._pass_soon = None
        if not self._kicked_for:
            return  # a held turn the application did not use
        if self._running and not self._held:
            self._on_readable()  # what has arrived joins the pass
        else:
            # Before start or after stop the TUN is not ours to read; after a held turn
            # the drain has just been done.
            self._service()
            if self.stack.events_delivered != self._delivered:  # mostly not: a reply's pass
                self._hold_turn()

    def _hold_turn(self) -> None:
        """After the passes of one callback: if they handed the application events, hold a
        turn behind the tasks they woke (the module's docstring says why)."""
        delivered = self.stack.events_delivered
        if delivered != self._delivered:
            self._delivered = delivered
            if self._pass_soon is None:
                self._held = True
                self._pass_soon = self.loop.call_soon(self._kicked)

    def _on_readable(self) -> None:
        """Drain the TUN until EAGAIN, one service pass per batch, for at most READ_BUDGET
        seconds; the first pass also flushes what a kick asked for."""
        loop = self.loop
        now = loop.time()  # the batch's time: when it was waiting to be read
        deadline = now + READ_BUDGET
        while True:
            batch, trusted, drained = self._read_batch()
            self._service(batch, trusted, now)
            if drained or not self._running:
                break
            now = loop.time()
            if now >= deadline:
                break
        self._hold_turn()

    def _read_batch(self) -> tuple[list[Bytes], list[bool], bool]:
        """Up to READ_BATCH packets and their vouched flags; whether the TUN is drained.

        After the first packet the descriptor is polled (poll with a zero timeout) before
        the next read: a request mostly comes alone, and a read that ends the drain with
        EAGAIN costs ~2 us in Python (the syscall and the BlockingIOError raised and caught)
        where the poll that finds nothing costs ~0.5 us. Once the poll finds a packet, the
        batch reads until EAGAIN as before: one poll per batch, not one per packet."""
        read = self.tun.read
        tap = self.tap
        inbound = self._inbound
        waiting = self._waiting
        batch: list[Bytes] = []
        trusted: list[bool] = []
        for i in range(READ_BATCH):
            if i == 1 and waiting is not None and not waiting(0):
                return batch, trusted, True
            try:
                packet, vouched = read()
            except BlockingIOError:
                return batch, trusted, True
            except OSError as exc:
                log.warning("TUN read failed: %s", exc)
                return batch, trusted, True
            if tap is not None:
                tap(bytes(packet), False)
            if inbound is not None:  # an impaired link: no offload, so no checksum vouched
                inbound.send(bytes(packet))
                continue
            batch.append(packet)
            trusted.append(vouched)
        return batch, trusted, False

    def _receive_late(self, packet: bytes) -> None:
        """A packet the impaired link delivers after its delay: it joins the next pass."""
        self._late.append(packet)
        self.kick()

    def _on_timer(self) -> None:
        # asyncio may run a timer up to its clock resolution early; treat it as on time.
        now = max(self.loop.time(), self._timer_at or 0.0)
        self._timer = None
        self._timer_at = None
        self.stack.on_timer(now)
        self._after_pass()
        self._hold_turn()

    def _service(self, batch: list[Bytes] | None = None,
                 trusted: list[bool] | None = None, now: float | None = None) -> None:
        """One pass for a batch read from the TUN (and what a kick asked for), or for the
        packets the impaired link delivered late."""
        if self._pass_soon is not None:
            self._pass_soon.cancel()  # this pass flushes whatever the kick was for
            self._pass_soon = None
        self._kicked_for = False
        packets = batch or []
        if self._late:
            trusted = [False] * len(self._late) + (trusted or [])
            packets = self._late + packets
            self._late = []
        self.stack.service(packets, self.loop.time() if now is None else now, trusted)
        self._after_pass()

    def _after_pass(self) -> None:
        stack = self.stack
        output = stack.output
        if output:
            if self._outbound is None:
                self._put(output)
            else:
                self._write(output)
            output.clear()
        self._arm_timer()
        if self.busy_poll:
            self._keep_polling()

    def _keep_polling(self) -> None:
        """Busy polling: the loop keeps polling for `busy_poll` seconds from now."""
        self._polling_until = self.loop.time() + self.busy_poll
        if self._poller is None:
            self._poller = self.loop.call_soon(self._poll_turn)

    def _poll_turn(self) -> None:
        """One loop turn of busy polling: while this callback is ready the loop's poll of
        its descriptors does not wait. The CPU goes first to whoever waits for it."""
        if self._running and self.loop.time() < self._polling_until:
            os.sched_yield()
            self._poller = self.loop.call_soon(self._poll_turn)
        else:
            self._poller = None

    def _write(self, packets: list[OutPacket]) -> None:
        if self._outbound is not None:  # an impaired link: no offload, so no GSO sizes
            for packet in packets:
                self._outbound.send(packet_bytes(packet))  # it holds them: a copy of its own
            return
        self._put(packets)

    def _write_one(self, headers: bytes, payload: Bytes = b"", gso_size: int = 0) -> None:
        """One packet the impaired link delivers to the TUN."""
        self._put([(headers, payload, gso_size)])

    def _put(self, packets: list[OutPacket]) -> None:
        tap = self.tap
        write = self.tun.write
        for headers, payload, gso_size in packets:
            if tap is not None:
                tap(headers + payload if payload else headers, True)
            try:
                write(headers, payload, gso_size)
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
