"""The -v segment lines are tcpdump's: the packet's local time to the microsecond, `IP`,
flags in tcpdump's letters, sequence numbers counted from the bases tcpdump takes (the first
segment with an ACK, which itself shows absolute ones), options in order, bare ACKs without
seq. The expected lines were printed by tcpdump 4.99.3 (`tcpdump -nr`) for the same packets,
and are checked against the tcpdump on this machine when there is one."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcpstack.io.pcap import PcapWriter
from tcpstack.io.segment_log import SegmentFormatter, SegmentLogger, format_options, tcpdump_time
from tcpstack.net import ipv4, ipv6
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.segment import ACK, FIN, PSH, RST, SYN, URG

KERNEL = bytes([10, 77, 0, 1])
STACK = bytes([10, 77, 0, 2])
CLIENT_ISN = 1_000_000
SERVER_ISN = 4_294_967_000  # wraps within the first kilobyte
MASK = 0xFFFFFFFF
T0 = 1_700_000_000.25  # 22:13:20.250000 UTC


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC for the test (tcpdump prints local time)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
           window: int = 65535, options: bytes = b"", payload: bytes = b"") -> bytes:
    pseudo = ipv4.pseudo_header_sum(src, dst, ipv4.PROTO_TCP)
    seg = tcpseg.build(sport, dport, seq & MASK, ack & MASK, flags, window, pseudo, options,
                       payload)
    return ipv4.build(src, dst, ipv4.PROTO_TCP, seg)


def client(seq: int, ack: int, flags: int, **kw: object) -> bytes:
    return packet(KERNEL, STACK, 40000, 5000, seq, ack, flags, **kw)  # type: ignore[arg-type]


def server(seq: int, ack: int, flags: int, **kw: object) -> bytes:
    return packet(STACK, KERNEL, 5000, 40000, seq, ack, flags, **kw)  # type: ignore[arg-type]


def sack(*blocks: tuple[int, int]) -> bytes:
    body = b"".join(struct.pack("!II", left & MASK, right & MASK) for left, right in blocks)
    return bytes((1, 1, 5, 2 + len(body))) + body


# What Linux puts in a SYN, and tcpstack in its SYN-ACK.
LINUX_SYN_OPTIONS = (tcpseg.encode_options(mss=1460, sack_permitted=True)[:4]
                     + bytes((4, 2, 8, 10)) + struct.pack("!II", 1337358635, 0)
                     + bytes((1, 3, 3, 10)))
SYNACK_OPTIONS = tcpseg.encode_options(mss=1460, wscale=5, sack_permitted=True)

# One connection from SYN to FIN, a stray reset, urgent data and a connection seen from its
# middle, with what tcpdump prints for each packet.
CONVERSATION: list[tuple[bytes, str]] = [
    (client(CLIENT_ISN, 0, SYN, window=64240, options=LINUX_SYN_OPTIONS),
     "22:13:20.250000 IP 10.77.0.1.40000 > 10.77.0.2.5000: Flags [S], seq 1000000, "
     "win 64240, options [mss 1460,sackOK,TS val 1337358635 ecr 0,nop,wscale 10], length 0"),
    (server(SERVER_ISN, CLIENT_ISN + 1, SYN | ACK, options=SYNACK_OPTIONS),
     "22:13:20.251000 IP 10.77.0.2.5000 > 10.77.0.1.40000: Flags [S.], seq 4294967000, "
     "ack 1000001, win 65535, options [mss 1460,nop,nop,sackOK,nop,wscale 5], length 0"),
    (client(CLIENT_ISN + 1, SERVER_ISN + 1, ACK, window=63),
     "22:13:20.252000 IP 10.77.0.1.40000 > 10.77.0.2.5000: Flags [.], ack 1, win 63, "
     "length 0"),
    (client(CLIENT_ISN + 1, SERVER_ISN + 1, PSH | ACK, window=63, payload=b"x" * 78),
     "22:13:20.253000 IP 10.77.0.1.40000 > 10.77.0.2.5000: Flags [P.], seq 1:79, ack 1, "
     "win 63, length 78"),
    (server(SERVER_ISN + 1, CLIENT_ISN + 79, ACK, payload=b"y" * 1448),
     "22:13:20.254000 IP 10.77.0.2.5000 > 10.77.0.1.40000: Flags [.], seq 1:1449, ack 79, "
     "win 65535, length 1448"),
    (client(CLIENT_ISN + 79, SERVER_ISN + 1449, ACK, window=63,
            options=sack((SERVER_ISN + 2897, SERVER_ISN + 4345),
                         (SERVER_ISN + 5793, SERVER_ISN + 7241))),
     "22:13:20.255000 IP 10.77.0.1.40000 > 10.77.0.2.5000: Flags [.], ack 1449, win 63, "
     "options [nop,nop,sack 2 {2897:4345}{5793:7241}], length 0"),
    (server(SERVER_ISN + 1449, CLIENT_ISN + 79, FIN | PSH | ACK, payload=b"z" * 10),
     "22:13:20.256000 IP 10.77.0.2.5000 > 10.77.0.1.40000: Flags [FP.], seq 1449:1459, "
     "ack 79, win 65535, length 10"),
    (client(CLIENT_ISN + 79, SERVER_ISN + 1460, FIN | ACK, window=63),
     "22:13:20.257000 IP 10.77.0.1.40000 > 10.77.0.2.5000: Flags [F.], seq 79, ack 1460, "
     "win 63, length 0"),
    (server(SERVER_ISN + 1460, CLIENT_ISN + 80, ACK),
     "22:13:20.258000 IP 10.77.0.2.5000 > 10.77.0.1.40000: Flags [.], ack 80, win 65535, "
     "length 0"),
    # A SYN to a closed port and its reset: the RST-ACK is the first segment with an ACK.
    (packet(KERNEL, STACK, 40002, 5001, 77, 0, SYN),
     "22:13:20.259000 IP 10.77.0.1.40002 > 10.77.0.2.5001: Flags [S], seq 77, win 65535, "
     "length 0"),
    (packet(STACK, KERNEL, 5001, 40002, 0, 78, RST | ACK, window=0),
     "22:13:20.260000 IP 10.77.0.2.5001 > 10.77.0.1.40002: Flags [R.], seq 0, ack 78, win 0, "
     "length 0"),
    (packet(KERNEL, STACK, 40003, 5000, 9, 0, RST, window=0),
     "22:13:20.261000 IP 10.77.0.1.40003 > 10.77.0.2.5000: Flags [R], seq 9, win 0, "
     "length 0"),
    (packet(KERNEL, STACK, 40005, 5000, 9, 0, URG | ACK, window=0, payload=b"u"),
     "22:13:20.262000 IP 10.77.0.1.40005 > 10.77.0.2.5000: Flags [.U], seq 9:10, ack 0, "
     "win 0, urg 0, length 1"),
    # Seen from its middle: the first segment absolute, the rest counted from it.
    (packet(KERNEL, STACK, 40001, 5000, 5000, 7000, PSH | ACK, payload=b"abc"),
     "22:13:20.263000 IP 10.77.0.1.40001 > 10.77.0.2.5000: Flags [P.], seq 5000:5003, "
     "ack 7000, win 65535, length 3"),
    (packet(STACK, KERNEL, 5000, 40001, 7000, 5003, ACK),
     "22:13:20.264000 IP 10.77.0.2.5000 > 10.77.0.1.40001: Flags [.], ack 3, win 65535, "
     "length 0"),
    (packet(KERNEL, STACK, 40001, 5000, 5003, 7000, PSH | ACK, payload=b"def"),
     "22:13:20.265000 IP 10.77.0.1.40001 > 10.77.0.2.5000: Flags [P.], seq 3:6, ack 1, "
     "win 65535, length 3"),
    (ipv4.build(KERNEL, STACK, ipv4.PROTO_ICMP, bytes((8, 0, 0, 0, 0, 1, 0, 7)) + b"ping"),
     "22:13:20.266000 IP 10.77.0.1 > 10.77.0.2: ICMP echo request, id 1, seq 7, length 12"),
    (ipv4.build(STACK, KERNEL, ipv4.PROTO_ICMP, bytes((0, 0, 0, 0, 0, 1, 0, 7)) + b"ping"),
     "22:13:20.267000 IP 10.77.0.2 > 10.77.0.1: ICMP echo reply, id 1, seq 7, length 12"),
]


def times() -> list[float]:
    return [T0 + i / 1000 for i in range(len(CONVERSATION))]


def test_every_line_is_what_tcpdump_prints(utc: None) -> None:
    fmt = SegmentFormatter()
    lines = [fmt.line(pkt, when) for (pkt, _), when in zip(CONVERSATION, times(), strict=True)]
    assert lines == [expected for _, expected in CONVERSATION]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_the_lines_match_this_machines_tcpdump(utc: None, tmp_path: Path) -> None:
    capture = tmp_path / "conversation.pcap"
    fmt = SegmentFormatter()
    ours = []
    with PcapWriter(capture) as writer:
        for (pkt, _), when in zip(CONVERSATION, times(), strict=True):
            writer.write(pkt, when)
            ours.append(fmt.line(pkt, when))
    result = subprocess.run(["tcpdump", "-nr", str(capture)], capture_output=True, text=True,
                            timeout=30, env={**os.environ, "TZ": "UTC"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ours


def test_the_time_is_local_and_truncated_to_the_microsecond(utc: None) -> None:
    # Both exact in binary: 750915.527 and 999999.762 microseconds, which round up.
    assert tcpdump_time(T0 + 0.5 + 15 * 2**-14) == "22:13:20.750915"
    assert tcpdump_time(1_700_006_399 + 1 - 2**-22) == "23:59:59.999999"


def test_a_syn_ack_retransmitted_restarts_the_numbering() -> None:
    fmt = SegmentFormatter()
    fmt.format(client(CLIENT_ISN, 0, SYN))
    fmt.format(server(SERVER_ISN, CLIENT_ISN + 1, SYN | ACK))
    again = fmt.format(server(SERVER_ISN, CLIENT_ISN + 1, SYN | ACK))
    assert ", seq 4294967000, ack 1000001, " in again
    assert ", ack 1, " in fmt.format(client(CLIENT_ISN + 1, SERVER_ISN + 1, ACK))


def test_options_timestamps_eol_unknown_and_bad() -> None:
    ts = bytes((8, 10)) + struct.pack("!II", 12345, 678)
    assert format_options(ts + bytes((0, 0))) == "TS val 12345 ecr 678,eol"
    assert format_options(bytes((99, 4, 0xAB, 0xCD))) == "unknown-99 0xabcd"
    assert format_options(bytes((99, 2))) == "unknown-99"
    assert format_options(bytes((2, 9, 0))) == "bad opt 2"
    assert format_options(sack((100, 200), (300, 400)), sack_base=50) == \
        "nop,nop,sack 2 {50:150}{250:350}"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"", "empty packet"),
    # An IPv6 header, then a hop-by-hop header followed by another (refused): shown as is.
    (b"\x60" + bytes(47), "IP6 :: > ::: ip-proto-0, length 8"),
    (b"\x45" + bytes(10), "IP bad version 4 or truncated, length 11"),
    (b"\x44" + bytes(39), "IP bad header length 16, length 40"),
])
def test_damaged_packets_are_described_not_rejected(raw: bytes, expected: str) -> None:
    assert SegmentFormatter().format(raw) == expected


def test_other_protocols_and_a_truncated_tcp_header() -> None:
    gre = ipv4.build(KERNEL, STACK, 47, bytes(8))
    assert SegmentFormatter().format(gre) == "IP 10.77.0.1 > 10.77.0.2: ip-proto-47, length 8"
    udp = ipv4.build(KERNEL, STACK, 17, bytes.fromhex("9c40 0007 000d 0000") + b"hello")
    assert SegmentFormatter().format(udp) == "IP 10.77.0.1.40000 > 10.77.0.2.7: UDP, length 5"
    short = ipv4.build(KERNEL, STACK, 17, bytes(7))
    assert SegmentFormatter().format(short) == "IP 10.77.0.1 > 10.77.0.2: ip-proto-17, length 7"
    udp6 = ipv6.build(ipaddress.IPv6Address("fd77::1").packed,
                      ipaddress.IPv6Address("fd77::2").packed, 17,
                      bytes.fromhex("9c40 0007 000d 0000") + b"hello")
    assert SegmentFormatter().format(udp6) == "IP6 fd77::1.40000 > fd77::2.7: UDP, length 5"
    line = SegmentFormatter().format(ipv4.build(KERNEL, STACK, ipv4.PROTO_TCP, bytes(10)))
    assert line == "IP 10.77.0.1 > 10.77.0.2: TCP truncated, length 10"


def test_logger_logs_at_debug_only_with_the_time_first(utc: None,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tcpstack.segments.test")
    tap = SegmentLogger(logger)
    syn = client(CLIENT_ISN, 0, SYN)
    monkeypatch.setattr(time, "time", lambda: T0 + 0.5)
    with caplog.at_level(logging.INFO, logger=logger.name):
        tap(syn, False)
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        tap(syn, False)
    assert [r.getMessage() for r in caplog.records] == [
        "22:13:20.750000 IP 10.77.0.1.40000 > 10.77.0.2.5000: Flags [S], seq 1000000, "
        "win 65535, length 0"]
