"""Which queue of a multi-queue TUN the kernel hands each packet to: an eBPF steering program.

With IFF_MULTI_QUEUE and no program, the kernel picks a queue per flow from its own 4-tuple
hash (seeded at boot, so no process can compute it) or, for a flow we have written to in the
last few seconds, the queue we wrote it from ("automq"). That second rule comes too late for
an active open (the first SYN-ACK is queued before the kernel notes our SYN's queue) and
lapses on a connection idle for ~3 s, after which its packets reach a worker that does not
know it and answers with a RST (docs/DECISIONS.md has the experiment). So the queue is chosen
by this program instead (TUNSETSTEERINGEBPF), by rules a worker can know in advance:

- a TCP segment to one of our ephemeral ports goes to the worker that owns that port (each
  worker opens its outgoing connections from its own slice of the range);
- any other TCP segment (to a listener, or a stray) goes to a queue picked by a hash of the
  peer's address and port, so the connections of one listener spread over the workers;
- anything else (ICMP, UDP, fragments after the first, IPv6 with extension headers) goes
  to queue 0.

Both families take the same rules: IPv6 TCP right after the fixed header (nearly all of
it) is steered as IPv4 TCP is, hashing the low 32 bits of the peer's address.

The program is classic-socket-filter-shaped eBPF (BPF_PROG_TYPE_SOCKET_FILTER, packet loads
with LD_ABS/LD_IND relative to the IP header, which is where a TUN's packets start), built
here instruction by instruction and loaded with the bpf(2) system call through ctypes.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import struct

from tcpstack.link.tun import LinkError

TUNSETSTEERINGEBPF = 0x800454E0  # _IOR('T', 224, int)
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SOCKET_FILTER = 1
_SYSCALL_BPF = {"x86_64": 321, "aarch64": 280}

# Instruction classes, sizes, modes, operations (linux/bpf_common.h, linux/bpf.h).
_LD, _ALU, _JMP, _ALU64 = 0x00, 0x04, 0x05, 0x07
_W, _H, _B = 0x00, 0x08, 0x10
_ABS, _IND = 0x20, 0x40
_K, _X = 0x00, 0x08
_SUB, _MUL, _DIV, _AND, _LSH, _RSH, _XOR, _MOV = 0x10, 0x20, 0x30, 0x50, 0x60, 0x70, 0xA0, 0xB0
_JA, _JEQ, _JNE, _JGE, _JLT, _EXIT = 0x00, 0x10, 0x50, 0x30, 0xA0, 0x90
_IPV6_HEADER = 40
_IPV6_NEXT_HEADER = 6
_IPV6_SOURCE_LOW_WORD = 20  # the last 4 bytes of the source address

# The multiplier of Knuth's multiplicative hash (2^32 / golden ratio), as a signed 32-bit
# immediate: the peer's ports come in steps of two (Linux's connect() prefers even ports),
# which a plain modulo would send all to queue 0.
_GOLDEN = 0x9E3779B1 - (1 << 32)


class _Program:
    """A tiny eBPF assembler: instructions with forward jumps to named labels."""

    def __init__(self) -> None:
        self.insns: list[tuple[int, int, int, int, int, str | None]] = []
        self.labels: dict[str, int] = {}

    def emit(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
             target: str | None = None) -> None:
        self.insns.append((code, dst, src, off, imm, target))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.insns)

    def encode(self) -> bytes:
        out = []
        for i, (code, dst, src, off, imm, target) in enumerate(self.insns):
            if target is not None:
                off = self.labels[target] - i - 1  # jumps count from the next instruction
            out.append(struct.pack("<BBhi", code, (src << 4) | dst, off, imm))
        return b"".join(out)


def program(queues: int, ports_start: int, ports_per_queue: int) -> bytes:
    """The steering program for `queues` queues, worker k owning the local ports
    [ports_start + k * ports_per_queue, ports_start + (k + 1) * ports_per_queue)."""
    if queues < 1 or ports_per_queue < 1 or ports_start + queues * ports_per_queue > 65536:
        raise ValueError(f"no steering for {queues} queues of {ports_per_queue} ports "
                         f"from {ports_start}")
    p = _Program()
    r0, r1, r6, r7, r8, r9 = 0, 1, 6, 7, 8, 9
    p.emit(_ALU64 | _MOV | _X, r6, r1)              # LD_ABS/LD_IND read the skb in r6
    p.emit(_LD | _ABS | _B, imm=0)                   # version and IHL
    p.emit(_ALU64 | _RSH | _K, r0, imm=4)
    p.emit(_JMP | _JEQ | _K, r0, imm=6, target="ipv6")
    p.emit(_JMP | _JNE | _K, r0, imm=4, target="queue0")
    p.emit(_ALU64 | _MOV | _K, r9, imm=12)           # r9: where the peer's address is
    p.emit(_LD | _ABS | _B, imm=9)                   # protocol
    p.emit(_JMP | _JNE | _K, r0, imm=6, target="queue0")
    p.emit(_LD | _ABS | _H, imm=6)                   # flags and fragment offset
    p.emit(_ALU64 | _AND | _K, r0, imm=0x1FFF)
    p.emit(_JMP | _JNE | _K, r0, imm=0, target="queue0")  # no TCP header in this fragment
    p.emit(_LD | _ABS | _B, imm=0)
    p.emit(_ALU64 | _AND | _K, r0, imm=0x0F)
    p.emit(_ALU64 | _LSH | _K, r0, imm=2)
    p.emit(_ALU64 | _MOV | _X, r7, r0)               # r7: IP header length
    p.emit(_JMP | _JA, target="ports")
    p.label("ipv6")
    p.emit(_LD | _ABS | _B, imm=_IPV6_NEXT_HEADER)
    p.emit(_JMP | _JNE | _K, r0, imm=6, target="queue0")  # not TCP right after the header
    p.emit(_ALU64 | _MOV | _K, r7, imm=_IPV6_HEADER)
    p.emit(_ALU64 | _MOV | _K, r9, imm=_IPV6_SOURCE_LOW_WORD)
    p.label("ports")
    p.emit(_LD | _IND | _H, src=r7, imm=2)           # destination port: ours
    p.emit(_ALU64 | _MOV | _X, r8, r0)
    p.emit(_JMP | _JLT | _K, r8, imm=ports_start, target="hash")
    p.emit(_JMP | _JGE | _K, r8, imm=ports_start + queues * ports_per_queue, target="hash")
    p.emit(_ALU64 | _MOV | _X, r0, r8)               # an ephemeral port: its owner's queue
    p.emit(_ALU64 | _SUB | _K, r0, imm=ports_start)
    p.emit(_ALU64 | _DIV | _K, r0, imm=ports_per_queue)
    p.emit(_JMP | _EXIT)
    p.label("hash")
    p.emit(_LD | _IND | _H, src=r7, imm=0)           # the peer's port
    p.emit(_ALU64 | _MOV | _X, r8, r0)
    p.emit(_LD | _IND | _W, src=r9, imm=0)           # the peer's address (its low word)
    p.emit(_ALU | _XOR | _X, r0, r8)
    p.emit(_ALU | _MUL | _K, r0, imm=_GOLDEN)        # 32-bit: the product's top bits mix
    p.emit(_ALU | _RSH | _K, r0, imm=16)
    p.emit(_ALU | _MUL | _K, r0, imm=queues)         # scale the top 16 bits to [0, queues)
    p.emit(_ALU | _RSH | _K, r0, imm=16)
    p.emit(_JMP | _EXIT)
    p.label("queue0")
    p.emit(_ALU64 | _MOV | _K, r0, imm=0)
    p.emit(_JMP | _EXIT)
    return p.encode()


def _load(code: bytes) -> int:
    """Load a socket-filter program with bpf(2); its file descriptor."""
    number = _SYSCALL_BPF.get(platform.machine())
    if number is None:
        raise LinkError(f"--workers: no bpf(2) system call number known for "
                        f"{platform.machine()}")
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    log_buf = ctypes.create_string_buffer(1 << 14)
    attr = struct.pack("<IIQQIIQII16s", BPF_PROG_TYPE_SOCKET_FILTER, len(code) // 8,
                       ctypes.addressof(insns), ctypes.addressof(license_), 1,
                       len(log_buf), ctypes.addressof(log_buf), 0, 0, b"tcpstack_steer")
    attr_buf = ctypes.create_string_buffer(attr.ljust(128, b"\0"), 128)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.syscall(number, BPF_PROG_LOAD, attr_buf, 128))
    if fd < 0:
        err = ctypes.get_errno()
        detail = log_buf.value.decode(errors="replace").strip().splitlines()
        raise LinkError(f"--workers: cannot load the queue steering program: "
                        f"{os.strerror(err)}{': ' + detail[-1] if detail else ''}")
    return fd


def attach(tun_fd: int, queues: int, ports_start: int, ports_per_queue: int) -> None:
    """Steer the packets of the multi-queue TUN behind `tun_fd` (any of its queues) as the
    module says; the device keeps the program, so its descriptor is closed here."""
    prog = _load(program(queues, ports_start, ports_per_queue))
    try:
        fcntl.ioctl(tun_fd, TUNSETSTEERINGEBPF, struct.pack("i", prog))
    except OSError as exc:
        raise LinkError(f"--workers: cannot attach the queue steering program: "
                        f"{exc.strerror}") from None
    finally:
        os.close(prog)
