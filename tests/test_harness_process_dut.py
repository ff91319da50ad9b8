"""The process-DUT base (harness/process_dut.py) with a trivial child: an exit nobody asked for is a
harness error that ends every wait at once; stop() walks its steps to SIGKILL and reaps; a command that
fails is a "failed" call event; apply_config refuses what the stack's column cannot express; the emulated
vendor phone's process is started and ended by the same base."""

from __future__ import annotations

import signal
import sys

import pytest
import pytest_twisted

from sipharness.harness.child import LineChild, running
from sipharness.harness.dut import NotExpressible
from sipharness.harness.process_dut import ProcessDut, ProcessDutError, spawn_child
from sipharness.harness.report import HarnessError
from sipharness.sipcore.events import CallState, EventKind

IGNORES_TERM = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "print('up', flush=True)\nsys.stdin.read()\ntime.sleep(60)\n")


class _Child(ProcessDut):
    kind = "toy"
    stack = "baresip"
    TERM_GRACE, KILL_GRACE = 0.3, 5.0

    def start_child(self, code: str) -> LineChild:
        proc = LineChild()
        self._spawn(proc, [sys.executable, "-c", code])
        self._ready()
        return proc


@pytest.fixture
def toy():
    from twisted.internet import reactor

    from sipharness.sipcore.clock import ScaledClock

    dut = _Child(ScaledClock(reactor, 1.0), reactor=reactor)
    yield dut
    pytest_twisted.blockon(dut.stop())
    assert not running("toy")


@pytest_twisted.ensureDeferred
async def test_an_exit_nobody_asked_for_ends_the_waits_as_a_harness_error(toy):
    proc = toy.start_child("import sys\nprint('up', flush=True)\nsys.stdin.read()\nsys.exit(7)\n")
    wait = toy.wait_for(EventKind.REGISTERED, 60, account=1)
    proc.transport.closeStdin()
    with pytest.raises(ProcessDutError, match=r"(?s)toy \(.*\) exited unexpectedly \(status 7\); its output:\nup") as e:
        await wait
    assert isinstance(e.value, HarnessError) and toy.serving_errors == [e.value]
    with pytest.raises(ProcessDutError):
        await toy.wait_for(EventKind.REGISTERED, 60)


@pytest_twisted.ensureDeferred
async def test_stop_goes_on_to_kill_and_reaps(toy):
    proc = toy.start_child(IGNORES_TERM)
    await toy._within(_first_line(proc), 10, "say it is up")
    assert toy.pid in running("toy")
    await toy.stop()
    assert proc.ended and proc.status == -signal.SIGKILL and toy.pid is None and not toy.errors, \
        "a stop that was asked for is no harness error"


@pytest_twisted.ensureDeferred
async def test_a_failed_command_is_a_failed_call_event(toy):
    from twisted.internet import defer

    await toy._safe(defer.fail(RuntimeError("no channel")), "dial sip:2000@x", account=2)
    event = toy.events.entries()[-1]
    assert (event.kind, event.state, event.account) == (EventKind.CALL_STATE, CallState.FAILED, 2)
    assert event.detail == "dial sip:2000@x: no channel"


@pytest_twisted.ensureDeferred
async def test_apply_config_checks_the_stack_column(toy):
    with pytest.raises(NotExpressible):
        await toy.apply_config("account.1.enable = 1\naccount.1.sip_server.1.failback_mode = 2\n")
    with pytest.raises(ValueError, match=r"<toy dut \.cfg>:1: expected 'key = value'"):
        await toy.apply_config("nonsense\n")
    await toy.apply_config("account.1.enable = 1\n")


@pytest_twisted.ensureDeferred
async def test_the_emulated_vendor_phone_is_ended_by_the_same_steps():
    from twisted.internet import reactor

    from sipharness.harness.child import deadline
    from sipharness.harness.emulated import KIND, EmulatedPhone
    from sipharness.harness.vendor_errors import VendorError

    with pytest.raises(VendorError, match=r"vendor emulation: cannot run /nonexistent/phone --x"):
        spawn_child(reactor, EmulatedPhone(), ["/nonexistent/phone", "--x"], kind=KIND, error=VendorError)
    proc = EmulatedPhone()
    proc.QUIT_GRACE = proc.TERM_GRACE = 0.3
    proc.ptransport = spawn_child(reactor, proc, [sys.executable, "-c", IGNORES_TERM], kind=KIND)
    assert proc.pid in running(KIND)
    assert await deadline(reactor, proc.next_line("up"), 10), "the child did not start"
    await proc.reap(reactor)  # quit on stdin and TERM are ignored: KILL
    assert proc.ended and proc.status == -signal.SIGKILL and proc.pid not in running(KIND)


def _first_line(proc: LineChild):
    from twisted.internet import defer

    d = defer.Deferred()
    proc._on_line = lambda fd, text: d.called or d.callback(text)
    return d
