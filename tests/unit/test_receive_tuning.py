"""Receive-buffer auto-tuning (receiver.py's ReceiveSpace, Linux's tcp_rcv_space_adjust): the
window we advertise follows what the application reads per round trip, up to
`receive_buffer_max`, so a long fat path is not window-limited; a fixed `receive_buffer`
turns it off.

The path: 50 ms each way (a 100 ms round trip) and 5 MB/s each way, serialized packet by
packet behind an unbounded queue (tests/unit/link_pair.py's `rate`). A full segment is 1500
bytes on the wire carrying 1448 of data (the two stacks negotiate timestamps, 12 option bytes
a segment), so the link carries at most 5e6 * 1448 / 1500 = 4,826,666 bytes of data a
second, and its bandwidth-delay product is about 483 KB: nearly four times the initial
128 KiB buffer. Everything runs on the virtual clock, so every
number below is exact; the bounds beside them say why they are what they should be.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.seq import HALF, MASK
from tests.unit.link_pair import Frame, LinkPair, WindowMonitor

ONE_WAY = 0.05
RTT = 2 * ONE_WAY
RATE = 5e6
MSS = 1448  # 1460 less the timestamps both stacks negotiate
LINK_PAYLOAD_RATE = RATE * MSS / (MSS + 52)  # bytes of data a second the link can carry
INITIAL = 128 << 10
SIZE = 5_000_000
# After the ramp (slow start and the buffer's doubling take under 0.8 s here), the half
# second from STEADY on is where a transfer not limited by its window fills the link.
STEADY = 0.8
SPELL = 0.5

class EdgeMonitor:
    """The right edge (ACK + window) of every segment `b` sends, in order of sending."""

    def __init__(self) -> None:
        self.shift = 0
        self.edges: list[int] = []

    def __call__(self, pair: LinkPair, frame: Frame, phase: str) -> None:
        if phase != "sent" or frame.sender != "b" or not frame.is_tcp:
            return
        seg = frame.segment
        if seg.options.wscale is not None:
            self.shift = seg.options.wscale
        elif seg.flags & 0x10:  # ACK
            self.edges.append((seg.ack + (seg.window << self.shift)) & MASK)

    def moves(self) -> list[int]:
        """How far each segment moved the edge on from the one before (negative: back)."""
        out = []
        for before, after in zip(self.edges, self.edges[1:], strict=False):
            d = (after - before) & MASK
            out.append(d - (1 << 32) if d >= HALF else d)
        return out


@dataclass
class Transfer:
    pair: LinkPair
    server: Connection
    windows: WindowMonitor
    edges: EdgeMonitor
    reads: list[tuple[float, int]]  # (time since the data started, bytes read so far)
    capacities: list[tuple[float, int]]  # (seconds since the start, the buffer) at changes
    duration: float

    def read_by(self, t: float) -> int:
        """Bytes the application had read at `t` seconds after the data started."""
        return max((got for when, got in self.reads if when <= t), default=0)


@dataclass(frozen=True)
class Reader:
    """The receiving application: `size` bytes (-1: all there are) every `every` seconds (0:
    at every step, as fast as data comes)."""

    every: float = 0.0
    size: int = -1


def transfer(config: TcpConfig, size: int = SIZE, reader: Reader = Reader(),
             timeout: float = 60.0) -> Transfer:
    """`a` sends `size` bytes to `b` (whose config is `config`) as fast as its 1 MiB send
    buffer lets it, while `b`'s application reads as `reader` says."""
    pair = LinkPair(config_b=config, delay=ONE_WAY, rate=RATE)
    windows, edges = WindowMonitor(), EdgeMonitor()
    pair.observers += [windows, edges]
    client, server = pair.established_pair()
    start = pair.now
    data = bytes(size)
    sent = client.send(data)
    got = 0
    reads: list[tuple[float, int]] = []
    capacities = [(0.0, server.rcv.capacity)]
    wake = start
    while got < size:
        assert pair.now - start < timeout, f"{got} of {size} bytes read by t={pair.now}"
        pair.step(horizon=wake if reader.every else None)
        if sent < size:
            sent += client.send(data[sent:])
        if pair.now >= wake:
            got += len(pair.read(server, reader.size))
            wake = pair.now + reader.every
        reads.append((pair.now - start, got))
        if server.rcv.capacity != capacities[-1][1]:
            capacities.append((round(pair.now - start, 6), server.rcv.capacity))
    assert windows.violations == []
    return Transfer(pair, server, windows, edges, reads, capacities, pair.now - start)


