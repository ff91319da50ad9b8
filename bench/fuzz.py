#!/usr/bin/env python3
"""Seeded mutation fuzzing of the fake DNS, the fake registrar and the bundled phone (issue 12).

    python3 bench/fuzz.py [--target dns|registrar|phone|all] [--inputs 1000000] [--seed 1]
                          [--check-every 10000] [--hang 1.0] [--show 3]

Each target gets ``--inputs`` mutated inputs (bit flips, interesting bytes, truncation,
insertion, deletion, duplication, splicing of two valid messages, hostile header values:
numbers thousands of digits long, non-UTF-8 bytes, control characters; for DNS also label
lengths of 63/64/0x40/0x80, compression pointers and pointer loops, odd section counts;
for SIP the RFC 4475 torture messages of tests/data/rfc4475 are seeds too). Every
``--check-every`` inputs a health check sends a valid request and expects the right answer.
Printed per target: inputs, uncaught exceptions, hangs, wrong answers (e.g. a 200 to a
REGISTER whose digest is wrong, a phone "registered" by a 2xx that grants 0 s), failed
health checks, the distinct classes with an example input each (and the file that owns the
failing code), RSS before (after the first ``--check-every`` inputs, so caches are warm)
and after, and the rate. Target: 0 / 0 / 0 and flat memory.

How the targets are driven, and why: in process, through the same entry points their sockets
use (the fake DNS's query path ``FakeDNS._handle``; the fake SIP server's transport handler
``sip_received`` / ``sip_bad_input`` after ``sipcore.parser.parse``, exactly what
``sipcore.transport`` does with a datagram; the phone's ``UserAgent.sip_received`` behind an
in-memory wire), on a ``task.Clock`` advanced a little after every input so timers
(retransmissions, refreshes, expiries) fire too. A loopback socket adds only the kernel and
Twisted's reactor, which no input can reach differently, costs ~100× per input (10^6 inputs
would take hours on this box) and turns an exception into a log line far from its input;
in process, an exception surfaces with its input and its traceback, and a hang stops the run
at the input that caused it (a SIGALRM watchdog, bench only). The adapters' own socket
paths (TCP framing, connection caps) are tested with real sockets in tests/.

The same engine runs 10^4 inputs per target in the test suite (tests/test_fuzz.py),
deterministic by seed.
"""


from __future__ import annotations

import argparse
import gc
import os
import random
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the fuzz_*.py beside this file

from fuzz_core import ROOT, Mutator, Target  # noqa: E402
from fuzz_dns import DnsTarget  # noqa: E402
from fuzz_phone import PhoneTarget  # noqa: E402
from fuzz_sip import RegistrarTarget  # noqa: E402

__all__ = ["Finding", "Report", "run", "TARGETS", "owner_of"]

# -- where a defect is (for the report: the role folder of the file it was raised in) -----------------


def owner_of(path: str) -> str:
    """The part of the project a file belongs to: ``fakes/sip``, ``fakes/dns``, ``phone``, ``sipcore`` …"""
    parts = path.replace(os.sep, "/").split("/")
    for i, part in enumerate(parts):
        if part in ("fakes",) and i + 2 < len(parts):
            return f"{part}/{parts[i + 1]}"
        if part in ("sipcore", "fakes", "phone", "harness"):
            return part
    return "?"


# -- findings and reports ----------------------------------------------------------------------

@dataclass
class Finding:
    """One class of defect: ``kind`` (exception, hang, wrong, health), ``key`` (what identifies
    the class: exception type and the innermost project frame, or the wrong answer's rule),
    ``owner`` (the part of the project the defect is in), a count and the first input that showed it."""

    kind: str
    key: str
    owner: str
    count: int = 0
    example: bytes = b""
    detail: str = ""


@dataclass
class Report:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    rss_before: int = 0
    rss_after: int = 0
    health_checks: int = 0
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(f.count for f in self.findings.values() if f.kind == kind)

    def add(self, kind: str, key: str, owner: str, data: bytes, detail: str = "") -> None:
        f = self.findings.get((kind, key))
        if f is None:
            f = self.findings[(kind, key)] = Finding(kind, key, owner, 0, bytes(data[:4096]), detail)
        f.count += 1

    def text(self, show: int = 3) -> str:
        rate = self.inputs / self.seconds if self.seconds else 0.0
        lines = [f"{self.target}: {self.inputs} inputs in {self.seconds:.0f} s ({rate:.0f}/s); "
                 f"uncaught exceptions {self.count('exception')}, hangs {self.count('hang')}, "
                 f"wrong answers {self.count('wrong')}, failed health checks {self.count('health')} "
                 f"of {self.health_checks}; RSS {self.rss_before / 2**20:.1f} MB -> {self.rss_after / 2**20:.1f} MB"
                 f" ({(self.rss_after - self.rss_before) / 2**20:+.1f} MB)"]
        if self.sizes:
            lines.append("  kept at the end: " + ", ".join(f"{k} {v}" for k, v in self.sizes.items()))
        for f in sorted(self.findings.values(), key=lambda f: (f.kind, -f.count)):
            lines.append(f"  {f.kind} x{f.count} [{f.owner}] {f.key}")
            if f.detail:
                lines.append(f"      {f.detail[:300]}")
            for i in range(0, min(len(f.example), 120 * show), 120):
                lines.append(f"      input: {f.example[i:i + 120]!r}")
        return "\n".join(lines)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_PARSERS = re.compile(r"sipcore/(message|parser|fields|via|nameaddr|headers|uri|digest)\.py$")


