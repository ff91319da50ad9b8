"""Shared helpers of the project's own tests.

Real peers (dig, sipp, kamailio, baresip, dnsperf) are external programs. A test that needs
one asks :func:`peer`: absent, the test is skipped with the reason, unless
``SIPHARNESS_REQUIRE_PEERS=1`` (set by ``.ci/run``), where an absent peer is a failure.
"""

import os
import shutil
import socket

import pytest


def require_peer(program: str) -> str:
    """Path of ``program``; skip (or fail under SIPHARNESS_REQUIRE_PEERS=1) when absent."""
    path = shutil.which(program)
    if path:
        return path
    reason = f"real peer {program!r} is not installed (see .ci/run for the apt-get line)"
    if os.environ.get("SIPHARNESS_REQUIRE_PEERS") == "1":
        pytest.fail(reason + "; SIPHARNESS_REQUIRE_PEERS=1 requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def peer():
    """``peer("dig")`` → path of the program, skipping/failing as :func:`require_peer` says."""
    return require_peer


@pytest.fixture
def vclock():
    """A SPEC §9 virtual clock over the test reactor, stopped after the test."""
    from twisted.internet import reactor

    from sipharness.sipcore.clock import VirtualClock

    clock = VirtualClock(reactor)
    yield clock
    clock.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` right now, for peers that cannot take port 0
    (SIPp's ``-p 0`` means 5060; Kamailio needs it in ``-l``). Small race: it is closed before use,
    so callers retry on a bind failure."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((host, 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError(f"no port free for both UDP and TCP on {host}")



def failover_zone(p1: int, p2: int, srv: str = "_sip._udp") -> str:
    """The phone's loopback tests' failover zone: two SRV targets on ``srv``, server1 = primary
    127.0.0.10:p1 and server2 = secondary 127.0.0.20:p2 (SPEC §8 hosts)."""
    return f"""$ORIGIN pbx.test.
$TTL 3600
@          IN SOA  ns.pbx.test. hostmaster.pbx.test. 1 3600 600 86400 60
@          IN NS   ns.pbx.test.
ns         IN A    127.0.0.53
{srv}  IN SRV  0 1 {p1} server1.pbx.test.
{srv}  IN SRV  1 1 {p2} server2.pbx.test.
server1    IN A    127.0.0.10
server2    IN A    127.0.0.20
"""
