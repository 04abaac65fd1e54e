"""The Internet checksum (RFC 1071) against the textbook word-by-word definition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tcpstack.net.checksum import checksum, ones_complement_sum, verify


def reference_sum(data: bytes) -> int:
    """RFC 1071 4.1: add 16-bit big-endian words (an odd last byte padded with a zero byte),
    folding every carry out of bit 15 back into bit 0."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def reference_checksum(data: bytes, partial: int = 0) -> int:
    total = reference_sum(data) + partial
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def same_ones_complement(x: int, y: int) -> bool:
    """0x0000 and 0xFFFF are the two encodings of zero in one's complement."""
    return x % 0xFFFF == y % 0xFFFF


def test_rfc1071_worked_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 with end-around carry.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert reference_sum(data) == 0xDDF2
    assert ones_complement_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D


def test_known_ipv4_header_checksum() -> None:
    # A header from the Wikipedia IPv4 checksum example, checksum field zeroed: B861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert checksum(header) == 0xB861


def test_odd_trailing_byte_is_the_high_half_of_a_word() -> None:
    assert ones_complement_sum(b"\x01") == 0x0100
    assert ones_complement_sum(b"\x00\x01\x02") == 0x0201


def test_all_zero_data_checksums_to_all_ones() -> None:
    assert checksum(b"\x00" * 20) == 0xFFFF


@given(st.binary(max_size=3000))
def test_sum_matches_reference_for_any_length(data: bytes) -> None:
    assert same_ones_complement(ones_complement_sum(data), reference_sum(data))
    assert 0 <= ones_complement_sum(data) < 0xFFFF


@given(st.binary(min_size=1, max_size=1501).filter(lambda b: len(b) % 2 == 1))
def test_sum_matches_reference_for_odd_length(data: bytes) -> None:
    assert same_ones_complement(ones_complement_sum(data), reference_sum(data))


@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=0x3FFFC))
def test_checksum_matches_reference_with_pseudo_header_sum(data: bytes, partial: int) -> None:
    ours = checksum(data, partial)
    assert same_ones_complement(ours, reference_checksum(data, partial))
    # Zero is never sent: UDP reserves it for "no checksum" (RFC 768), so 0xFFFF stands in.
    assert 1 <= ours <= 0xFFFF


def _with_checksum(data: bytes, partial: int = 0) -> bytearray:
    """`data` behind a checksum field, so the field stays word-aligned for any length."""
    return bytearray(checksum(data, partial).to_bytes(2, "big") + data)


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=0x3FFFC))
def test_verify_accepts_correctly_checksummed_buffer(data: bytes, partial: int) -> None:
    assert verify(_with_checksum(data, partial), partial)
    assert verify(memoryview(bytes(_with_checksum(data, partial))), partial)


@given(st.binary(max_size=2000), st.data())
def test_verify_rejects_any_single_bit_flip(data: bytes, draw: st.DataObject) -> None:
    buf = _with_checksum(data)
    bit = draw.draw(st.integers(min_value=0, max_value=len(buf) * 8 - 1))
    buf[bit // 8] ^= 0x80 >> (bit % 8)
    assert not verify(buf)


@given(st.binary(max_size=500), st.integers(min_value=1, max_value=0xFFFE))
def test_verify_rejects_wrong_pseudo_header_sum(data: bytes, delta: int) -> None:
    assert not verify(_with_checksum(data, 0), delta)


@given(st.sampled_from([255, 256, 257, 511, 1447, 1448, 1460, 9001, 65535]),
       st.sampled_from([0x00, 0xFF, 0x5A]), st.randoms(use_true_random=False))
def test_the_folded_sum_of_long_buffers_matches_the_reference(length: int, fill: int,
                                                               rng: object) -> None:
    # From 256 bytes the integer is folded twice before the modulo: lengths either side of
    # that, odd ones, all ones (every word 0xFFFF, the carries at their most) and noise.
    data = bytes([fill]) * length
    assert same_ones_complement(ones_complement_sum(data), reference_sum(data))
    noisy = bytes(rng.randrange(256) for _ in range(length))  # type: ignore[attr-defined]
    assert same_ones_complement(ones_complement_sum(noisy), reference_sum(noisy))
