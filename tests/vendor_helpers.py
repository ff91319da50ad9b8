"""Helpers the vendor-phone tests share: a lab with an emulated phone, plain HTTP(S) GETs, process checks."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from sipharness.fakes.record import Recorder
from sipharness.harness.lab import Lab
from sipharness.harness.vendor import VendorPhone
from sipharness.harness.vendor_session import close_sessions
from sipharness.sipcore.clock import ScaledClock

SPEED = 20.0
FAST_REBOOT = ("--reboot-seconds", "0.2")  # the emulated phone's reboot, short for tests


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def get(url: str, *, user: str | None = "admin", password: str = "admin",
              bind: str = "127.0.0.1") -> tuple[int, str, dict]:
    """A plain GET (Basic auth if ``user``; any certificate): (status, body, headers)."""
    from twisted.web.client import Agent
    from twisted.web.http_headers import Headers

    from sipharness.harness.action_uri import _AnyCertificate, read_body

    headers = Headers()
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers.addRawHeader(b"authorization", f"Basic {token}".encode())
    agent = Agent(reactor, contextFactory=_AnyCertificate(), connectTimeout=5, bindAddress=(bind, 0))
    response = await agent.request(b"GET", url.encode(), headers)
    body = (await read_body(response)).decode()
    return response.code, body, {k.decode().lower(): [x.decode() for x in v] for k, v in response.headers.getAllRawHeaders()}


def make_vendor_lab(tls_pki, **kw):
    """(lab, dut) on a scaled clock with an emulated vendor phone (its reboot short)."""
    clock = ScaledClock(reactor, kw.pop("speed", SPEED))
    kw.setdefault("ca_pem", tls_pki.ca_pem)
    kw["emulation_args"] = FAST_REBOOT + tuple(kw.get("emulation_args", ()))
    dut = VendorPhone(clock, reactor=reactor, **kw)
    return Lab(clock, Recorder(clock), dut, reactor=reactor, tls=tls_pki), dut


@pytest.fixture
def make_lab(tls_pki):
    """make_lab(**VendorPhone kwargs) → (lab, dut); every lab made is taken down after the test, and every
    phone session of the process is closed."""
    made = []

    def make(**kw):
        lab, dut = make_vendor_lab(tls_pki, **kw)
        made.append(lab)
        return lab, dut

    yield make
    for lab in made:
        pytest_twisted.blockon(defer.ensureDeferred(lab.down()))
    pytest_twisted.blockon(defer.ensureDeferred(close_sessions()))
