"""REG-FO: REGISTER failover, failback newRequests, register_on_enable 0 (SPEC §5, guide "REGISTER Failover")."""

import pytest
import pytest_twisted

from sipharness.harness.assertions import expect_attempts, expect_times
from sipharness.harness.lab import Domain

PASSAGE = ("The phone sends REGISTER request to the primary server. The phone retries REGISTER requests to the "
           "primary server (three times by default). After no response from the primary server, the phone sends a "
           "REGISTER request to the secondary server. The secondary server responds with 200 OK")


@pytest.mark.scenario("REG-FO", PASSAGE)
@pytest_twisted.ensureDeferred
async def test_register_fails_over_to_secondary_then_next_register_to_primary(lab):
    topo = await lab.up(Domain(("primary", "secondary")), account={"sip_server.1.expires": 3600},
                        start=False)
    topo["primary"].script.silent()
    await lab.dut.start()
    ok = await topo["secondary"].wait_for("REGISTER", direction="out", status=200, timeout=60)
    sends = expect_attempts(lab.recorder, "REGISTER", "primary", 4, then="secondary")
    expect_times(sends, [0.0, 0.5, 1.5, 3.5], origin=sends[0].time, tolerance=lab.tolerance)
    assert ok.time - sends[0].time == pytest.approx(7.5, abs=lab.tolerance.absolute)
    await lab.dut.wait_registered(account=1, timeout=10)
