"""Every benchmark in bench/ still runs (issue 16): each script, at a tiny size, prints its figures.

A benchmark nobody runs rots: bench/phone_scale.py once crashed at start for weeks because
a fake's internals moved. Here each script runs in a subprocess exactly as a user starts it,
with a size small enough for seconds, against the real peers it needs (dnsperf, SIPp,
Kamailio: skipped when absent, a failure under ``SIPHARNESS_REQUIRE_PEERS=1``), and must
exit 0 and print the lines a user reads. The figures themselves are never asserted: speed is
measured by the benchmarks, not by tests. A new script in bench/ without a tiny run here
fails :func:`test_every_script_in_bench_has_a_tiny_run`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_peer

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ONE_SUITE_TEST = "test_failover_inside_server1_comes_before_fallback"  # one short scenario of suites/
NUMBER = r"[0-9]+(?:\.[0-9]+)?"

# script → (tiny arguments, lines the user reads (regexes, each must match a line), real peers needed)
TINY: dict[str, tuple[list[str], list[str], list[str]]] = {
    "dns_qps.py": (["--seconds", "1"],
                   [rf"ours \(fakes\.dns\)\s+{NUMBER} qps", rf"ours / dnslib DNSServer\s+{NUMBER}x",
                    rf"ours / twisted\.names\s+{NUMBER}x"], ["dnsperf"]),
    "fuzz.py": (["--inputs", "100", "--check-every", "50", "--quiet"],
                [rf"{target}: 100 inputs .* uncaught exceptions {NUMBER}, hangs {NUMBER}, wrong answers {NUMBER}.*RSS"
                 for target in ("dns", "registrar", "phone")], []),
    "phone_scale.py": (["--phones", "20", "--primary", "refused", "--settle", "0.5"],
                       [r"phones=\s+20\s+all registered\s+wall=", rf"phones=\s+20\s+RSS/phone={NUMBER} KiB"], []),
    "registrar_cost.py": (["--registrations", "50", "--rounds", "1", "--floor", "--lane"],
                          [rf"registrar_cost: cpu={NUMBER} µs per registration",
                           rf"registrar_cost: floor cpu={NUMBER} µs per registration; ours / floor = {NUMBER}",
                           rf"registrar_cost: lane cpu={NUMBER} µs per registration; ours / lane = {NUMBER}; "
                           rf"lane / floor = {NUMBER}"], []),
    "registrar_rps.py": (["--processes", "1", "--modes", "digest", "--rates", "100", "--seconds", "0.5",
                          "--servers", "ours,kamailio,floor,lane"],
                         [rf"processes=1 digest: highest clean rate ours .*{NUMBER}/s, kamailio .*{NUMBER}/s, "
                          rf"ratio ours/kamailio = {NUMBER}", rf"server CPU per registration ours {NUMBER} µs",
                          rf"processes=1 digest: highest clean rate floor .*{NUMBER}/s, .*ratio floor/kamailio = {NUMBER}",
                          rf"processes=1 digest: highest clean rate lane .*{NUMBER}/s, .*ratio lane/kamailio = {NUMBER}"],
                         ["sipp", "kamailio"]),
    "soak.py": (["--runs", "1", "--workers", "1", "--", "-k", ONE_SUITE_TEST],
                [r"soak: workers=1 runs=1 failed runs=\d+", r"soak: flakes=\d+"], []),
    "suite_time.py": (["--", "-k", ONE_SUITE_TEST],
                      [rf"suite_time: workers=1 clock=virtual wall={NUMBER} s phone=\d+ s over 1 tests"], []),
    "storm.py": (["--phones", "6", "--servers", "fake,kamailio", "--deaths", "killed", "--failback", "0",
                  "--expires", "2", "--rate", "100", "--grace", "20", "--settle", "0.2", "--watch", "0"],
                 [r"server\s+death\s+fb\s+phones.*50%\s+95%\s+100%\s+peak REG/s",
                  rf"fake\s+killed\s+0\s+6\s+1\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\d+",
                  rf"kamailio\s+killed\s+0\s+6\s+1\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\d+"], ["kamailio"]),
}


def _scripts() -> set[str]:
    """The runnable scripts of bench/ (the modules they import have no ``__main__`` block)."""
    return {p.name for p in BENCH.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()}


def test_every_script_in_bench_has_a_tiny_run():
    assert _scripts() == set(TINY), "give each bench/ script a tiny run in tests/test_bench_smoke.py"


@pytest.mark.parametrize("script", sorted(TINY))
def test_the_script_runs_small_and_prints_its_figures(script):
    args, figures, peers = TINY[script]
    for program in peers:
        require_peer(program)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH, env=env, capture_output=True,
                          text=True, timeout=180)
    out = proc.stdout
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{out[-2000:]}\n{proc.stderr[-3000:]}"
    missing = [f for f in figures if not re.search(f, out, re.M)]
    assert not missing, f"{script} did not print {missing}:\n{out[-3000:]}\n{proc.stderr[-2000:]}"


def test_registrar_cost_breakdown_names_every_stage():
    """The per-stage budget of a registration (issue 16's measure for the next change) still runs."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(BENCH / "registrar_cost.py"), "--breakdown", "--registrations", "50"],
                          cwd=BENCH, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("parse", "logic", "digest", "records", "recorder", "send", "the rest", "total"):
        assert re.search(rf"^registrar_cost: {stage}\s+{NUMBER} µs \(\s*{NUMBER} %\)", proc.stdout, re.M), \
            f"no {stage!r} line in:\n{proc.stdout}"
