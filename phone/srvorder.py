"""The order of one SRV answer's records (SPEC §2): priority, then the guide's weight rule.

- Priority ascending [RFC 2782].
- ``srv_select = seed`` (default): equal priority → heavier weight first [seed: "The preference
  is from highest to lowest"]; equal priority **and** equal weight → an order drawn at random
  for each resolution [seed: "Again, keep the same to load balance"; SPEC §2 revised
  2026-12-01: it was the order of the answer, so a fleet of phones all went to the host the
  DNS server happened to list first]. The draw comes from the injected ``rng``: a seeded one
  makes a test exact.
- ``srv_select = rfc2782``: RFC 2782's weighted random order within a priority [RFC].

Only the first ``limit`` records are drawn with care (the plan uses that many, SPEC §2
[interp]); the rest follow in any order, so a hostile answer of thousands costs little.
"""

from __future__ import annotations

import random as _random

from sipharness.phone.dnsrecords import Srv

__all__ = ["order_srv", "SRV_SELECT"]

SRV_SELECT = ("seed", "rfc2782")


def order_srv(records: list[Srv], srv_select: str, rng: _random.Random, limit: int) -> list[Srv]:
    """``records`` in the order the phone tries their targets."""
    by_prio: dict[int, list[Srv]] = {}
    for r in records:
        by_prio.setdefault(r.priority, []).append(r)
    out: list[Srv] = []
    for prio in sorted(by_prio):  # SPEC §2: priority ascending
        if len(out) >= limit:
            out.extend(by_prio[prio])  # past the limit: order does not matter (the plan cuts them)
            continue
        group = by_prio[prio]
        if srv_select == "seed":
            out.extend(_seed_order(group, rng))
        else:
            out.extend(_rfc2782_order(group, rng, limit))
    return out


def _seed_order(group: list[Srv], rng: _random.Random) -> list[Srv]:
    """One priority group in the guide's order: heavier weight first [seed]; records of equal
    weight in an order drawn from ``rng`` for this resolution [seed: "keep the same to load
    balance"; SPEC §2 revised 2026-12-01: it was the answer's order, so a fleet of phones all
    went to the host the DNS server listed first]."""
    by_weight: dict[int, list[Srv]] = {}
    for r in group:
        by_weight.setdefault(r.weight, []).append(r)
    out: list[Srv] = []
    for weight in sorted(by_weight, reverse=True):
        same = by_weight[weight]
        if len(same) > 1:
            rng.shuffle(same)
        out.extend(same)
    return out


def _rfc2782_order(group: list[Srv], rng: _random.Random, limit: int) -> list[Srv]:
    """RFC 2782 weighted random order of one priority group (zero weights first in the list);
    the first ``limit`` picks are drawn, the rest follow as they are (they will be cut)."""
    pool = [r for r in group if r.weight == 0] + [r for r in group if r.weight != 0]
    out = []
    while pool and len(out) < limit:
        total = sum(r.weight for r in pool)
        pick = rng.randint(0, total)
        running = 0
        for i, r in enumerate(pool):
            running += r.weight
            if running >= pick:
                out.append(pool.pop(i))
                break
    return out + pool
