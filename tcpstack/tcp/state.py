"""The TCP connection state machine as data (RFC 9293 section 3.3.2, Figure 5).

Everything that changes a connection's state goes through `next_state`, which looks the
change up in TRANSITIONS; a change the table does not hold raises IllegalTransition naming
the state and the trigger. The connection code decides *when* a trigger happens (that is RFC
9293 section 3.10, in connection.py); this table decides *where* it leads. The diagram in
docs/ is rendered from this table by scripts/render_state_diagram.py.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
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


S = State
T = Trigger

SYNCHRONIZED = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING,
                          S.LAST_ACK, S.TIME_WAIT})
# States in which the application can still receive data from the peer.
RECEIVING = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
# States in which the application can still send.
SENDING = frozenset({S.SYN_SENT, S.SYN_RCVD, S.ESTABLISHED, S.CLOSE_WAIT})

# (state, trigger) -> (next state, what is sent): the RFC 9293 Figure 5 diagram, plus the
# RST and abort arcs its section 3.10 adds.
TRANSITIONS: dict[tuple[State, Trigger], tuple[State, str]] = {
    (S.CLOSED, T.APP_LISTEN): (S.LISTEN, ""),
    (S.CLOSED, T.APP_CONNECT): (S.SYN_SENT, "SYN"),
    (S.LISTEN, T.RCV_SYN): (S.SYN_RCVD, "SYN,ACK"),
    (S.LISTEN, T.APP_CLOSE): (S.CLOSED, ""),
    (S.SYN_SENT, T.RCV_SYN): (S.SYN_RCVD, "SYN,ACK"),  # simultaneous open
    (S.SYN_SENT, T.RCV_SYN_ACK): (S.ESTABLISHED, "ACK"),
    (S.SYN_SENT, T.RCV_RST): (S.CLOSED, ""),
    (S.SYN_SENT, T.APP_CLOSE): (S.CLOSED, ""),
    (S.SYN_SENT, T.APP_ABORT): (S.CLOSED, ""),
    (S.SYN_SENT, T.TIMEOUT_GIVE_UP): (S.CLOSED, ""),
    (S.SYN_RCVD, T.RCV_ACK_OF_SYN): (S.ESTABLISHED, ""),
    (S.SYN_RCVD, T.APP_CLOSE): (S.FIN_WAIT_1, "FIN"),
    (S.SYN_RCVD, T.RCV_RST): (S.CLOSED, ""),  # a passive open's listener keeps listening
    (S.SYN_RCVD, T.APP_ABORT): (S.CLOSED, "RST"),
    (S.SYN_RCVD, T.TIMEOUT_GIVE_UP): (S.CLOSED, ""),
    (S.ESTABLISHED, T.APP_CLOSE): (S.FIN_WAIT_1, "FIN"),
    (S.ESTABLISHED, T.RCV_FIN): (S.CLOSE_WAIT, "ACK"),
    (S.FIN_WAIT_1, T.RCV_ACK_OF_FIN): (S.FIN_WAIT_2, ""),
    (S.FIN_WAIT_1, T.RCV_FIN): (S.CLOSING, "ACK"),  # simultaneous close
    (S.FIN_WAIT_1, T.RCV_FIN_ACK_OF_FIN): (S.TIME_WAIT, "ACK"),
    (S.FIN_WAIT_2, T.RCV_FIN): (S.TIME_WAIT, "ACK"),
    (S.CLOSING, T.RCV_ACK_OF_FIN): (S.TIME_WAIT, ""),
    (S.CLOSE_WAIT, T.APP_CLOSE): (S.LAST_ACK, "FIN"),
    (S.LAST_ACK, T.RCV_ACK_OF_FIN): (S.CLOSED, ""),
    (S.TIME_WAIT, T.TIMEOUT_2MSL): (S.CLOSED, ""),
    (S.TIME_WAIT, T.RCV_SYN_IN_TIME_WAIT): (S.CLOSED, ""),  # RFC 6191: the SYN opens anew
}
for _state in (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK,
               S.TIME_WAIT):
    TRANSITIONS[(_state, T.RCV_RST)] = (S.CLOSED, "")
for _state in (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT):
    TRANSITIONS[(_state, T.APP_ABORT)] = (S.CLOSED, "RST")
for _state in (S.CLOSING, S.LAST_ACK):  # RFC 9293 3.10.5: delete, no RST
    TRANSITIONS[(_state, T.APP_ABORT)] = (S.CLOSED, "")
for _state in (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK):
    TRANSITIONS[(_state, T.TIMEOUT_GIVE_UP)] = (S.CLOSED, "")


class IllegalTransition(Exception):
    def __init__(self, state: State, trigger: Trigger) -> None:
        super().__init__(f"no transition from {state} on '{trigger}'")
        self.state = state
        self.trigger = trigger


def next_state(state: State, trigger: Trigger) -> State:
    try:
        return TRANSITIONS[(state, trigger)][0]
    except KeyError:
        raise IllegalTransition(state, trigger) from None
