"""Unit tests of the phone's pure decisions: failover (SPEC §3/§5), failback (§5), fallback (§6)."""

from dataclasses import dataclass

import pytest

from sipharness.phone.failback import Failback
from sipharness.phone.fallback import CancelProbe, Fallback, ProbeAt, Register, Unregister
from sipharness.phone.failover import Outcome, TargetWalk, classify, max_sends, retry_counts_for


@dataclass(frozen=True)
class T:
    name: str
    expires_at: float | None = None


P, S, X = T("primary", 300.0), T("secondary", 600.0), T("third", 900.0)


# --- SPEC §3 triggers -------------------------------------------------------------------------

@pytest.mark.parametrize("status", [None, 503])
def test_failover_triggers(status):
    assert classify(status) is Outcome.NEXT_TARGET


@pytest.mark.parametrize("status", [200, 202, 403, 404, 408, 486, 500, 502, 504, 600, 302])
def test_answers_are_not_triggers(status):
    assert classify(status) is Outcome.ANSWER


def test_provisional_challenge_min_expires():
    assert classify(100) is Outcome.PROVISIONAL and classify(180) is Outcome.PROVISIONAL
    assert classify(401) is classify(407) is Outcome.CHALLENGE
    assert classify(423) is Outcome.MIN_EXPIRES


def test_max_sends_budget_and_last_target():
    assert max_sends(3, final=False) == 4
    assert max_sends(0, final=False) == 1
    assert max_sends(20, final=True) is None


def test_invite_retry_counts_replace_retry_counts_for_invite_only():
    @dataclass
    class Srv:
        retry_counts: int = 3
        invite_retry_counts: int | None = 5

    assert retry_counts_for(Srv(), "INVITE") == 5
    assert retry_counts_for(Srv(), "REGISTER") == 3
    assert retry_counts_for(Srv(invite_retry_counts=None), "INVITE") == 3


def test_walk_from_primary_last_target_gets_full_timeout():
    w = TargetWalk([P, S], start=0, retry_counts=3, final_list=True)
    assert w.target is P and w.max_sends == 4
    assert w.give_up("timeout") is S
    assert w.max_sends is None  # last target a request can go to: full 32 s
    assert w.give_up("503") is None and w.done
    assert [t for t, _ in w.failures] == [P, S]


def test_walk_of_server1_with_server2_keeps_budget_on_its_last_target():
    w = TargetWalk([P, S], start=0, retry_counts=3, final_list=False)
    w.give_up("timeout")
    assert w.max_sends == 4


def test_walk_from_sticky_secondary_wraps_to_primary():
    w = TargetWalk([P, S, X], start=1, retry_counts=0, final_list=True)
    assert [w.target, w.give_up("x"), w.give_up("x")] == [S, X, P]
    assert w.max_sends is None and w.give_up("x") is None


def test_empty_walk_is_done():
    assert TargetWalk([], start=0).done


# --- SPEC §5 failback -------------------------------------------------------------------------

def failed_over(mode, timeout=120, at=100.0, **kw):
    fb = Failback(mode=mode, timeout=timeout, **kw)
    fb.answered(1, S, at, started=0)
    return fb


def test_mode0_new_requests_always_start_at_primary():
    fb = failed_over(0)
    assert fb.start_index(100.0) == 0
    assert fb.start_index(100.0, call_up=True) == 0


def test_mode1_dnsttl_switches_when_the_a_record_ttl_runs_out():
    fb = failed_over(1)
    assert fb.start_index(599.99) == 1
    assert fb.start_index(600.0) == 0
    assert fb.switch_at() == 600.0


def test_mode2_registration_switches_at_refresh_only():
    fb = failed_over(2)
    assert fb.start_index(10_000.0) == 1
    assert fb.start_index(10_000.0, refresh=True) == 0


def test_mode3_duration_switches_after_failback_timeout():
    fb = failed_over(3, timeout=120, at=100.0)
    assert fb.start_index(219.9) == 1
    assert fb.start_index(220.0) == 0
    assert fb.switch_at() == 220.0


def test_mode3_duration_zero_stays_until_current_fails():
    fb = failed_over(3, timeout=0)
    assert fb.start_index(1e9) == 1 and fb.switch_at() is None
    fb.answered(2, X, 2e9, started=1)  # the secondary failed, the third answered
    assert fb.start_index(3e9) == 2


def test_same_target_again_keeps_the_duration_clock():
    fb = failed_over(3, timeout=120, at=100.0)
    fb.answered(1, S, 150.0, started=1)
    assert fb.start_index(220.0) == 0


