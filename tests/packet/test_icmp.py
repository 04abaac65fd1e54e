"""ICMP echo on the wire: the reply carries the request's identifier, sequence and data."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP

from .conftest import Rig
from .peer import PEER_ADDRESS, STACK_ADDRESS, checksum_errors

pytestmark = pytest.mark.integration


@pytest.mark.timeout(30)
def test_ping_is_answered_with_same_id_seq_and_data(echo: Rig) -> None:
    for ident, seq, data in ((0x1234, 1, b"ping"), (0xBEEF, 65535, bytes(range(256)) * 4)):
        reply = echo.peer.ping(ident, seq, data)
        icmp = reply.ip[ICMP]
        assert (reply.ip.src, reply.ip.dst) == (STACK_ADDRESS, PEER_ADDRESS)
        assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (0, 0, ident, seq)
        assert reply.payload == data
        assert checksum_errors(reply.raw) == []
