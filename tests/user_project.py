"""Pieces of a user's pytest project, for the tests that run one in a subprocess with ``pytester``.

``INI`` is the ``pytest.ini`` such a project gets (the default reactor, no cache, no random
order: the outcome counts are asserted). ``FAILOVER_TEST`` is the user test the ladder and pcap
tests read back: the primary of a two-host domain stays silent, so the phone sends its REGISTER
to it at 0 / 0.5 / 1.5 / 3.5 s (retry_counts 3) and registers on the secondary at 7.5 s; a
module that uses it imports ``pytest_twisted`` and ``sipharness.harness.lab.Domain``.
"""

INI = "[pytest]\naddopts = --reactor=default -p no:cacheprovider -p no:randomly\n"

FAILOVER_TEST = '''
@pytest_twisted.ensureDeferred
async def test_failover(sip_lab):
    topo = await sip_lab.up(Domain(("primary", "secondary")), start=False,
                            account={"sip_server.1.retry_counts": 3})
    topo["primary"].script.silent()
    await sip_lab.dut.start()
    await sip_lab.dut.wait_registered(account=1, timeout=60)
'''
