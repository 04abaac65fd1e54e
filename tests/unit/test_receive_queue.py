"""The receive side's unread bytes: full-sized payloads kept as the views of the packets they
came in (not copied), small ones copied and run together, read back in any sizes as exactly
the stream delivered, with the count the window is computed from always what is held."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.receiver import VIEW_FROM, Receiver

IRS = 1000


def receiver() -> Receiver:
    rcv = Receiver(TcpConfig())
    rcv.start(IRS)
    return rcv


def held(rcv: Receiver) -> bytes:
    return b"".join(rcv.unread or ())


def test_a_full_sized_payload_is_held_as_the_view_of_its_packet() -> None:
    rcv = receiver()
    payload = bytes(range(256)) * (VIEW_FROM // 256)
    view = memoryview(b"\x45" * 40 + payload)[40:]
    assert rcv.deliver(view) is True  # the first unread data: the application hears of it
    assert rcv.unread is not None and rcv.unread[0] is view
    assert rcv.unread_bytes == VIEW_FROM
    assert rcv.read() == payload
    assert rcv.unread is None and rcv.unread_bytes == 0


def test_small_payloads_are_copied_into_one_piece() -> None:
    rcv = receiver()
    packet = b"\x45" * 40 + b"x" * (VIEW_FROM - 1)
    for _ in range(3):
        rcv.deliver(memoryview(packet)[40:])
    assert rcv.unread is not None and len(rcv.unread) == 1  # no view pins a packet
    assert rcv.unread_bytes == 3 * (VIEW_FROM - 1)
    big = memoryview(b"\x45" * 40 + b"y" * VIEW_FROM)[40:]
    rcv.deliver(big)
    rcv.deliver(b"z")
    assert len(rcv.unread) == 3 and rcv.unread[1] is big
    assert rcv.read() == b"x" * (3 * VIEW_FROM - 3) + b"y" * VIEW_FROM + b"z"


def test_a_writable_buffer_is_copied_so_its_reuse_changes_nothing() -> None:
    rcv = receiver()
    scratch = bytearray(b"first" * VIEW_FROM)
    rcv.deliver(scratch)
    rcv.deliver(memoryview(scratch)[:3])
    scratch[:5] = b"XXXXX"
    assert rcv.read() == b"first" * VIEW_FROM + b"fir"


def test_a_read_ending_inside_a_piece_leaves_its_rest() -> None:
    rcv = receiver()
    for piece in (b"abcd", b"efgh", b"ijkl"):
        rcv.deliver(piece)
    assert rcv.read(6) == b"abcdef"
    assert rcv.unread_bytes == 6 and held(rcv) == b"ghijkl"
    assert rcv.read(2) == b"gh"  # inside the piece cut before
    assert rcv.read(4) == b"ijkl"  # exactly the rest: the queue is let go
    assert rcv.unread is None and rcv.unread_bytes == 0
    assert rcv.bytes_read == 12 and rcv.bytes_received == 12
    assert rcv.read(10) == b""


def test_the_window_follows_the_unread_count() -> None:
    rcv = receiver()
    rcv.capacity, rcv.wscale = 10_000, 0
    rcv.advertise()
    rcv.deliver(b"x" * 4000)
    assert rcv.window == 10_000 - 4000  # RCV.NXT moved into the advertised window
    assert rcv.advertise() == 10_000 - 4000  # the free buffer, not more (nothing read yet)
    rcv.read(3000)
    assert rcv.unread_bytes == 1000
    rcv.advertise()
    assert rcv.window == 10_000 - 1000


def test_a_stopped_reader_holds_nothing() -> None:
    rcv = receiver()
    rcv.discard = True
    assert rcv.deliver(b"dropped") is False
    assert rcv.unread is None and rcv.unread_bytes == 0
    assert rcv.nxt == IRS + 1 + 7  # acknowledged all the same


_LONG = VIEW_FROM + 100
_piece = st.one_of(
    st.binary(min_size=1, max_size=50),
    st.binary(min_size=1, max_size=50).map(bytearray),
    st.binary(min_size=2, max_size=60).map(lambda b: memoryview(b)[1:]),
    st.binary(min_size=2, max_size=60).map(lambda b: memoryview(bytearray(b))[1:]),
    st.binary(min_size=VIEW_FROM + 1, max_size=_LONG).map(lambda b: memoryview(b)[1:]),
    st.binary(min_size=VIEW_FROM, max_size=_LONG),
)


@given(st.lists(st.tuples(_piece, st.integers(-1, 2 * _LONG)), max_size=30))
def test_any_deliveries_and_reads_give_back_the_stream(steps: list[tuple[bytes, int]]) -> None:
    rcv = receiver()
    sent = bytearray()
    got = bytearray()
    for piece, read_size in steps:
        sent += piece
        rcv.deliver(piece)
        if read_size:
            data = rcv.read(read_size)
            assert isinstance(data, bytes)
            assert len(data) == (len(sent) - len(got) if read_size < 0
                                 else min(read_size, len(sent) - len(got)))
            got += data
        assert rcv.unread_bytes == len(sent) - len(got) == len(held(rcv))
    got += rcv.read()
    assert got == sent
    assert rcv.unread is None and rcv.unread_bytes == 0
