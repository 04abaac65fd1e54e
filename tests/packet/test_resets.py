"""Segments no connection takes (RFC 9293 3.10.7.1 CLOSED, 3.10.7.2 LISTEN): what comes back."""

from __future__ import annotations

import pytest

from .conftest import PORT, Rig

pytestmark = pytest.mark.integration

CLOSED_PORT = 9999


@pytest.mark.timeout(30)
def test_syn_to_closed_port_gets_rst_ack_seq_0_ack_isn_plus_1(echo: Rig) -> None:
    # remote_isn=0: nothing on this flow fixes the stack's ISN, so its numbers read absolute.
    flow = echo.peer.flow(40101, CLOSED_PORT, isn=7_000_000, remote_isn=0)
    flow.send("S", 0, win=65535, options=[("MSS", 1460)])
    flow.expect("R.", 0, 1, win=0)


@pytest.mark.timeout(30)
def test_fin_with_data_to_closed_port_is_acked_past_data_and_fin(echo: Rig) -> None:
    flow = echo.peer.flow(40102, CLOSED_PORT, isn=7_000_000, remote_isn=0)
    flow.send("F", 0, win=65535, payload=b"abc")
    flow.expect("R.", 0, 4, win=0)  # SEG.SEQ + SEG.LEN, the FIN counting one


@pytest.mark.timeout(30)
def test_ack_to_closed_port_gets_rst_with_seq_from_its_ack(echo: Rig) -> None:
    flow = echo.peer.flow(40103, CLOSED_PORT, isn=7_000_000, remote_isn=0)
    flow.send(".", 0, 12345, win=65535)
    flow.expect("R", 12345, win=0)


@pytest.mark.timeout(30)
def test_rst_to_closed_port_gets_nothing(echo: Rig) -> None:
    flow = echo.peer.flow(40104, CLOSED_PORT, isn=7_000_000, remote_isn=0)
    flow.send("R", 0, win=0)
    flow.send("R.", 0, 12345, win=0)
    flow.expect_nothing(0.5)


@pytest.mark.timeout(30)
def test_ack_to_listening_port_without_connection_gets_rst(echo: Rig) -> None:
    flow = echo.peer.flow(40105, PORT, isn=7_000_000, remote_isn=0)
    flow.send("P.", 0, 4242, win=65535, payload=b"stray")
    flow.expect("R", 4242, win=0)
    assert "40105" not in echo.trace(), "a stray ACK must not create a connection"


@pytest.mark.timeout(30)
def test_rst_and_bare_data_to_listening_port_get_nothing(echo: Rig) -> None:
    # LISTEN ignores a RST, and drops a segment with neither SYN nor ACK (3.10.7.2).
    flow = echo.peer.flow(40106, PORT, isn=7_000_000, remote_isn=0)
    flow.send("R", 0, win=0)
    flow.send("P", 0, win=65535, payload=b"no ack")
    flow.send("F", 0, win=65535)
    flow.expect_nothing(0.5)
    assert "40106" not in echo.trace()


@pytest.mark.timeout(30)
def test_syn_ack_to_listening_port_gets_rst_with_seq_from_its_ack(echo: Rig) -> None:
    flow = echo.peer.flow(40107, PORT, isn=7_000_000, remote_isn=0)
    flow.send("S.", 0, 999_999, win=65535, options=[("MSS", 1460)])
    flow.expect("R", 999_999, win=0)
