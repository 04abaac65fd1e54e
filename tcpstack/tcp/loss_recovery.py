"""How one connection finds lost segments and what it resends, in one object (`conn.loss`):

- the recovery episode: fast retransmit and fast recovery (RFC 5681 3.2, RFC 6582;
  recovery.py), which asks the congestion controller for every change of cwnd;
- with SACK, agreed at the handshake, the scoreboard (sack.py) and RFC 6675's loss recovery:
  which holes are lost, how much is in flight (SetPipe) and what goes next (NextSeg);
- the tail loss probe (RFC 8985 7; tail_probe.py);
- with SACK and TcpConfig.rack, RACK (RFC 8985 6; rack.py), whose verdicts take the place
  of IsLost() and of the lost-resend rule in what recovery resends.

It decides; the connection sends (output.py), since only it builds segments.
"""

from __future__ import annotations

from tcpstack.tcp.rack import IDLE_RACK, Rack
from tcpstack.tcp.recovery import FastRecovery
from tcpstack.tcp.sack import SackScoreboard, is_dsack
from tcpstack.tcp.seq import HALF, MASK
from tcpstack.tcp.tail_probe import TailLossProbe


class LossRecovery:
    __slots__ = ("episode", "probe", "rack", "rack_on", "sack", "scoreboard")

    def __init__(self, iss: int) -> None:
        self.sack = False  # both SYNs carried SACK-permitted (RFC 2018 2)
        self.rack_on = False  # ... and TcpConfig.rack: RACK's verdicts apply
        self.episode = FastRecovery(iss)
        self.scoreboard = SackScoreboard()
        self.probe = TailLossProbe()
        # RACK's state, made when the first data segment goes (rack_sent): until then the
        # shared IDLE_RACK, which knows of nothing sent and is never written, so that an
        # idle connection, which never sends data, costs no Rack of its own.
        self.rack = IDLE_RACK

    def rack_sent(self, seq: int, end: int, now: float, snd_max: int) -> None:
        """Rack.sent, with RACK on: its state is made for the first data segment."""
        rack = self.rack
        if rack is IDLE_RACK:
            rack = self.rack = Rack()
        rack.sent(seq, end, now, snd_max)

    def read_blocks(self, blocks: tuple[tuple[int, int], ...], una: int, ack: int,
                    acked: int, snd_max: int) -> bool:
        """An ACK's SACK blocks; True when they SACK octets not SACKed before, which makes
        the ACK a duplicate (RFC 6675 2) unless it is an old one (`acked` < 0)."""
        sb = self.scoreboard
        base = una
        if acked > 0:  # blocks at or below the new cumulative ACK are not news (D-SACK)
            base = ack
            sb.advance(ack)
        news = sb.add(blocks, base, snd_max) > 0
        if self.probe.outstanding and is_dsack(blocks, ack):
            self.probe.dsack = True
        return news and acked >= 0

    def by_sack(self) -> bool:
        """Whether a recovery starting now goes by the scoreboard: SACK was agreed and the
        peer sends blocks (one that agreed and sends none gets NewReno's)."""
        return self.sack and bool(self.scoreboard)

    def first_is_lost(self, una: int, mss: int) -> bool:
        """IsLost(SND.UNA) (RFC 6675 5 step 2), or the tail probe SACKed above it; with
        RACK, whether RACK deems anything lost."""
        if self.rack_on:
            return self.rack.has_lost()
        sb = self.scoreboard
        return self.probe.sacked(sb, una) or sb.is_lost(una, una, mss)

    def in_recovery(self, una: int) -> bool:
        """In fast recovery, or in RTO recovery (SND.UNA below SND.MAX of the timeout)."""
        return self.episode.active or ((una - self.episode.recover) & MASK) >= HALF

    def rack_on_ack(self, una: int, blocks: tuple[tuple[int, int], ...], snd_max: int,
                    now: float, srtt: float | None, mss: int) -> tuple[int, int, float | None]:
        """RACK's steps for one ACK (RFC 8985 6.2): what it delivered, the reordering
        window, then the losses if RACK.xmit_ts moved. Returns (segments newly deemed lost,
        of which resends, the reordering timeout: 0 for none, None to leave it as it is)."""
        rack = self.rack
        if rack is IDLE_RACK:
            if not blocks and not self.in_recovery(una):
                return 0, 0, None  # nothing sent yet: a fresh Rack would change nothing
            rack = self.rack = Rack()
        rack.on_ack(una, blocks, snd_max, now)
        episode = self.episode
        in_recovery = episode.active or ((una - episode.recover) & MASK) >= HALF
        # Step 4's adaptation can change nothing without a D-SACK, a D-SACK round
        # running or recovery ending (the test of every ACK, so without a call).
        if blocks or rack.dsack_round is not None or rack.in_recovery != in_recovery:
            rack.update_reo_wnd(bool(blocks) and is_dsack(blocks, una), una, snd_max,
                                in_recovery)
        lost = resends = 0
        probe = self.probe
        if probe.start is not None and probe.sacked(self.scoreboard, una):
            # As before RACK: what is missing below a SACKed probe went a PTO or more
            # before it. (RACK finds the same a round trip on, unless the probe's ACK comes
            # sooner than min_RTT after it, when step 2 takes it for the original's.)
            lost = rack.mark_lost_below(probe.start, mss)
        if not rack.advance():
            return lost, 0, None
        more, resends, timeout = rack.detect(now, self.scoreboard, mss, srtt)
        return lost + more, resends, timeout

    def rack_on_timer(self, una: int, now: float, srtt: float | None,
                      mss: int) -> tuple[int, int, float]:
        """The reordering timer fired (RFC 8985 6.3): step 5 again."""
        rack = self.rack
        if rack is IDLE_RACK:
            return 0, 0, 0.0  # nothing was ever sent (the timer is RACK's own: not armed)
        rack.in_recovery = self.in_recovery(una)  # recovery may have begun since the ACK
        return rack.detect(now, self.scoreboard, mss, srtt)

    def plan(self, una: int, snd_max: int, mss: int, cwnd: int, buffered: int,
             force_first: bool = False) -> tuple[list[tuple[int, int]], int]:
        """RFC 6675 5 (SetPipe, NextSeg rule 1): the lost bytes to resend now, lowest first,
        as (seq, length) segments of at most `mss`, each noted as resent; and what cwnd then
        leaves for new data (rule 2). A hole's bytes count in flight unless lost, and again
        for what was resent of it; a lost resend is forgotten first, so it can go again.
        With RACK its verdicts say what is lost (Rack.plan; `force_first`: the first lost
        segment goes whatever the pipe says, as fast retransmit's does)."""
        if self.rack_on:
            return self.rack.plan(una, mss, cwnd, buffered, force_first)
        sb = self.scoreboard
        pipe = 0
        lost_ranges: list[tuple[int, int]] = []
        for start, end, _ in sb.holes(una, snd_max):
            # Every octet of a hole has the same SACKed data above it: one IsLost per hole.
            lost = sb.is_lost(start, una, mss)
            if not lost:
                pipe += (end - start) & MASK
            pipe += sb.resent_within(start, end, una)
            if lost:
                lost_ranges.extend(sb.unsent_parts(start, end, una))
        resend: list[tuple[int, int]] = []
        for seq, end in lost_ranges:
            while cwnd - pipe >= mss and seq != end:
                offset = (seq - una) & MASK
                if offset >= buffered:
                    break  # only the FIN is left there
                n = min(mss, (end - seq) & MASK, buffered - offset)
                resend.append((seq, n))
                sb.note_resent(seq, (seq + n) & MASK, snd_max)
                seq = (seq + n) & MASK
                pipe += n
        return resend, cwnd - pipe

    def on_timeout(self, snd_max: int) -> None:
        """The retransmission timer fired: the episode starts over (RFC 6582 4.1), SACK
        information is suspect (RFC 2018 8), and no probe is out."""
        self.episode.on_timeout(snd_max)
        self.scoreboard.clear()
        self.probe.cancel()
        self.rack.on_timeout()
