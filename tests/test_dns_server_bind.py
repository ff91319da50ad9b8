"""FakeDNS binding: UDP first on port 0, TCP on the same number, retried when that TCP port is taken."""

import pytest
from twisted.internet.error import CannotListenError

from sipharness.fakes.dns import FakeDNS
from tests.test_dns_zone import seed_zone


class _Port:
    def __init__(self, port):
        self.port, self.stopped = port, False

    def getHost(self):
        return self

    def stopListening(self):
        self.stopped = True


class _StubReactor:
    """Hands out UDP ports 40000, 40001, ...; TCP is refused for the ports in ``taken``."""

    def __init__(self, taken):
        self.taken, self.next, self.udp, self.tcp = set(taken), 40000, [], []

    def listenUDP(self, port, proto, interface):
        p = _Port(port or self.next)
        self.next += 1
        self.udp.append(p)
        return p

    def listenTCP(self, port, factory, interface):
        if port in self.taken:
            raise CannotListenError(interface, port, OSError("address in use"))
        self.tcp.append(_Port(port))
        return self.tcp[-1]

    def seconds(self):
        return 0.0


def test_tcp_port_taken_retries_with_a_new_udp_port():
    r = _StubReactor(taken={40000, 40001})
    fake = FakeDNS([seed_zone()], reactor=r)
    d = fake.start()
    assert fake.address == ("127.0.0.1", 40002) and d.result == ("127.0.0.1", 40002)
    assert [p.stopped for p in r.udp] == [True, True, False] and [p.port for p in r.tcp] == [40002]


def test_gives_up_with_a_clear_error():
    r = _StubReactor(taken=set(range(40000, 40100)))
    with pytest.raises(CannotListenError, match="no port free for both UDP and TCP"):
        FakeDNS([seed_zone()], reactor=r).start()


def test_zone_api_delegation_names_the_zones():
    fake = FakeDNS([seed_zone()], reactor=_StubReactor(taken=()))
    fake.add("server9.yealink.pbx.com", "A", "127.0.0.9", ttl=9)
    assert fake.zone.get("server9", "A")[0].ttl == 9
    with pytest.raises(ValueError, match=r"'www.example.org' is in none of the zones served \(yealink.pbx.com.\)"):
        fake.add("www.example.org", "A", "127.0.0.1")
