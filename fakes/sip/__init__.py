"""Scriptable fake SIP servers: registrar, proxy, UAS and the PBX-like mix of the three.

``FakeSipServer`` is the Twisted adapter; the decisions are sans-I/O (``pbx``, ``registrar``,
``proxy``, ``uas``, ``script``) and every message in and out lands in a shared
``fakes.record.Recorder``.
"""

from sipharness.fakes.sip.script import Decision, Rule, Script
from sipharness.fakes.sip.server import FakeSipServer

__all__ = ["FakeSipServer", "Script", "Rule", "Decision"]
