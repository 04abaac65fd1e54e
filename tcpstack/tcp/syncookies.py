"""SYN cookies (RFC 4987 3.6): a listener whose SYN queue is full answers a SYN with a
SYN-ACK whose ISN encodes what the connection needs, and keeps nothing; the ACK that comes
back (its SEG.ACK - 1 is the cookie) recreates the SYN it answers, from which the stack opens
the connection as if the SYN had been queued.

The cookie, in the layout Linux uses (24 bits of check and data, 8 of a counter of minutes):

    cookie = H1(4-tuple, SYN's SEQ) + (minutes << 24)
             + ((H2(4-tuple, minutes) + mss_index) mod 2**24)               (all mod 2**32)

H1 and H2 are keyed hashes (blake2s with a secret of the stack's, as isn.py makes ISNs).
Checking subtracts H1 (of the ACK's SEQ - 1), reads the minutes from the top 8 bits, refuses
a cookie two minutes old or more, then subtracts H2: what is left must be an index into
MSS_TABLE. A blind forger thus has about 4 chances in 2**24 a guess. The SEQ is hashed in
rather than added (Linux adds it), so an ACK whose SEQ does not follow the SYN's fails
instead of shifting the MSS index.

The peer's MSS is rounded down to MSS_TABLE (Linux's for IPv4). Window scale and SACK fit
only where the peer sent timestamps: they go into the low 6 bits of our SYN-ACK's TSval
(bits 0-3 the peer's shift, 15 for none; bit 4 SACK-permitted), which the peer echoes in
TSecr. The TSval is the connection's clock with those bits replaced, taken 64 ticks back
when that would put it ahead, so every later TSval of the connection is not older (PAWS on
the peer's side, RFC 7323 5). Without timestamps the SYN-ACK offers only the MSS, and the
connection has neither window scaling nor SACK (as Linux's cookies).
"""

from __future__ import annotations

import hashlib
import os

from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.receiver import MAX_WINDOW_FIELD, wscale_for
from tcpstack.tcp.segment import ACK, SYN, Options, OutSegment, Segment
from tcpstack.tcp.seq import HALF, MASK
from tcpstack.tcp.timestamps import TS_HZ

MSS_TABLE = (536, 1300, 1440, 1460)
COOKIE_BITS = 24
COOKIE_MASK = (1 << COOKIE_BITS) - 1
PERIOD = 60.0   # seconds a tick of the cookie's counter lasts
MAX_AGE = 2     # ticks: a cookie lives between one and two minutes (Linux's MAX_SYNCOOKIE_AGE)
# How long after the last cookie sent an ACK for a listener is worth checking as one.
LIFETIME = MAX_AGE * PERIOD

TS_BITS = 6
TS_MASK = (1 << TS_BITS) - 1
WSCALE_NONE = 0xF
SACK_BIT = 0x10

# TcpConfig.syncookies, as Linux's tcp_syncookies (one name a line: the compiled build's
# type check cannot infer names unpacked from a tuple across its import cycles)
OFF = 0
ON_OVERFLOW = 1
ALWAYS = 2


def mss_index(mss: int | None) -> int:
    """The largest entry of MSS_TABLE not above the peer's MSS (the first if none is)."""
    offered = mss if mss is not None else tcpseg.DEFAULT_MSS
    for index in range(len(MSS_TABLE) - 1, 0, -1):
        if offered >= MSS_TABLE[index]:
            return index
    return 0


def encode_ts(clock: int, wscale: int | None, sack: bool) -> int:
    """Our TSval `clock` carrying the peer's options in its low bits, never ahead of it."""
    tsval = (clock & ~TS_MASK & MASK) | (WSCALE_NONE if wscale is None else wscale) \
        | (SACK_BIT if sack else 0)
    if 0 < ((tsval - clock) & MASK) < HALF:
        tsval = (tsval - (1 << TS_BITS)) & MASK
    return tsval


def decode_ts(tsecr: int) -> tuple[int | None, bool]:
    """The peer's window scale (None: not offered) and SACK-permitted, from its TSecr."""
    wscale = tsecr & 0xF
    return (None if wscale == WSCALE_NONE else min(wscale, tcpseg.MAX_WSCALE),
            bool(tsecr & SACK_BIT))


