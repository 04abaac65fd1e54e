"""The send side's state: RFC 9293's send sequence variables (3.3.1: SND.UNA, SND.NXT,
SND.WND, SND.WL1, SND.WL2 and the ISS), the bytes the application queued, and where our FIN
sits. The connection reads it as `conn.snd`, as the RFC writes SND.*. Building and sending the
segments is output.py's work.

`max` is the highest SND.NXT ever reached: a retransmission timeout pulls `nxt` back to `una`
and resends from there, while `max` still says what has been sent at least once.
"""

from __future__ import annotations

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.send_buffer import SendBuffer
from tcpstack.tcp.seq import MASK

# The largest TCP payload one IPv4 packet can carry (65535 less 20 + 20 header bytes).
MAX_IP_PAYLOAD = 0xFFFF - 40
# Linux's tcp_min_snd_mss: a hostile MSS of 1 must not cost a segment per byte
# (CVE-2019-11479).
MIN_SND_MSS = 48


class Sender:
    __slots__ = ("buffer", "bytes_sent", "fin_queued", "fin_seq", "iss", "max", "max_wnd",
                 "mss", "nodelay", "nxt", "options_len", "path_mss", "seg_max", "segmentation",
                 "soft_error", "syn_acked", "una", "want_writable", "wl1", "wl2", "wnd",
                 "wscale", "wscale_offered")

    def __init__(self, config: TcpConfig, iss: int, segmentation: bool = False) -> None:
        self.iss = iss
        self.una = iss       # SND.UNA
        self.nxt = iss       # SND.NXT
        self.max = iss       # the highest SND.NXT so far
        self.wnd = 0         # SND.WND, scaled
        self.max_wnd = 0     # the largest window the peer ever offered
        self.wl1 = 0         # SND.WL1: the segment sequence number of the last window update
        self.wl2 = 0         # SND.WL2: its acknowledgment number
        self.wscale = 0      # the peer's window scale (RFC 7323)
        self.wscale_offered = False  # the peer's SYN carried a window scale option
        self.mss = tcpseg.DEFAULT_MSS
        self.segmentation = segmentation   # the link cuts large segments itself (GSO)
        self.seg_max = tcpseg.DEFAULT_MSS  # largest segment we build: the MSS, or with
        #                                    segmentation offload a multiple of it
        self.buffer = SendBuffer(config.send_buffer)  # queued and not yet acknowledged
        self.fin_queued = False          # the application closed its sending side
        self.fin_seq: int | None = None  # where our FIN sits, once it has been sent
        self.syn_acked = False
        self.bytes_sent = 0  # application bytes acknowledged by the peer
        self.nodelay = config.nodelay  # TCP_NODELAY: no Nagle (RFC 9293 3.7.4)
        self.want_writable = False  # a send() did not fit: tell the application when it will
        self.options_len = 0  # option bytes every segment carries (timestamps: 12)
        # The path's MSS where an ICMP "fragmentation needed" lowered it (RFC 1191), and the
        # last soft ICMP error about the path (RFC 1122 4.2.3.9), for a give-up to report.
        self.path_mss: int | None = None
        self.soft_error: str | None = None

    def take_mss(self, offered: int | None, ours: int, options: int = 0) -> None:
        """The payload of a full segment: the peer's MSS (536 without the option, RFC 9293
        3.7.1), at most ours, less the `options` every segment carries (RFC 6691: the MSS
        counts no options; 1448 with timestamps at 1460), at least MIN_SND_MSS; where the
        link segments (GSO) a segment may carry several, each cut with the same header."""
        if self.path_mss is not None:
            ours = min(ours, self.path_mss)
        self.options_len = options
        self._set_mss(min(offered if offered else tcpseg.DEFAULT_MSS, ours) - options)

    def _set_mss(self, mss: int) -> None:
        self.mss = max(mss, MIN_SND_MSS)
        options = self.options_len
        self.seg_max = ((MAX_IP_PAYLOAD - options) // self.mss * self.mss if self.segmentation
                        else self.mss)

    def lower_mss(self, path_mss: int) -> bool:
        """The path takes segments of at most `path_mss` (an MTU less 40 header bytes, RFC
        1191): True when that is smaller than what we send, which then shrinks to it."""
        if path_mss - self.options_len >= self.mss:
            return False
        self.path_mss = path_mss
        self._set_mss(path_mss - self.options_len)
        return True

    @property
    def in_flight(self) -> int:
        """Bytes sent and not yet acknowledged (SND.MAX - SND.UNA)."""
        return (self.max - self.una) & MASK
