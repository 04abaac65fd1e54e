"""Addresses no connection can work with are refused at once, in one line: as the stack's own
address (`Stack(address=...)`) and as a destination (`Stack.check_destination`, which
`open_connection` and `tcpstack connect` use). Nothing here opens a device."""

from __future__ import annotations

import ipaddress

import pytest

from tcpstack.api.streams import Stack
from tcpstack.link.tun import LinkError


@pytest.mark.parametrize(("address", "message"), [
    ("10.77.0.255", "address 10.77.0.255 is the broadcast address of 10.77.0.0/24, not a "
                    "host's"),
    ("10.77.0.0", "address 10.77.0.0 is the network address of 10.77.0.0/24, not a host's"),
])
def test_stack_address_must_be_a_host_of_the_network(address: str, message: str) -> None:
    with pytest.raises(LinkError) as caught:
        Stack(address=address)
    assert str(caught.value) == message


def test_a_31_has_no_network_or_broadcast_address() -> None:
    # RFC 3021: both addresses of a point-to-point /31 are hosts.
    stack = Stack(address="10.77.0.0", kernel_address="10.77.0.1/31")
    assert stack.check_destination("10.77.0.1") == ipaddress.IPv4Address("10.77.0.1")


@pytest.mark.parametrize(("host", "reason"), [
    ("10.77.0.2", "it is the stack's own address"),
    ("10.77.0.255", "it is the broadcast address of 10.77.0.0/24"),
    ("10.77.0.0", "it is the network address of 10.77.0.0/24"),
    ("127.0.0.1", "a loopback address, which the kernel never routes to tcps0 (the kernel "
                  "side is 10.77.0.1)"),
    ("224.0.0.1", "TCP needs a unicast address"),
    ("255.255.255.255", "TCP needs a unicast address"),
    ("0.0.0.0", "TCP needs a unicast address"),
])
def test_destination_no_connection_can_reach_is_refused(host: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        Stack().check_destination(host)
    assert str(caught.value) == f"cannot connect to {host}: {reason}"


@pytest.mark.parametrize("host", ["10.77.0.1", "10.77.0.7", "10.99.0.1", "192.0.2.1"])
def test_destination_on_the_subnet_or_beyond_it_is_accepted(host: str) -> None:
    # Everything leaves through the TUN: the kernel routes what is not on the subnet.
    assert Stack().check_destination(host) == ipaddress.IPv4Address(host)


def test_destination_that_is_no_address_says_so() -> None:
    with pytest.raises(LinkError, match="invalid address 'example'"):
        Stack().check_destination("example")
