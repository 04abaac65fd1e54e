"""Initial sequence numbers (RFC 6528 3): ISN = M + F(localip, localport, remoteip,
remoteport, secretkey), where M is a timer that ticks every 4 microseconds and F a keyed
hash. Every other test fixes the ISN (FixedIsn) to place the sequence space, so these are
the tests that notice when the generator, or the stack's use of it, stops doing that."""

from __future__ import annotations

import pytest

from tcpstack.net import ipv4
from tcpstack.net.ipv4 import PROTO_TCP
from tcpstack.stack import NetworkStack, packet_bytes
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.isn import IsnGenerator
from tcpstack.tcp.segment import ACK, SYN
from tcpstack.tcp.seq import MASK
from tests.unit.scripted_peer import PEER_ADDR, STACK_ADDR, decode

KEY = bytes(range(16))
OTHER_KEY = bytes(range(16, 32))
TICKS_PER_SECOND = 250_000  # one tick every 4 us
OTHER_ADDR = bytes([10, 0, 0, 3])


def _isn(gen: IsnGenerator, local: bytes = STACK_ADDR, local_port: int = 50000,
         remote: bytes = PEER_ADDR, remote_port: int = 80, now: float = 0.0) -> int:
    return gen.isn(local, local_port, remote, remote_port, now)


def test_isn_differs_when_any_element_of_the_four_tuple_changes() -> None:
    gen = IsnGenerator(KEY)
    isns = [_isn(gen),
            _isn(gen, local=OTHER_ADDR),
            _isn(gen, local_port=50001),
            _isn(gen, remote=OTHER_ADDR),
            _isn(gen, remote_port=81),
            _isn(gen, local_port=80, remote_port=50000)]  # the ports swapped
    assert len(set(isns)) == len(isns)
    assert all(0 <= isn <= MASK for isn in isns)


@pytest.mark.parametrize(("later", "ticks"), [
    (0.000004, 1),               # one tick
    (0.5, 125_000),
    (1.0, 250_000),
    (3600.0, 900_000_000),
    (20_000.0, 5_000_000_000 - 2**32),  # the 32-bit counter wrapped once
])
def test_isn_of_one_four_tuple_advances_one_per_4_microseconds(later: float,
                                                              ticks: int) -> None:
    gen = IsnGenerator(KEY)
    assert (_isn(gen, now=later) - _isn(gen, now=0.0)) & MASK == ticks


def test_isn_of_one_four_tuple_at_one_time_depends_on_the_key() -> None:
    assert _isn(IsnGenerator(KEY)) == _isn(IsnGenerator(KEY))
    assert _isn(IsnGenerator(KEY)) != _isn(IsnGenerator(OTHER_KEY))


def test_two_stacks_with_their_own_random_keys_pick_different_isns() -> None:
    """A stack left to itself draws its key at random (RFC 6528 3: the secret is not
    guessable), so two stacks opening the same 4-tuple at the same instant disagree. (They
    could agree by chance once in 2**32 runs.)"""
    first = NetworkStack(STACK_ADDR).connect(PEER_ADDR, 80, 5.0, local_port=50000)
    second = NetworkStack(STACK_ADDR).connect(PEER_ADDR, 80, 5.0, local_port=50000)
    assert first.snd.iss != second.snd.iss


def test_active_opens_take_the_isn_of_their_four_tuple_and_time() -> None:
    stack = NetworkStack(STACK_ADDR, isn=IsnGenerator(KEY))
    first = stack.connect(PEER_ADDR, 80, 2.0, local_port=50000)
    other_port = stack.connect(PEER_ADDR, 81, 2.0, local_port=50000)
    assert first.snd.iss != other_port.snd.iss
    # The same 4-tuple a second later, on a stack with the same key: 250,000 ticks on.
    later = NetworkStack(STACK_ADDR, isn=IsnGenerator(KEY)).connect(PEER_ADDR, 80, 3.0,
                                                                    local_port=50000)
    assert (later.snd.iss - first.snd.iss) & MASK == TICKS_PER_SECOND
    stack.flush(2.0)
    syns = [decode(packet_bytes(packet), 2.0) for packet in stack.output]
    assert [(s.flags, s.seq) for s in syns] == [(SYN, first.snd.iss), (SYN, other_port.snd.iss)]


def _syn_ack_seq(stack: NetworkStack, sport: int, now: float) -> int:
    """Deliver a SYN from PEER_ADDR:`sport` to port 80; the sequence number of the answer."""
    pseudo = ipv4.pseudo_header_sum(PEER_ADDR, STACK_ADDR, PROTO_TCP)
    syn = tcpseg.build(sport, 80, 7_000_000, 0, SYN, 65535, pseudo,
                       tcpseg.encode_options(mss=1460))
    stack.receive(ipv4.build(PEER_ADDR, STACK_ADDR, PROTO_TCP, syn), now)
    stack.flush(now)
    replies = [decode(packet_bytes(packet), now) for packet in stack.output]
    stack.output.clear()
    assert [r.flags for r in replies] == [SYN | ACK]
    return replies[0].seq


def test_passive_opens_answer_with_the_isn_of_their_four_tuple_and_time() -> None:
    stack = NetworkStack(STACK_ADDR, isn=IsnGenerator(KEY))
    stack.listen(80)
    first = _syn_ack_seq(stack, 40000, 2.0)
    assert _syn_ack_seq(stack, 40001, 2.0) != first
    later_stack = NetworkStack(STACK_ADDR, isn=IsnGenerator(KEY))
    later_stack.listen(80)
    assert (_syn_ack_seq(later_stack, 40000, 2.5) - first) & MASK == TICKS_PER_SECOND // 2
