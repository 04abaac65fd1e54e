"""Stopping a stack as a kernel closes an exiting process's sockets (NetworkStack.close_all,
reset_unread_arrivals, reset_all; TcpTransport.close): a FIN where everything can still be
delivered, a RST where received data is left unread or arrives after the close (RFC 9293
3.6.1), and a RST for whatever has not finished when the grace is over. In virtual time, on
tests/unit/link_pair.py; `b` is the stack that stops."""

from __future__ import annotations

import asyncio
from typing import cast

from tcpstack.api.transport import TcpTransport
from tcpstack.io.driver import StackDriver
from tcpstack.tcp.connection import Connection
from tcpstack.tcp.events import ConnEvent
from tcpstack.tcp.segment import ACK, FIN, RST
from tcpstack.tcp.state import State
from tests.unit.link_pair import Frame, LinkPair


def _sent_by_b(pair: LinkPair, since: int) -> list[Frame]:
    return [f for f in pair.tcp_frames("b") if f.number >= since]


def _next_frame(pair: LinkPair) -> int:
    return len(pair.frames)


def test_close_all_sends_fin_where_everything_was_read_and_rst_where_data_is_unread() -> None:
    pair = LinkPair()
    read_client, read_server = pair.established_pair(80)
    unread_client, unread_server = pair.established_pair(81)
    pair.send(read_client, b"read by the application")
    pair.send(unread_client, b"never read")
    pair.settle()
    assert pair.read(read_server) == b"read by the application"
    pair.settle()
    mark = _next_frame(pair)

    pair.b.close_all(pair.now)
    pair.settle()

    assert [(f.segment.dport, f.segment.flags) for f in _sent_by_b(pair, mark)] == [
        (read_client.local_port, FIN | ACK), (unread_client.local_port, RST)]
    assert read_server.state is State.FIN_WAIT_2
    assert read_client.state is State.CLOSE_WAIT
    assert pair.events_of(read_client)[-1] is ConnEvent.EOF
    assert unread_server.state is State.CLOSED
    assert unread_client.state is State.CLOSED
    assert pair.events_of(unread_client)[-2:] == [ConnEvent.RESET, ConnEvent.CLOSED]
    assert pair.b.listeners == {}


def test_close_all_resets_a_passive_open_not_yet_established() -> None:
    # The client's ACK of the SYN-ACK is lost: the server's side stays in SYN_RCVD.
    pair = LinkPair(drop=lambda f: f.sender == "a" and f.flags == ".")
    client = pair.connect(80)
    pair.run_until(lambda: client.state is State.ESTABLISHED)
    (server,) = pair.b.connections.values()
    assert server.state is State.SYN_RCVD
    mark = _next_frame(pair)

    pair.b.close_all(pair.now)
    pair.settle()

    assert [f.segment.flags for f in _sent_by_b(pair, mark)] == [RST]
    assert server.state is State.CLOSED
    assert client.state is State.CLOSED
    assert pair.events_of(client)[-2:] == [ConnEvent.RESET, ConnEvent.CLOSED]


def test_close_all_leaves_a_connection_with_an_owner_to_its_owner() -> None:
    pair = LinkPair()
    _, server = pair.established_pair(80)
    server.owner = object()  # e.g. an api transport, which may hold data still to send
    mark = _next_frame(pair)

    pair.b.close_all(pair.now)
    pair.settle()

    assert server.state is State.ESTABLISHED
    assert _sent_by_b(pair, mark) == []
    assert pair.b.listeners == {}


def test_data_arriving_after_close_all_is_reset() -> None:
    pair = LinkPair()
    client, server = pair.established_pair(80)
    pair.b.close_all(pair.now)
    pair.settle()
    assert server.state is State.FIN_WAIT_2
    pair.b.reset_unread_arrivals(pair.now)  # nothing arrived: nothing to do
    pair.settle()
    assert server.state is State.FIN_WAIT_2
    mark = _next_frame(pair)

    pair.send(client, b"for nobody")  # the peer half-closed by us may still send
    pair.settle()
    assert server.state is State.FIN_WAIT_2  # taken and dropped, its ACK delayed, so far
    pair.b.reset_unread_arrivals(pair.now)
    pair.settle()

    assert [f.segment.flags for f in _sent_by_b(pair, mark)] == [RST]
    assert server.state is State.CLOSED
    assert client.state is State.CLOSED
    assert pair.events_of(client)[-2:] == [ConnEvent.RESET, ConnEvent.CLOSED]


