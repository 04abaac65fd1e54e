"""Two whole stacks talking over an in-memory link on a virtual clock (tests/unit/link_pair.py).

Every test here runs in virtual time: RTOs, persist probes and 2*MSL pass in a few steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from tcpstack.net import ipv4
from tcpstack.stack import packet_bytes
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp import seq
from tcpstack.tcp.config import TcpConfig
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ESTABLISHED, ConnEvent
from tcpstack.tcp.segment import ACK, FIN, PSH, RST, SYN
from tcpstack.tcp.seq import MASK
from tcpstack.tcp.state import State
from tests.unit.link_pair import A_ADDR, B_ADDR, FixedIsn, Frame, LinkPair, WindowMonitor, pattern

MB = 1 << 20

# A full segment's payload: both stacks announce MSS 1460 and negotiate timestamps, whose 12
# option bytes each segment carries (RFC 6691: the MSS counts no options).
PAYLOAD = 1460 - 12


def transfer(pair: LinkPair, sender: Connection, receiver: Connection, data: bytes, *,
             read_size: int = -1, timeout: float = 300.0,
             check: Callable[[], None] | None = None) -> bytes:
    """The application on each side: the sender keeps its send buffer full, the receiver
    reads whatever has arrived (up to `read_size`) after every step; `check` runs after
    every step too. Returns what arrived."""
    got = bytearray()
    sent = 0

    def app() -> None:
        nonlocal sent
        if check is not None:
            check()
        if sent < len(data):
            sent += pair.send(sender, data[sent:sent + 256 * 1024])
        chunk = pair.read(receiver, read_size)
        got.extend(chunk)

    app()
    pair.run_until(lambda: len(got) >= len(data), timeout=timeout, between=app)
    return bytes(got)


def data_frames(pair: LinkPair, sender: str) -> list[Frame]:
    return [f for f in pair.tcp_frames(sender) if f.payload_len]


# ---------------------------------------------------------------------- handshake

def test_handshake_makes_both_sides_established_with_one_event_each() -> None:
    pair = LinkPair(isn_a=FixedIsn(1000), isn_b=FixedIsn(5000))
    pair.b.listen(80)
    client = pair.a.connect(B_ADDR, 80, pair.now)
    pair.settle()

    servers = pair.accepted(80)
    assert len(servers) == 1
    server = servers[0]
    assert client.state is State.ESTABLISHED
    assert server.state is State.ESTABLISHED
    assert pair.a.events == [(client, ESTABLISHED)]
    assert pair.b.events == [(server, ESTABLISHED)]

    syn, synack, ack = pair.tcp_frames()
    assert (syn.sender, syn.flags, syn.segment.seq) == ("a", "S", 1000)
    assert syn.segment.options.mss == 1460
    assert (synack.sender, synack.flags) == ("b", "S.")
    assert (synack.segment.seq, synack.segment.ack) == (5000, 1001)
    assert (ack.sender, ack.flags) == ("a", ".")
    assert (ack.segment.seq, ack.segment.ack) == (1001, 5001)
    assert len(pair.frames) == 3

    assert (client.snd.una, client.snd.nxt, client.rcv.nxt) == (1001, 1001, 5001)
    assert (server.snd.una, server.snd.nxt, server.rcv.nxt) == (5001, 5001, 1001)
    assert (server.remote_addr, server.remote_port) == (A_ADDR, client.local_port)
    assert client.snd.mss == server.snd.mss == PAYLOAD  # 1460 announced, less the timestamps
    # The receive buffer may grow to 6 MiB (auto-tuning's default ceiling), which needs a
    # shift of 7 to fit in 16 bits (65535 << 6 falls short); both sides offered one.
    assert client.snd.wscale == server.snd.wscale == 7


def test_handshake_transitions_follow_rfc_9293_figure_5() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    assert pair.states_of(client) == [State.CLOSED, State.SYN_SENT, State.ESTABLISHED]
    assert pair.states_of(server) == [State.LISTEN, State.SYN_RCVD, State.ESTABLISHED]


def test_handshake_survives_lost_syn() -> None:
    pair = LinkPair(drop=lambda f: f.number == 0)
    client, server = pair.established_pair()
    syns = [f for f in pair.tcp_frames("a") if f.flags == "S"]
    assert len(syns) == 2
    assert syns[1].time - syns[0].time == pytest.approx(1.0)  # the initial RTO (RFC 6298 2.1)
    assert client.state is server.state is State.ESTABLISHED


# ---------------------------------------------------------------------- no listener

def test_syn_to_closed_port_gets_rst_ack() -> None:
    pair = LinkPair(isn_a=FixedIsn(0x12345678))
    client = pair.a.connect(B_ADDR, 81, pair.now)
    pair.settle()

    syn, rst = pair.tcp_frames()
    assert syn.flags == "S"
    assert rst.sender == "b"
    assert rst.segment.flags == RST | ACK
    assert rst.segment.seq == 0
    assert rst.segment.ack == 0x12345679
    assert (rst.segment.sport, rst.segment.dport) == (81, client.local_port)
    assert pair.b.counters["rst_out"] == 1
    assert pair.b.connections == {}

    assert client.state is State.CLOSED
    assert client.error == "connection refused"
    assert pair.events_of(client) == [ConnEvent.REFUSED, ConnEvent.CLOSED]
    assert pair.a.connections == {}
    assert pair.a.counters["attempt_fails"] == 1


def test_an_aborted_connection_counts_its_rst_in_rst_out() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    assert pair.a.counters["rst_out"] == 0
    client.abort(pair.now)
    pair.settle()
    assert [f.segment.flags & RST for f in pair.tcp_frames("a")][-1] == RST
    assert pair.a.counters["rst_out"] == 1
    assert server.state is State.CLOSED


def test_syn_at_isn_before_wrap_to_closed_port_gets_ack_zero() -> None:
    pair = LinkPair(isn_a=FixedIsn(0xFFFFFFFF))
    pair.a.connect(B_ADDR, 81, pair.now)
    pair.settle()
    rst = pair.tcp_frames("b")[0]
    assert (rst.segment.flags, rst.segment.seq, rst.segment.ack) == (RST | ACK, 0, 0)


def test_ack_to_closed_port_gets_rst_with_seq_from_ack() -> None:
    pair = LinkPair()
    pseudo = ipv4.pseudo_header_sum(A_ADDR, B_ADDR, ipv4.PROTO_TCP)
    stray = tcpseg.build(40000, 81, 500, 0xABCDEF01, ACK, 1000, pseudo, b"", b"hello")
    pair.b.receive(ipv4.build(A_ADDR, B_ADDR, ipv4.PROTO_TCP, stray), pair.now)
    (out,) = pair.b.output
    packet = packet_bytes(out)
    ip = ipv4.parse(packet)
    reply = tcpseg.parse(ip.payload, ipv4.pseudo_header_sum(B_ADDR, A_ADDR, ipv4.PROTO_TCP))
    assert (reply.flags, reply.seq, reply.ack) == (RST, 0xABCDEF01, 0)
    assert (reply.sport, reply.dport) == (81, 40000)


def test_rst_to_closed_port_is_not_answered() -> None:
    pair = LinkPair()
    pseudo = ipv4.pseudo_header_sum(A_ADDR, B_ADDR, ipv4.PROTO_TCP)
    stray = tcpseg.build(40000, 81, 500, 0, RST, 0, pseudo)
    pair.b.receive(ipv4.build(A_ADDR, B_ADDR, ipv4.PROTO_TCP, stray), pair.now)
    assert pair.b.output == []
    assert pair.b.counters["rst_in"] == 1


# ---------------------------------------------------------------------- bulk transfer

def test_one_megabyte_client_to_server_arrives_intact() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    data = pattern(MB, seed=1)
    assert transfer(pair, client, server, data) == data
    assert server.rcv.bytes_received == MB
    assert client.counts.retransmits == 0
    assert pair.events_of(server).count(ConnEvent.DATA) >= 1


def test_one_megabyte_server_to_client_arrives_intact() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    data = pattern(MB, seed=2)
    assert transfer(pair, server, client, data) == data
    pair.advance(0.1)  # the last delayed ACK falls due
    assert client.rcv.bytes_received == MB
    assert server.snd.bytes_sent == MB  # everything acknowledged
    assert len(server.snd.buffer) == 0


def test_one_megabyte_both_directions_at_once_arrives_intact() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    up, down = pattern(MB, seed=3), pattern(MB, seed=4)
    got_up, got_down = bytearray(), bytearray()
    sent = {"up": 0, "down": 0}

    def app() -> None:
        if sent["up"] < MB:
            sent["up"] += pair.send(client, up[sent["up"]:])
        if sent["down"] < MB:
            sent["down"] += pair.send(server, down[sent["down"]:])
        got_up.extend(pair.read(server))
        got_down.extend(pair.read(client))

    app()
    pair.run_until(lambda: len(got_up) >= MB and len(got_down) >= MB, between=app)
    assert bytes(got_up) == up
    assert bytes(got_down) == down


def test_segments_are_full_sized_during_bulk_transfer() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    data = pattern(100 * PAYLOAD + 7, seed=5)
    assert transfer(pair, client, server, data) == data
    sizes = [f.payload_len for f in data_frames(pair, "a")]
    assert max(sizes) == PAYLOAD
    assert sizes.count(PAYLOAD) == 100
    assert sum(sizes) == len(data)


# ---------------------------------------------------------------------- sequence wrap

@pytest.mark.parametrize("isn_a, isn_b", [
    (0xFFFFFF00, 0xFFFFFF00),          # both wrap inside the first segment
    (2**32 - 500_000, 2**32 - 300_000),  # both wrap in the middle of the transfer
    (0xFFFFFFFF, 0xFFFFFFFE),          # the SYN (or the first byte) takes the last number
], ids=["near-wrap", "mid-transfer", "at-wrap"])
def test_transfer_across_sequence_wrap_arrives_intact(isn_a: int, isn_b: int) -> None:
    pair = LinkPair(isn_a=FixedIsn(isn_a), isn_b=FixedIsn(isn_b))
    client, server = pair.established_pair()
    assert (client.snd.iss, server.snd.iss) == (isn_a, isn_b)
    up, down = pattern(MB, seed=6), pattern(MB, seed=7)
    assert transfer(pair, client, server, up) == up
    assert transfer(pair, server, client, down) == down
    pair.advance(0.1)  # the last delayed ACK falls due
    # Both send spaces went past 2**32 and came round to small numbers.
    assert client.snd.una == (isn_a + 1 + MB) & MASK
    assert server.snd.una == (isn_b + 1 + MB) & MASK
    assert client.snd.una < isn_a and server.snd.una < isn_b
    assert server.rcv.nxt == client.snd.una and client.rcv.nxt == server.snd.una
    assert client.counts.retransmits == server.counts.retransmits == 0
    seqs = [f.segment.seq for f in data_frames(pair, "a")]
    assert seqs[0] == (isn_a + 1) & MASK
    # Unless the SYN itself took 2**32 - 1, a data segment crossed the wrap mid-stream.
    crossed = any(b < a for a, b in itertools.pairwise(seqs))
    assert crossed == (isn_a != 0xFFFFFFFF)


def test_close_after_data_across_sequence_wrap_reaches_closed() -> None:
    pair = LinkPair(isn_a=FixedIsn(0xFFFFFFF0), isn_b=FixedIsn(0xFFFFFFFA))
    client, server = pair.established_pair()
    data = pattern(40, seed=8)  # bytes 0xFFFFFFF1 .. 0x18: the FIN lands after the wrap
    assert transfer(pair, client, server, data) == data
    pair.close(client)
    pair.settle()
    pair.close(server)
    pair.settle()
    assert server.state is State.CLOSED
    assert client.state is State.TIME_WAIT
    assert client.snd.una == 0x1A  # 0xFFFFFFF0 + SYN + 40 bytes + FIN, modulo 2**32
    pair.advance(2 * client.config.msl)
    assert client.state is State.CLOSED


# ---------------------------------------------------------------------- close

@pytest.mark.parametrize("first", ["client", "server"])
def test_graceful_close_ends_closed_and_time_wait_then_closed_after_2msl(first: str) -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    active, passive = (client, server) if first == "client" else (server, client)
    payload = pattern(5000, seed=9)
    assert transfer(pair, active, passive, payload) == payload

    pair.close(active)
    pair.settle()
    assert active.state is State.FIN_WAIT_2
    assert passive.state is State.CLOSE_WAIT
    assert ConnEvent.EOF in pair.events_of(passive)

    pair.close(passive)
    pair.settle()
    assert passive.state is State.CLOSED
    assert active.state is State.TIME_WAIT
    assert pair.events_of(passive)[-2:] == [ConnEvent.EOF, ConnEvent.CLOSED]
    assert pair.events_of(active)[-1] is ConnEvent.EOF
    passive_stack = pair.stack_of(passive)
    assert passive not in passive_stack.connections.values()

    assert pair.states_of(active)[-3:] == [State.FIN_WAIT_1, State.FIN_WAIT_2,
                                           State.TIME_WAIT]
    assert pair.states_of(passive)[-3:] == [State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED]

    entered = next(t for t, _, _, _, new in pair.transitions if new is State.TIME_WAIT)
    two_msl = 2 * active.config.msl
    assert two_msl == 60.0
    pair.advance(entered + two_msl - 0.001 - pair.now)
    assert active.state is State.TIME_WAIT
    assert active in pair.stack_of(active).connections.values()
    pair.advance(0.002)
    assert active.state is State.CLOSED
    closed_at = pair.transitions[-1][0]
    assert pair.transitions[-1][3:] == (State.TIME_WAIT, State.CLOSED)
    assert closed_at == pytest.approx(entered + two_msl)
    assert pair.events_of(active)[-1] is ConnEvent.CLOSED
    assert pair.a.connections == {} and pair.b.connections == {}
    assert not [f for f in pair.frames if f.dropped]


def test_fin_is_sent_once_and_not_again_after_it_is_acked() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    pair.close(client)
    pair.advance(1.0)  # far longer than one round trip (10 ms)
    fins = [f for f in pair.tcp_frames("a") if f.segment.flags & FIN]
    assert [f.segment.seq for f in fins] == [(client.snd.iss + 1) & MASK]
    assert client.state is State.FIN_WAIT_2
    assert server.state is State.CLOSE_WAIT
    assert server.rcv.nxt == (client.snd.iss + 2) & MASK
    assert pair.events_of(server).count(ConnEvent.EOF) == 1
    assert len(pair.frames) == 5  # SYN, SYN-ACK, ACK, FIN, ACK of FIN


def test_close_with_unsent_data_sends_all_data_before_fin() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    data = pattern(300_000, seed=10)
    assert pair.send(client, data) == len(data)
    pair.close(client)
    got = bytearray()
    pair.run_until(lambda: ConnEvent.EOF in pair.events_of(server),
                   between=lambda: got.extend(pair.read(server)))
    got.extend(pair.read(server))
    assert bytes(got) == data
    fin = next(f for f in pair.tcp_frames("a") if f.segment.flags & FIN)
    # The FIN comes after the last byte (on the segment that carries it, or after it).
    assert (fin.segment.seq + len(fin.segment.payload)) & MASK == \
        (client.snd.iss + 1 + len(data)) & MASK


def test_simultaneous_close_goes_through_closing_to_time_wait_on_both_sides() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    pair.close(client)
    pair.close(server)
    pair.settle()
    assert client.state is State.TIME_WAIT
    assert server.state is State.TIME_WAIT
    assert State.CLOSING in pair.states_of(client)
    assert State.CLOSING in pair.states_of(server)
    # Entering TIME_WAIT from CLOSING must arm the 2*MSL timer like any other way in.
    entered = pair.transitions[-1][0]
    assert client.deadline == pytest.approx(entered + 2 * client.config.msl)
    assert server.deadline == pytest.approx(entered + 2 * server.config.msl)
    pair.advance(2 * client.config.msl + 1)
    assert client.state is server.state is State.CLOSED


def test_retransmitted_fin_in_time_wait_is_acked_again() -> None:
    # The ACK of the passive closer's FIN is lost: it retransmits the FIN, and the side in
    # TIME_WAIT must acknowledge it again so the peer can reach CLOSED.
    lost: list[int] = []
    conns: list[Connection] = []

    def drop(frame: Frame) -> bool:
        if conns and not lost and frame.sender == "a" and conns[0].state is State.TIME_WAIT:
            lost.append(frame.number)  # the ACK that took the client into TIME_WAIT
            return True
        return False

    pair = LinkPair(drop=drop)
    client, server = pair.established_pair()
    conns.append(client)
    pair.close(client)
    pair.settle()
    pair.close(server)
    pair.settle()
    assert lost and server.state is State.LAST_ACK
    pair.run_until(lambda: server.state is State.CLOSED, timeout=10)
    assert client.state is State.TIME_WAIT
    fins = [f for f in pair.tcp_frames("b") if f.segment.flags & FIN]
    assert len(fins) == 2


# ---------------------------------------------------------------------- loss

def test_single_lost_data_segment_is_retransmitted_after_rto() -> None:
    pair = LinkPair(drop=lambda f: f.sender == "a" and f.is_tcp and f.payload_len > 0
                    and not [g for g in pair.frames if g.dropped])
    client, server = pair.established_pair()
    rto = client.rtt.rto
    assert rto == pytest.approx(0.2)  # a 10 ms handshake RTT is clamped to min_rto
    message = b"one segment that will be lost once"
    got = transfer(pair, client, server, message)
    assert got == message
    first, second = data_frames(pair, "a")[:2]
    assert first.dropped and not second.dropped
    assert second.segment.seq == first.segment.seq
    assert bytes(second.segment.payload) == message
    assert second.time - first.time == pytest.approx(rto)
    assert client.counts.retransmits == 1
    # Karn's rule (RFC 6298 5.7 and 3): the ACK of a retransmission gives no RTT sample, so
    # the backed-off RTO stays until a segment sent once is acknowledged.
    assert client.rtt.rto == pytest.approx(2 * rto)
    assert transfer(pair, client, server, b"next") == b"next"
    pair.advance(0.1)  # the delayed ACK of "next" falls due
    assert client.rtt.rto == pytest.approx(rto)


def test_lost_segment_mid_transfer_is_recovered_and_data_intact() -> None:
    target: list[int] = []

    def drop(frame: Frame) -> bool:
        if frame.sender == "a" and frame.is_tcp and frame.payload_len and not target \
                and (frame.segment.seq - client.snd.iss) & MASK > 100_000:
            target.append(frame.segment.seq)
            return True
        return False

    pair = LinkPair(drop=drop)
    client, server = pair.established_pair()
    data = pattern(MB, seed=11)
    assert transfer(pair, client, server, data) == data
    assert target
    copies = [f for f in data_frames(pair, "a") if f.segment.seq == target[0]]
    assert len(copies) >= 2 and copies[0].dropped and not copies[-1].dropped
    assert client.counts.retransmits >= 1


def test_repeated_loss_backs_off_the_rto_and_then_recovers() -> None:
    drops = {"left": 3}

    def drop(frame: Frame) -> bool:
        if frame.sender == "a" and frame.is_tcp and frame.payload_len and drops["left"]:
            drops["left"] -= 1
            return True
        return False

    pair = LinkPair(drop=drop)
    client, server = pair.established_pair()
    assert transfer(pair, client, server, b"persistent") == b"persistent"
    times = [f.time for f in data_frames(pair, "a")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([0.2, 0.4, 0.8])  # RFC 6298 5.5: doubled each time


def test_lost_syn_ack_is_retransmitted_and_handshake_completes() -> None:
    pair = LinkPair(drop=lambda f: f.sender == "b" and f.is_tcp and f.flags == "S."
                    and not [g for g in pair.frames if g.dropped])
    client, server = pair.established_pair()
    synacks = [f for f in pair.tcp_frames("b") if f.flags == "S."]
    assert len(synacks) >= 2
    assert client.state is server.state is State.ESTABLISHED


# ---------------------------------------------------------------------- flow control

def test_sender_never_exceeds_the_advertised_window() -> None:
    small = TcpConfig(receive_buffer=32 * 1024)
    pair = LinkPair(config_b=small)
    monitor = WindowMonitor()
    pair.observers.append(monitor)
    client, server = pair.established_pair()
    data = pattern(MB // 2, seed=12)
    overruns: list[str] = []

    def sender_within_receiver_window() -> None:
        # After every step: nothing a has sent lies beyond the right edge b has advertised.
        if not seq.le(client.snd.max, server.rcv.adv):
            overruns.append(f"t={pair.now}: SND.MAX {client.snd.max} > edge {server.rcv.adv}")

    # The receiver reads at most 8 KB each time something happens, so the window shrinks.
    assert transfer(pair, client, server, data, read_size=8 * 1024,
                    check=sender_within_receiver_window) == data
    assert overruns == []
    assert monitor.violations == []
    assert monitor.max_outstanding["a"] <= 32 * 1024
    # The window really was the limit: the sender filled it at least once.
    assert monitor.max_outstanding["a"] > 16 * 1024
    assert max(monitor.windows_sent["b"]) <= 32 * 1024


def test_window_monitor_flags_a_sender_that_overruns_the_window() -> None:
    # The harness check itself must be able to fail: b offers 100 bytes, a sends 150.
    pair = LinkPair()
    monitor = WindowMonitor()
    a_pseudo = ipv4.pseudo_header_sum(A_ADDR, B_ADDR, ipv4.PROTO_TCP)
    b_pseudo = ipv4.pseudo_header_sum(B_ADDR, A_ADDR, ipv4.PROTO_TCP)

    def frame(number: int, sender: str, data: bytes) -> Frame:
        src, dst = (A_ADDR, B_ADDR) if sender == "a" else (B_ADDR, A_ADDR)
        return Frame(number, 0.0, sender, ipv4.build(src, dst, ipv4.PROTO_TCP, data))

    ack = frame(0, "b", tcpseg.build(80, 40000, 9000, 1000, ACK, 100, b_pseudo))
    monitor(pair, ack, "sent")
    monitor(pair, ack, "delivered")
    fits = frame(1, "a", tcpseg.build(40000, 80, 1000, 9000, ACK, 500, a_pseudo, b"",
                                      bytes(100)))
    monitor(pair, fits, "sent")
    assert monitor.violations == []
    overrun = frame(2, "a", tcpseg.build(40000, 80, 1050, 9000, ACK, 500, a_pseudo, b"",
                                         bytes(100)))
    monitor(pair, overrun, "sent")
    assert len(monitor.violations) == 1
    assert "50 bytes beyond" in monitor.violations[0]
    assert monitor.max_outstanding["a"] == 150


def test_slow_reader_closes_window_and_reopens_without_loss_or_deadlock() -> None:
    capacity = 12 * PAYLOAD  # whole segments, so the sender can fill the window to zero
    pair = LinkPair(config_b=TcpConfig(receive_buffer=capacity))
    monitor = WindowMonitor()
    pair.observers.append(monitor)
    client, server = pair.established_pair()
    data = pattern(200_000, seed=13)
    queued = pair.send(client, data)
    assert queued == len(data)

    # The application on b does not read: the buffer fills and the window closes.
    pair.settle()
    assert server.rcv.unread_bytes == capacity
    assert monitor.windows_sent["b"][-1] == 0
    assert client.snd.wnd == 0

    # Minutes pass without a read: zero-window probes keep the connection alive.
    pair.advance(300.0)
    assert client.state is server.state is State.ESTABLISHED
    assert server.rcv.unread_bytes == capacity
    assert ConnEvent.TIMEOUT not in pair.events_of(client)
    probes = [f for f in pair.tcp_frames("a") if f.time > 1.0 and not f.payload_len]
    assert probes  # the persist timer fired
    # A probe carries an old sequence number, SND.UNA - 1, so it draws an ACK (3.8.6.1).
    assert {f.segment.seq for f in probes} == {(client.snd.iss + capacity) & MASK}
    assert max(f.time for f in probes) > 200.0

    # Now the application reads 3000 bytes whenever told, and everything arrives.
    got = bytearray()

    def slow_app() -> None:
        got.extend(pair.read(server, 3000))

    pair.run_until(lambda: len(got) == len(data), between=slow_app, timeout=600)
    assert bytes(got) == data
    assert monitor.violations == []
    assert monitor.max_outstanding["a"] <= capacity
    reopened = [w for w in monitor.windows_sent["b"] if w > 0]
    assert reopened


def test_lost_window_update_after_zero_window_is_recovered_by_persist_probe() -> None:
    capacity = 12 * PAYLOAD
    lost: list[int] = []

    def drop(frame: Frame) -> bool:
        seg = frame.segment
        if frame.sender == "b" and not lost and seg.window > 0 and server_reading:
            lost.append(frame.number)  # the first window update after the window closed
            return True
        return False

    server_reading = False
    pair = LinkPair(config_b=TcpConfig(receive_buffer=capacity), drop=drop)
    client, server = pair.established_pair()
    data = pattern(100_000, seed=14)
    pair.send(client, data)
    pair.settle()
    assert client.snd.wnd == 0

    server_reading = True
    got = bytearray(pair.read(server))
    pair.run_until(lambda: len(got) == len(data), timeout=120,
                   between=lambda: got.extend(pair.read(server)))
    assert lost
    assert bytes(got) == data
    probes = [f for f in pair.tcp_frames("a") if f.number > lost[0] and not f.payload_len]
    assert probes and probes[0].segment.seq == (client.snd.iss + capacity) & MASK


def test_lost_window_update_after_small_window_does_not_deadlock() -> None:
    # The receiver's window shrinks to 456 bytes (16384 - 11 * PAYLOAD); the sender holds its
    # next segment back for SWS avoidance with nothing in flight. When the application
    # reads, the window update is lost. Something must still move the data (RFC 9293
    # 3.8.6.2.1's override timeout, or a probe as Linux sends): a lost ACK must not stall a
    # connection forever.
    capacity = 16 * 1024
    lost: list[int] = []
    reading = False

    def drop(frame: Frame) -> bool:
        if frame.sender == "b" and reading and not lost:
            lost.append(frame.number)
            return True
        return False

    pair = LinkPair(config_b=TcpConfig(receive_buffer=capacity), drop=drop)
    client, server = pair.established_pair()
    data = pattern(100_000, seed=15)
    pair.send(client, data)
    pair.advance(0.1)  # the delayed ACK carrying the last window falls due
    assert server.rcv.unread_bytes == 11 * PAYLOAD
    assert client.snd.wnd == capacity - 11 * PAYLOAD

    reading = True
    got = bytearray(pair.read(server))
    pair.run_until(lambda: len(got) == len(data), timeout=120,
                   between=lambda: got.extend(pair.read(server)))
    assert lost
    assert bytes(got) == data


# ---------------------------------------------------------------------- events

def test_data_event_is_reported_once_until_read() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    pair.send(client, b"first")
    pair.settle()
    pair.send(client, b"second")
    pair.advance(0.1)  # Nagle holds "second" until the delayed ACK of "first"
    assert pair.events_of(server).count(ConnEvent.DATA) == 1
    assert pair.read(server) == b"firstsecond"
    pair.send(client, b"third")
    pair.settle()
    assert pair.events_of(server).count(ConnEvent.DATA) == 2


def test_push_flag_marks_the_segment_that_empties_the_queue() -> None:
    pair = LinkPair()
    client, _server = pair.established_pair()
    pair.send(client, pattern(3000, seed=16))
    pair.settle()
    flags = [f.segment.flags for f in data_frames(pair, "a")]
    assert flags == [ACK, ACK, ACK | PSH]
    assert [f.payload_len for f in data_frames(pair, "a")] == [PAYLOAD, PAYLOAD, 3000 - 2 * PAYLOAD]


def test_abort_sends_rst_and_peer_reports_reset() -> None:
    pair = LinkPair()
    client, server = pair.established_pair()
    client.abort(pair.now)
    pair.settle()
    rst = pair.tcp_frames("a")[-1]
    assert rst.segment.flags == RST
    assert rst.segment.seq == client.snd.nxt
    assert server.state is State.CLOSED
    assert pair.events_of(server)[-2:] == [ConnEvent.RESET, ConnEvent.CLOSED]
    assert server.error == "connection reset by peer"
    assert pair.b.connections == {}


def test_syn_carries_only_the_syn_flag_and_opens_are_counted() -> None:
    pair = LinkPair()
    pair.connect(80)
    pair.settle()
    syn = pair.tcp_frames("a")[0]
    assert syn.segment.flags == SYN
    assert syn.segment.ack == 0
    assert pair.a.counters["active_opens"] == 1
    assert pair.b.counters["passive_opens"] == 1
