"""The daemon's protocol (api/attach_protocol.py) and who may use it, without a network: the
line codec with descriptors beside the lines, the request checks, the permission rule, and
the client's answers to a daemon that refuses it or is not there (a stand-in daemon on a
Unix socket in a temporary directory)."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from tcpstack.api.attach import NoDaemonRunning, attach
from tcpstack.api.attach_protocol import (
    PROTOCOL_VERSION,
    Decoder,
    Peer,
    ProtocolError,
    attach_path,
    check_request,
    encode,
    peer_groups,
    refusal,
)
from tcpstack.api.daemon import peer_of


def test_encode_is_one_compact_json_line() -> None:
    assert encode({"id": 1, "ok": True}) == b'{"id":1,"ok":true}\n'


def test_lines_split_across_reads_and_joined_in_one_read_decode_alike() -> None:
    decoder = Decoder()
    wire = encode({"id": 1}) + encode({"id": 2, "x": "y"})
    assert list(decoder.feed(wire[:5])) == []
    got = list(decoder.feed(wire[5:]))
    assert [m.body for m in got] == [{"id": 1}, {"id": 2, "x": "y"}]
    assert [m.fd for m in got] == [None, None]


def _pipe_with(text: bytes) -> int:
    """A descriptor that reads `text` (the read end of a pipe), to tell descriptors apart."""
    r, w = os.pipe()
    os.write(w, text)
    os.close(w)
    return r


def test_descriptors_passed_with_scm_rights_go_to_the_lines_that_carry_them_in_order() -> None:
    a, b = socket.socketpair()
    first, second = _pipe_with(b"first"), _pipe_with(b"second")
    with a, b:
        socket.send_fds(a, [encode({"event": "accepted", "fd": 1, "n": 1})], [first])
        a.sendall(encode({"id": 7, "ok": True}))  # a line without one between them
        socket.send_fds(a, [encode({"event": "accepted", "fd": 1, "n": 2})], [second])
        os.close(first)
        os.close(second)
        decoder = Decoder()
        messages = []
        while len(messages) < 3:
            data, fds, _, _ = socket.recv_fds(b, 4096, 4)
            messages += list(decoder.feed(data, fds))
    assert [m.body.get("n") for m in messages] == [1, None, 2]
    assert messages[1].fd is None
    fds = [m.fd for m in messages if m.fd is not None]
    assert [os.read(fd, 100) for fd in fds] == [b"first", b"second"]
    for fd in fds:
        os.close(fd)


def test_a_line_claiming_a_descriptor_that_never_came_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="carries a descriptor came without one"):
        list(Decoder().feed(encode({"fd": 1})))


def test_the_lines_before_a_broken_one_are_given_first() -> None:
    messages = Decoder().feed(encode({"id": 1}) + b"oops\n" + encode({"id": 2}))
    assert next(messages).body == {"id": 1}
    with pytest.raises(ProtocolError, match="not JSON"):
        next(messages)


def test_close_closes_the_descriptors_no_line_took() -> None:
    decoder = Decoder()
    fd = _pipe_with(b"x")
    assert list(decoder.feed(b"", [fd])) == []
    decoder.close()
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.parametrize(("wire", "error"), [
    (b"not json\n", "not JSON"),
    (b"[1, 2]\n", "not a JSON object"),
    (b"x" * 70_000, "longer than 65536 bytes"),
])
def test_malformed_input_is_a_protocol_error_saying_how(wire: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        list(Decoder().feed(wire))


def _req(**fields: object) -> dict[str, object]:
    return {"version": PROTOCOL_VERSION, "id": 1, **fields}


@pytest.mark.parametrize(("request_", "problem"), [
    (_req(op="listen", port=7), None),
    (_req(op="listen", port=7, backlog=16), None),
    (_req(op="connect", host="10.77.0.1", port=5000, timeout=None), None),
    (_req(op="connect", host="10.77.0.1", port=5000, timeout=2.5), None),
    (_req(op="close", listener=3), None),
    (_req(op="udp", port=7), None),
    (_req(op="udp", port=53, remote=None), None),
    (_req(op="udp", port=5300, remote=["fd77::1", 5300]), None),
    (_req(op="status"), None),
    (_req(op="stop"), None),
    ({"id": 1, "op": "status"}, "unsupported protocol version None (this daemon speaks 1)"),
    ({"version": 1, "op": "status"}, "a request needs an integer id"),
    (_req(op="bind"), "unknown op 'bind' (expected one of: listen, connect, udp, close, "
                      "status, stop)"),
    (_req(op="udp"), "invalid port None: must be 1-65535"),
    (_req(op="udp", port=70000), "invalid port 70000: must be 1-65535"),
    (_req(op="udp", port=7, remote="10.77.0.1:7"),
     "invalid remote '10.77.0.1:7': [host, port 1-65535], or null"),
    (_req(op="udp", port=7, remote=["10.77.0.1", 0]),
     "invalid remote ['10.77.0.1', 0]: [host, port 1-65535], or null"),
    (_req(op="udp", port=7, remote=["10.77.0.1", True]),
     "invalid remote ['10.77.0.1', True]: [host, port 1-65535], or null"),
    (_req(op="udp", port=7, remote=[1, 7]),
     "invalid remote [1, 7]: [host, port 1-65535], or null"),
    (_req(op="listen", port=0), "invalid port 0: must be 1-65535"),
    (_req(op="listen", port=65536), "invalid port 65536: must be 1-65535"),
    (_req(op="listen", port=True), "invalid port True: must be 1-65535"),
    (_req(op="listen", port="80"), "invalid port '80': must be 1-65535"),
    (_req(op="listen", port=7, backlog=0), "invalid backlog 0: 1-65535, or null"),
    (_req(op="connect", port=5000), "connect needs a host (an address as text)"),
    (_req(op="connect", host="10.77.0.1", port=5000, timeout=0),
     "invalid timeout 0: a number of seconds above 0, or null"),
    (_req(op="close"), "close needs the listener's number"),
])
def test_requests_are_checked_with_one_line_saying_what_is_wrong(
        request_: dict[str, object], problem: str | None) -> None:
    assert check_request(request_) == problem


def _peer(uid: int, gid: int, groups: tuple[int, ...] = ()) -> Peer:
    return Peer(pid=4242, uid=uid, gid=gid, groups=frozenset(groups))


def test_root_and_the_daemons_own_user_are_always_admitted() -> None:
    assert refusal(_peer(0, 0), None, None) is None
    assert refusal(_peer(1000, 1000), None, None, owner_uid=1000) is None
    assert refusal(_peer(0, 0), 3000, "tcpstack") is None


def test_a_group_member_is_admitted_by_primary_or_supplementary_group() -> None:
    assert refusal(_peer(1000, 3000), 3000, "tcpstack") is None
    assert refusal(_peer(1000, 1000, (27, 3000)), 3000, "tcpstack") is None


def test_others_are_refused_with_a_message_naming_who_and_what_would_admit_them() -> None:
    assert refusal(_peer(65534, 65534), 3000, "tcpstack") == (
        "permission denied: uid 65534 is neither root nor in group tcpstack, the group this "
        "tcpstack daemon admits")
    assert refusal(_peer(1000, 1000, (27,)), None, None) == (
        "permission denied: uid 1000 is not root, and this tcpstack daemon admits root only "
        "(start it with --group NAME to admit a group)")


def test_peer_credentials_come_from_the_kernel_with_the_supplementary_groups() -> None:
    a, b = socket.socketpair()
    with a, b:
        peer = peer_of(a)
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.geteuid(), os.getegid())
    assert peer.groups == frozenset(os.getgroups())
    assert peer_groups(os.getpid()) == frozenset(os.getgroups())
    assert peer_groups(2 ** 22 + 1) == frozenset()  # beyond pid_max: unknown, so none


def test_the_attach_socket_sits_beside_the_stat_socket_per_namespace_and_interface() -> None:
    assert attach_path("tcps0", Path("/run/tcpstack"), netns=4026531840) == Path(
        "/run/tcpstack/attach-4026531840-tcps0.sock")


def _stand_in_daemon(path: Path, first_line: dict[str, object]) -> threading.Thread:
    """A daemon that answers its first client with `first_line` and hangs up."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(5.0)

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.sendall(encode(first_line))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_refusal_is_a_permission_error_with_the_daemons_words(tmp_path: Path) -> None:
    path = tmp_path / "attach.sock"
    words = "permission denied: uid 65534 is neither root nor in group tcpstack, ..."
    thread = _stand_in_daemon(path, {"event": "refused", "error": words})
    with pytest.raises(PermissionError) as info:
        attach(path=path, timeout=5.0)
    assert str(info.value) == words
    thread.join(5.0)


