"""Scriptable fake SIP servers: registrar, proxy, UAS and the PBX-like mix of the three.

``FakeSipServer`` (server.py) is the Twisted adapter; the decisions are sans-I/O: ``core``
(transactions, stateless answers, retransmissions, errors), ``state`` (up / blackhole /
refused / stopped and the socket operation of each change), ``recording`` (the record of
each message), ``pbx`` / ``registrar`` /
``proxy`` / ``uas`` (the roles), ``uac`` (calls the fake places), ``script`` (the
:mod:`fakes.rules` grammar in its SIP dialect), ``malformed`` (the answer to garbage).
Every message in and out lands in a shared ``fakes.record.Recorder``.
"""

from sipharness.fakes.rules import Action, Rule
from sipharness.fakes.sip.script import Script
from sipharness.fakes.sip.server import FakeSipServer
from sipharness.fakes.sip.uac import OutgoingCall, UacState

__all__ = ["FakeSipServer", "Script", "Rule", "Action", "OutgoingCall", "UacState"]
