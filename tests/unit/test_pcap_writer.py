"""PcapWriter writes classic pcap (LINKTYPE_RAW, microseconds, snaplen 65535) that scapy and
our own reader read back; records reach the file whole, on flush."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from tcpstack.io.pcap import (
    FILE_HEADER,
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    MAGIC_USEC,
    RECORD_HEADER,
    SNAPLEN,
    PcapFormatError,
    PcapWriter,
    read_pcap,
)
from tcpstack.net import ipv4
from tcpstack.tcp import segment as tcpseg

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.utils import rdpcap  # noqa: E402

SRC = bytes([10, 77, 0, 1])
DST = bytes([10, 77, 0, 2])


def syn_packet(sport: int = 40000) -> bytes:
    pseudo = ipv4.pseudo_header_sum(SRC, DST, ipv4.PROTO_TCP)
    seg = tcpseg.build(sport, 80, 1000, 0, tcpseg.SYN, 64240, pseudo,
                       tcpseg.encode_options(mss=1460))
    return ipv4.build(SRC, DST, ipv4.PROTO_TCP, seg)


def test_file_header_is_classic_pcap_raw_ip_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    PcapWriter(path).close()
    data = path.read_bytes()
    assert len(data) == FILE_HEADER.size == 24
    magic, major, minor, zone, sigfigs, snaplen, link = FILE_HEADER.unpack(data)
    assert (magic, major, minor, zone, sigfigs) == (MAGIC_USEC, 2, 4, 0, 0)
    assert (snaplen, link) == (SNAPLEN, LINKTYPE_RAW) == (65535, 101)


def test_records_carry_the_packet_and_microsecond_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    packet = syn_packet()
    with PcapWriter(path) as writer:
        writer.write(packet, 1_700_000_000.123456)
        writer.write(packet, 1_700_000_001.5)
    data = path.read_bytes()
    seconds, micros, captured, wire = RECORD_HEADER.unpack_from(data, FILE_HEADER.size)
    assert (seconds, micros, captured, wire) == (1_700_000_000, 123456, len(packet), len(packet))
    start = FILE_HEADER.size + RECORD_HEADER.size
    assert data[start:start + len(packet)] == packet
    records = list(read_pcap(path))
    assert [r.packet for r in records] == [packet, packet]
    assert records[0].time == pytest.approx(1_700_000_000.123456, abs=1e-6)
    assert records[1].time == pytest.approx(1_700_000_001.5, abs=1e-6)


def test_scapy_reads_the_capture_as_ip(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    with PcapWriter(path) as writer:
        writer.write(syn_packet(40001), 1_700_000_000.0)
        writer.write(syn_packet(40002), 1_700_000_000.25)
    packets = rdpcap(str(path))
    assert len(packets) == 2
    assert [p[TCP].sport for p in packets] == [40001, 40002]
    assert packets[0][IP].src == "10.77.0.1" and str(packets[0][TCP].flags) == "S"
    assert float(packets[1].time) - float(packets[0].time) == pytest.approx(0.25, abs=1e-6)


def test_packets_beyond_snaplen_are_cut_and_keep_their_wire_length(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    with PcapWriter(path, snaplen=100) as writer:
        writer.write(b"\x45" + bytes(299), 1.0)
    (record,) = read_pcap(path)
    assert len(record.packet) == 100 and record.wire_length == 300


def test_records_reach_the_file_whole_on_flush_only(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    writer = PcapWriter(path)
    packet = syn_packet()
    writer.write(packet, 1.0)
    assert path.stat().st_size == FILE_HEADER.size, "pending until flush"
    writer.flush()
    assert path.stat().st_size == FILE_HEADER.size + RECORD_HEADER.size + len(packet)
    assert len(list(read_pcap(path))) == 1, "readable while the writer stays open"
    writer.close()
    writer.write(packet)  # after close: ignored, not an error
    assert writer.closed and len(list(read_pcap(path))) == 1


def test_a_megabyte_pending_is_written_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    writer = PcapWriter(path)
    for _ in range(20):
        writer.write(bytes(60_000), 1.0)
    assert path.stat().st_size > 1_000_000
    writer.close()
    assert writer.packets == 20


def test_reader_stops_at_a_record_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    with PcapWriter(path) as writer:
        writer.write(syn_packet(), 1.0)
        writer.write(syn_packet(), 2.0)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    assert len(list(read_pcap(path))) == 1


def test_reader_strips_ethernet_headers_and_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "eth.pcap"
    packet = syn_packet()
    eth = bytes(12) + b"\x08\x00" + packet
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    with path.open("wb") as f:
        f.write(FILE_HEADER.pack(MAGIC_USEC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        for frame in (arp, eth):
            f.write(RECORD_HEADER.pack(5, 0, len(frame), len(frame)) + frame)
    (record,) = read_pcap(path)
    assert record.packet == packet and record.time == 5.0

    bad = tmp_path / "bad.pcap"
    bad.write_bytes(struct.pack("<I", 0x0A0D0D0A) + bytes(40))  # pcapng
    with pytest.raises(PcapFormatError, match="pcapng"):
        list(read_pcap(bad))
