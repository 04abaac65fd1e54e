"""The transition table of tcp/state.py: consistent as data, and every entry exercised.

The coverage check does not depend on which tests ran or in what order: each test in
test_transitions.py declares with `@drives` the (state, trigger) entries it exercises, and
checks while it runs that the connection code really looked each one up. Here the
declarations are gathered and compared with the table.
"""

from __future__ import annotations

from collections import deque

import pytest

from tcpstack.tcp.state import (
    RECEIVING,
    SENDING,
    SYNCHRONIZED,
    TRANSITIONS,
    IllegalTransition,
    State,
    Trigger,
    next_state,
)
from tests.unit import test_transitions

S = State
T = Trigger


def _name(entry: tuple[State, Trigger]) -> str:
    return f"({entry[0]}, '{entry[1]}')"


def test_every_state_is_left_and_entered_somewhere() -> None:
    sources = {state for state, _ in TRANSITIONS}
    targets = {new for new, _ in TRANSITIONS.values()}
    assert sources == set(State)
    assert targets == set(State)


def test_every_trigger_is_used() -> None:
    assert {trigger for _, trigger in TRANSITIONS} == set(Trigger)


def test_only_listen_and_connect_lead_out_of_closed() -> None:
    out_of_closed = {trigger: new for (state, trigger), (new, _) in TRANSITIONS.items()
                     if state is S.CLOSED}
    assert out_of_closed == {T.APP_LISTEN: S.LISTEN, T.APP_CONNECT: S.SYN_SENT}


def test_what_each_transition_sends_is_a_known_segment() -> None:
    assert {sends for _, sends in TRANSITIONS.values()} <= {"", "SYN", "SYN,ACK", "ACK", "FIN",
                                                           "RST"}
    # Opening arcs send a SYN, closing arcs taken by the application a FIN.
    assert TRANSITIONS[(S.CLOSED, T.APP_CONNECT)][1] == "SYN"
    assert TRANSITIONS[(S.LISTEN, T.RCV_SYN)][1] == "SYN,ACK"
    assert TRANSITIONS[(S.SYN_SENT, T.RCV_SYN)][1] == "SYN,ACK"
    for state in (S.SYN_RCVD, S.ESTABLISHED, S.CLOSE_WAIT):
        assert TRANSITIONS[(state, T.APP_CLOSE)][1] == "FIN"


def test_every_state_but_closed_can_reach_closed_and_every_state_is_reachable() -> None:
    def reachable(start: State, edges: dict[State, set[State]]) -> set[State]:
        seen = {start}
        todo = deque([start])
        while todo:
            for nxt in edges.get(todo.popleft(), set()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    forward: dict[State, set[State]] = {}
    backward: dict[State, set[State]] = {}
    for (state, _), (new, _) in TRANSITIONS.items():
        forward.setdefault(state, set()).add(new)
        backward.setdefault(new, set()).add(state)
    assert reachable(S.CLOSED, forward) == set(State)
    assert reachable(S.CLOSED, backward) == set(State)  # no state is a trap


def test_a_reset_closes_every_state_that_has_a_connection_to_reset() -> None:
    # RFC 9293 3.10.7: an acceptable RST ends SYN-SENT, SYN-RECEIVED and every synchronized
    # state. LISTEN ignores RSTs (3.10.7.2) and CLOSED has no connection to reset.
    with_rst = {state for state, trigger in TRANSITIONS if trigger is T.RCV_RST}
    assert with_rst == SYNCHRONIZED | {S.SYN_SENT, S.SYN_RCVD}
    for state in with_rst:
        assert TRANSITIONS[(state, T.RCV_RST)] == (S.CLOSED, "")


def test_abort_sends_rst_exactly_where_rfc_9293_says() -> None:
    # RFC 9293 3.10.5: SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2 and CLOSE-WAIT send
    # <SEQ=SND.NXT><CTL=RST>; SYN-SENT, CLOSING, LAST-ACK (and TIME-WAIT) just delete the TCB.
    rst_from = {S.SYN_RCVD, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT}
    aborts = {state: sends for (state, trigger), (new, sends) in TRANSITIONS.items()
              if trigger is T.APP_ABORT}
    assert all(TRANSITIONS[(state, T.APP_ABORT)][0] is S.CLOSED for state in aborts)
    assert {state for state, sends in aborts.items() if sends == "RST"} == rst_from
    assert {sends for state, sends in aborts.items() if state not in rst_from} == {""}


def test_the_state_groups_are_what_their_names_say() -> None:
    assert set(SYNCHRONIZED) == set(State) - {S.CLOSED, S.LISTEN, S.SYN_SENT, S.SYN_RCVD}
    assert set(RECEIVING) == {S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2}  # no FIN received yet
    assert set(SENDING) == {S.SYN_SENT, S.SYN_RCVD, S.ESTABLISHED, S.CLOSE_WAIT}  # no FIN sent


@pytest.mark.parametrize(("entry", "result"), list(TRANSITIONS.items()),
                         ids=[f"{s.name}-{t.name}" for s, t in TRANSITIONS])
def test_next_state_follows_the_table(entry: tuple[State, Trigger],
                                      result: tuple[State, str]) -> None:
    assert next_state(*entry) is result[0]


def test_next_state_raises_illegal_transition_naming_state_and_trigger() -> None:
    with pytest.raises(IllegalTransition) as caught:
        next_state(S.CLOSED, T.RCV_FIN)
    assert str(caught.value) == "no transition from CLOSED on 'rcv FIN'"
    assert (caught.value.state, caught.value.trigger) == (S.CLOSED, T.RCV_FIN)


def test_every_pair_missing_from_the_table_is_illegal() -> None:
    missing = [(s, t) for s in State for t in Trigger if (s, t) not in TRANSITIONS]
    assert len(missing) == len(State) * len(Trigger) - len(TRANSITIONS)
    for state, trigger in missing:
        with pytest.raises(IllegalTransition, match=f"^no transition from {state} on "
                                                    f"'{trigger}'$"):
            next_state(state, trigger)


def _declared() -> dict[tuple[State, Trigger], list[str]]:
    """(state, trigger) -> the tests in test_transitions.py that drive it."""
    by_entry: dict[tuple[State, Trigger], list[str]] = {}
    for name in dir(test_transitions):
        test = getattr(test_transitions, name)
        if name.startswith("test_") and callable(test):
            for entry in getattr(test, "drives", ()):
                by_entry.setdefault(entry, []).append(name)
    return by_entry


def test_every_declared_entry_is_in_the_table() -> None:
    unknown = [f"{_name(e)} by {', '.join(tests)}" for e, tests in _declared().items()
               if e not in TRANSITIONS]
    assert unknown == []


def test_every_table_entry_is_driven_by_a_transition_test() -> None:
    declared = _declared()
    undriven = [_name(entry) for entry in TRANSITIONS if entry not in declared]
    assert undriven == [], (
        "TRANSITIONS entries that no test in test_transitions.py drives: "
        + ", ".join(undriven))
