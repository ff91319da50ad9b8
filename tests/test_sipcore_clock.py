"""SPEC §9: the virtual clock jumps exactly, only when idle; scaled clocks scale."""


import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from sipharness.sipcore.clock import ScaledClock, VirtualClock, make_clock, note_activity, parse_clock_spec
from sipharness.sipcore.journal import Journal, WaitTimeout


@pytest_twisted.inlineCallbacks
def test_virtual_clock_jumps_to_each_timer_exactly():
    clock = VirtualClock(reactor)
    fired = []
    done = defer.Deferred()
    for t in (3600.0, 0.5, 32.0, 7.5):
        clock.callLater(t, lambda t=t: fired.append((t, clock.seconds())))
    clock.callLater(3600.001, done.callback, None)
    yield done
    assert fired == [(0.5, 0.5), (7.5, 7.5), (32.0, 32.0), (3600.0, 3600.0)]
    assert clock.seconds() == pytest.approx(3600.001)
    # Time moved by jumps, one per timer (plus the final one), never by waiting: an hour of
    # phone time costs a few idle thresholds (bench/phone_scale.py measures the wall time).
    assert clock.jumps == 5
    clock.stop()


@pytest_twisted.inlineCallbacks
def test_virtual_clock_does_not_jump_while_busy():
    """A datagram in flight is read before virtual time moves (activity holds the clock)."""
    clock = VirtualClock(reactor, autojump_threshold=0.02)
    seen = []

    class Echo(protocol.DatagramProtocol):
        def datagramReceived(self, data, addr):
            note_activity(clock)
            seen.append((data, clock.seconds()))
            if len(seen) < 50:
                self.transport.write(data, addr)

    a = reactor.listenUDP(0, Echo(), interface="127.0.0.1")
    b = reactor.listenUDP(0, Echo(), interface="127.0.0.1")
    later = defer.Deferred()
    clock.callLater(10.0, later.callback, None)
    b.write(b"ping", ("127.0.0.1", a.getHost().port))
    yield later
    assert len(seen) == 50
    # All 50 hops happened at phone time 0: the 10 s timer did not overtake them.
    assert {t for _, t in seen} == {0.0}
    assert clock.seconds() == 10.0
    yield a.stopListening()
    yield b.stopListening()
    clock.stop()


def test_virtual_clock_cancelled_calls_do_not_fire():
    from twisted.internet import task

    real = task.Clock()
    clock = VirtualClock(real, autojump_threshold=0.01)
    fired = []
    call = clock.callLater(5, fired.append, 1)
    clock.callLater(9, fired.append, 2)
    call.cancel()
    for _ in range(10):
        real.advance(0.01)
    assert fired == [2] and clock.seconds() == 9.0


@pytest_twisted.inlineCallbacks
def test_scaled_clock_runs_faster_than_wall_time():
    """A timer of 20 phone seconds at ×1000 fires after >= 20 phone seconds (never early) and after far
    less than 20 wall seconds. (How late it fires depends on the machine's load: not asserted.)"""
    import time

    clock = ScaledClock(reactor, speed=1000.0)
    d = defer.Deferred()
    t0, w0 = clock.seconds(), time.monotonic()
    clock.callLater(20.0, d.callback, None)  # 20 phone seconds = 20 ms
    yield d
    assert clock.seconds() - t0 >= 20.0 - 1e-6
    assert time.monotonic() - w0 < 20.0 / 4


@pytest.mark.parametrize("spec,expected", [("virtual", ("virtual", 0.0)), ("real", ("real", 1.0)),
                                           ("scaled:100", ("scaled", 100.0))])
def test_parse_clock_spec(spec, expected):
    assert parse_clock_spec(spec) == expected


@pytest.mark.parametrize("spec", ["scaled:0", "scaled:x", "fast", "scaled:-2"])
def test_parse_clock_spec_refuses_with_the_forms(spec):
    with pytest.raises(ValueError, match="scaled:FACTOR"):
        parse_clock_spec(spec)


def test_make_clock_kinds():
    from twisted.internet import task

    assert isinstance(make_clock("virtual", task.Clock()), VirtualClock)
    assert make_clock("scaled:10", task.Clock()).speed == 10.0


@pytest_twisted.inlineCallbacks
def test_wait_with_deadline_fails_at_exact_phone_time():
    clock = VirtualClock(reactor)
    journal = Journal(clock)
    clock.callLater(5, journal.append, "early")
    clock.callLater(50, journal.append, "late")
    got = yield journal.wait_for(lambda e: e == "early", timeout=10, what="early")
    assert got == "early" and clock.seconds() == 5
    with pytest.raises(WaitTimeout) as info:
        yield journal.wait_for(lambda e: e == "late", timeout=10, since=None, what="the late entry")
    assert clock.seconds() == 15.0
    assert "the late entry" in str(info.value) and "t = 15.000 s" in str(info.value)
    clock.stop()


def test_journal_counts_and_since():
    from twisted.internet import task

    clock = task.Clock()
    j = Journal(clock)
    for x in range(5):
        j.append(x)
    d = j.wait_for(lambda e: e % 2 == 0, timeout=1, count=3)
    assert d.result == 4
    d2 = j.wait_for(lambda e: e % 2 == 0, timeout=1, since=None)
    assert not d2.called
    j.append(6)
    assert d2.result == 6
    assert j.entries(lambda e: e > 3) == [4, 6]
