"""Time-sequence graphs (Stevens, tcptrace) of one TCP connection in a pcap capture.

`load_flows` reads the capture into connections; `time_sequence` turns one into what the
graph shows, seen from the side that sent the most data (the sender):

- every data segment as a vertical bar from its first to its last sequence number, at the
  time it was sent; a segment that starts below the highest sequence number already sent
  is a retransmission and is drawn in another colour;
- the receiver's cumulative ACK over time, and the edge of its receive window
  (ack + window << wscale, the scale taken from the SYNs' options, RFC 7323);
- the SACK blocks (option kind 5, RFC 2018) the receiver reports, as short bars;
- with `FILE.cwnd.json` beside the capture (written by `tcpstack --pcap`), the congestion
  window and ssthresh of the tcpstack end over time, in a panel below on the same time axis:
  from the initial window (RFC 6928's ten segments of the MSS the SYNs agree on, in force
  from the peer's SYN) to the end of the connection, each value drawn until the next; a
  zoom starts with the value in force at its left edge.

Times are seconds since the connection's first packet; sequence numbers are bytes since the
sender's ISN (unwrapped, so transfers beyond 4 GB draw on). `render_png` needs matplotlib
and draws with its Agg backend (no display).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcpstack.io.pcap import read_pcap
from tcpstack.net import ipv4, ipv6
from tcpstack.net.errors import MalformedPacket
from tcpstack.tcp import segment as tcpseg

_SYN, _ACK, _FIN, _RST = tcpseg.SYN, tcpseg.ACK, tcpseg.FIN, tcpseg.RST
_MASK = 0xFFFFFFFF
_HALF = 1 << 31
# tcpstack's initial congestion window in segments (tcp/congestion/base.py, RFC 6928), and
# how it picks the MSS from the SYNs (tcp/connection.py): a unit test keeps these in step.
INITIAL_WINDOW_SEGMENTS = 10
_DEFAULT_MSS = tcpseg.DEFAULT_MSS  # RFC 9293 3.7.1: the peer sent no MSS option
_MIN_SND_MSS = 48


@dataclass(slots=True)
class TcpRecord:
    """One TCP segment from the capture (numbers as on the wire)."""

    time: float
    src: str  # "addr:port"
    dst: str
    seq: int
    ack: int
    flags: int
    window: int
    length: int  # payload bytes
    wscale: int | None = None
    sack: list[tuple[int, int]] = field(default_factory=list)
    mss: int | None = None


@dataclass
class Flow:
    """Both directions of one connection (4-tuple), in capture order."""

    a: str  # the endpoint that sent the first packet seen
    b: str
    records: list[TcpRecord] = field(default_factory=list)

    def payload_from(self, endpoint: str) -> int:
        return sum(r.length for r in self.records if r.src == endpoint)

    @property
    def payload(self) -> int:
        return sum(r.length for r in self.records)

    def label(self) -> str:
        return f"{self.a} <-> {self.b}"


@dataclass
class TimeSequence:
    sender: str
    receiver: str
    start: float                                   # wall time of the flow's first packet
    sent: list[tuple[float, int, int]]             # (t, first seq, end seq), first send
    retransmitted: list[tuple[float, int, int]]
    acks: list[tuple[float, int]]                  # (t, cumulative ack)
    window: list[tuple[float, int]]                # (t, ack + scaled window)
    sacks: list[tuple[float, int, int]]            # (t, left, right)
    flags: list[tuple[float, int, str]]            # (t, seq, "SYN"/"FIN"/"RST") of the sender
    end: float = 0.0                               # t of the flow's last packet, either way

    @property
    def bytes_sent(self) -> int:
        return max((end for _, _, end in self.sent), default=0)

    @property
    def duration(self) -> float:
        times = [t for t, *_ in self.sent] + [t for t, _ in self.acks]
        return max(times, default=0.0)

    def clip(self, first: float, last: float) -> TimeSequence:
        """Only what happens between `first` and `last` seconds (a zoom); the step lines
        keep their last point before `first`, so they start at the left edge."""
        def inside(points: list[Any]) -> list[Any]:
            return [p for p in points if first <= p[0] <= last]

        def lines(points: list[tuple[float, int]]) -> list[tuple[float, int]]:
            before = [p for p in points if p[0] < first]
            return ([(first, before[-1][1])] if before else []) + inside(points)

        return TimeSequence(self.sender, self.receiver, self.start, inside(self.sent),
                            inside(self.retransmitted), lines(self.acks), lines(self.window),
                            inside(self.sacks), inside(self.flags), self.end)


_NO_OPTIONS = tcpseg.Options()


def _endpoint(addr: bytes, port: int) -> str:
    if len(addr) == 16:
        return f"[{ipaddress.IPv6Address(addr)}]:{port}"
    return f"{ipaddress.IPv4Address(addr)}:{port}"


def parse_tcp(time: float, packet: bytes) -> TcpRecord | None:
    """The TCP segment in an IPv4 or IPv6 packet, or None for anything else. Options are read as the
    stack reads them (tcp.segment.decode_options); a segment whose options the stack would
    reject as malformed is kept, since it was on the wire, but without its options."""
    ip: ipv4.IPv4Packet | ipv6.IPv6Packet
    try:
        ip = (ipv6.parse(packet, strict=False) if packet[:1] and packet[0] >> 4 == 6
              else ipv4.parse(packet, strict=False))
    except MalformedPacket:
        return None
    seg = ip.payload
    if ip.proto != ipv4.PROTO_TCP or len(seg) < tcpseg.HEADER_LEN:
        return None
    sport, dport, seq, ack, off_flags, window, _csum, _urgent = tcpseg.HEADER.unpack_from(seg)
    offset = (off_flags >> 12) * 4
    if offset < tcpseg.HEADER_LEN or offset > len(seg):
        return None
    options = _NO_OPTIONS
    if offset > tcpseg.HEADER_LEN:
        # Malformed options: the stack drops the segment (tcp_bad_option), taking none.
        with contextlib.suppress(MalformedPacket):
            options = tcpseg.decode_options(seg[tcpseg.HEADER_LEN:offset])
    return TcpRecord(time, _endpoint(ip.src, sport), _endpoint(ip.dst, dport), seq, ack,
                     off_flags & 0xFF,
                     window, len(seg) - offset, options.wscale, list(options.sack),
                     options.mss)


def load_flows(path: str | Path) -> list[Flow]:
    """The TCP connections in a capture, in order of their first packet."""
    flows: dict[frozenset[str], Flow] = {}
    for record in read_pcap(path):
        seg = parse_tcp(record.time, record.packet)
        if seg is None:
            continue
        key = frozenset((seg.src, seg.dst))
        flow = flows.get(key)
        if flow is None:
            flow = flows[key] = Flow(seg.src, seg.dst)
        flow.records.append(seg)
    return list(flows.values())


class NoSuchConnection(LookupError):
    pass


def choose_flow(flows: list[Flow], conn: str | None = None) -> Flow:
    """The flow with an endpoint `conn` ("addr:port"), else the busiest; among several
    matches, the busiest."""
    candidates = flows if conn is None else [f for f in flows if conn in (f.a, f.b)]
    if not candidates:
        have = ", ".join(f.label() for f in flows) or "none"
        what = "no TCP connection" if conn is None else f"no connection with endpoint {conn}"
        raise NoSuchConnection(f"{what} in the capture (connections: {have})")
    return max(candidates, key=lambda f: f.payload)


class _Unwrap:
    """32-bit sequence numbers to a running count of bytes since `base`."""

    def __init__(self, base: int) -> None:
        self._raw = base
        self._value = 0

    def __call__(self, raw: int) -> int:
        diff = (raw - self._raw) & _MASK
        if diff >= _HALF:
            diff -= 1 << 32
        self._raw = raw
        self._value += diff
        return self._value


def time_sequence(flow: Flow) -> TimeSequence:
    sender = flow.a if flow.payload_from(flow.a) >= flow.payload_from(flow.b) else flow.b
    receiver = flow.b if sender == flow.a else flow.a
    start = flow.records[0].time
    out = [r for r in flow.records if r.src == sender]
    back = [r for r in flow.records if r.src == receiver]
    syn = next((r for r in out if r.flags & _SYN), None)
    if syn is not None:
        isn = (syn.seq + 1) & _MASK  # data starts one past the SYN
    else:
        isn = next((r.seq for r in out if r.length), out[0].seq if out else 0)
    # The window is scaled only when both SYNs carried the option (RFC 7323 1.3).
    their_syn = next((r for r in back if r.flags & _SYN), None)
    shift = 0
    if syn is not None and their_syn is not None and syn.wscale is not None \
            and their_syn.wscale is not None:
        shift = their_syn.wscale

    seq_of = _Unwrap(isn)
    sent: list[tuple[float, int, int]] = []
    retransmitted: list[tuple[float, int, int]] = []
    flags: list[tuple[float, int, str]] = []
    highest = 0
    for r in out:
        first = seq_of(r.seq)
        t = r.time - start
        for bit, name in ((_SYN, "SYN"), (_FIN, "FIN"), (_RST, "RST")):
            if r.flags & bit:
                flags.append((t, first + (r.length if bit == _FIN else 0), name))
        if not r.length:
            continue
        end = first + r.length
        (retransmitted if first < highest else sent).append((t, first, end))
        highest = max(highest, end)

    ack_of = _Unwrap(isn)
    acks: list[tuple[float, int]] = []
    window: list[tuple[float, int]] = []
    sacks: list[tuple[float, int, int]] = []
    for r in back:
        if not r.flags & _ACK or r.flags & _RST:
            continue
        t = r.time - start
        ack = ack_of(r.ack)
        acks.append((t, ack))
        window.append((t, ack + (r.window if r.flags & _SYN else r.window << shift)))
        for left, right in r.sack:
            # Placed relative to the block's own ACK: no wrap trouble within a window.
            above = (left - r.ack) & _MASK
            lo = ack + (above - (1 << 32) if above >= _HALF else above)
            sacks.append((t, lo, lo + ((right - left) & _MASK)))
    return TimeSequence(sender, receiver, start, sent, retransmitted, acks, window, sacks,
                        flags, flow.records[-1].time - start)


def initial_window(flow: Flow, endpoint: str) -> tuple[float, int] | None:
    """(when, bytes): the congestion window tcpstack at `endpoint` started `flow` with, from
    the peer's SYN on (when it takes the peer's MSS); None without both SYNs."""
    own = next((r for r in flow.records if r.src == endpoint and r.flags & _SYN), None)
    peer = next((r for r in flow.records if r.dst == endpoint and r.flags & _SYN), None)
    if own is None or peer is None or own.mss is None:
        return None
    mss = max(min(peer.mss if peer.mss else _DEFAULT_MSS, own.mss), _MIN_SND_MSS)
    return peer.time, INITIAL_WINDOW_SEGMENTS * mss


def load_cwnd(capture: str | Path, flow: Flow) -> tuple[str, list[list[Any]]] | None:
    """The cwnd trace of `flow` from CAPTURE.cwnd.json: (the tcpstack endpoint, samples),
    the samples starting with the initial window when the capture shows the handshake."""
    sidecar = Path(f"{capture}.cwnd.json")
    if not sidecar.exists():
        return None
    data = json.loads(sidecar.read_text())
    ends = {flow.a, flow.b}
    for conn in data.get("connections", []):
        if {conn.get("local"), conn.get("peer")} == ends and conn.get("samples"):
            local = str(conn["local"])
            samples = list(conn["samples"])
            # The connection samples cwnd from its first new ACK on, when slow start has
            # already grown it: what it started with comes from the SYNs.
            start = initial_window(flow, local)
            if start is not None and start[0] <= float(samples[0][0]):
                samples.insert(0, [start[0], start[1], None])
            return local, samples
    return None


def cwnd_steps(samples: list[list[Any]], first: float | None,
               last: float) -> list[list[Any]]:
    """The samples a step line draws over the time `first` (None: from the first sample) to
    `last`: the value in force at `first` moved to it, the samples in between, and the last
    value again at `last`, so that every value shows until the next and the line reaches
    the right edge."""
    before = [s for s in samples if first is not None and float(s[0]) < first]
    inside = [s for s in samples if (first is None or float(s[0]) >= first)
              and float(s[0]) <= last]
    steps = ([[first, *before[-1][1:]]] if before and first is not None else []) + inside
    if steps and float(steps[-1][0]) < last:
        steps.append([last, *steps[-1][1:]])
    return steps


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def render_png(ts: TimeSequence, output: str | Path,
               cwnd: tuple[str, list[list[Any]]] | None = None,
               span: tuple[float, float] | None = None) -> None:
    """Draw the time-sequence graph (and the cwnd panel) to a PNG file; `span` zooms in on
    (first, last) seconds since the connection's first packet."""
    whole = ts
    if cwnd is not None:
        # The connection ends at its last packet (or sample); a zoom may end before that.
        end = ts.start + whole.end
        end = max(end, float(cwnd[1][-1][0])) if cwnd[1] else end
        if span is not None:
            cwnd = (cwnd[0], cwnd_steps(cwnd[1], ts.start + span[0],
                                        min(ts.start + span[1], end)))
        else:
            cwnd = (cwnd[0], cwnd_steps(cwnd[1], None, end))
    if span is not None:
        ts = ts.clip(*span)
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # no font cache chatter
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    if cwnd is not None:
        fig, (ax, ax_cwnd) = plt.subplots(2, 1, figsize=(11, 8), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1]})
    else:
        fig, ax = plt.subplots(figsize=(11, 6.5))
        ax_cwnd = None
    if ts.sent:
        ax.vlines([t for t, _, _ in ts.sent], [a for _, a, _ in ts.sent],
                  [b for _, _, b in ts.sent], colors="#1f4e9c", linewidth=1.2,
                  label="data sent")
    if ts.retransmitted:
        ax.vlines([t for t, _, _ in ts.retransmitted], [a for _, a, _ in ts.retransmitted],
                  [b for _, _, b in ts.retransmitted], colors="#d62728", linewidth=2.0,
                  label=f"retransmitted ({len(ts.retransmitted)})")
        # A marker too, so that retransmissions stay visible in a graph of many megabytes.
        ax.plot([t for t, _, _ in ts.retransmitted], [b for _, _, b in ts.retransmitted],
                "x", color="#d62728", markersize=5)
    if ts.acks:
        ax.step([t for t, _ in ts.acks], [a for _, a in ts.acks], where="post",
                color="#2ca02c", linewidth=1.0, label="ACK")
    if ts.window:
        ax.step([t for t, _ in ts.window], [w for _, w in ts.window], where="post",
                color="#b8860b", linewidth=0.8, linestyle="--", label="receive window edge")
    if ts.sacks:
        ax.vlines([t for t, _, _ in ts.sacks], [a for _, a, _ in ts.sacks],
                  [b for _, _, b in ts.sacks], colors="#9467bd", linewidth=3.0, alpha=0.7,
                  label="SACK blocks")
    for t, seq, name in ts.flags:
        ax.annotate(name, (t, seq), fontsize=7, color="#555555", xytext=(3, 3),
                    textcoords="offset points")
    ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.set_ylabel(f"sequence (bytes since {ts.sender}'s ISN)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{whole.sender} → {whole.receiver}: {_human(whole.bytes_sent)} in "
                 f"{whole.duration:.3f} s, {len(whole.retransmitted)} retransmitted segments"
                 + (f" (from {span[0]:g} s to {span[1]:g} s)" if span else ""), fontsize=10)
    if span is not None:
        ax.set_xlim(*span)
    if ax_cwnd is not None and cwnd is not None:
        endpoint, samples = cwnd
        times = [float(s[0]) - ts.start for s in samples]
        ax_cwnd.step(times, [s[1] for s in samples], where="post", color="#1f4e9c",
                     linewidth=1.0, label="cwnd")
        thresholds = [(t, s[2]) for t, s in zip(times, samples, strict=True)
                      if s[2] is not None]
        if thresholds:
            ax_cwnd.step([t for t, _ in thresholds], [v for _, v in thresholds], where="post",
                         color="#d62728", linewidth=0.8, linestyle="--", label="ssthresh")
        ax_cwnd.yaxis.set_major_formatter(EngFormatter(unit="B"))
        ax_cwnd.set_ylabel(f"{endpoint}\ncongestion window")
        ax_cwnd.grid(True, alpha=0.3)
        ax_cwnd.legend(loc="upper left", fontsize=8)
        ax_cwnd.set_xlabel("time (s)")
    else:
        ax.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
