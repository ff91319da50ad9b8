"""Wall time of the conformance suites against the phone time they cover (issue 6).

    python bench/suite_time.py [-n 2] [--clock virtual] [-- extra pytest args]

Runs ``pytest suites/`` in a subprocess, reads the plugin's summary line ("sipharness: N tests
covered S s of phone time") and prints wall time, phone time and their ratio: the speed-up
the virtual clock (SPEC §9) buys over running the same scenarios in real time. Target: the
whole suite in <= 60 s of wall time on a 2-core machine. A benchmark, not a test: it asserts
nothing and only reports.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"sipharness: (\d+) tests covered ([\d.]+) s of phone time")
OUTCOME = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?)")


def run_suites(workers: int, clock: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pytest", "suites/", "-q", "-p", "no:randomly", f"--clock={clock}"]
    if workers > 1:
        cmd += ["-n", str(workers)]
    cmd += extra
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    m = SUMMARY.search(out)
    last = [line for line in out.splitlines() if OUTCOME.search(line)]
    return {"wall": wall, "rc": proc.returncode, "tests": int(m.group(1)) if m else 0,
            "phone": float(m.group(2)) if m else 0.0, "outcome": last[-1].strip("= ") if last else "?",
            "output": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1, help="pytest-xdist workers (default 1)")
    ap.add_argument("--clock", default="virtual")
    ap.add_argument("extra", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args(argv)
    r = run_suites(args.n, args.clock, args.extra)
    if not r["tests"]:
        print(r["output"][-3000:])
        print("suite_time: no phone-time summary line found (did the plugin load?)")
        return 1
    print(f"suite_time: {r['outcome']}")
    print(f"suite_time: workers={args.n} clock={args.clock} wall={r['wall']:.1f} s "
          f"phone={r['phone']:.0f} s over {r['tests']} tests  speed-up={r['phone'] / r['wall']:.0f}x "
          f"(target: wall <= 60 s: {'met' if r['wall'] <= 60 else 'NOT met'})")
    return 0 if r["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
