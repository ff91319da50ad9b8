"""RFC 3261 §17 transactions as sans-I/O state machines, with the SPEC §3 give-up window.

Why written by hand: the Python SIP stacks that exist either own the sockets and the clock
(so they cannot run on the SPEC §9 virtual clock, nor be fed a packet a fake crafted) or do
not implement the retry_counts rule of SPEC §3, which cuts a client transaction short after
``1 + N`` sends. Here every object is fed messages and the current time (``now``, a float in
phone seconds) and answers with a list of events; nothing here reads a clock or touches a
socket. Each object exposes ``deadline`` (when ``on_timer(now)`` must next be called, or None)
and :class:`TimerDriver` is the one place where that meets an ``IReactorTime``.

The package, by role (as twisted/names is laid out):

- ``states.py``: the states (:class:`TxState`), what a machine is fed, and one transition table
  per machine (RFC 3261 figures 5-8, as h11's ``_state.py`` keeps its tables);
- ``machine.py``: the events a machine answers with (:class:`Send`, :class:`Deliver`,
  :class:`TimedOut`, :class:`TransportFailed`, :class:`Terminated`) and the base that moves
  through a table and fires its named timers;
- ``client.py``: :class:`ClientTransaction` and the SPEC §3 schedule (:func:`send_offsets`,
  :func:`give_up_offset`);
- ``server.py``: :class:`ServerTransaction` and :class:`TwoXXRetransmitter` (the UAS core's 2xx);
- ``keys.py``: the RFC 3261 §17.1.3 / §17.2.3 keys; ``table.py``: :class:`TransactionTable`;
- ``driver.py``: :class:`TimerDriver`, the clock adapter.

Choices where RFC 3261 leaves room:

- A server INVITE transaction does not send 100 Trying by itself: the TU (a fake scripted to
  stay silent, or the phone) decides. A fake that must look alive sends 100 itself.
- On ``now`` past several timers at once, all due timers fire in time order in one call;
  when two fall on the same instant the give-up (B, F, H, the SPEC §3 window) wins over a
  retransmission, so "N = 3: give up at 7.5 s" never also sends a 5th time at 7.5 s.
- Timer D / K / I / J of 0 (reliable transports) terminate at once, in the same event list.

Import from the package (``from sipharness.sipcore.transaction import ClientTransaction``);
the modules are its layout, not its interface.
"""

from sipharness.sipcore.ids import MAGIC_COOKIE  # re-exported; its one home is sipcore.ids
from sipharness.sipcore.transaction.client import ClientTransaction, give_up_offset, send_offsets
from sipharness.sipcore.transaction.driver import TimerDriver
from sipharness.sipcore.transaction.keys import client_key, server_key
from sipharness.sipcore.transaction.machine import Deliver, Send, Terminated, TimedOut, TransportFailed
from sipharness.sipcore.transaction.server import ServerTransaction, TwoXXRetransmitter
from sipharness.sipcore.transaction.states import TransactionStateError, TxState
from sipharness.sipcore.transaction.table import TransactionTable

__all__ = [
    "TxState",
    "TransactionStateError",
    "Send",
    "Deliver",
    "TimedOut",
    "TransportFailed",
    "Terminated",
    "ClientTransaction",
    "ServerTransaction",
    "TwoXXRetransmitter",
    "TransactionTable",
    "TimerDriver",
    "send_offsets",
    "give_up_offset",
    "server_key",
    "client_key",
    "MAGIC_COOKIE",
]
