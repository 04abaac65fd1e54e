"""The time-sequence analysis behind `tcpstack plot`, on a capture written by hand: a loss
repaired by a retransmission, SACK, window scaling, sequence numbers that wrap."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tcpstack.analysis import timeseq
from tcpstack.analysis.timeseq import (
    NoSuchConnection,
    choose_flow,
    initial_window,
    load_cwnd,
    load_flows,
    render_png,
    time_sequence,
)
from tcpstack.cli import cli
from tcpstack.io.pcap import PcapWriter
from tcpstack.net import ipv4
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.congestion import base as congestion_base
from tcpstack.tcp.segment import ACK, FIN, PSH, SYN
from tcpstack.tcp.sender import MIN_SND_MSS

KERNEL = bytes([10, 77, 0, 1])
STACK = bytes([10, 77, 0, 2])
T0 = 1_700_000_000.0
C_ISN = 7000
S_ISN = (1 << 32) - 1500  # the server's data wraps past 2**32 after 1499 bytes
MASK = 0xFFFFFFFF


def _seg(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
         window: int, options: bytes = b"", payload: bytes = b"") -> bytes:
    pseudo = ipv4.pseudo_header_sum(src, dst, ipv4.PROTO_TCP)
    data = tcpseg.build(sport, dport, seq & MASK, ack & MASK, flags, window, pseudo, options,
                        payload)
    return ipv4.build(src, dst, ipv4.PROTO_TCP, data)


def c2s(seq: int, ack: int, flags: int, window: int = 100, **kw: bytes) -> bytes:
    return _seg(KERNEL, STACK, 40000, 80, C_ISN + seq, S_ISN + ack, flags, window, **kw)


def s2c(seq: int, ack: int, flags: int, window: int = 2000, **kw: bytes) -> bytes:
    return _seg(STACK, KERNEL, 80, 40000, S_ISN + seq, C_ISN + ack, flags, window, **kw)


def sack(*blocks: tuple[int, int]) -> bytes:
    body = b"".join(struct.pack("!II", (S_ISN + a) & MASK, (S_ISN + b) & MASK)
                    for a, b in blocks)
    return bytes((1, 1, 5, 2 + len(body))) + body


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """A 3000-byte download whose second segment is lost and retransmitted."""
    path = tmp_path / "lossy.pcap"
    data = b"d" * 1000
    with PcapWriter(path) as w:
        w.write(c2s(0, 0, SYN, 64240, options=tcpseg.encode_options(mss=1460, wscale=7)), T0)
        w.write(s2c(0, 1, SYN | ACK, 65535, options=tcpseg.encode_options(mss=1460, wscale=5)),
                T0 + 0.001)
        w.write(c2s(1, 1, ACK), T0 + 0.002)
        w.write(c2s(1, 1, PSH | ACK, payload=b"GET / HTTP/1.0\r\n\r\n"), T0 + 0.003)
        w.write(s2c(1, 19, ACK, payload=data), T0 + 0.010)
        w.write(s2c(1001, 19, ACK, payload=data), T0 + 0.011)   # lost on the way
        w.write(s2c(2001, 19, ACK, payload=data), T0 + 0.012)
        w.write(c2s(19, 1001, ACK), T0 + 0.013)
        w.write(c2s(19, 1001, ACK, options=sack((2001, 3001))), T0 + 0.014)
        w.write(s2c(1001, 19, ACK, payload=data), T0 + 0.050)   # the retransmission
        w.write(c2s(19, 3001, ACK, window=120), T0 + 0.051)
        w.write(s2c(3001, 19, FIN | ACK), T0 + 0.060)
        w.write(c2s(19, 3002, FIN | ACK), T0 + 0.061)
        # Another, smaller connection in the same capture.
        w.write(_seg(KERNEL, STACK, 40001, 80, 1, 0, SYN, 64240), T0 + 0.1)
    return path


def test_flows_are_the_connections_in_the_capture(capture: Path) -> None:
    flows = load_flows(capture)
    assert [f.label() for f in flows] == ["10.77.0.1:40000 <-> 10.77.0.2:80",
                                          "10.77.0.1:40001 <-> 10.77.0.2:80"]
    assert flows[0].payload_from("10.77.0.2:80") == 4000
    assert choose_flow(flows) is flows[0], "the busiest by default"
    assert choose_flow(flows, "10.77.0.1:40001") is flows[1]
    with pytest.raises(NoSuchConnection, match=r"no connection with endpoint 10\.77\.0\.1:1 "):
        choose_flow(flows, "10.77.0.1:1")


def test_time_sequence_of_a_repaired_loss(capture: Path) -> None:
    ts = time_sequence(load_flows(capture)[0])
    assert (ts.sender, ts.receiver, ts.start) == ("10.77.0.2:80", "10.77.0.1:40000", T0)
    assert [(round(t, 3), a, b) for t, a, b in ts.sent] == [
        (0.010, 0, 1000), (0.011, 1000, 2000), (0.012, 2000, 3000)]
    assert [(round(t, 3), a, b) for t, a, b in ts.retransmitted] == [(0.050, 1000, 2000)]
    assert [a for _, a in ts.acks] == [0, 0, 1000, 1000, 3000, 3001]
    # Windows scale by the receiver's (the client's) shift of 7 after the SYN.
    assert ts.window[-2] == (pytest.approx(0.051, abs=1e-5), 3000 + (120 << 7))
    assert ts.window[0] == (pytest.approx(0.002, abs=1e-5), 0 + (100 << 7))
    assert [(round(t, 3), a, b) for t, a, b in ts.sacks] == [(0.014, 2000, 3000)]
    assert [name for _, _, name in ts.flags] == ["SYN", "FIN"]
    assert ts.bytes_sent == 3000 and ts.duration == pytest.approx(0.061, abs=1e-5)


def test_without_both_wscale_options_windows_are_not_scaled(tmp_path: Path) -> None:
    path = tmp_path / "noscale.pcap"
    with PcapWriter(path) as w:
        w.write(c2s(0, 0, SYN, 64240), T0)
        w.write(s2c(0, 1, SYN | ACK, options=tcpseg.encode_options(wscale=5)), T0 + 0.001)
        w.write(s2c(1, 1, ACK, payload=b"x" * 10), T0 + 0.002)
        w.write(c2s(1, 11, ACK, window=300), T0 + 0.003)
    ts = time_sequence(load_flows(path)[0])
    assert ts.window[-1][1] == 10 + 300


def test_png_with_and_without_the_cwnd_panel(capture: Path, tmp_path: Path) -> None:
    flow = load_flows(capture)[0]
    assert load_cwnd(capture, flow) is None
    plain = tmp_path / "plain.png"
    render_png(time_sequence(flow), plain)
    Path(f"{capture}.cwnd.json").write_text(json.dumps({"connections": [
        {"local": "10.77.0.2:80", "peer": "10.77.0.1:40000", "closed": True,
         "samples": [[T0 + 0.005, 14600, None], [T0 + 0.02, 7300, 7300]]},
        {"local": "10.77.0.2:80", "peer": "10.77.0.1:9", "samples": [[T0, 1, None]]}]}))
    cwnd = load_cwnd(capture, flow)
    # The trace starts with the initial window, ten segments of the SYNs' MSS of 1460.
    assert cwnd == ("10.77.0.2:80", [[T0, 14600, None], [T0 + 0.005, 14600, None],
                                     [T0 + 0.02, 7300, 7300]])
    both = tmp_path / "both.png"
    render_png(time_sequence(flow), both, cwnd)
    for png in (plain, both):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_command_lists_draws_and_fails_in_one_line(capture: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["plot", str(capture), "--list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[0] == (
        "10.77.0.1:40000 > 10.77.0.2:80: 18 bytes, 10.77.0.2:80 > 10.77.0.1:40000: 4000 bytes, "
        "13 segments")
    out = tmp_path / "g.png"
    drawn = runner.invoke(cli, ["plot", str(capture), "-o", str(out)])
    assert drawn.exit_code == 0, drawn.output
    assert out.exists() and "1 retransmitted segments" in drawn.output
    missing = runner.invoke(cli, ["plot", str(capture), "--conn", "10.9.9.9:1"])
    assert missing.exit_code == 1
    assert "no connection with endpoint 10.9.9.9:1" in missing.output
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all, really")
    bad = runner.invoke(cli, ["plot", str(junk)])
    assert bad.exit_code == 1 and "not a classic pcap file" in bad.output


def test_clip_keeps_a_stretch_and_the_lines_entering_it(capture: Path, tmp_path: Path) -> None:
    ts = time_sequence(load_flows(capture)[0]).clip(0.0115, 0.0505)
    assert [(a, b) for _, a, b in ts.sent] == [(2000, 3000)]
    assert [(a, b) for _, a, b in ts.retransmitted] == [(1000, 2000)]
    assert ts.acks[0] == (0.0115, 0), "the ACK line enters at the left edge"
    out = tmp_path / "zoom.png"
    result = CliRunner().invoke(cli, ["plot", str(capture), "-o", str(out), "--time",
                                      "0.01:0.05"])
    assert result.exit_code == 0, result.output
    assert out.exists()
    bad = CliRunner().invoke(cli, ["plot", str(capture), "--time", "0.5:0.1"])
    assert bad.exit_code == 2 and "FROM < TO" in bad.output


def _drawn_cwnd(monkeypatch: pytest.MonkeyPatch, capture: Path, out: Path,
                span: tuple[float, float] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Draw the graph and return the points of each line of its cwnd panel, by label, with
    times in seconds since the connection's first packet."""
    import matplotlib.pyplot as plt

    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)
    flow = load_flows(capture)[0]
    render_png(time_sequence(flow), out, load_cwnd(capture, flow), span)
    (figure,) = figures
    panel = figure.axes[1]
    drawn = {line.get_label(): [(round(float(x), 6), float(y)) for x, y in
                                zip(line.get_xdata(), line.get_ydata(), strict=True)]
             for line in panel.get_lines()}
    plt.close(figure)
    return drawn


