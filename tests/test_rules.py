"""fakes/rules.py: one grammar for the SIP script and the DNS faults (sans-I/O, no sockets).

Precedence (first matching rule in the order added wins; ``top=True`` puts one first), the
limits counted per rule, the checks that name the field, each fake's dialect, and the TOML /
JSON files a CLI will load (round trip, errors with file:line).
"""

from __future__ import annotations

import json
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipharness.fakes.dns.faults import Faults
from sipharness.fakes.rulefiles import dump_rules, load_rules, load_rules_file
from sipharness.fakes.rules import Action, Rule, RuleError
from sipharness.fakes.sip.script import Script


def _decide(script: Script, method: str, now: float = 0.0, transport: str = "udp", peer: str = "127.0.0.1"):
    rule = script.decide(method, transport, peer, now)
    return None if rule is None else rule.number


def test_first_matching_rule_in_the_order_added_wins_for_sip_and_dns():
    s = Script()
    s.respond("REGISTER", 503)
    s.drop()  # wider, added later: never shadows the first
    assert _decide(s, "REGISTER") == 1 and _decide(s, "INVITE") == 2
    d = Faults()
    d.drop(qtype="A")
    d.servfail(name="pbx.example.com")  # the old DNS table let the newest win: not any more
    assert d.decide("pbx.example.com.", "A", "udp", "127.0.0.1", 0.0).number == 1
    assert d.decide("pbx.example.com.", "SRV", "udp", "127.0.0.1", 0.0).number == 2


def test_top_puts_a_rule_first_to_lay_a_short_fault_over_a_standing_one():
    s = Script()
    s.drop("INVITE")
    s.respond("INVITE", 486, count=1, top=True)
    assert [_decide(s, "INVITE") for _ in range(3)] == [2, 1, 1]
    assert s.describe() == ["rule 1 drop INVITE"]  # the spent rule left the list


def test_limits_are_counted_per_rule_from_when_it_was_added():
    s = Script()
    s.answer("REGISTER", nth=[2, 3])
    s.drop("REGISTER", first=4)
    s.respond("REGISTER", 403, from_nth=6, count=2)
    # index 1: rule 2; 2, 3: rule 1 (rule 2 still counts them: first=4 is "the first four REGISTERs")
    assert [_decide(s, "REGISTER") for _ in range(9)] == [2, 1, 1, 2, None, 3, 3, None, None]
    late = Script()
    late.drop("INVITE", after=10.0, until=20.0)
    assert [_decide(late, "INVITE", t) for t in (9.9, 10.0, 19.9, 20.0)] == [None, 1, 1, None]
    assert _decide(late, "REGISTER", 15.0) is None


def test_match_fields_transport_and_peer():
    s = Script()
    s.refuse("INVITE", transport="tcp", peer="127.0.0.5")
    assert _decide(s, "INVITE", transport="tcp", peer="127.0.0.5") == 1
    assert _decide(s, "INVITE", transport="udp", peer="127.0.0.5") is None
    assert _decide(s, "INVITE", transport="tcp", peer="127.0.0.6") is None
    d = Faults()
    tcp_only = d.tcp_only()
    assert d.decide("x.", "A", "tcp", "127.0.0.1", 0) is None and tcp_only.seen == 0  # TCP queries do not count
    assert d.decide("x.", "A", "udp", "127.0.0.1", 0) is tcp_only


def test_handles_say_what_they_did_and_can_be_removed_by_handle_rule_or_number():
    s = Script()
    a = s.drop("REGISTER", first=4)
    b = s.respond("INVITE", 503, headers={"Retry-After": "30"}, after=10.0)
    c = s.delay("BYE", 2.0)
    assert a.note == "dropped: rule 1 drop REGISTER first=4"
    assert b.note == "scripted: rule 2 respond 503 INVITE after=10 Retry-After: 30"
    assert c.describe() == "rule 3 delay BYE by=2s"
    s.remove(a)
    s.remove(b.rule)
    s.remove(3)
    assert len(s) == 0 and not a.active


@pytest.mark.parametrize("build, field", [
    (lambda: Rule("explode"), "action"),
    (lambda: Rule(Action.DROP, method="REG ISTER"), "method"),
    (lambda: Rule(Action.DROP, first=0), "first"),
    (lambda: Rule(Action.DROP, nth=[1, -2]), "nth"),
    (lambda: Rule(Action.DROP, after=5.0, until=5.0), "until"),
    (lambda: Rule(Action.DROP, peer="not-an-ip"), "peer"),
    (lambda: Rule(Action.DROP, transport="sctp"), "transport"),
    (lambda: Rule(Action.RESPOND, status=700), "status"),
    (lambda: Rule(Action.RESPOND), "respond needs status"),
    (lambda: Rule(Action.DROP, delay=1.0), "drop takes no delay"),
    (lambda: Rule(Action.DELAY), "delay needs"),
    (lambda: Rule(Action.HANDLE), "handle needs fn"),
    (lambda: Rule(Action.RESPOND, status=503, headers={"Bad Name": "x"}), "header name"),
    (lambda: Rule(Action.RESPOND, status=503, headers={"X": "a\r\nInjected: 1"}), "one line"),
    (lambda: Rule(Action.DROP, after=float("nan")), "after"),
])
def test_a_bad_rule_is_refused_naming_the_field(build, field):
    with pytest.raises(RuleError, match=field):
        build()


