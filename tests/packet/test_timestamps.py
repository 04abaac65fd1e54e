"""RFC 7323 timestamps on the wire: a peer that offers them in its SYN sees its TSval echoed
in the SYN-ACK and timestamps on every segment after, TSecr following the rules of 4.3, and
an old duplicate (PAWS, 5.3) answered with an ACK instead of taken."""

from __future__ import annotations

import pytest

from .conftest import ANY, PEER_WIN, PORT, SYNACK_WIN, WIN_EMPTY, Rig

pytestmark = pytest.mark.integration

PEER_TS = 1_000_000  # the peer's first TSval


def timestamps(tsval: int, tsecr: int) -> list[tuple[str, object]]:
    """NOP, NOP, Timestamps: what every segment after the SYNs carries (Linux's layout)."""
    return [("NOP", None), ("NOP", None), ("Timestamp", (tsval, tsecr))]


@pytest.mark.timeout(30)
def test_a_peer_offering_timestamps_sees_them_echoed_in_the_syn_ack_and_on_every_segment(
        echo: Rig) -> None:
    flow = echo.peer.flow(40201, PORT)
    flow.send("S", 0, win=65535, options=[("MSS", 1460), ("SAckOK", b""),
                                          ("Timestamp", (PEER_TS, 0)), ("NOP", None),
                                          ("WScale", 7)])
    synack = flow.expect("S.", 0, 1, win=SYNACK_WIN, options=ANY)
    ours = dict(synack.tcp.options)["Timestamp"][0]
    # MSS, SACK-permitted, the timestamps echoing the SYN's TSval, window scale.
    assert list(synack.tcp.options) == [("MSS", 1460), ("SAckOK", b""),
                                        ("Timestamp", (ours, PEER_TS)), ("NOP", None),
                                        ("WScale", 5)]

    flow.send(".", 1, 1, win=PEER_WIN, options=timestamps(PEER_TS + 1, ours))
    flow.send("P.", 1, 1, win=PEER_WIN, options=timestamps(PEER_TS + 2, ours),
              payload=b"hello")
    # The ACK of "hello" (alone, or on the echo) and the echo itself echo its TSval: it
    # starts at Last.ACK.sent, so it became TS.Recent (RFC 7323 4.3).
    ack = flow.maybe_expect(".", 1, 6, options=ANY)
    echoed = flow.expect("P.", 1, 6, win=WIN_EMPTY, options=ANY, payload=b"hello")
    for got in (ack, echoed):
        if got is None:
            continue
        tsval = dict(got.tcp.options)["Timestamp"][0]
        assert list(got.tcp.options) == timestamps(tsval, PEER_TS + 2)
        # Our clock ticks every millisecond from the SYN-ACK's value: well under a minute on.
        assert 0 <= (tsval - ours) & 0xFFFFFFFF < 60_000
    tsval = dict(echoed.tcp.options)["Timestamp"][0]
    flow.send(".", 6, 6, win=PEER_WIN, options=timestamps(PEER_TS + 3, tsval))

    # An old duplicate of "hello" with a TSval from before TS.Recent: PAWS drops it and
    # answers with an ACK that still echoes TS.Recent, the bare ACK's (RFC 7323 5.3 R1);
    # no echo follows.
    flow.send("P.", 1, 6, win=PEER_WIN, options=timestamps(PEER_TS, tsval), payload=b"hello")
    again = flow.expect(".", 6, 6, win=WIN_EMPTY, options=ANY)
    assert dict(again.tcp.options)["Timestamp"][1] == PEER_TS + 3
    flow.expect_nothing(0.3)

    # New data with a current TSval is taken and echoed, with that TSval.
    flow.send("P.", 6, 6, win=PEER_WIN, options=timestamps(PEER_TS + 4, tsval),
              payload=b"again")
    flow.maybe_expect(".", 6, 11, options=ANY)
    echoed = flow.expect("P.", 6, 11, win=WIN_EMPTY, options=ANY, payload=b"again")
    assert dict(echoed.tcp.options)["Timestamp"][1] == PEER_TS + 4
