"""The `tcpstack connect` progress line (services/relay.py Progress) on a fake clock."""

from __future__ import annotations

import io

from tcpstack.services.relay import Progress, human_bytes


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_human_bytes_uses_si_units() -> None:
    assert [human_bytes(n) for n in (0, 999, 1000, 1_234_567, 20_000_000_000)] == \
        ["0 B", "999 B", "1.0 kB", "1.2 MB", "20.0 GB"]


def test_nothing_is_shown_for_transfers_under_a_second() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress(out, clock=clock)
    progress.sent = 5000
    clock.now += 0.9
    progress.draw()
    progress.finish()
    assert out.getvalue() == ""


def test_the_line_is_redrawn_in_place_then_left_as_a_summary() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress(out, clock=clock)
    clock.now += 1.0
    progress.sent = 2_000_000
    progress.draw()
    clock.now += 1.0
    progress.sent = 4_000_000
    progress.received = 500
    progress.draw()
    progress.finish()
    assert out.getvalue() == (
        "\rsent 2.0 MB, received 0 B, 2.0 MB/s, 1.0 s\x1b[K"
        "\rsent 4.0 MB, received 500 B, 2.0 MB/s, 2.0 s\x1b[K"
        "\rsent 4.0 MB, received 500 B in 2.0 s (2.0 MB/s)\x1b[K\n")


def test_hide_erases_the_line_before_other_output() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress(out, clock=clock)
    progress.hide()
    assert out.getvalue() == "", "nothing to erase yet"
    clock.now += 1.5
    progress.draw()
    progress.hide()
    assert out.getvalue().endswith("\r\x1b[K")
