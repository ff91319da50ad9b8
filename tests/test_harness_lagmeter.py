"""harness.lagmeter: the stalls of the harness's own reactor, in phone time (SPEC §9/§10)."""

from __future__ import annotations

from twisted.internet import task

from sipharness.harness.lagmeter import LagMeter
from sipharness.sipcore.clock import ScaledClock


def _meter(speed: float = 20.0) -> tuple[task.Clock, LagMeter]:
    wall = task.Clock()
    return wall, LagMeter(wall, ScaledClock(wall, speed)).start()


def test_a_reactor_on_time_has_no_stalls_and_a_blocked_one_has_one_in_phone_time():
    wall, meter = _meter()
    for _ in range(100):
        wall.advance(0.005)  # on time: 0.5 s of wall time, 10 s of phone time
    assert list(meter.stalls) == []
    wall.advance(0.105)  # a call due 5 ms after the last ran 100 ms late
    wall.advance(0.005)
    [stall] = meter.stalls
    assert abs(stall.late - 0.100) < 1e-9
    assert abs(stall.end - 12.1) < 1e-6 and abs(stall.start - 10.1) < 1e-6  # 100 ms of wall = 2 s of phone time
    assert meter.worst_during(11.0, 11.5, longer_than=0.020) == stall  # inside it
    assert meter.worst_during(9.0, 10.0, longer_than=0.020) is None  # before it
    assert meter.worst_during(11.0, 11.5, longer_than=0.150) is None  # shorter than the slack asked about


def test_stop_cancels_the_meter_and_memory_stays_bounded():
    wall, meter = _meter()
    for _ in range(1000):
        wall.advance(0.050)  # every call late: a long soak on a busy box keeps only the last stalls
    assert 0 < len(meter.stalls) <= 256
    meter.stop()
    assert wall.getDelayedCalls() == []
