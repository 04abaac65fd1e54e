"""Several workers on one interface: a multi-queue TUN, one process per queue (`--workers N`).

`run_workers` opens the interface with IFF_MULTI_QUEUE, one queue per worker, installs the
steering program that tells the kernel which queue each packet goes to (link/steering.py),
configures the interface once and forks the workers. Worker k keeps only queue k's
descriptor and runs a whole stack of its own (NetworkStack, driver, the application with
every listener), opening its outgoing connections from its own slice of the ephemeral
ports, to which the program steers their replies. The parent, the supervisor, keeps none of
the interface (it goes away with the last worker): it serves the control socket, asking each
worker for its snapshot and merging them (snapshot.merge_snapshots), and it stops every
worker on SIGINT or SIGTERM, or as soon as one of them dies (no half-running server).

Each worker talks to the parent over a Unix socket pair, one JSON object per line:
worker -> parent `{"ready": true}` once its listeners are up, the replies to the control
requests the parent forwards (control.py's protocol), and `{"final": {counters}}` once its
stack has closed; parent -> worker: those requests. A worker whose parent goes away (the
socket pair ends) stops as on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tcpstack.api.control import (
    MAX_REPLY,
    PROTOCOL_VERSION,
    ControlError,
    ControlServer,
    ControlSocketInUse,
    answer,
    control_path,
)
from tcpstack.api.preflight import check_addresses
from tcpstack.api.snapshot import Snapshot, merge_snapshots
from tcpstack.api.streams import SHUTDOWN_DRAIN, SHUTDOWN_GRACE, Stack
from tcpstack.link import steering
from tcpstack.link.tun import LinkError, TunDevice
from tcpstack.stack import EPHEMERAL_PORTS

log = logging.getLogger("tcpstack")

# Builds worker k's stack on its queue and its ports; with (None, None), a stack that is
# never started, whose settings the parent reads (and whose checks it runs).
StackFactory = Callable[[TunDevice | None, range | None], Stack]
# Brings up the application on a worker's started stack (its listeners).
WorkerSetup = Callable[[Stack], Awaitable[None]]

READY_TIMEOUT = 30.0   # seconds for every worker to be listening
ANSWER_TIMEOUT = 5.0   # seconds a worker has to answer a control request
# A worker's stop takes up to the stack's grace and drain; past this it is killed.
STOP_TIMEOUT = SHUTDOWN_GRACE + SHUTDOWN_DRAIN + 5.0


def worker_count(spec: str) -> int:
    """`--workers`: a positive number, or `auto` for the CPUs this process may run on."""
    if spec == "auto":
        return len(os.sched_getaffinity(0))
    try:
        count = int(spec)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{spec!r} is not a number of workers (1 or more, or auto)")
    return count


def split_ports(ports: range, workers: int) -> list[range]:
    """Disjoint equal slices of `ports`, one per worker, in order (the steering program
    finds a port's owner by division; the remainder of an uneven split goes unused)."""
    size = len(ports) // workers
    if size < 1:
        raise ValueError(f"{len(ports)} ephemeral ports cannot be shared by {workers} workers")
    return [range(ports.start + k * size, ports.start + (k + 1) * size)
            for k in range(workers)]


@dataclass
class WorkersResult:
    """How a run of several workers ended: the exit status and the counters summed over
    the workers that reported theirs."""
    status: int
    counters: dict[str, int] = field(default_factory=dict)


def run_workers(workers: int, make_stack: StackFactory, setup: WorkerSetup,
                on_ready: Callable[[], None]) -> WorkersResult:
    """Run `workers` stacks on one multi-queue interface until SIGINT or SIGTERM, or until a
    worker dies. Setup errors raise LinkError (nothing is left behind); `on_ready` runs in
    the parent once every worker is listening. Call it with no asyncio loop running: it
    forks."""
    template = make_stack(None, None)
    ports = split_ports(EPHEMERAL_PORTS, workers)
    queues = _open_queues(template, workers, ports)
    channels = [socket.socketpair() for _ in range(workers)]
    sys.stdout.flush()
    sys.stderr.flush()
    pids: list[int] = []
    try:
        for k in range(workers):
            pid = os.fork()
            if pid == 0:
                _worker_process(k, queues, channels, ports[k], make_stack, setup)
            pids.append(pid)
    except OSError as exc:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        raise LinkError(f"cannot start worker {len(pids)}: {exc.strerror}") from None
    finally:
        for queue in queues:  # the workers hold the interface now
            queue.close()
        for _, theirs in channels:
            theirs.close()
    return asyncio.run(_Supervisor(template, pids, [ours for ours, _ in channels],
                                   on_ready).run())


def _open_queues(template: Stack, workers: int, ports: list[range]) -> list[TunDevice]:
    offload = template.tun.offload
    queues = [TunDevice(template.iface, template.mtu, offload=offload, multi_queue=True)
              for _ in range(workers)]
    try:
        for k, queue in enumerate(queues):
            queue.open(attach=k > 0)
        steering.attach(queues[0].fd, workers, ports[0].start, len(ports[0]))
        check_addresses(template.iface, template.kernel_interface, template.address)
        if template.address6 is not None and template.kernel_interface6 is not None:
            check_addresses(template.iface, template.kernel_interface6, template.address6)
        # A device of its own for pyroute2, so that no netlink socket crosses the fork.
        config = TunDevice(template.iface, template.mtu)
        try:
            config.configure(str(template.kernel_interface), template.txqueuelen,
                             *template.ipv6_configuration())
        finally:
            config.close()
    except BaseException:
        for queue in queues:
            queue.close()
        raise
    return queues


# ---------------------------------------------------------------------------- the worker

class _WorkerPrefix(logging.Filter):
    def __init__(self, worker: int) -> None:
        super().__init__()
        self.prefix = f"worker {worker}: "

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.prefix + str(record.msg)
        return True


def _worker_process(k: int, queues: list[TunDevice], channels: list[tuple[socket.socket,
                    socket.socket]], ports: range, make_stack: StackFactory,
                    setup: WorkerSetup) -> None:
    """The forked child: never returns."""
    status = 1
    try:
        # Ctrl-C reaches the whole process group; the parent stops us with SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log.addFilter(_WorkerPrefix(k))
        for j, queue in enumerate(queues):
            if j != k:
                queue.fd, fd = -1, queue.fd
                os.close(fd)  # a queue only its worker holds detaches when that one exits
        for j, (ours, theirs) in enumerate(channels):
            ours.close()
            if j != k:
                theirs.close()
        stack = make_stack(queues[k], ports)
        status = asyncio.run(_worker_main(stack, setup, channels[k][1]))
    except BaseException as exc:
        if not isinstance(exc, (LinkError, OSError, ValueError)):
            traceback.print_exc()
        log.error("error: %s", exc)
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")


async def _worker_main(stack: Stack, setup: WorkerSetup, channel: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    loop.add_signal_handler(signal.SIGTERM, on_stop)
    reader, writer = await asyncio.open_unix_connection(sock=channel)
    await stack.start()
    try:
        await setup(stack)
        _send(writer, {"ready": True})
        serving = asyncio.ensure_future(_answer_parent(reader, writer, stack, on_stop))
        await stop
        serving.cancel()
    finally:
        await stack.close()
    with contextlib.suppress(ConnectionError):
        _send(writer, {"final": stack.counters})
        await writer.drain()
    writer.close()
    return 0


async def _answer_parent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         stack: Stack, on_parent_gone: Callable[[], None]) -> None:
    while line := await reader.readline():
        _send(writer, await answer(line, stack.fresh_snapshot))
        await writer.drain()
    on_parent_gone()


# ---------------------------------------------------------------------------- the parent

@dataclass
class _Worker:
    number: int
    pid: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    exited: asyncio.Future[int]
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    replies: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    asking: asyncio.Lock = field(default_factory=asyncio.Lock)
    final: dict[str, int] | None = None
    reading: asyncio.Future[None] | None = None


def _describe_exit(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


class _Supervisor:
    def __init__(self, template: Stack, pids: list[int], channels: list[socket.socket],
                 on_ready: Callable[[], None]) -> None:
        self.template = template
        self.pids = pids
        self.channels = channels
        self.on_ready = on_ready
        self.workers: list[_Worker] = []
        self.stopping = False

    async def run(self) -> WorkersResult:
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        signalled: asyncio.Future[None] = loop.create_future()

        def on_signal() -> None:
            if not signalled.done():
                signalled.set_result(None)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        for k, (pid, channel) in enumerate(zip(self.pids, self.channels, strict=True)):
            reader, writer = await asyncio.open_unix_connection(sock=channel, limit=MAX_REPLY)
            worker = _Worker(k, pid, reader, writer, self._watch_exit(pid))
            self.workers.append(worker)
            worker.reading = asyncio.ensure_future(self._read(worker))
        status = await self._serve(signalled)
        await self._stop_all()
        counters: dict[str, int] = {}
        for worker in self.workers:
            for name, value in (worker.final or {}).items():
                counters[name] = counters.get(name, 0) + value
        return WorkersResult(status, counters)

    def _watch_exit(self, pid: int) -> asyncio.Future[int]:
        """A future of the wait status of child `pid` (through a pidfd, no SIGCHLD)."""
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[int] = loop.create_future()
        pidfd = os.pidfd_open(pid)

        def on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            _, status = os.waitpid(pid, 0)
            exited.set_result(status)

        loop.add_reader(pidfd, on_exit)
        return exited

    async def _read(self, worker: _Worker) -> None:
        while line := await worker.reader.readline():
            message = json.loads(line)
            if message.get("ready"):
                worker.ready.set()
            elif "final" in message:
                worker.final = message["final"]
            else:
                await worker.replies.put(message)

    async def _first_death(self) -> _Worker:
        done, _ = await asyncio.wait([w.exited for w in self.workers],
                                     return_when=asyncio.FIRST_COMPLETED)
        return next(w for w in self.workers if w.exited in done)

    async def _serve(self, signalled: asyncio.Future[None]) -> int:
        """Until a signal (0) or a worker's death (1)."""
        death = asyncio.ensure_future(self._first_death())
        all_ready = asyncio.ensure_future(asyncio.gather(*(w.ready.wait()
                                                           for w in self.workers)))
        try:
            done, _ = await asyncio.wait((all_ready, death, signalled), timeout=READY_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                log.error("error: the workers were not all listening after %gs", READY_TIMEOUT)
                return 1
            if all_ready in done:
                try:
                    control = await self._serve_control()
                except ControlSocketInUse:
                    return 1
                try:
                    self.on_ready()
                    await asyncio.wait((death, signalled), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if control is not None:
                        control.remove()
            if death.done():
                worker = death.result()
                log.error("error: worker %d (pid %d) %s; stopping the others", worker.number,
                          worker.pid, _describe_exit(worker.exited.result()))
                return 1
            return 0
        finally:
            all_ready.cancel()
            death.cancel()

    async def _serve_control(self) -> ControlServer | None:
        server = ControlServer(control_path(self.template.iface), self.snapshot)
        try:
            await server.start()
        except ControlSocketInUse as exc:
            log.error("error: %s", exc)
            raise
        except OSError as exc:
            log.warning("no control socket at %s: %s", server.path, exc.strerror or exc)
            return None
        return server

    async def _ask(self, worker: _Worker) -> Snapshot:
        async with worker.asking:
            try:
                _send(worker.writer, {"version": PROTOCOL_VERSION, "command": "snapshot"})
                await worker.writer.drain()
                reply = await asyncio.wait_for(worker.replies.get(), ANSWER_TIMEOUT)
            except (ConnectionError, TimeoutError):
                raise ControlError(f"worker {worker.number} (pid {worker.pid}) did not "
                                   "answer") from None
        snapshot = reply.get("snapshot")
        if not reply.get("ok") or not isinstance(snapshot, dict):
            raise ControlError(f"worker {worker.number}: {reply.get('error', 'no snapshot')}")
        return snapshot  # type: ignore[return-value]

    async def snapshot(self) -> Snapshot:
        parts = await asyncio.gather(*(self._ask(w) for w in self.workers))
        uptime = asyncio.get_running_loop().time() - self.started_at
        return merge_snapshots(list(parts), pid=os.getpid(), uptime=uptime)

    async def _stop_all(self) -> None:
        """SIGTERM every worker still running; SIGKILL one that outlasts STOP_TIMEOUT."""
        for worker in self.workers:
            if not worker.exited.done():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        exits = [w.exited for w in self.workers]
        _, late = await asyncio.wait(exits, timeout=STOP_TIMEOUT)
        for worker in self.workers:
            if worker.exited in late:
                log.error("error: worker %d (pid %d) did not stop; killing it", worker.number,
                          worker.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        if late:
            await asyncio.wait(exits)
        # The workers are gone: what they wrote last (their finals) is all there to read.
        await asyncio.wait([w.reading for w in self.workers if w.reading], timeout=1.0)
        for worker in self.workers:
            worker.writer.close()