def test_no_daemon_is_one_line_naming_the_interface_and_the_way_to_start_one(
        tmp_path: Path) -> None:
    path = tmp_path / "attach.sock"
    with pytest.raises(NoDaemonRunning) as info:
        attach("tcps9", path=path)
    assert str(info.value) == (f"no tcpstack daemon running on tcps9 in this network namespace "
                               f"(nothing serves {path}; start one with tcpstack up)")


def test_a_reply_error_becomes_the_matching_exception(tmp_path: Path) -> None:
    """The client reads the daemon's `kind`: refused -> ConnectionRefusedError, and so on."""
    path = tmp_path / "attach.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(5.0)
    replies = [{"ok": True, "pid": 1, "clients": 1, "listeners": 0, "connections": 0},
               {"ok": False, "kind": "refused", "error": "connection to 10.77.0.1:9 refused"},
               {"ok": False, "kind": "in_use", "error": "port 7 is already listening"}]
    seen: list[dict[str, object]] = []

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as lines:
                for reply in replies:
                    request = json.loads(lines.readline())
                    seen.append(request)
                    conn.sendall(encode({"id": request["id"], **reply}))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with attach(path=path) as client:
        with pytest.raises(ConnectionRefusedError, match=r"10\.77\.0\.1:9 refused"):
            client.connect("10.77.0.1", 9)
        with pytest.raises(OSError, match="port 7 is already listening"):
            client.listen(7)
    thread.join(5.0)
    assert [r["op"] for r in seen] == ["status", "connect", "listen"]
    assert seen[1] == {"version": 1, "id": 2, "op": "connect", "host": "10.77.0.1",
                       "port": 9, "timeout": None}


def test_peer_addresses_come_as_the_socket_module_gives_them() -> None:
    from tcpstack.api.attach import _address

    assert _address(["10.77.0.1", 40000]) == ("10.77.0.1", 40000)
    assert _address(["fd77::1", 40000, 0, 0]) == ("fd77::1", 40000, 0, 0)  # IPv6's four
