"""The TCP connection state machine as data (RFC 9293 section 3.3.2, Figure 5).

Everything that changes a connection's state goes through `step`, which looks the change up
in TRANSITIONS; a change the table does not hold raises IllegalTransition naming the state
and the trigger. The connection code decides *when* a trigger happens (that is RFC 9293
section 3.10, in connection.py); this table decides *where* it leads and *what* the
transition sends (a Sends value the connection carries out), and ON_ENTRY what entering a state
starts. The state groups below are the only spelling of a set of states. The diagram in docs/
is rendered from this table by scripts/render_state_diagram.py.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    # Members are singletons: identity hashing is C, where Enum's own hashes the name in
    # Python on every table lookup and every `state in GROUP` (the profile showed it).
    __hash__ = object.__hash__

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RCVD = "SYN_RCVD"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSING = "CLOSING"
    TIME_WAIT = "TIME_WAIT"
    CLOSE_WAIT = "CLOSE_WAIT"
    LAST_ACK = "LAST_ACK"

    def __str__(self) -> str:
        return self.value


class Trigger(enum.Enum):
    """What happens to a connection: an application call, an arriving segment, a timer."""

    # Members are singletons: identity hashing is C, where Enum's own hashes the name in
    # Python on every table lookup and every `state in GROUP` (the profile showed it).
    __hash__ = object.__hash__

    APP_LISTEN = "listen"
    APP_CONNECT = "connect"
    APP_CLOSE = "close"
    APP_ABORT = "abort"
    RCV_SYN = "rcv SYN"
    RCV_SYN_ACK = "rcv SYN,ACK"
    RCV_ACK_OF_SYN = "rcv ACK of SYN"
    RCV_FIN = "rcv FIN"
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    RCV_FIN_ACK_OF_FIN = "rcv FIN,ACK of FIN"
    RCV_RST = "rcv RST"
    RCV_SYN_IN_TIME_WAIT = "rcv new SYN"
    TIMEOUT_2MSL = "2MSL timeout"
    TIMEOUT_GIVE_UP = "timeout: give up"

    def __str__(self) -> str:
        return self.value


class Sends(enum.StrEnum):
    """What a transition sends; the connection carries it out (Connection._transition)."""

    NOTHING = ""
    SYN = "SYN"
    SYN_ACK = "SYN,ACK"
    ACK = "ACK"  # acknowledge what arrived, at this flush (with data going out, if any)
    FIN = "FIN"  # our FIN, after the data already queued
    RST = "RST"


class Entry(enum.Enum):
    """What entering a state starts (ON_ENTRY)."""

    # Members are singletons: identity hashing is C, where Enum's own hashes the name in
    # Python on every table lookup and every `state in GROUP` (the profile showed it).
    __hash__ = object.__hash__

    KEEPALIVE = "start the keepalive timer"        # RFC 1122 4.2.3.6
    ORPHAN_TIMER = "give an orphan up in time"     # FIN_WAIT_2 that nobody reads
    TWO_MSL = "start the 2MSL timer"               # RFC 9293 3.3.2
    RELEASE = "stop every timer, tell the owner"   # the connection is gone


S = State
T = Trigger
A = Sends

SYNCHRONIZED = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING,
                          S.LAST_ACK, S.TIME_WAIT})
# Synchronized states whose data or FIN may still need (re)sending.
TRANSMITTING = SYNCHRONIZED - {S.TIME_WAIT}
# States in which the application can still receive data from the peer.
RECEIVING = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
# States in which the application can still send.
SENDING = frozenset({S.SYN_SENT, S.SYN_RCVD, S.ESTABLISHED, S.CLOSE_WAIT})
# States whose connection a peer's RST resets under a reading application (RFC 9293 3.10.7.4:
# "connection reset").
RESET_REPORTED = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT})
# States that probe an idle peer when keepalive is on.
KEEPALIVE = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2})
# States with segments of ours in flight, which an ICMP error may be about (RFC 5927).
IN_FLIGHT = TRANSMITTING | {S.SYN_SENT, S.SYN_RCVD}

# (state, trigger) -> (next state, what is sent): the RFC 9293 Figure 5 diagram, plus the
# RST and abort arcs its section 3.10 adds.
TRANSITIONS: dict[tuple[State, Trigger], tuple[State, Sends]] = {
    (S.CLOSED, T.APP_LISTEN): (S.LISTEN, A.NOTHING),
    (S.CLOSED, T.APP_CONNECT): (S.SYN_SENT, A.SYN),
    (S.LISTEN, T.RCV_SYN): (S.SYN_RCVD, A.SYN_ACK),
    (S.LISTEN, T.APP_CLOSE): (S.CLOSED, A.NOTHING),
    (S.SYN_SENT, T.RCV_SYN): (S.SYN_RCVD, A.SYN_ACK),  # simultaneous open
    (S.SYN_SENT, T.RCV_SYN_ACK): (S.ESTABLISHED, A.ACK),
    (S.SYN_SENT, T.RCV_RST): (S.CLOSED, A.NOTHING),
    (S.SYN_SENT, T.APP_CLOSE): (S.CLOSED, A.NOTHING),
    (S.SYN_SENT, T.APP_ABORT): (S.CLOSED, A.NOTHING),
    (S.SYN_SENT, T.TIMEOUT_GIVE_UP): (S.CLOSED, A.NOTHING),
    (S.SYN_RCVD, T.RCV_ACK_OF_SYN): (S.ESTABLISHED, A.NOTHING),
    (S.SYN_RCVD, T.APP_CLOSE): (S.FIN_WAIT_1, A.FIN),
    (S.SYN_RCVD, T.RCV_RST): (S.CLOSED, A.NOTHING),  # a passive open's listener goes on
    (S.SYN_RCVD, T.APP_ABORT): (S.CLOSED, A.RST),
    (S.SYN_RCVD, T.TIMEOUT_GIVE_UP): (S.CLOSED, A.NOTHING),
    (S.ESTABLISHED, T.APP_CLOSE): (S.FIN_WAIT_1, A.FIN),
    (S.ESTABLISHED, T.RCV_FIN): (S.CLOSE_WAIT, A.ACK),
    (S.FIN_WAIT_1, T.RCV_ACK_OF_FIN): (S.FIN_WAIT_2, A.NOTHING),
    (S.FIN_WAIT_1, T.RCV_FIN): (S.CLOSING, A.ACK),  # simultaneous close
    (S.FIN_WAIT_1, T.RCV_FIN_ACK_OF_FIN): (S.TIME_WAIT, A.ACK),
    (S.FIN_WAIT_2, T.RCV_FIN): (S.TIME_WAIT, A.ACK),
    (S.CLOSING, T.RCV_ACK_OF_FIN): (S.TIME_WAIT, A.NOTHING),
    (S.CLOSE_WAIT, T.APP_CLOSE): (S.LAST_ACK, A.FIN),
    (S.LAST_ACK, T.RCV_ACK_OF_FIN): (S.CLOSED, A.NOTHING),
    (S.TIME_WAIT, T.TIMEOUT_2MSL): (S.CLOSED, A.NOTHING),
    (S.TIME_WAIT, T.RCV_SYN_IN_TIME_WAIT): (S.CLOSED, A.NOTHING),  # RFC 6191: opens anew
}
for _state in State:  # in the enum's order, so that the table (and the diagram) is stable
    if _state in SYNCHRONIZED:
        TRANSITIONS[(_state, T.RCV_RST)] = (S.CLOSED, A.NOTHING)
    if _state in RESET_REPORTED:
        TRANSITIONS[(_state, T.APP_ABORT)] = (S.CLOSED, A.RST)
    elif _state in (S.CLOSING, S.LAST_ACK):  # RFC 9293 3.10.5: delete, no RST
        TRANSITIONS[(_state, T.APP_ABORT)] = (S.CLOSED, A.NOTHING)
    if _state in TRANSMITTING:
        TRANSITIONS[(_state, T.TIMEOUT_GIVE_UP)] = (S.CLOSED, A.NOTHING)

# What entering a state starts, whatever led there.
ON_ENTRY: dict[State, Entry] = {
    S.ESTABLISHED: Entry.KEEPALIVE,
    S.FIN_WAIT_2: Entry.ORPHAN_TIMER,
    S.TIME_WAIT: Entry.TWO_MSL,
    S.CLOSED: Entry.RELEASE,
}


class IllegalTransition(Exception):
    def __init__(self, state: State, trigger: Trigger) -> None:
        super().__init__(f"no transition from {state} on '{trigger}'")
        self.state = state
        self.trigger = trigger


def step(state: State, trigger: Trigger) -> tuple[State, Sends]:
    """Where `trigger` leads from `state`, and what the transition sends."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransition(state, trigger) from None


def next_state(state: State, trigger: Trigger) -> State:
    return step(state, trigger)[0]


def allows(state: State, trigger: Trigger) -> bool:
    return (state, trigger) in TRANSITIONS