def _where(exc: BaseException) -> str:
    """``path:line function`` of the innermost frame in this project (else the innermost). A
    parse error (ValueError) raised on purpose by the SIP parser is the caller's defect: the
    frame named is the innermost one outside the parser (the code that let it escape)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if str(ROOT) in f.filename and "/bench/fuzz" not in f.filename]
    if isinstance(exc, ValueError):
        callers = [f for f in mine if not _PARSERS.search(f.filename.replace(os.sep, "/"))]
        mine = callers or mine
    f = (mine or frames or [None])[-1]
    if f is None:
        return "?"
    return f"{os.path.relpath(f.filename, ROOT)}:{f.lineno} {f.name}"


class Hang(Exception):
    """Raised by the watchdog in the middle of an input that took too long."""


TARGETS: dict[str, type[Target]] = {"dns": DnsTarget, "registrar": RegistrarTarget, "phone": PhoneTarget}


# -- the driver ----------------------------------------------------------------------------------

def run(target_name: str, inputs: int, *, seed: int = 1, check_every: int = 10_000, hang: float = 1.0,
        watchdog: bool = False, progress: Callable[[str], None] | None = None) -> Report:
    """Fuzz one target with ``inputs`` inputs; ``watchdog`` arms SIGALRM to break a hang (main
    thread only; off under pytest, whose timeout plugin owns SIGALRM)."""
    rng = random.Random(seed)
    report = Report(target_name)
    target = TARGETS[target_name](random.Random(rng.random()), report)
    mutator = Mutator(random.Random(rng.random()), target.kind)
    if watchdog:
        def on_alarm(signum: int, frame: Any) -> None:
            raise Hang(f"an input ran for more than {10 * hang:.0f} s")
        signal.signal(signal.SIGALRM, on_alarm)
    gc.collect()
    report.rss_before = rss()
    start = time.perf_counter()
    for i in range(1, inputs + 1):
        data = mutator.mutate(target.seeds)
        t0 = time.perf_counter()
        if watchdog:
            signal.setitimer(signal.ITIMER_REAL, 10 * hang)
        try:
            target.feed(data)
        except Hang as e:
            report.add("hang", "watchdog", "?", data, str(e))
        except Exception as e:  # noqa: BLE001 - every uncaught exception is the finding
            where = _where(e)
            report.add("exception", f"{type(e).__name__} at {where}", owner_of(where.split(":")[0]), data,
                       f"{type(e).__name__}: {str(e)[:200]}")
        finally:
            if watchdog:
                signal.setitimer(signal.ITIMER_REAL, 0)
        spent = time.perf_counter() - t0
        if spent > hang:
            report.add("hang", f"an input took {spent:.1f} s (> {hang} s)", "?", data)
        if i % check_every == 0 or i == inputs:
            report.health_checks += 1
            try:
                why = target.health()
            except Exception as e:  # noqa: BLE001
                why = f"{type(e).__name__} at {_where(e)}: {e}"
            if why:
                report.add("health", why[:120], "?", data)
            if i == check_every and inputs > check_every:
                gc.collect()
                report.rss_before = rss()  # warm: caches and seeds are full from here on
            if progress:
                progress(f"{target_name}: {i}/{inputs} inputs, {report.count('exception')} exceptions, "
                         f"{report.count('hang')} hangs, {report.count('wrong')} wrong, "
                         f"RSS {rss() / 2**20:.1f} MB")
    report.inputs = inputs
    report.seconds = time.perf_counter() - start
    gc.collect()
    report.rss_after = rss()
    report.sizes = target.sizes()
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target (default 10^6)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check-every", type=int, default=10_000, help="health check period in inputs (default 10^4)")
    ap.add_argument("--hang", type=float, default=1.0, help="seconds an input may take (default 1)")
    ap.add_argument("--show", type=int, default=3, help="lines of each example input to print")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    if args.target == "all":  # one process per target: each RSS is its own
        import subprocess
        rc = 0
        for name in TARGETS:
            rc |= subprocess.call([sys.executable, __file__, "--target", name, "--inputs", str(args.inputs),
                                   "--seed", str(args.seed), "--check-every", str(args.check_every),
                                   "--hang", str(args.hang), "--show", str(args.show)]
                                  + (["--quiet"] if args.quiet else []))
        return rc
    report = run(args.target, args.inputs, seed=args.seed, check_every=args.check_every, hang=args.hang,
                 watchdog=True, progress=None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True)))
    print(report.text(args.show), flush=True)
    clean = not any(f.kind in ("exception", "hang", "wrong", "health") for f in report.findings.values())
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
