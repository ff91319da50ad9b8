"""The lab-in-a-box (harness/netns.py): a private network namespace per test process, where the fake
DNS has port 53, nothing routes outside, and two processes never collide.

The fixtures here (``in_a_box``, ``box_lab``) are what the real-stack tests (PJSIP, liblinphone)
use: a fresh namespace for the test (``netns.box()``), and back to the machine's after it, so the
other tests of the same xdist worker keep the machine's network (one installs packages).
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import defer

from sipharness.harness import netns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def in_a_box():
    """The test in a private namespace of its own (skipped without one; failed under SIPHARNESS_REQUIRE_PEERS=1)."""
    reason = netns.unavailable()
    if reason is not None:
        if os.environ.get("SIPHARNESS_REQUIRE_PEERS") == "1":
            pytest.fail(f"lab-in-a-box unavailable: {reason}; SIPHARNESS_REQUIRE_PEERS=1 requires it", pytrace=False)
        pytest.skip(f"lab-in-a-box unavailable: {reason}")
    outside = os.readlink("/proc/thread-self/ns/net")
    with netns.box():
        yield
    assert os.readlink("/proc/thread-self/ns/net") == outside, "back in the machine's namespace after the test"


@pytest.fixture
def box_lab(in_a_box):
    """``make(dut_factory)`` → a Lab on the real clock in this process's namespace, DNS on 127.0.0.53:53."""
    from twisted.internet import reactor

    from sipharness.fakes.record import Recorder
    from sipharness.harness.lab import Lab
    from sipharness.sipcore.clock import ScaledClock

    made = []

    def make(dut_factory):
        clock = ScaledClock(reactor, 1.0)
        lab = Lab(clock, Recorder(clock), dut_factory(clock, reactor), reactor=reactor, dns_port=netns.DNS_PORT)
        made.append(lab)
        return lab

    yield make
    for lab in made:
        pytest_twisted.blockon(defer.ensureDeferred(lab.down()))


def _net_inode(pid: str = "self") -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def test_nothing_routes_outside_the_box(in_a_box):
    assert netns.active()
    assert not [r for r in netns.routes() if r.endswith(" 0.0.0.0/0.0.0.0")], netns.routes()
    with open("/proc/self/net/dev", encoding="ascii") as f:  # (/sys/class/net is the mount's, not ours)
        interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    assert interfaces == ["lo"], f"only loopback in the box: {interfaces}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(OSError) as e:
        s.settimeout(2)
        s.connect(("192.0.2.1", 80))  # TEST-NET-1: would need a route out of the box
    assert e.value.errno == errno.ENETUNREACH
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, pytest.raises(OSError) as e:
        u.sendto(b"x", ("198.51.100.7", 53))
    assert e.value.errno == errno.ENETUNREACH


def test_dns_port_53_and_the_spec_hosts_are_free_in_the_box(in_a_box):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.53", 53))
        t.bind(("127.0.0.10", 5060))
        u.sendto(b"ping", ("127.0.0.53", 53))
        assert u.recvfrom(10)[0] == b"ping", "loopback works inside"


def test_the_box_ends_with_the_test():
    outside = os.readlink("/proc/thread-self/ns/net")
    if netns.unavailable():
        pytest.skip(netns.unavailable())
    with netns.box():
        inside = os.readlink("/proc/thread-self/ns/net")
        assert netns.active() and inside != outside
    assert os.readlink("/proc/thread-self/ns/net") == outside and not netns.active()


def test_children_inherit_the_box_and_the_host_is_elsewhere(in_a_box):
    child = subprocess.run(["readlink", "/proc/self/ns/net"], capture_output=True, text=True, check=True)
    assert child.stdout.strip() == os.readlink("/proc/thread-self/ns/net")
    if os.path.exists("/proc/1/ns/net"):
        assert _net_inode("1") != _net_inode("thread-self"), "the box is not the machine's namespace"


def test_two_processes_each_in_a_box_both_hold_port_53():
    """Two xdist workers never collide: each process's box has its own 127.0.0.53:53."""
    if netns.unavailable():
        pytest.skip(netns.unavailable())
    code = ("import socket, sys, time\nfrom sipharness.harness import netns\nnetns.enter()\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.53', 53))\n"
            "print('bound', flush=True)\nsys.stdin.read()\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        lines = [p.stdout.readline().strip() for p in procs]
        assert lines == ["bound", "bound"], [p.stderr.read() for p in procs if p.poll() is not None]
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(10)


def test_without_root_the_reason_is_named(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root (uid 1000)" in netns.unavailable()
    with pytest.raises(OSError, match="needs root"):
        with netns.box():
            pass


def test_a_route_back_into_lo_answers_a_probe_and_nothing_leaves(in_a_box):
    """liblinphone's "network up" probe (harness/linphone.py): a non-loopback source for that one address,
    a route that leads back into lo; every other outside address stays unreachable."""
    netns.loop_route("87.98.157.38", "198.51.100.53")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.connect(("87.98.157.38", 5060))
        assert u.getsockname()[0] == "198.51.100.53"
    with open("/proc/self/net/dev", encoding="ascii") as f:
        assert [line.split(":")[0].strip() for line in f.readlines()[2:]] == ["lo"], "still no way out"
    assert not [r for r in netns.routes() if r.endswith(" 0.0.0.0/0.0.0.0")]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, pytest.raises(OSError) as e:
        u.sendto(b"x", ("198.51.100.7", 53))
    assert e.value.errno == errno.ENETUNREACH
