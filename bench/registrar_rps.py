#!/usr/bin/env python3
"""REGISTER throughput of our fake registrar against Kamailio, with SIPp as the load (a script, not a test).

For each rate (rising), each server is started fresh (ours: ``python -m fakes.sip.cli
--quiet``; Kamailio: ``bench/kamailio-registrar.cfg``, in-memory usrloc, one child), SIPp
sends ``rate × seconds`` REGISTERs of unique users (``user[call_number]``,
``tests/sipp/register.xml``) at that rate, and the run is clean when every transaction got
its 200 (SIPp exit 0, no failed call) and the run kept the rate (done within 1.2 × planned + 0.5 s). Prints the highest clean
rate of each and the ratio ours / Kamailio. Same-box figures: compare the ratio, not the
absolutes (see /work/shared/PEERS.md). Ports are found free on 127.0.0.1; a server is
stopped by PID and waited for (SIGKILL after 10 s) before the next one starts.

    python3 bench/registrar_rps.py [--rates 500,1000,2000,4000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIO = os.path.join(ROOT, "tests", "sipp", "register.xml")
KAMAILIO_CFG = os.path.join(ROOT, "bench", "kamailio-registrar.cfg")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_ours() -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "fakes.sip.cli", "--listen", "udp:127.0.0.1:0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    line = proc.stdout.readline().decode()
    m = re.match(r"listening udp 127\.0\.0\.1:(\d+)", line)
    if not m:
        stop(proc)
        raise RuntimeError(f"our registrar did not start: {line!r}")
    return proc, int(m.group(1))


def start_kamailio() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(["kamailio", "-f", KAMAILIO_CFG, "-DD", "-E", "-n", "1", "-m", "2048", "-M", "16",
                             "-l", f"udp:127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # ready when it answers: one REGISTER through SIPp
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if run_sipp(port, rate=1, count=1, timeout=2)[0]:
            return proc, port
        if proc.poll() is not None:
            break
    stop(proc)
    raise RuntimeError("kamailio did not come up")


def run_sipp(port: int, *, rate: int, count: int, timeout: float) -> tuple[bool, int, int]:
    """(clean, successful, failed) of one SIPp run."""
    cmd = ["sipp", f"127.0.0.1:{port}", "-sf", SCENARIO, "-i", "127.0.0.1", "-p", str(free_port()),
           "-r", str(rate), "-m", str(count), "-l", str(max(100, rate * 4)), "-timeout", f"{int(timeout)}s",
           "-timeout_error", "-nostdin", "-buff_size", "4194304", "-max_recv_loops", "5000",
           "-max_sched_loops", "5000"]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout + 15, cwd="/tmp")
    except subprocess.TimeoutExpired:
        return False, 0, count
    out = p.stdout.decode(errors="replace")
    ok = re.findall(r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)", out)
    bad = re.findall(r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)", out)
    succ = int(ok[-1]) if ok else 0
    fail = int(bad[-1]) if bad else count - succ
    return p.returncode == 0 and succ == count and fail == 0, succ, fail


def measure(name: str, start, rates: list[int], seconds: float) -> int:
    best = 0
    for rate in rates:
        proc, port = start()
        try:
            t0 = time.monotonic()
            clean, succ, fail = run_sipp(port, rate=rate, count=int(rate * seconds), timeout=seconds * 3 + 5)
            took = time.monotonic() - t0
            # keeping up is part of clean: SIPp throttles (-l) when answers lag, so a slow
            # server shows up as a run that takes longer than planned, not as failures
            clean = clean and took <= seconds * 1.2 + 0.5
        finally:
            stop(proc)
        print(f"{name:<10} {rate:>6}/s × {seconds:g} s: {succ} ok, {fail} failed, {took:.1f} s "
              f"{'clean' if clean else 'NOT clean'}", flush=True)
        if not clean:
            break
        best = rate
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="250,500,1000,2000,3000,4000,6000,8000")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    for tool in ("sipp", "kamailio"):
        if not shutil.which(tool):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    ours = measure("ours", start_ours, rates, args.seconds)
    kam = measure("kamailio", start_kamailio, rates, args.seconds)
    ratio = ours / kam if kam else float("nan")
    print(f"highest clean rate: ours {ours}/s, kamailio {kam}/s (1 process each), ratio ours/kamailio = {ratio:.2f}"
          f" (target >= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
