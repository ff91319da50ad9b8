"""How long a run takes, and where a long one is: estimates from a table of phone time per test.

Why: against a lab phone the clock is real (SPEC §9), and a whole pass costs about 40 minutes of
phone time per phone; a test may wait two minutes for a failback. A lab engineer must see, before
the run, what it will cost, and during it, that it moves. Both come from the phone time each
test covered in a reference run (the plugin records it as ``phone_time_s``), committed in
:mod:`harness.suite_times` per set of values (SPEC §9: the seed's values on the virtual clock,
the short ones on a real or scaled clock) and regenerated with
``python -m sipharness.harness.progress --junit REPORT.xml --values short|seed``.

No pytest here: :func:`estimate` and :func:`tick_line` are plain functions the plugin
(:mod:`harness.plugin_farm`) calls; a test missing from the table counts as the table's median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

__all__ = ["Estimate", "estimate", "expected", "base_nodeid", "phone_of", "tick_line", "values_of", "OVERHEAD_S", "main"]

#: wall seconds a test costs beyond its phone time: provisioning (AutoP, fetch, apply) and parking
#: on a lab phone; an emulated phone on loopback takes a fraction of a second.
OVERHEAD_S = {"lab": 8.0, "emulated": 0.5, "bundled": 0.05}


def values_of(clock_spec: str) -> str:
    """Which set of values the suites use on this clock (SPEC §9): ``seed`` (virtual) or ``short``."""
    return "seed" if clock_spec.startswith("virtual") else "short"


def _table(values: str) -> dict[str, float]:
    from . import suite_times

    return suite_times.PHONE_TIME.get(values, {})


def base_nodeid(nodeid: str, phone: str | None = None) -> str:
    """The test's id without a farm phone's parameter (``test_x[udp-phone2]`` → ``test_x[udp]``)."""
    nodeid = nodeid.split("@", 1)[0]  # (pytest-xdist's loadgroup suffix)
    if not phone or "[" not in nodeid:
        return nodeid
    head, _, params = nodeid.rpartition("[")
    parts = [p for p in params.rstrip("]").split("-") if p != phone]
    return f"{head}[{'-'.join(parts)}]" if parts else head


def phone_of(nodeid: str, phones: list[str]) -> str | None:
    """Which of the farm's ``phones`` a test id was parametrized with (None: none)."""
    params = nodeid.split("@", 1)[0].rpartition("[")[2].rstrip("]").split("-") if "[" in nodeid else []
    return next((p for p in params if p in phones), None)


def expected(nodeid: str, values: str) -> float | None:
    """The phone seconds ``nodeid`` covered in the reference run (None: not in the table)."""
    return _table(values).get(nodeid)


@dataclass(frozen=True)
class Estimate:
    tests: int
    phone_s: float
    wall_s: float
    unknown: int  # tests the table does not know (counted at its median)

    def line(self, clock_spec: str, who: str = "") -> str:
        mins = self.wall_s / 60
        wall = f"{self.wall_s:.0f} s" if self.wall_s < 120 else f"{mins:.0f} min"
        extra = f" ({self.unknown} not in harness/suite_times.py, counted at its median)" if self.unknown else ""
        return (f"sipharness: {self.tests} selected tests{who} cover about {self.phone_s:.0f} s of phone time: "
                f"about {wall} of wall time on a {clock_spec} clock{extra}")


def estimate(nodeids: Iterable[str], *, clock_spec: str, speed: float, kind: str) -> Estimate:
    """The phone time and wall time of ``nodeids`` on this clock (``kind``: lab, emulated or bundled)."""
    table = _table(values_of(clock_spec))
    median = statistics.median(table.values()) if table else 30.0
    ids = list(nodeids)
    known = [table[n] for n in ids if n in table]
    phone = sum(known) + median * (len(ids) - len(known))
    if clock_spec.startswith("virtual"):
        wall = len(ids) * OVERHEAD_S["bundled"]
    else:
        wall = phone / speed + len(ids) * OVERHEAD_S[kind]
    return Estimate(len(ids), phone, wall, len(ids) - len(known))


def tick_line(who: str, test: str, now: float, start: float, expect: float | None,
              waits: list[tuple[str, float | None]]) -> str:
    """One progress line: the test, its phone time of what it should take, and what it waits for."""
    spent = now - start
    of = f" of about {expect:.0f} s" if expect else ""
    line = f"sipharness progress{who}: {test}: phone time {spent:.0f} s{of}"
    if waits:
        what, until = waits[0]
        line += f"; waiting for {what}" + (f" (until t = {until - start:.0f} s)" if until is not None else "")
        if len(waits) > 1:
            line += f" (+{len(waits) - 1} more)"
    return line


# ---------------------------------------------------------------------------------------------- the table

def _from_junit(path: str) -> dict[str, float]:
    """nodeid → phone_time_s of every test a JUnit XML report covered (farm phones' parameters removed)."""
    out: dict[str, float] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "phone_time_s" not in props or case.find("skipped") is not None:
            continue
        file = (case.get("file") or case.get("classname", "").replace(".", "/") + ".py")
        name = case.get("name", "")
        phone = props.get("sipharness.phone")
        nodeid = base_nodeid(f"{file}::{name}", phone)
        out.setdefault(nodeid, float(props["phone_time_s"]))
    return out


def write_table(tables: dict[str, dict[str, float]], path: Path) -> None:
    lines = ['"""Phone seconds each suite test covered in a reference run, per set of values (SPEC §9).',
             "",
             "Generated by ``python -m sipharness.harness.progress --junit REPORT.xml --values short|seed``;",
             "read by :mod:`harness.progress` for the start-of-run estimate and the progress lines.",
             '"""', "", "PHONE_TIME: dict[str, dict[str, float]] = {"]
    for values in sorted(tables):
        lines.append(f"    {values!r}: {{")
        for nodeid, t in sorted(tables[values].items()):
            lines.append(f"        {nodeid!r}: {round(t, 1)},")
        lines.append("    },")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sipharness.harness.progress",
                                description="rewrite harness/suite_times.py from a JUnit XML report of a suite run")
    p.add_argument("--junit", required=True, help="the report (pytest --junitxml) of a run of suites/")
    p.add_argument("--values", required=True, choices=("short", "seed"),
                   help="short: a run on a real or scaled clock; seed: on the virtual clock")
    args = p.parse_args(argv)
    from . import suite_times

    tables = {k: dict(v) for k, v in suite_times.PHONE_TIME.items()}
    found = _from_junit(args.junit)
    if not found:
        print(f"{args.junit}: no testcase with a phone_time_s property", file=sys.stderr)
        return 2
    tables[args.values] = found
    path = Path(suite_times.__file__)
    write_table(tables, path)
    print(f"{path}: {len(found)} tests ({args.values}), {sum(found.values()):.0f} s of phone time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