def test_each_fake_refuses_what_it_cannot_do():
    with pytest.raises(RuleError, match="no verb truncate.*SIP has none"):
        Script().add(Rule(Action.TRUNCATE))
    with pytest.raises(RuleError, match="matches on method, peer, transport, not qtype"):
        Script().add(Rule(Action.DROP, qtype="A"))
    with pytest.raises(RuleError, match="needs status="):
        Script().add(Rule(Action.RESPOND, rcode="SERVFAIL"))
    with pytest.raises(RuleError, match="not method"):
        Faults().add(Rule(Action.DROP, method="INVITE"))
    with pytest.raises(RuleError, match="serves udp, tcp"):
        Faults().drop(transport="tls")
    with pytest.raises(RuleError, match="'BOGUS' is not a DNS record type"):
        Faults().drop(qtype="bogus")
    with pytest.raises(RuleError, match="a fault answers one of SERVFAIL, REFUSED, NXDOMAIN"):
        Faults().respond("NOERROR")


TOML = """\
# the primary fails the first REGISTERs, then is busy
[[rule]]
action = "drop"
method = "REGISTER"
first = 4

[[rule]]
action = "respond"
method = "INVITE"
status = 503
after = 10.0
headers = { "Retry-After" = "30" }

[[rule]]
action = "silent"
transport = "tcp"
"""


def test_a_toml_file_loads_in_order_and_dumps_back_to_the_same_rules(tmp_path):
    rules = load_rules(TOML, source="primary.toml")
    assert rules == [Rule(Action.DROP, method="REGISTER", first=4),
                     Rule(Action.RESPOND, method="INVITE", status=503, after=10.0, headers={"Retry-After": "30"}),
                     Rule(Action.DROP, transport="tcp")]
    s = Script()
    s.load(TOML, source="primary.toml")
    assert s.describe()[0] == "rule 1 drop REGISTER first=4"
    text = s.dump()
    assert tomllib.loads(text)["rule"][1]["headers"] == {"Retry-After": "30"}
    assert load_rules(text) == rules
    as_json = s.dump("json")
    assert json.loads(as_json)["rule"][0] == {"action": "drop", "method": "REGISTER", "first": 4}
    assert load_rules(as_json, format="json") == rules
    path = tmp_path / "faults.json"
    path.write_text(as_json)
    assert load_rules_file(str(path)) == rules


@pytest.mark.parametrize("text, where", [
    ("[[rule]]\naction = 'drop'\n\n[[rule]]\naction = 'drop'\nfirts = 4\n", "f.toml:4: rule 2: unknown field 'firts'"),
    ("[[rule]]\naction = 'respond'\nstatus = 999\n", "f.toml:1: rule 1: status must be a SIP status code"),
    ("[[rule]]\naction = 'truncate'\n", "f.toml:1: rule 1: truncate \\*: the fake sip has no verb truncate"),
    ("[[rule]\naction = 'drop'\n", "f.toml: not TOML"),
    ("[[rules]]\naction = 'drop'\n", "unknown top-level key 'rules'"),
    ("[[rule]]\nmethod = 'INVITE'\n", "f.toml:1: rule 1: no action"),
])
def test_file_errors_name_the_file_the_line_and_the_rule(text, where):
    with pytest.raises(RuleError, match=where):
        Script().load(text, source="f.toml")


def test_json_errors_and_handle_rules_stay_in_code():
    with pytest.raises(RuleError, match="f.json:1: not JSON"):
        load_rules("{", format="json", source="f.json")
    with pytest.raises(RuleError, match="f.json: rule 1: unknown field 'x'"):
        load_rules('{"rule": [{"action": "drop", "x": 1}]}', format="json", source="f.json")
    s = Script()
    s.handle("INVITE", lambda request: 486)
    with pytest.raises(RuleError, match="holds code and cannot be written"):
        s.dump()


_NAMES = st.sampled_from(["pbx.example.com", "_sip._udp.pbx.example.com", "a.b"])
_LIMITS = dict(first=st.none() | st.integers(1, 10**6), nth=st.none() | st.lists(st.integers(1, 99), min_size=1),
               from_nth=st.none() | st.integers(1, 99), count=st.none() | st.integers(1, 99),
               after=st.none() | st.floats(0, 1e6, allow_nan=False), transport=st.none() | st.sampled_from(["udp", "tcp"]),
               peer=st.none() | st.sampled_from(["127.0.0.1", "::1"]))


@settings(max_examples=200, deadline=None)
@given(sip=st.lists(st.one_of(
    st.builds(Rule, st.sampled_from(["drop", "answer", "refuse"]), method=st.none() | st.sampled_from(["INVITE", "REGISTER"]), **_LIMITS),
    st.builds(Rule, st.just("respond"), status=st.integers(100, 699), reason=st.none() | st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), min_size=1, max_size=20),
        headers=st.dictionaries(st.sampled_from(["Retry-After", "Warning", "X-A"]), st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=20), max_size=2),
        delay=st.floats(0, 100, allow_nan=False), **_LIMITS),
    st.builds(Rule, st.just("delay"), delay=st.floats(0.001, 100, allow_nan=False), **_LIMITS)), max_size=5),
    dns=st.lists(st.builds(Rule, st.sampled_from(["drop", "truncate", "refuse"]), name=st.none() | _NAMES,
                           qtype=st.none() | st.sampled_from(["A", "SRV", "NAPTR"]), **_LIMITS), max_size=5))
def test_any_rules_round_trip_through_toml_and_json(sip, dns):
    for rules in (sip, dns):
        for fmt in ("toml", "json"):
            assert load_rules(dump_rules(rules, format=fmt), format=fmt) == rules
