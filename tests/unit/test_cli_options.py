"""Global options that become TCP settings, parsed without starting a stack."""

from __future__ import annotations

import click
import pytest

from tcpstack.cli.app import parse_keepalive


def test_keepalive_takes_idle_alone_or_idle_interval_count() -> None:
    assert parse_keepalive("60") == (60.0, 75.0, 9)
    assert parse_keepalive("10,2,3") == (10.0, 2.0, 3)


@pytest.mark.parametrize("spec", ["", "1,2", "0", "-1,2,3", "10,2,0", "ten", "1,2,3,4"])
def test_bad_keepalive_is_a_usage_error(spec: str) -> None:
    with pytest.raises(click.BadParameter, match="IDLE,INTERVAL,COUNT"):
        parse_keepalive(spec)
