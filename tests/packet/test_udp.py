"""UDP on the wire (RFC 768), against `tcpstack listen --udp 8080 --echo`: scapy's datagrams
are echoed with a checksum scapy agrees with, damaged ones draw nothing, a closed port draws
ICMP port unreachable quoting the datagram (RFC 1122 3.2.2, RFC 792), six at once and then
one a second to a source, as Linux's icmp_ratelimit allows. These hold for Linux too."""

from __future__ import annotations

import time

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.packet import Raw

from .conftest import PORT, Rig
from .peer import PEER_ADDRESS, STACK_ADDRESS, Captured, checksum_errors

pytestmark = pytest.mark.integration


def _datagram(sport: int, dport: int, payload: bytes, **udp_fields: int) -> IP:
    return IP(src=PEER_ADDRESS, dst=STACK_ADDRESS) / UDP(sport=sport, dport=dport,
                                                         **udp_fields) / Raw(payload)


def _echo(rig: Rig, sport: int, timeout: float = 1.0) -> Captured | None:
    return rig.peer.receive(("udp", sport, PORT), timeout)


@pytest.mark.timeout(30)
def test_a_datagram_comes_back_from_the_port_with_a_checksum_scapy_accepts(
        udp_echo: Rig) -> None:
    for sport, payload in ((40000, b"hello"), (40001, b""), (40002, bytes(range(256)) * 5)):
        udp_echo.peer.inject(_datagram(sport, PORT, payload))
        got = _echo(udp_echo, sport)
        assert got is not None, f"no echo of {len(payload)} bytes\n{udp_echo.trace()}"
        assert (got.ip.src, got.ip.dst, got.ip.ttl, got.ip.flags, got.ip.id) == (
            STACK_ADDRESS, PEER_ADDRESS, 64, "DF", 0)
        assert (got.ip[UDP].sport, got.ip[UDP].dport, got.ip[UDP].len) == (
            PORT, sport, 8 + len(payload))
        assert bytes(got.ip[UDP].payload) == payload
        assert checksum_errors(got.raw) == []
        rebuilt = UDP(bytes(got.ip[UDP]))
        del rebuilt.chksum
        assert IP(bytes(IP(src=STACK_ADDRESS, dst=PEER_ADDRESS) / rebuilt))[UDP].chksum == \
            got.ip[UDP].chksum


@pytest.mark.timeout(30)
def test_a_zero_checksum_means_none_and_is_echoed(udp_echo: Rig) -> None:
    udp_echo.peer.inject(_datagram(40010, PORT, b"unchecked", chksum=0))
    got = _echo(udp_echo, 40010)
    assert got is not None and bytes(got.ip[UDP].payload) == b"unchecked"
    assert got.ip[UDP].chksum != 0  # ours always carries one


@pytest.mark.timeout(30)
def test_damaged_datagrams_draw_nothing_and_the_port_still_echoes(udp_echo: Rig) -> None:
    good = bytes(IP(bytes(_datagram(40020, PORT, b"payload"))))
    bad_sum = good[:26] + bytes([good[26] ^ 0x5A]) + good[27:]
    udp_echo.peer.inject(IP(bad_sum))
    udp_echo.peer.inject(_datagram(40020, PORT, b"short", len=40))   # beyond the IP payload
    udp_echo.peer.inject(_datagram(40020, PORT, b"short", len=4))    # below the header
    assert _echo(udp_echo, 40020, timeout=0.5) is None
    assert udp_echo.peer.receive("icmp", 0.1) is None  # no port unreachable for them either
    udp_echo.peer.inject(_datagram(40020, PORT, b"still here"))
    got = _echo(udp_echo, 40020)
    assert got is not None and bytes(got.ip[UDP].payload) == b"still here"


@pytest.mark.timeout(30)
def test_a_closed_port_draws_port_unreachable_quoting_the_datagram(udp_echo: Rig) -> None:
    sent = _datagram(40030, 9, b"is anyone on port 9?")
    sent.id = 4242
    udp_echo.peer.inject(sent)
    got = udp_echo.peer.receive("icmp", 1.0)
    assert got is not None, udp_echo.trace()
    icmp = got.ip[ICMP]
    assert (got.ip.src, got.ip.dst, icmp.type, icmp.code) == (STACK_ADDRESS, PEER_ADDRESS,
                                                              3, 3)
    assert checksum_errors(got.raw) == []
    quoted = bytes(icmp.payload)
    assert quoted == bytes(IP(bytes(sent)))  # the whole datagram: it is short enough
    assert (icmp[IPerror].id, icmp[UDPerror].sport, icmp[UDPerror].dport) == (4242, 40030, 9)


@pytest.mark.timeout(30)
def test_port_unreachable_goes_six_at_once_then_one_a_second(udp_echo: Rig) -> None:
    started = time.monotonic()
    for i in range(10):
        udp_echo.peer.inject(_datagram(40040 + i, 9, b"x"))
    sent_in = time.monotonic() - started
    errors = []
    while (got := udp_echo.peer.receive("icmp", 0.5)) is not None:
        errors.append(got)
    assert sent_in < 0.5, "the burst took too long to pin the count"
    assert [e.ip[ICMP][UDPerror].sport for e in errors] == [40040 + i for i in range(6)]
    time.sleep(max(0.0, started + 1.1 - time.monotonic()))
    udp_echo.peer.inject(_datagram(40050, 9, b"x"))
    got = udp_echo.peer.receive("icmp", 1.0)
    assert got is not None and got.ip[ICMP][UDPerror].sport == 40050