def test_reset_all_resets_fin_wait_2_and_leaves_time_wait_alone() -> None:
    pair = LinkPair()
    waiting_client, waiting_server = pair.established_pair(80)
    done_client, done_server = pair.established_pair(81)
    pair.close(done_server)
    pair.settle()
    pair.close(done_client)
    pair.settle()
    assert done_server.state is State.TIME_WAIT
    pair.b.close_all(pair.now)
    pair.settle()
    assert waiting_server.state is State.FIN_WAIT_2
    assert waiting_client.state is State.CLOSE_WAIT  # its application never closes
    mark = _next_frame(pair)

    pair.b.reset_all(pair.now)
    pair.settle()

    assert [(f.segment.dport, f.segment.flags) for f in _sent_by_b(pair, mark)] == [
        (waiting_client.local_port, RST)]
    assert waiting_server.state is State.CLOSED
    assert waiting_client.state is State.CLOSED
    assert pair.events_of(waiting_client)[-2:] == [ConnEvent.RESET, ConnEvent.CLOSED]
    assert done_server.state is State.TIME_WAIT


def test_reset_all_in_last_ack_sends_a_rst_that_ends_the_peer_too() -> None:
    # The peer half-closed first and waits for our FIN, which is lost every time: without a
    # RST it would wait for ever in FIN_WAIT_2.
    pair = LinkPair(drop=lambda f: f.sender == "b" and f.flags.startswith("F"))
    client, server = pair.established_pair(80)
    pair.close(client)
    pair.settle()
    pair.b.close_all(pair.now)
    pair.settle()
    assert server.state is State.LAST_ACK
    assert client.state is State.FIN_WAIT_2
    mark = _next_frame(pair)

    pair.b.reset_all(pair.now)
    pair.settle()

    # The RST at SND.NXT is in the peer's window but past its RCV.NXT (the FIN never came):
    # a challenge ACK (RFC 5961 3.2), answered by an exact RST from the now closed port.
    sent = [f for f in pair.tcp_frames() if f.number >= mark]
    assert [(f.sender, f.segment.flags) for f in sent] == [("b", RST), ("a", ACK), ("b", RST)]
    assert sent[2].segment.seq == client.rcv.nxt
    assert server.state is State.CLOSED
    assert client.state is State.CLOSED
    assert pair.events_of(client)[-2:] == [ConnEvent.RESET, ConnEvent.CLOSED]
    assert pair.b.connections == {}


def test_reset_all_ends_syn_sent_silently() -> None:
    pair = LinkPair(drop=lambda f: f.sender == "a")
    pair.b.listen(80)
    client = pair.a.connect(pair.b.address, 80, pair.now)
    pair.settle()
    assert client.state is State.SYN_SENT
    mark = len(pair.tcp_frames("a"))

    pair.a.reset_all(pair.now)
    pair.settle()

    assert pair.tcp_frames("a")[mark:] == []
    assert client.state is State.CLOSED
    assert pair.a.connections == {}


class _Driver:
    """What a TcpTransport uses of its StackDriver, over one side of a LinkPair."""

    def __init__(self, pair: LinkPair, loop: asyncio.AbstractEventLoop) -> None:
        self.pair = pair
        self.loop = loop

    def now(self) -> float:
        return self.pair.now


async def _close_through_transport(pair: LinkPair, server: Connection) -> None:
    driver = cast(StackDriver, _Driver(pair, asyncio.get_running_loop()))
    transport = TcpTransport(driver, server, asyncio.Protocol())
    transport.close()
    await asyncio.sleep(0)  # connection_lost runs


def test_transport_close_with_unread_data_resets() -> None:
    pair = LinkPair()
    client, server = pair.established_pair(80)
    pair.send(client, b"left unread")
    pair.settle()
    assert b"".join(server.rcv.unread or ()) == b"left unread"
    mark = _next_frame(pair)

    asyncio.run(_close_through_transport(pair, server))
    pair.settle()

    assert [f.segment.flags for f in _sent_by_b(pair, mark)] == [RST]
    assert client.state is State.CLOSED
    assert pair.events_of(client)[-2:] == [ConnEvent.RESET, ConnEvent.CLOSED]


def test_transport_close_with_everything_read_sends_fin() -> None:
    pair = LinkPair()
    client, server = pair.established_pair(80)
    pair.send(client, b"read")
    pair.settle()
    assert pair.read(server) == b"read"
    pair.settle()
    mark = _next_frame(pair)

    asyncio.run(_close_through_transport(pair, server))
    pair.settle()

    assert [f.segment.flags for f in _sent_by_b(pair, mark)] == [FIN | ACK]
    assert server.state is State.FIN_WAIT_2
    assert client.state is State.CLOSE_WAIT