def _sidecar(capture: Path, samples: list[list[Any]]) -> None:
    Path(f"{capture}.cwnd.json").write_text(json.dumps({"connections": [
        {"local": "10.77.0.2:80", "peer": "10.77.0.1:40000", "closed": True,
         "samples": samples}]}))


def test_the_cwnd_panel_starts_at_the_initial_window_and_lasts_the_connection(
        monkeypatch: pytest.MonkeyPatch, capture: Path, tmp_path: Path) -> None:
    _sidecar(capture, [[T0 + 0.012, 17520, None], [T0 + 0.02, 7300, 7300]])
    drawn = _drawn_cwnd(monkeypatch, capture, tmp_path / "g.png")
    # 14600 from the client's SYN, which the stack answered; the last value until the FIN.
    assert drawn["cwnd"] == [(0.0, 14600), (0.012, 17520), (0.02, 7300), (0.061, 7300)]
    assert drawn["ssthresh"] == [(0.02, 7300), (0.061, 7300)]


def test_a_zoom_carries_the_cwnd_in_force_across_the_whole_window(
        monkeypatch: pytest.MonkeyPatch, capture: Path, tmp_path: Path) -> None:
    _sidecar(capture, [[T0 + 0.012, 17520, None], [T0 + 0.02, 7300, 7300]])
    drawn = _drawn_cwnd(monkeypatch, capture, tmp_path / "g.png", (0.03, 0.05))
    assert drawn["cwnd"] == [(0.03, 7300), (0.05, 7300)]
    assert drawn["ssthresh"] == [(0.03, 7300), (0.05, 7300)]
    # Before the first sample: the initial window, until that sample comes.
    drawn = _drawn_cwnd(monkeypatch, capture, tmp_path / "g.png", (0.005, 0.015))
    assert drawn["cwnd"] == [(0.005, 14600), (0.012, 17520), (0.015, 17520)]
    assert "ssthresh" not in drawn, "no ssthresh yet"


