"""One value means "ssthresh not set yet" (RFC 5681 3.1: "arbitrarily high"): every congestion
controller starts with it, and `tcpstack stat` and the cwnd sidecar of `--pcap` show it as
null, any value below it as the number."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tcpstack.api.capture import Capture, sidecar_path
from tcpstack.api.snapshot import connection_info
from tcpstack.tcp.congestion import ALGORITHMS
from tcpstack.tcp.congestion.base import SSTHRESH_UNSET
from tests.unit.link_pair import LinkPair


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_controller_starts_with_ssthresh_unset_in_slow_start(name: str) -> None:
    cc = ALGORITHMS[name](1460)
    assert cc.ssthresh == SSTHRESH_UNSET
    assert cc.in_slow_start()


def test_the_unset_value_is_far_above_any_window() -> None:
    # A window is at most 65535 << 14 (RFC 7323 2.3): slow start never reaches "unset".
    assert SSTHRESH_UNSET == 1 << 30
    assert SSTHRESH_UNSET > 65535 << 14


def test_stat_shows_unset_as_null_and_anything_below_as_the_number() -> None:
    pair = LinkPair()
    client, _server = pair.established_pair(80)
    assert connection_info(client)["ssthresh"] is None
    client.cc.ssthresh = SSTHRESH_UNSET - 1
    assert connection_info(client)["ssthresh"] == SSTHRESH_UNSET - 1
    client.cc.ssthresh = 7300
    assert connection_info(client)["ssthresh"] == 7300


def test_the_cwnd_sidecar_shows_unset_as_null_and_anything_below_as_the_number(
        tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        capture = Capture(tmp_path / "run.pcap", loop)
        conn = SimpleNamespace(
            local_addr=bytes([10, 77, 0, 2]), local_port=80,
            remote_addr=bytes([10, 77, 0, 1]), remote_port=40000,
            cwnd_trace=[(1.0, 14600, SSTHRESH_UNSET), (2.0, 7300, 7300),
                        (3.0, 8760, SSTHRESH_UNSET - 1)])
        capture.close([conn])  # type: ignore[list-item]
    finally:
        loop.close()
    (trace,) = json.loads(sidecar_path(tmp_path / "run.pcap").read_text())["connections"]
    assert [sample[1:] for sample in trace["samples"]] == [
        [14600, None], [7300, 7300], [8760, SSTHRESH_UNSET - 1]]
