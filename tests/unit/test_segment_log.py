"""The -v segment lines read like tcpdump's: flags in tcpdump's letters, sequence numbers
relative to each side's SYN, options in order, bare ACKs without seq."""

from __future__ import annotations

import logging
import struct

import pytest

from tcpstack.io.segment_log import SegmentFormatter, SegmentLogger, format_options
from tcpstack.net import ipv4
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.segment import ACK, FIN, PSH, RST, SYN

KERNEL = bytes([10, 77, 0, 1])
STACK = bytes([10, 77, 0, 2])
CLIENT_ISN = 1_000_000
SERVER_ISN = 4_294_967_000  # wraps within the first kilobyte


def packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
           window: int = 65535, options: bytes = b"", payload: bytes = b"") -> bytes:
    pseudo = ipv4.pseudo_header_sum(src, dst, ipv4.PROTO_TCP)
    seg = tcpseg.build(sport, dport, seq, ack, flags, window, pseudo, options, payload)
    return ipv4.build(src, dst, ipv4.PROTO_TCP, seg)


def client(seq: int, ack: int, flags: int, **kw: object) -> bytes:
    return packet(KERNEL, STACK, 40000, 80, seq, ack, flags, **kw)  # type: ignore[arg-type]


def server(seq: int, ack: int, flags: int, **kw: object) -> bytes:
    return packet(STACK, KERNEL, 80, 40000, seq, ack, flags, **kw)  # type: ignore[arg-type]


def test_a_handshake_and_data_exchange_read_like_tcpdump() -> None:
    fmt = SegmentFormatter()
    syn_opts = tcpseg.encode_options(mss=1460, wscale=7, sack_permitted=True)
    lines = [
        fmt.format(client(CLIENT_ISN, 0, SYN, window=64240, options=syn_opts)),
        fmt.format(server(SERVER_ISN, CLIENT_ISN + 1, SYN | ACK,
                          options=tcpseg.encode_options(mss=1460))),
        fmt.format(client(CLIENT_ISN + 1, SERVER_ISN + 1, ACK, window=502)),
        fmt.format(client(CLIENT_ISN + 1, SERVER_ISN + 1, PSH | ACK, window=502,
                          payload=b"x" * 78)),
        fmt.format(server((SERVER_ISN + 1) & 0xFFFFFFFF, CLIENT_ISN + 79, ACK,
                          payload=b"y" * 1448)),
        fmt.format(server((SERVER_ISN + 1449) & 0xFFFFFFFF, CLIENT_ISN + 79, FIN | ACK)),
    ]
    assert lines == [
        "10.77.0.1.40000 > 10.77.0.2.80: Flags [S], seq 1000000, win 64240, "
        "options [mss 1460,nop,nop,sackOK,nop,wscale 7], length 0",
        "10.77.0.2.80 > 10.77.0.1.40000: Flags [S.], seq 4294967000, ack 1, win 65535, "
        "options [mss 1460], length 0",
        "10.77.0.1.40000 > 10.77.0.2.80: Flags [.], ack 1, win 502, length 0",
        "10.77.0.1.40000 > 10.77.0.2.80: Flags [P.], seq 1:79, ack 1, win 502, length 78",
        "10.77.0.2.80 > 10.77.0.1.40000: Flags [.], seq 1:1449, ack 79, win 65535, "
        "length 1448",
        "10.77.0.2.80 > 10.77.0.1.40000: Flags [F.], seq 1449, ack 79, win 65535, length 0",
    ]


def test_without_the_syn_numbers_stay_absolute() -> None:
    line = SegmentFormatter().format(client(5000, 7000, PSH | ACK, payload=b"abc"))
    assert "seq 5000:5003, ack 7000," in line


def test_a_reset_shows_its_seq_and_no_options() -> None:
    line = SegmentFormatter().format(server(0, CLIENT_ISN + 1, RST | ACK, window=0))
    assert line == "10.77.0.2.80 > 10.77.0.1.40000: Flags [R.], seq 0, ack 1000001, win 0, " \
                   "length 0"


def test_options_sack_timestamps_eol_and_unknown() -> None:
    sack = bytes((1, 1, 5, 18)) + struct.pack("!IIII", 100, 200, 300, 400)
    ts = bytes((8, 10)) + struct.pack("!II", 12345, 678)
    assert format_options(sack) == "nop,nop,sack 2 {100:200} {300:400}"
    assert format_options(ts + bytes((0, 0))) == "TS val 12345 ecr 678,eol"
    assert format_options(bytes((30, 4, 0xAB, 0xCD))) == "opt-30:abcd"
    assert format_options(bytes((2, 9, 0))) == "bad opt 2"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"", "empty packet"),
    (b"\x60" + bytes(47), "IP6, length 48"),
    (b"\x45" + bytes(10), "IP bad version 4 or truncated, length 11"),
    (b"\x44" + bytes(39), "IP bad header length 16, length 40"),
])
def test_damaged_packets_are_described_not_rejected(raw: bytes, expected: str) -> None:
    assert SegmentFormatter().format(raw) == expected


def test_icmp_and_other_protocols() -> None:
    echo = bytes((8, 0, 0, 0, 0, 1, 0, 1)) + b"ping"
    line = SegmentFormatter().format(ipv4.build(KERNEL, STACK, ipv4.PROTO_ICMP, echo))
    assert line == "10.77.0.1 > 10.77.0.2: ICMP echo request, length 12"
    udp = ipv4.build(KERNEL, STACK, 17, bytes(8))
    assert SegmentFormatter().format(udp) == "10.77.0.1 > 10.77.0.2: ip-proto-17, length 8"


def test_a_truncated_tcp_header_is_said_so() -> None:
    line = SegmentFormatter().format(ipv4.build(KERNEL, STACK, ipv4.PROTO_TCP, bytes(10)))
    assert line == "10.77.0.1 > 10.77.0.2: TCP truncated, length 10"


def test_logger_logs_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tcpstack.segments.test")
    tap = SegmentLogger(logger)
    syn = client(CLIENT_ISN, 0, SYN)
    with caplog.at_level(logging.INFO, logger=logger.name):
        tap(syn, False)
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        tap(syn, False)
    assert [r.getMessage() for r in caplog.records] == [
        "10.77.0.1.40000 > 10.77.0.2.80: Flags [S], seq 1000000, win 65535, length 0"]
