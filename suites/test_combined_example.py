"""COMBO: the guide's full example configuration, failover inside server 1 then fallback to server 2 (SPEC §6).

The guide's ``.cfg`` (suites/data/seed-example.cfg) is used as it is, with only its addresses
and ports mapped to the lab's (SPEC §8 on loopback: 192.168.1.15 → 127.0.0.15; yealink.pbx.com
resolves to 127.0.0.10 and 127.0.0.20) and the DNS server to use added at the top.
"""

import re
from pathlib import Path

import pytest
import pytest_twisted

from sipharness.harness.assertions import (attempts, expect_attempts, expect_gaps, expect_times, first_attempt,
                                           wait_registration)

SEED_CFG = (Path(__file__).parent / "data" / "seed-example.cfg").read_text(encoding="utf-8")
PASSAGE = ("Working Server: SIP Server 1 is configured with the domain name of the working server ... resolved to "
           "multiple SIP servers for failover purpose ... Fallback Server: SIP Server 2 is configured with the IP "
           "address of the fallback server. For example, 192.168.1.15.")


async def _seed_lab(lab):
    primary, secondary = await lab.same_port(["primary", "secondary"], "udp")
    fallback = await lab.server("fallback", "udp")
    port = primary.addresses["udp"][1]
    zone = (lab.soa("yealink.pbx.com")
            + f"@ IN A {primary.addresses['udp'][0]}\n@ IN A {secondary.addresses['udp'][0]}\n")
    dns = await lab.dns(zone)
    cfg = SEED_CFG
    cfg = cfg.replace("account.1.sip_server.1.port = 5060", f"account.1.sip_server.1.port = {port}")
    cfg = cfg.replace("account.1.sip_server.2.address = 192.168.1.15",
                      f"account.1.sip_server.2.address = {fallback.addresses['udp'][0]}")
    cfg = cfg.replace("account.1.sip_server.2.port = 5060",
                      f"account.1.sip_server.2.port = {fallback.addresses['udp'][1]}")
    head = lab.write_cfg(dns, {}).splitlines()[1:]  # the DNS server and listen port lines
    lines = cfg.splitlines()
    cfg = "\n".join(lines[:1] + head + lines[1:]) + "\n"
    assert not re.search(r"\b(62\.10\.1\.\d+|192\.168\.1\.15)\b", cfg), "an unmapped guide address is left"
    await lab.dut.apply_config(cfg)
    return {"primary": primary, "secondary": secondary, "fallback": fallback}


@pytest.mark.scenario("COMBO", PASSAGE)
@pytest_twisted.ensureDeferred
async def test_failover_inside_server1_comes_before_fallback(lab):
    s = await _seed_lab(lab)
    s["primary"].script.silent()
    await lab.dut.start()
    await wait_registration(lab.recorder, ("primary", "secondary"), 60)  # server 1 (SPEC §10: from the fakes' records)
    expect_attempts(lab.recorder, "REGISTER", "primary", 4, then="secondary")
    assert not attempts(lab.recorder, "REGISTER", "fallback"), "fell back to server 2 although the secondary answered"
    queries = [r.qtype for r in lab.recorder.dns(direction="in")]
    assert set(queries) <= {"A", "AAAA"}, f"explicit port with DNS-NAPTR must query A only (SPEC §2); saw {queries}"


@pytest.mark.scenario("COMBO", PASSAGE)
@pytest_twisted.ensureDeferred
async def test_whole_working_server_down_falls_back_then_returns(lab):
    s = await _seed_lab(lab)
    down = [s["primary"].script.silent(), s["secondary"].script.silent()]
    await lab.dut.start()
    fb = await wait_registration(lab.recorder, "fallback", 120)
    expect_attempts(lab.recorder, "REGISTER", "primary", 4, then="secondary")
    expect_attempts(lab.recorder, "REGISTER", "secondary", 4, then="fallback")
    first = first_attempt(lab.recorder, "REGISTER", "primary")  # the phone's own t = 0, whatever its boot took
    reg_fb = first_attempt(lab.recorder, "REGISTER", "fallback")
    expect_times([reg_fb], [15.0], origin=first.time, tolerance=lab.tolerance,
                 what="the REGISTER to the fallback server (1 + 3 to each of server 1's two targets)")
    assert fb.time >= reg_fb.time
    # Probes of server 1 every fallback.timeout = 120 s (the guide's value, in virtual time), primary first.
    probes = []
    for k in (1, 2):
        rec = await s["primary"].wait_for("REGISTER", count=4 * k + 1, timeout=400)
        probes.append(rec.time)
    expect_gaps(probes, 120, tolerance=lab.tolerance, what="probes of the working server")
    for rule, name in zip(down, ("primary", "secondary")):
        s[name].script.remove(rule)
    mark = len(lab.recorder)
    back = await wait_registration(lab.recorder, ("primary", "secondary"), 400, since=mark)
    assert back.time <= probes[-1] + 120 + 1e-6
