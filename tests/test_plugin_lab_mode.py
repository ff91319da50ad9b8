"""Lab mode (--lab-address): the fakes listen on the lab's addresses and the DNS on port 53, as a phone
on the network needs; a scenario needing more distinct addresses than given is skipped, not failed.

127.0.0.100-.101 stand for the lab host's addresses (loopback only, as every test here). Port 53
needs root (CI runs as root); one test function so that no two xdist workers bind it at once.
"""

import os

import pytest

from tests.test_plugin_reports import _run_suite

pytest_plugins = ["pytester"]

CHECK_LAB = '''
import pytest

@pytest.fixture(autouse=True)
def _lab_addresses_seen(lab):
    yield
    records = list(lab.recorder)
    dns = [r for r in records if r.kind == "dns"]
    sip = {r.local[0] for r in records if r.kind == "sip"}
    assert dns and all(r.local == ("127.0.0.100", 53) for r in dns), [r.local for r in dns]
    assert sip <= {"127.0.0.100", "127.0.0.101"}, sip
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="binding DNS port 53 needs root (CI runs as root)")
def test_lab_addresses_and_dns_port_53(pytester):
    two = _run_suite(pytester, "test_register_failover.py", CHECK_LAB, "--lab-address", "127.0.0.100,127.0.0.101")
    assert two.ret == 0, two.stdout.str()[-6000:]  # the inner run's report (ladder included) if it failed
    two.assert_outcomes(passed=1)
    # One address cannot hold the guide's example (two targets, one port): skipped with the reason.
    one = _run_suite(pytester, "test_combined_example.py", "", "--lab-address", "127.0.0.100", "-rs")
    one.assert_outcomes(skipped=2)
    one.stdout.fnmatch_lines(["*must sit on 2 different addresses*add addresses to --lab-address*"])
