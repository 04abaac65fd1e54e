"""Sequence number arithmetic on the 2**32 circle (RFC 9293 3.4)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tcpstack.tcp import seq

seqs = st.integers(min_value=0, max_value=seq.MASK)
# Distances that keep two numbers comparable: less than half the circle either way.
near = st.integers(min_value=-(seq.HALF - 1), max_value=seq.HALF - 1)


def test_add_wraps_past_2_pow_32() -> None:
    assert seq.add(0xFFFFFFF0, 0x20) == 0x10
    assert seq.add(0xFFFFFFFF, 1) == 0
    assert seq.add(0, -1) == 0xFFFFFFFF
    assert seq.add(5, 10) == 15


def test_diff_is_signed_distance_across_the_wrap() -> None:
    assert seq.diff(0x10, 0xFFFFFFF0) == 0x20
    assert seq.diff(0xFFFFFFF0, 0x10) == -0x20
    assert seq.diff(7, 7) == 0
    assert seq.diff(seq.HALF, 0) == -seq.HALF  # exactly half way: the range is [-2**31, 2**31)


def test_number_just_before_wrap_is_less_than_number_just_after() -> None:
    assert seq.lt(0xFFFFFFF0, 0x10)
    assert seq.le(0xFFFFFFF0, 0x10)
    assert not seq.gt(0xFFFFFFF0, 0x10)
    assert not seq.ge(0xFFFFFFF0, 0x10)
    assert seq.gt(0x10, 0xFFFFFFF0)
    assert seq.ge(0x10, 0xFFFFFFF0)
    assert not seq.lt(0x10, 0xFFFFFFF0)


def test_comparisons_without_wrap() -> None:
    assert seq.lt(1, 2) and seq.le(1, 2) and not seq.gt(1, 2) and not seq.ge(1, 2)
    assert seq.le(5, 5) and seq.ge(5, 5) and not seq.lt(5, 5) and not seq.gt(5, 5)


def test_numbers_more_than_half_apart_compare_the_other_way() -> None:
    # 0 and 2**31 + 1 are more than half a circle apart: going forward from 2**31 + 1
    # reaches 0 sooner, so 2**31 + 1 comes first.
    assert seq.lt(seq.HALF + 1, 0)
    assert seq.gt(0, seq.HALF + 1)


@pytest.mark.parametrize(("x", "start", "size", "inside"), [
    (100, 100, 10, True),              # left edge is in
    (109, 100, 10, True),
    (110, 100, 10, False),             # right edge is out
    (99, 100, 10, False),
    (100, 100, 0, False),              # an empty window holds nothing
    (0x05, 0xFFFFFFFA, 0x10, True),    # the window straddles the wrap
    (0xFFFFFFFA, 0xFFFFFFFA, 0x10, True),
    (0x0A, 0xFFFFFFFA, 0x10, False),
    (0xFFFFFFF9, 0xFFFFFFFA, 0x10, False),
])
def test_in_window(x: int, start: int, size: int, inside: bool) -> None:
    assert seq.in_window(x, start, size) is inside


@given(seqs, near)
def test_diff_undoes_add(a: int, n: int) -> None:
    assert seq.diff(seq.add(a, n), a) == n


@given(seqs, seqs)
def test_diff_is_in_signed_half_range(a: int, b: int) -> None:
    d = seq.diff(a, b)
    assert -seq.HALF <= d < seq.HALF
    assert seq.add(b, d) == a


@given(seqs, seqs)
def test_exactly_one_of_lt_eq_gt(a: int, b: int) -> None:
    assume((a - b) & seq.MASK != seq.HALF)
    assert [seq.lt(a, b), a == b, seq.gt(a, b)].count(True) == 1


@given(seqs, seqs)
def test_lt_is_antisymmetric(a: int, b: int) -> None:
    assert not (seq.lt(a, b) and seq.lt(b, a))
    if a != b and (a - b) & seq.MASK != seq.HALF:
        assert seq.lt(a, b) != seq.lt(b, a)


@given(seqs)
def test_numbers_half_the_circle_apart_are_incomparable(a: int) -> None:
    b = seq.add(a, seq.HALF)
    assert not seq.lt(a, b) and not seq.lt(b, a)
    assert not seq.gt(a, b) and not seq.gt(b, a)


@given(seqs, seqs)
def test_le_ge_agree_with_lt_gt(a: int, b: int) -> None:
    assert seq.le(a, b) == (seq.lt(a, b) or a == b)
    assert seq.ge(a, b) == (seq.gt(a, b) or a == b)
    assert seq.gt(a, b) == seq.lt(b, a)
    assert seq.ge(a, b) == seq.le(b, a)
    # diff's range is [-HALF, HALF): exactly half the circle apart it says -HALF, while lt
    # calls the two incomparable (the test above).
    assert seq.lt(a, b) == (-seq.HALF < seq.diff(a, b) < 0)


@given(seqs, st.integers(min_value=1, max_value=seq.HALF - 1))
def test_moving_forward_less_than_half_is_greater(a: int, n: int) -> None:
    b = seq.add(a, n)
    assert seq.lt(a, b)
    assert seq.gt(b, a)


@given(seqs, st.integers(min_value=0, max_value=seq.HALF - 1),
       st.integers(min_value=0, max_value=seq.HALF - 1))
def test_order_is_translation_invariant(a: int, n: int, shift: int) -> None:
    # Comparing after adding the same offset to both sides gives the same answer, which is
    # what makes a connection behave identically whatever its ISN.
    b = seq.add(a, n)
    assert seq.le(a, b) == seq.le(seq.add(a, shift), seq.add(b, shift))
    assert seq.diff(b, a) == seq.diff(seq.add(b, shift), seq.add(a, shift))


@given(seqs, st.integers(min_value=0, max_value=seq.HALF), seqs)
def test_in_window_matches_offset_definition(start: int, size: int, x: int) -> None:
    offset = (x - start) % seq.MOD
    assert seq.in_window(x, start, size) == (offset < size)


@given(seqs, st.integers(min_value=1, max_value=seq.HALF))
def test_window_holds_its_edges_correctly(start: int, size: int) -> None:
    assert seq.in_window(start, start, size)
    assert seq.in_window(seq.add(start, size - 1), start, size)
    assert not seq.in_window(seq.add(start, size), start, size)
    assert not seq.in_window(seq.add(start, -1), start, size)
