"""Assertions in phone time over what the fakes recorded (SPEC §3, §8, §9).

They read only the fakes' records, never the DUT, so they hold for any phone. Messages
are written for the engineer reading a red test: what was expected, what was seen, and
when ("expected 4 REGISTER sends to primary 127.0.0.10:40321 before the first to
secondary; saw 2, then secondary at t = 1.500 s").

*Attempts* (SPEC §3) are every send of a request to a target, retransmission or new
transaction alike, so phones that count either way pass the same count.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from twisted.internet import defer

from sipharness.fakes.record import Record, Recorder, SipRecord

from .timing import EXACT, Tolerance

__all__ = ["spec_send_offsets", "expect_gaps", "attempts", "first_attempt", "attempt_runs", "expect_attempts", "expect_times", "expect_no_request", "fmt_t", "wait_registration"]


def fmt_t(t: float) -> str:
    return f"t = {t:.3f} s"


T1, T2, TIMER_B = 0.5, 4.0, 32.0


def spec_send_offsets(method: str, retry_counts: int | None) -> tuple[list[float], float]:
    """SPEC §3 over UDP: (offsets of the 1 + N sends to one target, when that target is given up).

    Written out from the SPEC's words, not taken from the phone, so a wrong phone cannot
    agree with itself: retransmissions at T1, 2·T1, 4·T1 … (non-INVITE capped at T2); the
    target is given up when the (N+1)-th retransmission would be due or at Timer B/F
    (64·T1 = 32 s), whichever comes first. ``retry_counts=None``: the last target, full 32 s.
    """
    offsets, t, interval = [], 0.0, T1
    limit = float("inf") if retry_counts is None else retry_counts + 1
    while t < TIMER_B and len(offsets) < limit:
        offsets.append(t)
        t += interval
        interval = interval * 2 if method == "INVITE" else min(interval * 2, T2)
    return offsets, min(t, TIMER_B)


def expect_gaps(times: Sequence[float], gap: float, *, tolerance: Tolerance = EXACT, what: str = "events") -> None:
    """Consecutive ``times`` are ``gap`` phone seconds apart (e.g. probes every fallback.timeout)."""
    gaps = [b - a for a, b in zip(times, times[1:])]
    if not gaps or not all(tolerance.allows(gap, g) for g in gaps):
        raise AssertionError(f"expected {what} every {gap:g} s ({tolerance.describe(gap)}); saw them at "
                             f"t = [{', '.join(f'{t:.3f}' for t in times)}] s, gaps [{', '.join(f'{g:.3f}' for g in gaps)}] s")


def attempts(recorder: Recorder, method: str, server: str | None = None, *, since: int = 0,
             until: float | None = None) -> list[SipRecord]:
    """Requests of ``method`` that reached ``server`` (all servers when None), dropped or not."""
    return [r for r in recorder.entries(since=since)
            if type(r) is SipRecord and r.direction == "in" and r.status is None and r.method == method
            and (server is None or r.server == server) and (until is None or r.time <= until)]


def first_attempt(recorder: Recorder, method: str, server: str | None = None, *, since: int = 0) -> SipRecord:
    """The first attempt of ``method`` to ``server``; an AssertionError naming them when there is none
    (a phone that never sent it broke a rule: that is a finding, not a harness error)."""
    seen = attempts(recorder, method, server, since=since)
    if not seen:
        where = _where(recorder, server) if server else "any server"
        raise AssertionError(f"expected a {method} to {where}; none was sent")
    return seen[0]


def attempt_runs(recorder: Recorder, method: str, servers: Iterable[str], *, since: int = 0) -> list[tuple[str, list[SipRecord]]]:
    """Consecutive runs of attempts by server, in time order: [("primary", [4 records]), ("secondary", [1])]."""
    names = set(servers)
    runs: list[tuple[str, list[SipRecord]]] = []
    for r in attempts(recorder, method, since=since):
        if r.server not in names:
            continue
        if runs and runs[-1][0] == r.server:
            runs[-1][1].append(r)
        else:
            runs.append((r.server, [r]))
    return runs


def _where(recorder: Recorder, server: str) -> str:
    for r in recorder.entries():
        if type(r) is SipRecord and r.server == server:
            return f"{server} {r.local[0]}:{r.local[1]}"
    return server


def expect_attempts(recorder: Recorder, method: str, first: str, count: int, then: str | None = None, *,
                    since: int = 0) -> list[SipRecord]:
    """``count`` attempts of ``method`` to ``first`` before the first one to ``then``.

    Returns the attempts to ``first``. With ``then=None`` only the count to ``first`` is checked.
    """
    servers = [first] + ([then] if then else [])
    runs = attempt_runs(recorder, method, servers, since=since)
    seen = runs[0][1] if runs and runs[0][0] == first else []
    nxt = runs[1][1][0] if len(runs) > 1 and runs[1][0] == then else None
    if then is not None and not runs:
        raise AssertionError(f"expected {count} {method} sends to {_where(recorder, first)} before the first to "
                             f"{_where(recorder, then)}; saw no {method} at either")
    if runs and runs[0][0] != first:
        raise AssertionError(f"expected the first {method} to go to {_where(recorder, first)}; it went to "
                             f"{_where(recorder, runs[0][0])} at {fmt_t(runs[0][1][0].time)}")
    ok = len(seen) == count and (then is None or nxt is not None)
    if not ok:
        times = ", ".join(f"{r.time:.3f}" for r in seen)
        msg = f"expected {count} {method} sends to {_where(recorder, first)}"
        if then:
            msg += f" before the first to {_where(recorder, then)}"
        msg += f"; saw {len(seen)} (at t = {times or '-'} s)"
        if then:
            msg += (f", then {then} at {fmt_t(nxt.time)}" if nxt is not None else f", and none to {then}")
        raise AssertionError(msg)
    return seen


def expect_times(records: Sequence[Record], expected: Sequence[float], *, origin: float | None = None,
                 tolerance: Tolerance = EXACT, what: str = "sends") -> None:
    """The records happened at ``expected`` phone times (relative to ``origin`` if given)."""
    base = 0.0 if origin is None else origin
    seen = [r.time - base for r in records]
    bad = len(seen) != len(expected) or not all(tolerance.allows(e, s) for e, s in zip(expected, seen))
    if bad:
        exp = ", ".join(f"{e:.3f}" for e in expected)
        got = ", ".join(f"{s:.3f}" for s in seen)
        rel = f" after {fmt_t(base)}" if origin is not None else ""
        raise AssertionError(f"expected {what} at [{exp}] s{rel} ({tolerance.describe(max(expected or [0]))}); "
                             f"saw [{got}] s")


def expect_no_request(recorder: Recorder, method: str, server: str, *, since: int = 0, why: str = "") -> None:
    seen = attempts(recorder, method, server, since=since)
    if seen:
        raise AssertionError(f"expected no {method} to {_where(recorder, server)}{' (' + why + ')' if why else ''}; "
                             f"saw {len(seen)}, the first at {fmt_t(seen[0].time)}")


def wait_registration(recorder: Recorder, servers: str | Iterable[str], timeout: float, *,
                      since: int = 0) -> "defer.Deferred[SipRecord]":
    """The first 2xx a fake among ``servers`` sent to a REGISTER, from record ``since`` on (its time: when sent).

    The facts a phone's own events cannot give (SPEC §10): with which server an account
    registered (a vendor phone's Action URL names the account's host, ``$active_host``, never the
    server) and whether a refresh went through (no vendor documents a callback for it). The
    fakes see every REGISTER and every answer, whatever the phone reports."""
    names = {servers} if isinstance(servers, str) else set(servers)

    def match(r: Record) -> bool:
        return (isinstance(r, SipRecord) and r.direction == "out" and r.method == "REGISTER" and r.server in names
                and r.status is not None and 200 <= r.status < 300)
    return recorder.wait_for(match, timeout, since=since, what=f"a 2xx to REGISTER from {' or '.join(sorted(names))}")
