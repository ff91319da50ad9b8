"""The fakes from any test style (issue 13): a plain test that blocks and an asyncio test use the fake
DNS and fake SIP servers as they are, because those run in a background reactor thread and every
call into them is marshalled there, with a deadline. A Twisted-coroutine test keeps them in its reactor.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import dns.asyncresolver
import dns.resolver
import pytest
import pytest_twisted
from twisted.internet import defer

from sipharness.harness.reactor_thread import Marshalled, ReactorCallTimeout, ReactorThread
from tests.user_project import INI

pytest_plugins = ["pytester"]


def register(to: tuple[str, int], local: tuple[str, int], call_id: str = "c1") -> bytes:
    host, port = local
    return (f"REGISTER sip:{to[0]} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{call_id}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{host}:{port}>\r\nExpires: 60\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def _resolver(fake) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers, r.port = [fake.address[0]], fake.address[1]
    return r


def test_a_blocking_resolver_gets_answers_from_the_fake_dns(fake_dns, sip_recorder):
    assert isinstance(fake_dns, Marshalled) and fake_dns.reactor is not None
    fake_dns.add("www.example.com", "A", "127.0.0.9")
    answer = _resolver(fake_dns).resolve("www.example.com", "A", lifetime=5)
    assert [r.address for r in answer] == ["127.0.0.9"]
    fake_dns.faults.servfail(name="www.example.com", qtype="A", count=1)
    with pytest.raises(dns.resolver.NoNameservers):
        _resolver(fake_dns).resolve("www.example.com", "A", lifetime=5)
    assert [(r.summary, r.direction) for r in sip_recorder.dns(qtype="A")] == [
        ("Q A www.example.com", "in"), ("NOERROR 1 A", "out"), ("Q A www.example.com", "in"), ("SERVFAIL", "out")]


def test_a_blocking_socket_registers_with_a_fake_registrar(sip_server, sip_recorder, sip_clock):
    srv = sip_server("registrar", "udp")
    to = srv.addresses["udp"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.bind(("127.0.0.1", 0))
        s.sendto(register(to, s.getsockname()), to)
        assert s.recv(65535).startswith(b"SIP/2.0 200 OK")
        srv.script.respond("REGISTER", 503, headers={"Retry-After": "30"})
        s.sendto(register(to, s.getsockname(), "c2"), to)
        assert s.recv(65535).startswith(b"SIP/2.0 503")
    assert [r.summary for r in srv.records] == [f"REGISTER sip:{to[0]}", "200 OK", f"REGISTER sip:{to[0]}",
                                                "503 Service Unavailable"]
    assert srv.bindings("alice") and sip_clock.seconds() > 0
    # a wait the fake's recorder answers at once, and one that runs out on the (real) clock
    assert sip_recorder.wait_for(lambda r: r.status == 503, timeout=1).status == 503
    with pytest.raises(AssertionError, match="waited 0.05 s"):
        sip_recorder.wait_for(lambda r: r.status == 404, timeout=0.05)


@pytest.mark.asyncio
async def test_an_asyncio_resolver_and_datagram_client(fake_dns, sip_server):
    fake_dns.add("_sip._udp.example.com", "SRV", "10 50 5060 pbx.example.com.")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [fake_dns.address[0]], fake_dns.address[1]
    answer = await resolver.resolve("_sip._udp.example.com", "SRV", lifetime=5)
    assert [(r.priority, r.port, str(r.target)) for r in answer] == [(10, 5060, "pbx.example.com.")]

    srv = sip_server("registrar")
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr) -> None:
            reply.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    try:
        transport.sendto(register(srv.addresses["udp"], transport.get_extra_info("sockname")), srv.addresses["udp"])
        assert (await asyncio.wait_for(reply, 5)).startswith(b"SIP/2.0 200 OK")
    finally:
        transport.close()


@pytest_twisted.ensureDeferred
async def test_a_twisted_coroutine_keeps_the_fakes_in_its_reactor(fake_dns, sip_server, sip_clock):
    from twisted.internet import reactor

    assert not isinstance(fake_dns, Marshalled) and fake_dns.reactor is reactor
    srv = await sip_server("registrar")
    assert srv.reactor is reactor and srv.clock is sip_clock


@pytest.mark.parametrize("sip_fakes_in_thread", [False])
def test_a_plain_test_may_keep_the_fakes_in_the_tests_reactor(fake_dns):
    from twisted.internet import reactor

    assert not isinstance(fake_dns, Marshalled) and fake_dns.reactor is reactor


def test_calls_into_the_thread_have_deadlines():
    thread = ReactorThread(name="test-deadline").start()
    try:
        pending: list[defer.Deferred] = []

        def never() -> defer.Deferred:
            d = defer.Deferred()
            pending.append(d)
            return d

        with pytest.raises(ReactorCallTimeout, match="never: no answer from the fakes' reactor thread within 0.2 s"):
            thread.call(never, deadline=0.2, what="never")
        # the pending call was cancelled in the reactor thread (the next call runs after it)
        assert thread.call(lambda: pending[0].called) is True
        assert thread.call(threading.current_thread).name == "test-deadline"
        with pytest.raises(ZeroDivisionError):  # an exception comes back to the caller
            thread.call(lambda: 1 / 0)
    finally:
        thread.stop()
    with pytest.raises(RuntimeError, match="not running"):
        thread.call(lambda: None)


def test_forcing_the_thread_on_a_dut_test_is_refused(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_user='''
import pytest


@pytest.fixture
def sip_fakes_in_thread():
    return True


def test_lab(lab):
    pass
''')
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    assert "sip_fakes_in_thread is True but the test drives a DUT" in result.stdout.str()


def test_a_fake_that_fails_in_the_thread_fails_the_test_as_a_harness_error(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_user='''
import socket


def test_blocking_client(sip_server):
    srv = sip_server("registrar")

    def boom(request):
        raise RuntimeError("the registrar's scripted handler failed")

    srv.script.handle("REGISTER", boom)
    to = srv.addresses["udp"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.bind(("127.0.0.1", 0))
        host, port = s.getsockname()
        s.sendto((f"REGISTER sip:x SIP/2.0\\r\\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-1\\r\\n"
                  f"From: <sip:a@x>;tag=1\\r\\nTo: <sip:a@x>\\r\\nCall-ID: 1\\r\\nCSeq: 1 REGISTER\\r\\n"
                  f"Content-Length: 0\\r\\n\\r\\n").encode(), to)
        assert s.recv(65535).startswith(b"SIP/2.0 500")
''')
    result = pytester.runpytest_subprocess()
    assert result.parseoutcomes() == {"errors": 1}  # a harness error, whatever the test asserted
    assert result.ret == 70
    assert "RuntimeError: the registrar's scripted handler failed" in result.stdout.str()
