"""The service pass: receive -> events -> transmit, one per batch, owned by NetworkStack.

Most of these run the real StackDriver on a real loop over a FakeTun (tests/unit/fake_tun.py),
so what they count is what production does."""

from __future__ import annotations

import asyncio

from tcpstack.api.streams import Stack
from tcpstack.io.driver import StackDriver
from tcpstack.stack import NetworkStack
from tcpstack.tcp import segment as tcpseg
from tcpstack.tcp.segment import ACK, SYN
from tests.unit.fake_tun import MSS, PEER_ISS, STACK_ISS, FakeTun, TunPeer
from tests.unit.link_pair import FixedIsn
from tests.unit.scripted_peer import STACK_ADDR, lines

SCALED_SYN = tcpseg.encode_options(mss=MSS, wscale=7)


def test_an_abort_by_the_api_puts_its_rst_on_the_wire_in_the_same_pass() -> None:
    """A handshake that completes after its server closed: api.streams aborts it while the
    event is delivered. The RST must leave with that pass, not wait for some later one."""
    async def run() -> list[str]:
        api = Stack(control=False, offload=False)
        api.network = NetworkStack(STACK_ADDR, api.config, FixedIsn(STACK_ISS))
        tun = FakeTun()
        driver = StackDriver(api.network, tun, asyncio.get_running_loop())  # type: ignore[arg-type]
        driver.on_event = api._on_event  # as Stack.start wires it
        driver.start()
        api.driver = driver  # started: start_server brings up no TUN
        try:
            server = await api.start_server(lambda r, w: None, 80)
            peer = TunPeer(tun)
            peer.send(SYN, PEER_ISS, options=SCALED_SYN)
            (syn_ack,) = await peer.expect(1)
            server.close()
            peer.send(ACK, PEER_ISS + 1, syn_ack.seq + 1)
            return lines(await peer.expect(1, timeout=0.5))
        finally:
            driver.stop()
            tun.close()

    assert asyncio.run(asyncio.wait_for(run(), 10)) == [f"R seq {STACK_ISS + 1} win 0"]
