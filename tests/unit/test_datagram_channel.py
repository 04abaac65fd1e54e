"""The address header of a UDP endpoint's SEQPACKET socketpair (api/datagram_channel.py),
shared by the socket facade and the daemon, and the helpers a program uses on a descriptor
the daemon handed over."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest

from tcpstack.api.datagram_channel import (
    DATAGRAM_HEADER,
    datagram_header,
    error_header,
    parse_datagram_header,
    recv_datagram,
    send_datagram,
)


def test_the_header_is_length_address_port_in_19_bytes() -> None:
    assert DATAGRAM_HEADER.size == 19
    assert datagram_header("10.77.0.1", 5300) == (bytes([4, 10, 77, 0, 1]) + bytes(12)
                                                  + b"\x14\xb4")
    assert datagram_header(None, 0) == bytes(19)
    assert error_header(errno.ECONNREFUSED) == b"\xff" + bytes(16) + b"\x00\x6f"


@pytest.mark.parametrize(("host", "port"), [
    ("10.77.0.1", 7), ("fd77::1", 65535), ("fe80::1", 1), (None, 0)])
def test_a_header_parses_back_to_its_address(host: str | None, port: int) -> None:
    assert parse_datagram_header(datagram_header(host, port) + b"payload") == (host, port)


def test_an_error_header_parses_as_an_empty_host_and_the_errno() -> None:
    assert parse_datagram_header(error_header(errno.EMSGSIZE)) == ("", errno.EMSGSIZE)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    program, stack = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with program, stack:
        yield program, stack


def test_send_datagram_puts_the_destination_before_the_data(
        pair: tuple[socket.socket, socket.socket]) -> None:
    program, stack = pair
    send_datagram(program, b"ping", ("fd77::1", 5300))
    send_datagram(program, b"")  # to a connected endpoint's peer; empty is a datagram too
    assert stack.recv(100) == datagram_header("fd77::1", 5300) + b"ping"
    assert stack.recv(100) == datagram_header(None, 0)


def test_recv_datagram_gives_data_and_source_raises_errors_and_eof(
        pair: tuple[socket.socket, socket.socket]) -> None:
    program, stack = pair
    stack.send(datagram_header("10.77.0.1", 40000) + b"hello")
    stack.send(datagram_header(None, 0) + b"from the peer")
    stack.send(error_header(errno.ECONNREFUSED))
    stack.send(datagram_header("10.77.0.1", 40000) + b"0123456789")
    assert recv_datagram(program) == (b"hello", ("10.77.0.1", 40000))
    assert recv_datagram(program) == (b"from the peer", None)
    with pytest.raises(ConnectionRefusedError) as refused:
        recv_datagram(program)
    assert refused.value.errno == errno.ECONNREFUSED
    assert recv_datagram(program, 4) == (b"0123", ("10.77.0.1", 40000))  # cut, as recv cuts
    stack.close()
    with pytest.raises(EOFError):
        recv_datagram(program)
