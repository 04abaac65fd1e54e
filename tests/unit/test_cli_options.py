"""Global options that become TCP settings or logging, without starting a stack."""

from __future__ import annotations

import logging

import click
import pytest

from tcpstack.cli.app import LogLines, parse_keepalive


def test_keepalive_takes_idle_alone_or_idle_interval_count() -> None:
    assert parse_keepalive("60") == (60.0, 75.0, 9)
    assert parse_keepalive("10,2,3") == (10.0, 2.0, 3)


@pytest.mark.parametrize("spec", ["", "1,2", "0", "-1,2,3", "10,2,0", "ten", "1,2,3,4"])
def test_bad_keepalive_is_a_usage_error(spec: str) -> None:
    with pytest.raises(click.BadParameter, match="IDLE,INTERVAL,COUNT"):
        parse_keepalive(spec)


def test_log_lines_carry_the_prefix_but_segment_lines_start_with_their_time() -> None:
    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.DEBUG, __file__, 1, message, None, None)

    lines = LogLines()
    segment = "22:13:20.250000 IP 10.77.0.1.40000 > 10.77.0.2.80: Flags [S], seq 1, win 0, " \
              "length 0"
    assert lines.format(record("tcpstack.segments", segment)) == segment
    assert lines.format(record("tcpstack", "listening on 10.77.0.2:80")) == \
        "tcpstack: listening on 10.77.0.2:80"
    assert lines.format(record("tcpstack.http", "GET / 200")) == "tcpstack: GET / 200"