def syn_window(config: TcpConfig) -> tuple[int, int | None]:
    """The window field and window scale our SYN-ACK carries under `config`: what
    Receiver gives a new connection (the initial buffer; the shift for the largest it may
    grow to), so the connection the cookie becomes advertises what the SYN-ACK did."""
    if config.receive_buffer is None:
        capacity = config.receive_buffer_initial
        limit = max(config.receive_buffer_max, capacity)
    else:
        capacity = limit = config.receive_buffer
    return min(capacity, MAX_WINDOW_FIELD), (wscale_for(limit) if config.window_scaling
                                              else None)


class SynCookies:
    """Makes and checks cookies with a secret of its own."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(16)

    def _hash(self, ident: bytes) -> int:
        return int.from_bytes(hashlib.blake2s(ident, key=self._secret, digest_size=4).digest(),
                              "big")

    @staticmethod
    def _ident(local: bytes, local_port: int, remote: bytes, remote_port: int) -> bytes:
        return local + local_port.to_bytes(2, "big") + remote + remote_port.to_bytes(2, "big")

    @staticmethod
    def tick(now: float) -> int:
        return int(now // PERIOD) & 0xFF

    def make(self, local: bytes, local_port: int, remote: bytes, remote_port: int,
             seq: int, index: int, now: float) -> int:
        """The cookie for a SYN with sequence number `seq` and MSS_TABLE[index]."""
        ident = self._ident(local, local_port, remote, remote_port)
        count = self.tick(now)
        check = (self._hash(b"c2" + ident + bytes((count,))) + index) & COOKIE_MASK
        return (self._hash(b"c1" + ident + seq.to_bytes(4, "big")) + (count << COOKIE_BITS)
                + check) & MASK

    def check(self, local: bytes, local_port: int, remote: bytes, remote_port: int,
              seq: int, cookie: int, now: float) -> int | None:
        """The MSS_TABLE index `cookie` encodes for a SYN of `seq`, or None: forged, or made
        for another 4-tuple, or stale (MAX_AGE ticks old or more)."""
        ident = self._ident(local, local_port, remote, remote_port)
        value = (cookie - self._hash(b"c1" + ident + seq.to_bytes(4, "big"))) & MASK
        count = value >> COOKIE_BITS
        if (self.tick(now) - count) & 0xFF >= MAX_AGE:
            return None
        index = (value - self._hash(b"c2" + ident + bytes((count,)))) & COOKIE_MASK
        return index if index < len(MSS_TABLE) else None

    def synack(self, config: TcpConfig, local: bytes, remote: bytes, syn: Segment,
               ts_offset: int, now: float) -> OutSegment:
        """The stateless SYN-ACK answering `syn` (RFC 4987 3.6): its ISN the cookie, its
        options what the cookie can bring back."""
        opts = syn.options
        index = mss_index(opts.mss)
        cookie = self.make(local, syn.dport, remote, syn.sport, syn.seq, index, now)
        window, our_wscale = syn_window(config)
        if config.timestamps and opts.tsval is not None:
            peer_wscale = opts.wscale if config.window_scaling else None
            sack = opts.sack_permitted and config.sack
            tsval = encode_ts((ts_offset + int(now * TS_HZ)) & MASK, peer_wscale, sack)
            options = tcpseg.encode_options(
                mss=config.mss, sack_permitted=sack,
                wscale=our_wscale if peer_wscale is not None else None,
                timestamps=(tsval, opts.tsval))
        else:
            options = tcpseg.encode_options(mss=config.mss)
        return (cookie, (syn.seq + 1) & MASK, SYN | ACK, window, options, b"", config.mss)

    def syn_of(self, config: TcpConfig, local: bytes, remote: bytes, ack: Segment,
               now: float) -> Segment | None:
        """The SYN that the cookie `ack` returns was made for, as the listener would have
        queued it (MSS from the table; window scale, SACK and the peer's TSval where
        timestamps came back), or None if the cookie does not check out."""
        seq = (ack.seq - 1) & MASK
        index = self.check(local, ack.dport, remote, ack.sport, seq, (ack.ack - 1) & MASK, now)
        if index is None:
            return None
        opts = ack.options
        if config.timestamps and opts.tsval is not None:
            wscale, sack = decode_ts(opts.tsecr)
            options = Options(mss=MSS_TABLE[index], wscale=wscale, sack_permitted=sack,
                              tsval=opts.tsval)
        else:
            options = Options(mss=MSS_TABLE[index])
        return Segment(ack.sport, ack.dport, seq, 0, SYN, ack.window, options,
                       memoryview(b""))