def test_a_stay_a_call_forced_past_the_ttl_does_not_renew_it():
    """SPEC §5: mode 1 would switch at the A record's TTL (600); a call was up then, so a request
    stayed on the secondary and re-resolution gave it a fresh TTL (900). Once no call is up the
    switch is due at once, not at the fresh TTL."""
    fb = failed_over(1)
    assert fb.start_index(650.0, call_up=True) == 1
    fb.answered(1, T("secondary", 900.0), 650.0, started=1)
    assert fb.start_index(660.0) == 0 and fb.switch_at() == 600.0


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_sticky_modes_switch_only_when_no_call_is_up(mode):
    fb = failed_over(mode, timeout=60)
    assert fb.start_index(1e6, refresh=True, call_up=True) == 1
    assert fb.start_index(1e6, refresh=True, call_up=False) == 0


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_sticky_modes_apply_only_to_domains(mode):
    fb = failed_over(mode, is_domain=False)
    assert fb.start_index(101.0) == 0


def test_primary_answer_resets():
    fb = failed_over(3, timeout=0)
    fb.answered(0, P, 200.0, started=0)
    assert fb.start_index(201.0) == 0


def test_bad_mode_named():
    with pytest.raises(ValueError, match="failback_mode"):
        Failback(mode=4)


# --- SPEC §6 fallback -------------------------------------------------------------------------

def test_single_server():
    fb = Fallback(has_server2=False)
    assert fb.start() == [Register(1)] and fb.request_order() == [1]
    assert fb.request_failed(1, 10.0) == []  # nothing to fall back to: no probes


def test_concurrent_registers_both_and_prefers_server1_while_usable():
    fb = Fallback(0, has_server2=True)
    assert fb.start() == [Register(1), Register(2)]
    assert fb.request_order() == [1, 2]
    fb.register_failed(1, 5.0)
    assert fb.request_order() == [2, 1] and fb.may_retry(1)  # a failed REGISTER alone: usual retries
    assert fb.registered(1, 35.0) == []
    assert fb.request_order() == [1, 2]


def test_concurrent_invite_fallback_probes_server1_every_fallback_timeout_until_2xx():
    """SPEC §6 concurrent, revised 2026-12-01 (FB-PROBE): after an INVITE fell back, a REGISTER
    probes server 1 every fallback.timeout until it answers 2xx; then server 1 first again."""
    fb = Fallback(0, timeout=120, has_server2=True)
    assert fb.request_failed(1, 10.0) == [ProbeAt(130.0)]
    assert fb.request_order() == [2, 1] and not fb.may_retry(1)  # probes replace the retries
    assert fb.request_failed(1, 50.0) == []  # a second fallback keeps the cadence
    assert fb.probe_due(130.0) == [Register(1, "probe server 1 with a REGISTER (fallback.timeout 120 s)"),
                                   ProbeAt(250.0)]
    assert fb.register_failed(1, 137.5) == []  # the probe failed: the next one is armed already
    assert fb.registered(2, 200.0) == []
    assert fb.registered(1, 250.1) == [CancelProbe()]
    assert fb.request_order() == [1, 2] and fb.may_retry(1) and fb.probe_due(370.0) == []


def test_successive_falls_back_probes_and_unregisters_server2():
    fb = Fallback(1, timeout=120, has_server2=True)
    assert fb.start() == [Register(1)]
    assert fb.next_probe_at(0.0) is None
    actions = fb.register_failed(1, 7.5)
    assert [type(a) for a in actions] == [Register, ProbeAt] and actions[0].server == 2
    assert actions[1] == ProbeAt(127.5)
    assert fb.request_order() == [2]
    assert fb.next_probe_at(7.5) == 127.5
    assert fb.next_probe_at(127.5) == 247.5
    assert not fb.may_retry(1) and fb.may_retry(2)
    assert fb.register_failed(1, 135.0) == []  # a failed probe changes nothing
    assert fb.registered(2, 8.0) == []
    back = fb.registered(1, 247.6)
    assert back[0] == CancelProbe() and isinstance(back[1], Unregister) and back[1].server == 2
    assert fb.request_order() == [1, 2] and fb.next_probe_at(300.0) is None
    assert not fb.may_retry(2)  # server 2 is no longer in use


def test_fallback_actions_are_frozen_dataclasses_not_strings():
    import dataclasses

    for action in (Register(1), Unregister(2), ProbeAt(1.0), CancelProbe()):
        assert dataclasses.is_dataclass(action) and type(action).__dataclass_params__.frozen, action
