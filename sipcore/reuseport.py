"""A UDP port shared by worker processes (``SO_REUSEPORT``), each client kept on one worker.

Why: a fake registrar is one Python process, one core. To use more, several processes bind
the same address with ``SO_REUSEPORT`` (socket(7)), each with its own reactor, and the kernel
hands every datagram to one of them. Its default choice is a hash of the addresses, which
sends all of a load generator's traffic (SIPp: one socket) to one worker and spreads a few
sources unevenly. A worker keeps state a client relies on (its digest nonces, its bindings),
so the choice must stay the same for a client; here a classic BPF program
(``SO_ATTACH_REUSEPORT_CBPF``) picks the worker *source port modulo the number of workers*:
the same client always meets the same worker, and N clients on consecutive ports meet N
workers (bench/registrar_rps.py gives each worker its SIPp). Worker *i* is the *i*-th socket
to join the group, so the workers bind in order.

Linux only (3.9 for ``SO_REUSEPORT``, 4.5 for the BPF program); without the program the
kernel's hash still spreads clients, each still kept on one worker.
"""

from __future__ import annotations

import ctypes
import socket
from typing import Any

from twisted.internet import udp

__all__ = ["ReusePortUdp", "steer_by_source_port"]

_SO_ATTACH_REUSEPORT_CBPF = 51  # <asm-generic/socket.h>
_SKF_NET_OFF = -0x100000  # <linux/filter.h>: loads relative to the network header
# classic BPF opcodes (<linux/bpf_common.h>)
_LD_H_ABS = 0x28  # A = 16-bit word at k
_ALU_MOD_K = 0x94  # A %= k
_RET_A = 0x16  # return A
_UDP_SOURCE_PORT = 20  # offset in the IPv4 packet: after a 20-byte header (no options on 127/8)


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Filter))]


def steer_by_source_port(sock: socket.socket, workers: int) -> None:
    """Attach to ``sock``'s reuseport group the program choosing worker ``source port % workers``.

    Raises OSError when the kernel refuses it (then its hash chooses)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    code = (_Filter * 3)(
        _Filter(_LD_H_ABS, 0, 0, (_SKF_NET_OFF + _UDP_SOURCE_PORT) & 0xFFFFFFFF),
        _Filter(_ALU_MOD_K, 0, 0, workers),
        _Filter(_RET_A, 0, 0, 0),
    )
    program = _Program(len(code), code)
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_REUSEPORT_CBPF, bytes(program))


class ReusePortUdp(udp.Port):
    """A Twisted UDP port that joins a ``SO_REUSEPORT`` group of ``workers`` processes and
    steers each client by its source port (see the module docstring). ``steered``: whether
    the kernel took the program (False: its hash chooses)."""

    def __init__(self, port: int, proto: Any, interface: str, max_packet_size: int, reactor: Any, workers: int):
        super().__init__(port, proto, interface, max_packet_size, reactor)
        self.workers = workers
        self.steered = False

    def createInternetSocket(self):  # noqa: N802 - Twisted's name
        sock = super().createInternetSocket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock

    def _bindSocket(self):  # noqa: N802 - Twisted's name
        super()._bindSocket()
        if self.workers > 1:
            try:
                steer_by_source_port(self.socket, self.workers)
                self.steered = True
            except OSError:
                self.steered = False
