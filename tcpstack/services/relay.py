"""The data pump behind `tcpstack connect`: standard input to the peer, the peer to standard
output, like nc. End of input half-closes our side (shutdown(SHUT_WR)); the relay ends when
both directions have ended.

With a `Progress`, a status line on the terminal (stderr) shows the bytes sent and received,
the rate and the elapsed time, redrawn a few times a second once the transfer has lasted a
second, and left as a summary when it ends.
"""

from __future__ import annotations

import asyncio
import collections
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from typing import BinaryIO, TextIO

CHUNK = 1 << 16


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (SI units, like curl and most transfer tools)."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            break
    return f"{n:.1f} {unit}"


class Progress:
    """A one-line progress display on a terminal stream, redrawn in place with CR."""

    def __init__(self, stream: TextIO, *, delay: float = 1.0, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.delay = delay          # nothing is shown for transfers shorter than this
        self.interval = interval    # seconds between redraws
        self.sent = 0
        self.received = 0
        self._clock = clock
        self._start = clock()
        self._shown = False
        self._samples: collections.deque[tuple[float, int]] = collections.deque(
            [(self._start, 0)])

    def _width(self) -> int:
        try:
            return shutil.get_terminal_size((80, 24)).columns
        except (OSError, ValueError):
            return 80

    def _rate(self, now: float) -> float:
        """Bytes a second over about the last two seconds (a moving window)."""
        total = self.sent + self.received
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[0][0] > 2.0:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        if now - t0 <= 0:
            return 0.0
        return (total - b0) / (now - t0)

    def line(self, now: float) -> str:
        elapsed = now - self._start
        return (f"sent {human_bytes(self.sent)}, received {human_bytes(self.received)}, "
                f"{human_bytes(self._rate(now))}/s, {elapsed:.1f} s")

    def draw(self) -> None:
        now = self._clock()
        if now - self._start < self.delay:
            return
        text = self.line(now)[:max(self._width() - 1, 10)]
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()
        self._shown = True

    def hide(self) -> None:
        """Erase the line (before other output goes to the same terminal)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def finish(self) -> None:
        """Replace the line with a summary, if it was ever shown; else leave no trace."""
        now = self._clock()
        if now - self._start < self.delay:
            return
        elapsed = max(now - self._start, 1e-9)
        average = (self.sent + self.received) / elapsed
        self.stream.write(f"\rsent {human_bytes(self.sent)}, received "
                          f"{human_bytes(self.received)} in {elapsed:.1f} s "
                          f"({human_bytes(average)}/s)\x1b[K\n")
        self.stream.flush()
        self._shown = False

    async def run(self) -> None:
        """Redraw until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.draw()


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, input_fd: int,
                output: BinaryIO, progress: Progress | None = None) -> None:
    """Raises ConnectionError if the connection is reset or times out."""
    loop = asyncio.get_running_loop()
    # When the output is the progress line's terminal, the line is erased before each write
    # and drawn again on the next tick, so it never mixes with the data.
    shares_terminal = progress is not None and _same_terminal(output, progress.stream)

    source = _InputReader(input_fd, loop)

    async def upstream() -> None:
        while data := await source.read():
            writer.write(data)
            await writer.drain()
            if progress is not None:
                progress.sent += len(data)
        writer.write_eof()

    async def downstream() -> None:
        while data := await reader.read(CHUNK):
            if progress is not None:
                progress.received += len(data)
                if shares_terminal:
                    progress.hide()
            output.write(data)
            output.flush()

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    ticker = asyncio.ensure_future(progress.run()) if progress is not None else None
    try:
        # A reset ends both directions at once: whichever fails first, stop the other.
        done, _ = await asyncio.wait((up, down), return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
        await asyncio.gather(up, down)
        # drain() returns below the high-water mark, not at empty: what the transport still
        # buffers is written before the connection counts as closed (a process that exits
        # first loses it; over the daemon's descriptor, the tail of the upload did).
        writer.close()
        await writer.wait_closed()
    finally:
        for task in (up, down, *([ticker] if ticker is not None else [])):
            task.cancel()
        source.close()
        if progress is not None:
            progress.finish()
        writer.close()


class _InputReader:
    """Reads a descriptor in a thread, one chunk per `read()`.

    A thread, because epoll refuses regular files, and a terminal or pipe works the same way,
    so one path serves every kind of standard input. A daemon thread of its own rather than
    the loop's executor: a read blocked on a terminal cannot be called off, and asyncio.run
    and the interpreter both wait for the executor's threads, so an interrupted `connect`
    would otherwise live on until its input ended."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._requests: queue.SimpleQueue[asyncio.Future[bytes] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def read(self) -> bytes:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tcpstack-input",
                                            daemon=True)
            self._thread.start()
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._requests.put(future)
        return await future

    def close(self) -> None:
        """No more reads: the thread ends once the read it may be blocked in returns."""
        self._requests.put(None)

    def _run(self) -> None:
        while (future := self._requests.get()) is not None:
            data, error = b"", None
            try:
                data = os.read(self._fd, CHUNK)
            except OSError as exc:
                error = exc
            try:
                self._loop.call_soon_threadsafe(_settle, future, data, error)
            except RuntimeError:  # the loop is closed: nobody waits for this any more
                return
            if not data:
                return


def _settle(future: asyncio.Future[bytes], data: bytes, error: OSError | None) -> None:
    if future.done():  # the reader was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(data)


def _same_terminal(output: BinaryIO, stream: TextIO) -> bool:
    try:
        out_fd, err_fd = output.fileno(), stream.fileno()
        if not (os.isatty(out_fd) and os.isatty(err_fd)):
            return False
        return os.ttyname(out_fd) == os.ttyname(err_fd)
    except (OSError, ValueError, AttributeError):
        return False
