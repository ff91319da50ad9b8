"""Lab-in-a-box: this process in a private network namespace of its own (SPEC §8, issue 15).

Why: real phones and most SIP stacks ask DNS on port 53 and cannot be told another port (PJSIP's
nameserver setting takes a bare IP; liblinphone reads ``/etc/resolv.conf``). Inside a private
network namespace, 127.0.0.0/8 belongs to the namespace alone, so the fake DNS takes
127.0.0.53:53 and the fakes their SPEC §8 hosts without touching the machine, and two pytest-xdist
workers (each in a namespace of its own) never collide.

Why ``unshare(CLONE_NEWNET)`` of the worker itself rather than ``ip netns`` + a veth pair: the fakes
and the DUT then share one loopback, so the SPEC §8 mapping (127.0.0.10/.20/.53 …) holds as it is;
every child the worker spawns (baresip, the PJSIP driver, linphone-daemon) inherits the namespace;
nothing is named, mounted or routed, so nothing outlives the worker (a namespace ends with its last
process) and a crashed run leaves nothing to clean up. xdist talks to its workers over pipes, which
a network namespace does not touch. Python 3.11 has no ``os.unshare``: libc's, through ctypes.

The namespace has ``lo`` only and no route but loopback: no packet can leave it
(tests/test_harness_netns.py proves it: no default route, a connect to an outside address fails).
Linux namespaces are per thread: sockets are created by the thread that called :func:`enter`
(the reactor's), threads started before it stay outside (none of them opens sockets here).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct

__all__ = ["enter", "box", "unavailable", "active", "routes", "loop_route", "DNS_PORT"]

CLONE_NEWNET = 0x40000000
DNS_PORT = 53  # the one port a phone's resolver asks
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1

_state: dict[str, object] = {"active": False, "ino": None}


def active() -> bool:
    """This process entered a private namespace with :func:`enter` (and is still in it)."""
    return bool(_state["active"]) and _state["ino"] == _netns_inode()


def unavailable() -> str | None:
    """Why a private network namespace cannot be made here (None: it can)."""
    if not hasattr(os, "geteuid") or not os.path.exists("/proc/self/ns/net"):
        return "network namespaces need Linux (/proc/self/ns/net is missing)"
    if os.geteuid() != 0:
        return (f"a private network namespace needs root (uid {os.geteuid()}): run as root, as CI does, so the "
                f"fake DNS can take port 53 where nothing else sees it")
    if _libc() is None:
        return "libc's unshare() is not reachable through ctypes"
    return None


def enter() -> None:
    """Move this process (the calling thread and every child it spawns later) into a new network
    namespace with ``lo`` up. Idempotent. Raises OSError naming the step when it cannot."""
    if active():
        return
    reason = unavailable()
    if reason:
        raise OSError(errno.EPERM, reason)
    libc = _libc()
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")
    _link_up("lo")
    _state["active"], _state["ino"] = True, _netns_inode()


@contextlib.contextmanager
def box():
    """A fresh private namespace for the body of a ``with``, then back to the namespace before it.

    For a test of the harness's own that needs the lab-in-a-box while the rest of its process must
    keep the machine's network (another test on the same xdist worker may install a package)."""
    reason = unavailable()
    if reason:
        raise OSError(errno.EPERM, reason)
    libc = _libc()
    way_back = os.open(f"/proc/self/task/{_gettid()}/ns/net", os.O_RDONLY)
    before = dict(_state)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")
        _state["active"], _state["ino"] = True, _netns_inode()
        _link_up("lo")
        yield
    finally:
        if _netns_inode() != os.fstat(way_back).st_ino and libc.setns(way_back, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            os.close(way_back)
            raise OSError(err, f"setns() back to the namespace before the box failed: {os.strerror(err)}")
        os.close(way_back)
        _state.update(before)


def loop_route(destination: str, source: str) -> None:
    """Give this namespace the address ``source`` (on ``lo``) and a route to ``destination`` back into ``lo``.

    For a stack that decides "the network is up" by asking which local address would reach an
    outside probe address (liblinphone: 87.98.157.38) and finding a non-loopback one. The route
    leads into ``lo``, the only interface: a packet to ``destination`` comes straight back into the
    namespace and is dropped there (it is no local address); it can never leave. Idempotent."""
    if not active():
        raise OSError(errno.EPERM, "loop_route() only inside the lab-in-a-box (netns.enter() or netns.box())")
    import subprocess

    for argv in (["ip", "addr", "replace", f"{source}/32", "dev", "lo"],
                 ["ip", "route", "replace", f"{destination}/32", "dev", "lo", "src", source]):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(errno.EINVAL, f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


def routes() -> list[str]:
    """The namespace's IPv4 routes (``/proc/net/route``: interface, destination, mask), for the proof."""
    out = []
    with open("/proc/net/route", encoding="ascii") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if len(fields) >= 8:
                dest = socket.inet_ntoa(struct.pack("<I", int(fields[1], 16)))
                mask = socket.inet_ntoa(struct.pack("<I", int(fields[7], 16)))
                out.append(f"{fields[0]} {dest}/{mask}")
    return out


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "unshare") else None


def _netns_inode() -> int | None:
    try:
        return os.stat("/proc/self/task/%d/ns/net" % _gettid()).st_ino
    except OSError:
        return None


def _gettid() -> int:
    return getattr(os, "gettid", os.getpid)()


def _link_up(name: str) -> None:
    """``ip link set NAME up`` without iproute2: SIOCGIFFLAGS / SIOCSIFFLAGS on a datagram socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", name.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | _IFF_UP))
