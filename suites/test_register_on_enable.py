"""ROE: register_on_enable 1 — REGISTER with the secondary before sending it the request (SPEC §5)."""

import pytest
import pytest_twisted

from sipharness.harness.assertions import attempts
from sipharness.harness.lab import Domain

PASSAGE = ("account.x.sip_server.y.register_on_enable: Enables or disables the IP phone to register to the secondary "
           "server before sending requests to the secondary server in the failover mode.")


@pytest.mark.scenario("ROE", PASSAGE)
@pytest.mark.parametrize("register_on_enable", [1, 0])
@pytest_twisted.ensureDeferred
async def test_register_before_invite_to_secondary(lab, register_on_enable):
    topo = await lab.up(Domain(("primary", "secondary")),
                        account={"sip_server.1.register_on_enable": register_on_enable})
    await lab.dut.wait_registered(account=1, timeout=30)
    assert not attempts(lab.recorder, "REGISTER", "secondary"), "registered with the secondary while the primary works"
    topo["primary"].script.silent("INVITE")
    mark = len(lab.recorder)
    await lab.call(topo.uri("2000"))
    seen = [r for r in lab.recorder.entries(since=mark)
            if r.server == "secondary" and r.direction == "in" and r.method in ("REGISTER", "INVITE")]
    order = [r.method for r in seen]
    assert "INVITE" in order, "the INVITE never reached the secondary"
    if register_on_enable:
        assert "REGISTER" in order and order.index("REGISTER") < order.index("INVITE"), \
            f"register_on_enable 1: expected a REGISTER to the secondary before the INVITE; saw {order}"
        reg_ok = [r for r in lab.recorder.entries(since=mark) if r.server == "secondary" and r.direction == "out"
                  and r.method == "REGISTER" and r.status == 200]
        invite = next(r for r in seen if r.method == "INVITE")
        assert reg_ok and reg_ok[0].time <= invite.time, "the INVITE went before the REGISTER's 200 OK"
    else:
        assert order[0] == "INVITE", f"register_on_enable 0: the INVITE must go straight to the secondary; saw {order}"
