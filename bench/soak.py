"""Flake count of the conformance suites over K runs, serial and with ``-n 2`` (issue 6).

    python bench/soak.py [--runs 20] [--workers 1,2] [-- extra pytest args, e.g. -k NAME]

Each run is ``pytest suites/``; a run with any failure counts, and the failing test ids are
listed so a flake can be chased. Target: 0 flakes. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

from suite_time import run_suites

FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--workers", default="1,2", help="comma-separated xdist worker counts (default 1,2)")
    ap.add_argument("extra", nargs="*", help="extra pytest arguments (after --), e.g. -k to soak a few tests")
    args = ap.parse_args(argv)
    total_flaky = 0
    for workers in [int(w) for w in args.workers.split(",")]:
        failing: Counter[str] = Counter()
        bad_runs, walls = 0, []
        for i in range(args.runs):
            r = run_suites(workers, "virtual", ["-rfE", *args.extra])
            walls.append(r["wall"])
            ids = FAILED.findall(r["output"])
            if r["rc"] != 0:
                bad_runs += 1
                failing.update(ids or [f"<run {i + 1}: exit {r['rc']}>"])
            print(f"soak: workers={workers} run {i + 1}/{args.runs}: {r['outcome']} in {r['wall']:.1f} s", flush=True)
        total_flaky += bad_runs
        print(f"soak: workers={workers} runs={args.runs} failed runs={bad_runs} "
              f"wall min/max={min(walls):.1f}/{max(walls):.1f} s")
        for test, n in failing.most_common():
            print(f"soak:   {n}x {test}")
    print(f"soak: flakes={total_flaky} (target 0)")
    return 0 if total_flaky == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
