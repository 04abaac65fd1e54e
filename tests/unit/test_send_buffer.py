"""SendBuffer: the bounded queue of unacknowledged bytes, indexed from SND.UNA."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.tcp.send_buffer import SendBuffer


def test_append_takes_everything_that_fits() -> None:
    buf = SendBuffer(10)
    assert buf.append(b"abcd") == 4
    assert len(buf) == 4
    assert buf.space == 6


def test_append_beyond_capacity_takes_only_what_fits() -> None:
    buf = SendBuffer(10)
    assert buf.append(b"0123456") == 7
    assert buf.append(b"abcdef") == 3
    assert len(buf) == 10 and buf.space == 0
    assert buf.peek(0, 10) == b"0123456abc"


def test_append_to_full_buffer_takes_nothing() -> None:
    buf = SendBuffer(4)
    buf.append(b"full")
    assert buf.append(b"more") == 0
    assert buf.peek(0, 10) == b"full"


def test_append_accepts_memoryview_and_bytearray() -> None:
    buf = SendBuffer(8)
    assert buf.append(memoryview(b"abcdef")[1:4]) == 3
    assert buf.append(bytearray(b"xyz123")) == 5
    assert buf.peek(0, 8) == b"bcdxyz12"


def test_peek_at_offset_from_oldest_unacknowledged_byte() -> None:
    buf = SendBuffer(100)
    buf.append(b"hello world")
    assert buf.peek(6, 5) == b"world"
    assert buf.peek(6, 100) == b"world"  # a peek past the end returns what there is
    assert buf.peek(11, 5) == b""
    assert len(buf) == 11  # peeking does not remove


def test_consume_drops_oldest_bytes_and_frees_space() -> None:
    buf = SendBuffer(10)
    buf.append(b"0123456789")
    buf.consume(4)
    assert len(buf) == 6 and buf.space == 4
    assert buf.peek(0, 3) == b"456"
    assert buf.append(b"abcdef") == 4
    assert buf.peek(0, 10) == b"456789abcd"


def test_compaction_after_large_consume_keeps_content_and_bounds_storage() -> None:
    data = random.Random(1).randbytes(200_000)
    buf = SendBuffer(1 << 20)
    buf.append(data)
    buf.consume(150_000)
    assert len(buf) == 50_000
    assert buf.peek(0, 50_000) == data[150_000:]
    assert buf.peek(49_990, 10) == data[-10:]
    # The acknowledged prefix is gone from storage, not just skipped (nothing grows unbounded).
    assert len(buf._buf) == 50_000
    more = random.Random(2).randbytes(1000)
    buf.append(more)
    assert buf.peek(49_500, 1500) == data[-500:] + more


def test_many_small_acks_never_let_storage_grow_beyond_twice_the_content() -> None:
    buf = SendBuffer(1 << 20)
    chunk = bytes(range(256)) * 8  # 2048 bytes
    for _ in range(1000):
        buf.append(chunk)
        buf.consume(len(chunk))
    assert len(buf) == 0
    assert len(buf._buf) <= 1 << 17


operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, 40_000), st.integers(0, 1 << 30)),
    st.tuples(st.just("consume"), st.integers(0, 100), st.just(0)),  # percent of length
    st.tuples(st.just("peek"), st.integers(0, 100), st.integers(0, 5000)),
), max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 150_000), operations)
def test_operations_match_a_bytes_model(capacity: int,
                                        ops: list[tuple[str, int, int]]) -> None:
    buf = SendBuffer(capacity)
    model = b""
    for op, x, y in ops:
        if op == "append":
            data = random.Random(y).randbytes(x)
            taken = buf.append(data)
            assert taken == min(len(data), capacity - len(model))
            model += data[:taken]
        elif op == "consume":
            n = len(model) * x // 100
            buf.consume(n)
            model = model[n:]
        else:
            offset = len(model) * x // 100
            assert buf.peek(offset, y) == model[offset:offset + y]
        assert len(buf) == len(model)
        assert buf.space == capacity - len(model)
    assert buf.peek(0, len(model)) == model


def test_peek_is_a_view_and_a_view_kept_alive_survives_appends_and_compaction() -> None:
    data = random.Random(3).randbytes(150_000)
    buf = SendBuffer(1 << 20)
    buf.append(data)
    view = buf.peek(100_000, 1460)
    assert isinstance(view, memoryview) and view == data[100_000:101_460]
    # A holder keeps the view (a test's delayed link): the buffer cannot resize its storage,
    # so it moves to a copy, and the view's bytes stay what they were.
    buf.append(b"tail")
    buf.consume(100_000)  # large enough to compact
    buf.append(b"more")
    assert view == data[100_000:101_460]
    assert len(buf) == 50_008
    assert buf.peek(0, 50_008) == data[100_000:] + b"tail" + b"more"
    assert len(buf._buf) == 50_008  # the acknowledged prefix left with the old storage
    del view
    buf.consume(50_000)
    assert buf.peek(0, 100) == b"tailmore"
