"""The plugin's command-line options, namespaced so that they never clash with a user's own.

Why: the plugin is loaded into every pytest run of a virtualenv it is installed in (the
``pytest11`` entry point), beside the user's own conftest. A user's conftest that adds ``--dut``
or ``--clock`` for its own purpose must keep working, and so must ours.

The rule, for every option of the plugin and of the DUT kinds (:class:`harness.dut.DeviceUnderTest`
``.add_options(group)``, which keep calling ``group.addoption("--phone-ip", ...)``):

- it is registered as ``--sip-<name>`` with the destination ``sipharness_<name>``
  (``--dut`` → ``--sip-dut``, ``config.getoption("sipharness_dut")``); the code reads options by
  that destination only;
- the short name (``--dut``) is added as an alias of the same destination, but only when nobody
  else took it, and only after the initial conftests are loaded (:func:`add_aliases`, called
  from a ``pytest_load_initial_conftests`` wrapper), so a user's conftest defining ``--dut`` wins
  and ours stays reachable as ``--sip-dut``.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["PREFIX", "DEST_PREFIX", "dest_of", "NamespacedGroup", "add_aliases"]

PREFIX = "--sip-"
DEST_PREFIX = "sipharness_"


def dest_of(name: str) -> str:
    """The destination of an option of ours from its short name: ``--phone-ip`` → ``sipharness_phone_ip``."""
    return DEST_PREFIX + name.lstrip("-").replace("-", "_")


class NamespacedGroup:
    """An option group that registers ``--x`` as ``--sip-x`` (dest ``sipharness_x``) and keeps ``--x`` for later.

    Handed to the plugin's own registration and to each DUT kind's ``add_options(group)``."""

    def __init__(self, group: Any, pending: list[tuple[str, dict[str, Any]]]):
        self._group = group
        self._pending = pending  # (alias, attributes) to add once the initial conftests are loaded

    def addoption(self, *names: str, **attrs: Any) -> None:
        longs = [n for n in names if n.startswith("--")]
        if not longs:
            raise ValueError(f"option {names}: the plugin's options need a long name (--name)")
        base = longs[0][2:]
        attrs.setdefault("dest", dest_of(base))
        if attrs.get("action", "store") in ("store", "append"):
            attrs.setdefault("metavar", base.upper().replace("-", "_"))  # (not SIPHARNESS_DUT)
        self._group.addoption(PREFIX + base, **attrs)
        alias_attrs = dict(attrs)
        alias_attrs["help"] = f"same as {PREFIX}{base}" if attrs.get("help") != argparse.SUPPRESS else argparse.SUPPRESS
        for name in names:
            self._pending.append((name, alias_attrs))


def _taken(parser: Any) -> set[str]:
    """Every option string registered so far, in any group (pytest keeps them per group)."""
    return {n for group in getattr(parser, "_groups", ()) for opt in group.options for n in opt.names()}


def add_aliases(parser: Any, group: Any, pending: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Add each pending short name as an alias of its ``--sip-`` option, unless taken; → the names skipped.

    Checked before adding: pytest records an option's name → destination before argparse refuses a
    duplicate, so trying and catching the error would point the user's ``--dut`` at our destination."""
    taken = _taken(parser)
    skipped = []
    for name, attrs in pending:
        if name in taken:
            skipped.append(name)
            continue
        group.addoption(name, **attrs)
        taken.add(name)
    pending.clear()
    return skipped