def test_a_long_fat_path_grows_the_window_past_the_bdp_and_fills_the_link() -> None:
    run = transfer(TcpConfig())
    tuning = run.server.rcv.tuning
    assert tuning is not None and tuning.rtt is not None
    # The receiver's RTT: the path's 100 ms plus what the sender's bursts queued behind.
    assert tuning.rtt == 0.11561040000000122
    assert RTT < tuning.rtt < 2 * RTT
    # Each round trip the buffer became about twice (four times while reads doubled) what
    # was read in it, until the reads stopped growing at the link's rate: the space (the most
    # read in one round trip) is then the link's rate times that RTT.
    assert run.capacities == [(0.0, INITIAL), (0.256321, 312768), (0.371931, 567616),
                              (0.487542, 599472), (0.603452, 1268448), (0.719362, 2195168)]
    assert tuning.space == 558928
    assert abs(tuning.space - LINK_PAYLOAD_RATE * tuning.rtt) < 2 * MSS
    # The buffer, rounded up to the scale's unit of 128 bytes.
    assert max(run.windows.windows_sent["b"]) == 2195200
    # Not window-limited: in the steady spell the link carried all it can (give or take the
    # segments cut at the spell's two ends).
    steady = run.read_by(STEADY + SPELL) - run.read_by(STEADY)
    assert steady == 2413816
    assert LINK_PAYLOAD_RATE * SPELL - 2 * MSS < steady <= LINK_PAYLOAD_RATE * SPELL + MSS
    assert run.duration == 1.640594399999907
    assert run.duration > SIZE / LINK_PAYLOAD_RATE


def test_tuning_off_at_the_initial_size_is_window_limited() -> None:
    run = transfer(TcpConfig(receive_buffer=INITIAL))
    assert run.server.rcv.tuning is None
    assert run.capacities == [(0.0, INITIAL)]
    assert run.server.rcv.wscale == 2  # chosen for the fixed 128 KiB, not for a maximum
    assert max(run.windows.windows_sent["b"]) == INITIAL
    # At most one window per round trip: in the spell, at most five windows and the one in
    # flight at its start, about a quarter of what the link carries.
    steady = run.read_by(STEADY + SPELL) - run.read_by(STEADY)
    assert steady == 637120
    assert steady <= INITIAL * (SPELL / RTT + 1) < LINK_PAYLOAD_RATE * SPELL / 3
    # The whole transfer takes at least SIZE / INITIAL round trips: 2.6 times as long.
    assert run.duration == 4.278058400000002
    assert run.duration > SIZE / INITIAL * RTT


def test_the_window_stops_at_the_configured_maximum() -> None:
    limit = 256 << 10
    run = transfer(TcpConfig(receive_buffer_max=limit))
    assert run.server.rcv.wscale == 3  # chosen for the maximum: 65535 << 2 falls short
    assert run.capacities == [(0.0, INITIAL), (0.256321, limit)]  # not 312,768
    assert max(run.windows.windows_sent["b"]) == 262144 <= limit
    steady = run.read_by(STEADY + SPELL) - run.read_by(STEADY)
    assert steady == 1288720
    assert steady <= limit * (SPELL / RTT + 1) < LINK_PAYLOAD_RATE * SPELL
    assert run.duration == 2.4283608000000156


def test_a_slow_reader_does_not_grow_the_buffer() -> None:
    # 4 KB every 50 ms: 80 KB/s, a sixtieth of what the link could bring. The window fills
    # and stays nearly closed; what arrives is no reason to grow, only what is read, and a
    # round trip's 8-16 KB of reads ask for less than the 128 KiB there is.
    run = transfer(TcpConfig(), size=400_000, reader=Reader(0.05, 4096))
    assert run.capacities == [(0.0, INITIAL)]
    assert run.server.rcv.tuning is not None
    assert run.server.rcv.tuning.space == 16384
    assert max(run.windows.windows_sent["b"]) == 128256 <= INITIAL
    assert run.duration == 4.94999999999999  # set by the reads: 4 KB each 50 ms


def test_a_reader_gets_the_buffer_its_reads_ask_for() -> None:
    # 64 KB every 100 ms (640 KB/s): the buffer grows to a few times what one round trip
    # reads (115 ms hold one read or two: 128 KiB is the space), a quarter of what a reader
    # keeping up with the link is given (2,195,168 bytes).
    run = transfer(TcpConfig(), size=2_000_000, reader=Reader(RTT, 64 << 10))
    assert run.capacities == [(0.0, INITIAL), (0.256321, 220096), (0.502431, 570624)]
    assert run.server.rcv.tuning is not None
    assert run.server.rcv.tuning.space == 128 << 10
    assert run.duration == 3.200000000000002  # set by the reads: 64 KB each 100 ms


def test_the_right_edge_never_moves_back_and_grows_by_at_least_a_segment() -> None:
    """RFC 9293 3.8.6.2.2 (and RFC 7323 2.4): the window is never shrunk; receiver-side SWS
    avoidance: the edge moves on by a segment or more, or not at all, while it grows."""
    run = transfer(TcpConfig(), size=1_000_000)
    moves = run.edges.moves()
    assert len(moves) > 100
    assert min(moves) >= 0
    # Moves below a segment are only the rounding of the field up to the scale's unit (RFC
    # 7323 2.3: rounding down would pull the edge back), never a small window opening.
    unit = 1 << run.server.rcv.wscale
    assert [m for m in moves if unit <= m < MSS] == []
