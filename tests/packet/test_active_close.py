"""The close paths where tcpstack closes first (RFC 9293 3.6): FIN_WAIT_1, FIN_WAIT_2,
CLOSING and TIME_WAIT, driven against the HTTP service, which closes after answering an
HTTP/1.0 request. The stack runs with --msl 1, so TIME_WAIT lasts 2 s."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from .conftest import PEER_WIN, WIN_EMPTY, Rig, StartRig, establish
from .peer import ANY, FIN, Flow

pytestmark = pytest.mark.integration

BODY = b"closing time\n"
REQUEST = b"GET /x HTTP/1.0\r\n\r\n"
# Every ACK of the stack's here carries the whole 1 MiB (WIN_EMPTY at scale 5): the request
# is read, and the first window after the SYN-ACK's 64 KiB opened all of it; our FIN, where we
# send one, takes a sequence number, which the scale unit's rounding gives back (RFC 9293
# 3.8.6.2.2).


@pytest.fixture
def http(start_rig: StartRig, tmp_path: Path) -> Rig:
    root = tmp_path / "www"
    root.mkdir()
    (root / "x").write_bytes(BODY)
    return start_rig(f"--http={root}")


def _until_fin(flow: Flow) -> tuple[int, int]:
    """Send the request and take the response, ACKing the data, until the stack's FIN.
    Returns (relative seq of the stack's FIN, our next seq)."""
    flow.send("P.", 1, 1, win=PEER_WIN, payload=REQUEST)
    ours = 1 + len(REQUEST)
    received = b""
    while True:
        got = flow.peer.receive(flow.key, 2.0)
        assert got is not None and got.tcp is not None, "the response never finished"
        seq = (int(got.tcp.seq) - (flow.remote_isn or 0)) & 0xFFFFFFFF
        received += got.payload
        if int(got.tcp.flags) & FIN:
            assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(BODY)
            return seq + len(got.payload), ours
        if got.payload:  # ACK the data, so Nagle lets the rest of the response out
            flow.send(".", ours, seq + len(got.payload), win=PEER_WIN)


def _transitions(rig: Rig, sport: int) -> list[str]:
    return re.findall(rf"10\.77\.0\.9:{sport} (\w+ -> \w+)", rig.trace())


@pytest.mark.timeout(30)
def test_fin_wait_1_to_fin_wait_2_to_time_wait_and_closed(http: Rig) -> None:
    flow = establish(http, 41001)
    fin, ours = _until_fin(flow)
    flow.send(".", ours, fin + 1, win=PEER_WIN)        # ACK of the FIN: FIN_WAIT_2
    flow.expect_nothing(0.3)
    flow.send("F.", ours, fin + 1, win=PEER_WIN)       # our FIN: TIME_WAIT
    flow.expect(".", fin + 1, ours + 1, win=WIN_EMPTY)
    assert _transitions(http, 41001)[-3:] == [
        "ESTABLISHED -> FIN_WAIT_1", "FIN_WAIT_1 -> FIN_WAIT_2", "FIN_WAIT_2 -> TIME_WAIT"]
    # TIME_WAIT re-ACKs a retransmitted FIN...
    flow.send("F.", ours, fin + 1, win=PEER_WIN)
    flow.expect(".", fin + 1, ours + 1, win=WIN_EMPTY)
    # ... and after 2 MSL the connection is gone: a segment on it draws a RST.
    time.sleep(2.4)
    assert _transitions(http, 41001)[-1] == "TIME_WAIT -> CLOSED"
    flow.send(".", ours + 1, fin + 1, win=PEER_WIN)
    flow.expect("R", fin + 1, win=0)


@pytest.mark.timeout(30)
def test_fin_wait_1_fin_ack_goes_straight_to_time_wait(http: Rig) -> None:
    flow = establish(http, 41002)
    fin, ours = _until_fin(flow)
    flow.send("F.", ours, fin + 1, win=PEER_WIN)       # FIN that also ACKs the stack's FIN
    flow.expect(".", fin + 1, ours + 1, win=WIN_EMPTY)
    assert _transitions(http, 41002)[-2:] == ["ESTABLISHED -> FIN_WAIT_1",
                                              "FIN_WAIT_1 -> TIME_WAIT"]


@pytest.mark.timeout(30)
def test_simultaneous_close_goes_through_closing(http: Rig) -> None:
    flow = establish(http, 41003)
    fin, ours = _until_fin(flow)
    flow.send("F.", ours, fin, win=PEER_WIN)           # our FIN crosses theirs: no ACK of it
    flow.expect(".", fin + 1, ours + 1, win=WIN_EMPTY)
    flow.send(".", ours + 1, fin + 1, win=PEER_WIN)    # now the ACK of the stack's FIN
    flow.expect_nothing(0.3)
    assert _transitions(http, 41003)[-3:] == [
        "ESTABLISHED -> FIN_WAIT_1", "FIN_WAIT_1 -> CLOSING", "CLOSING -> TIME_WAIT"]


@pytest.mark.timeout(30)
def test_unacknowledged_fin_is_retransmitted(http: Rig) -> None:
    flow = establish(http, 41004)
    fin, _ = _until_fin(flow)
    # The FIN rode on the response's last segment (docs/DECISIONS.md); unacknowledged, that
    # segment goes again after the RTO, the FIN on it, as Linux resends its tail.
    again = flow.expect("FP.", ANY, ANY, win=WIN_EMPTY, payload=ANY, timeout=1.5)
    assert again.tcp is not None
    start = (int(again.tcp.seq) - (flow.remote_isn or 0)) & 0xFFFFFFFF
    assert start + len(again.payload) == fin
    assert again.payload.endswith(BODY)