def test_the_initial_window_follows_the_smaller_mss(tmp_path: Path) -> None:
    path = tmp_path / "mss.pcap"
    with PcapWriter(path) as w:
        w.write(c2s(0, 0, SYN, 64240, options=tcpseg.encode_options(mss=1000)), T0)
        w.write(s2c(0, 1, SYN | ACK, 65535, options=tcpseg.encode_options(mss=1460)),
                T0 + 0.001)
        w.write(_seg(KERNEL, STACK, 40001, 80, 1, 0, SYN, 64240), T0 + 0.002)
        w.write(_seg(STACK, KERNEL, 80, 40001, 9, 2, SYN | ACK, 65535,
                     options=tcpseg.encode_options(mss=1460)), T0 + 0.003)
    first, second = load_flows(path)
    assert initial_window(first, "10.77.0.2:80") == (T0, 10_000)
    assert initial_window(second, "10.77.0.2:80") == (T0 + 0.002, 5360), "no MSS: 536"
    assert initial_window(first, "10.77.0.1:40000") == (T0 + 0.001, 10_000)
    assert initial_window(second, "10.77.0.1:40001") is None, "its SYN carried no MSS"


def test_the_initial_window_is_tcpstacks() -> None:
    assert timeseq.INITIAL_WINDOW_SEGMENTS == congestion_base.INITIAL_WINDOW_SEGMENTS
    assert timeseq._DEFAULT_MSS == tcpseg.DEFAULT_MSS
    assert timeseq._MIN_SND_MSS == MIN_SND_MSS


def test_a_time_range_without_packets_says_so(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.png"
    result = CliRunner().invoke(cli, ["plot", str(capture), "-o", str(out), "--time", "5:6"])
    assert result.exit_code == 1
    assert result.output == ("Error: no packets of 10.77.0.1:40000 <-> 10.77.0.2:80 between "
                             "5 s and 6 s (its packets run from 0 s to 0.061 s)\n")
    assert not out.exists()
