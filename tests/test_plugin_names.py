"""The plugin's names never break a user's own (issue 13): options are ``--sip-NAME`` with today's short
name as an alias only when free, fixtures have namespaced names with the short ones as aliases a user's
fixture overrides, and the installed packages are ``sipharness.*`` so a user's ``phone.py`` is the user's.

Each test runs pytest in a subprocess (pytester) on a small project of a user who knows nothing of us.
"""

from __future__ import annotations

from tests.user_project import INI

pytest_plugins = ["pytester"]


LAB_TEST = '''
import pytest_twisted

from sipharness.harness.lab import Address


@pytest_twisted.ensureDeferred
async def test_our_lab_still_works(sip_lab):
    await sip_lab.up(Address("fallback"))
    await sip_lab.dut.wait_registered(account=1, timeout=30)
'''


def test_a_conftest_with_its_own_dut_option_wins_and_ours_stays_as_sip_dut(pytester):
    pytester.makeini(INI)
    pytester.makeconftest('''
def pytest_addoption(parser):
    parser.addoption("--dut", default="toaster", help="the user's own device under test")
    parser.addoption("--clock", action="store_true", help="the user's own flag")
''')
    pytester.makepyfile(test_user=LAB_TEST + '''

def test_the_users_options_are_the_users(pytestconfig):
    assert pytestconfig.getoption("--dut") == "fridge"
    assert pytestconfig.getoption("dut") == "fridge" and pytestconfig.getoption("clock") is True
    assert pytestconfig.getoption("sipharness_dut") == "bundled"
    assert pytestconfig.getoption("sipharness_clock") == "virtual"
    assert pytestconfig.getoption("--ladder-dir") is None  # (a short name nobody took: still ours)
''')
    result = pytester.runpytest_subprocess("--dut", "fridge", "--clock", "--sip-dut", "bundled",
                                           "--sip-clock", "virtual")
    result.assert_outcomes(passed=2)
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert "the user's own device under test" in help_text and "--sip-dut=KIND" in help_text
    assert "--ladder-dir=DIR" in help_text and "same as --sip-ladder-dir" in help_text


def test_without_a_clash_the_short_names_are_aliases_of_the_same_option(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_user='''
def test_aliases(pytestconfig):
    assert pytestconfig.getoption("sipharness_dut") == "bundled"
    assert pytestconfig.getoption("sipharness_clock") == "real"
    assert pytestconfig.getoption("--clock") == "real"  # the alias reads the same destination
    assert pytestconfig.getoption("sipharness_report_mode") is True
''')
    result = pytester.runpytest_subprocess("--clock", "real", "--sip-report-mode")
    result.assert_outcomes(passed=1)
    bad = pytester.runpytest_subprocess("--sip-dut", "toaster")
    assert bad.ret == 4 and "--dut 'toaster': known kinds are" in bad.stderr.str()


def test_a_user_fixture_named_lab_overrides_the_alias_only(pytester):
    pytester.makeini(INI)
    pytester.makeconftest('''
import pytest


@pytest.fixture
def lab():
    return "the user's own lab"


@pytest.fixture
def dut():
    return "the user's own device"


@pytest.fixture
def tls_pki():
    return None  # the user's own: our lab must not take it
''')
    pytester.makepyfile(test_user=LAB_TEST + '''

def test_the_users_fixtures_are_the_users(lab, dut, tls_pki):
    assert (lab, dut, tls_pki) == ("the user's own lab", "the user's own device", None)
''')
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)


def test_a_user_can_override_the_factories(pytester):
    pytester.makeini(INI)
    pytester.makeconftest('''
import pytest


@pytest.fixture
def make_fake_dns(make_fake_dns):
    """The user's own factory: every fake DNS serves the user's zone on 127.0.0.54."""
    def make(*zones, **kw):
        kw.setdefault("host", "127.0.0.54")
        return make_fake_dns(*zones, **kw)
    return make


@pytest.fixture
def make_sip_lab(make_sip_lab):
    def make(**kw):
        lab = make_sip_lab(**kw)
        lab.made_by_the_user = True
        return lab
    return make
''')
    pytester.makepyfile(test_user='''
import dns.message
import dns.query


def test_fake_dns_comes_from_the_users_factory(fake_dns, sip_fake_dns):
    assert fake_dns is sip_fake_dns and fake_dns.address[0] == "127.0.0.54"


def test_lab_comes_from_the_users_factory(lab):
    assert lab.made_by_the_user
''')
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)


def test_a_users_phone_py_beside_the_tests_is_the_users(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(phone='WHO = "the user"\n', harness='WHO = "the user\'s harness"\n')
    pytester.makepyfile(test_user=LAB_TEST + '''

def test_imports():
    import harness
    import phone

    import sipharness.phone.phone

    assert (phone.WHO, harness.WHO) == ("the user", "the user's harness")
    assert sipharness.phone.phone.Phone.__module__ == "sipharness.phone.phone"
''')
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)
