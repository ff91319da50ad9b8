#!/usr/bin/env python3
"""REGISTER throughput of our fake registrar against Kamailio, same process count, SIPp as the load.

    python3 bench/registrar_rps.py [--processes 1,2] [--modes digest,plain] [--seconds 5]
                                   [--rates R1,R2,...] [--start 1000] [--servers ours,kamailio,floor,lane]

For each process count N and each mode, each server is measured in turn, started fresh for
every run:

- ours: N processes of ``sipharness registrar --quiet`` (fakes/sip/cli.py) sharing one UDP
  port (``--reuse-port N``, sipcore/reuseport.py: a client always meets the same worker,
  chosen by its source port). Every message is still parsed, answered through the
  registrar logic and recorded as a ``fakes.record.SipRecord``; ``--quiet`` only skips
  printing the JSON lines;
- Kamailio 5.6: ``bench/kamailio-registrar.cfg``, in-memory usrloc, ``-n N`` UDP workers;
- the floor (``bench/registrar_floor.py``, started by this script with ``--serve floor``): the
  least a registrar in Python on Twisted does per REGISTER (split the lines, check the
  digest, answer; no validation, no records, no retransmission memory), N processes on one
  port as ours. Its ratio to Kamailio is the ceiling any CPython registrar could print on
  this box: the yardstick that tells the platform's share of the gap from ours;
- the lane (``bench/registrar_lane.py``, ``--servers ...,lane``): the least a registrar that
  checks what ours checks (every header line against its grammar, the digest by sipcore's
  DigestServer) and keeps what ours keeps (retransmission memory, two records per message
  counted by a Tally) does, in one function: the ceiling of a redesign of our request path.

The load is N SIPp instances (one per worker, on consecutive source ports, at rate / N each):

- ``digest`` (the headline): every registration is REGISTER → 401 → REGISTER with MD5 digest
  credentials → 200 (SIPp 3.6 answers only MD5, so ours offers MD5 only, ``--digest MD5``;
  Kamailio checks them with ``pv_www_authenticate``). SIPp takes the digest user from ``-au``
  only, so each instance registers one user again and again (its binding refreshed);
- ``plain``: one REGISTER per registration, a new AOR each time (the bindings grow).

A run is clean when every SIPp instance exits 0 with every call successful (zero failed
transactions: a timeout counts as failed) and kept the rate (done within 1.2 × planned +
0.5 s: SIPp throttles when answers lag). An unclean run is tried once more (the box is shared:
other work on it can spoil one run) and the line says so. The rate search climbs ×1.5 from
``--start`` until a rate is unclean twice, then halves the gap twice, so each figure is the
highest clean rate within ~10 %; ``--rates`` gives the ladder instead. Rates are
registrations per second (SIPp calls/s; with digest each is two REGISTER transactions).

Each run also reads the server's CPU time (all its processes, /proc) and prints CPU µs per
registration: a figure that other load on the box moves far less than the highest clean rate.

Printed at the end, per process count and mode, for ours and each yardstick: the highest clean
rates of it and Kamailio and their ratio (ours / Kamailio: target >= 0.5 with digest), both CPU
costs and their ratio Kamailio / it.
Same-box figures: SIPp, the servers and whatever else runs share the cores; compare ratios
of one run, never absolutes across runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from registrar_cost import YARDSTICKS  # the yardsticks beside ours: name → module of bench/ with protocol()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = {"digest": os.path.join(ROOT, "bench", "sipp", "register_digest.xml"),
             "plain": os.path.join(ROOT, "bench", "sipp", "register.xml")}
KAMAILIO_CFG = os.path.join(ROOT, "bench", "kamailio-registrar.cfg")
PASSWORD = "secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    rate: int
    ok: int
    failed: int
    took: float
    clean: bool
    cpu_us: float  # server CPU µs per successful registration
    load: float  # 1-minute load average before the run
    retried: bool = False


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> int:
    """A base port b, b % n == 0, with b .. b+n-1 free for UDP on 127.0.0.1 (SIPp instance i
    then meets worker i of ours: sipcore.reuseport steers by source port modulo n)."""
    for _ in range(200):
        base = random.randrange(20000, 60000) // n * n
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free UDP ports")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server and every process it forked (its own session: Kamailio's children
    outlived a SIGKILL of the main PID and kept their port): TERM, 10 s, then KILL, and wait
    until the whole group is gone."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, signal.SIGKILL if time.monotonic() > deadline - 15 else 0)
        except ProcessLookupError:
            break
        proc.poll()
        time.sleep(0.1)
    proc.wait()


def cpu_seconds(pgids: list[int]) -> float:
    """utime + stime of every live process in the process groups ``pgids`` (/proc)."""
    total = 0
    want = set(pgids)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) in want:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


class Server:
    """A registrar under test: its processes, port and how to stop them."""

    def __init__(self, name: str, procs: list[subprocess.Popen], port: int):
        self.name, self.procs, self.port = name, procs, port

    def cpu(self) -> float:
        return cpu_seconds([p.pid for p in self.procs])

    def stop(self) -> None:
        for p in self.procs:
            stop(p)


def start_ours(n: int, mode: str) -> Server:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, "-m", "sipharness.fakes.sip.cli", "--listen", f"udp:127.0.0.1:{port}", "--quiet"]
    if n > 1:
        args += ["--reuse-port", str(n)]
    if mode == "digest":
        env["SIPHARNESS_USERS"] = "\n".join(f"u{i}:{PASSWORD}" for i in range(n))  # not on the command line
        args += ["--digest", "MD5"]
    # ready at its first JSON line, "listening" (fakes/jsonlines.py)
    return Server("ours", _workers(n, args, env, '"kind": "listening"', "our registrar"), port)


def _workers(n: int, args: list[str], env: dict[str, str] | None, ready: str, what: str) -> list[subprocess.Popen]:
    """``n`` processes of ``args``, started one after the other (worker i joins the port's
    group i-th), each ready when its first line holds ``ready``; all stopped if one fails."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
                                    start_new_session=True)
            procs.append(proc)
            line = proc.stdout.readline().decode()
            if ready not in line:
                raise RuntimeError(f"{what} did not start: {line!r}")
    except BaseException:
        for p in procs:
            stop(p)
        raise
    return procs


def start_kamailio(n: int, mode: str) -> Server:
    port = free_port()
    cmd = ["kamailio", "-f", KAMAILIO_CFG, "-DD", "-E", "-n", str(n), "-m", "2048", "-M", "16",
           "-l", f"udp:127.0.0.1:{port}"]
    if mode == "digest":
        cmd += ["-A", "WITH_AUTH"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    server = Server("kamailio", [proc], port)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # ready when it answers one registration
        if sipp_runs(port, mode, rate=1, count=1, instances=1, timeout=2)[0]:
            return server
        if proc.poll() is not None:
            break
    server.stop()
    raise RuntimeError("kamailio did not come up")




def _yardstick(name: str) -> Callable[[int, str], Server]:
    """The starter of yardstick ``name``: this script again with ``--serve NAME PORT``, one process
    per worker on one ``SO_REUSEPORT`` port as ours."""
    def start(n: int, mode: str) -> Server:
        port = free_port()
        args = [sys.executable, os.path.abspath(__file__), "--serve", name, str(port), "--serve-workers", str(n)]
        if mode == "digest":
            args += ["--serve-users", str(n)]
        return Server(name, _workers(n, args, None, "listening", f"the {name} registrar"), port)
    return start


def _serve(name: str, port: int, users: dict[str, str] | None, workers: int) -> None:
    """Yardstick ``name`` answering REGISTERs on 127.0.0.1:``port`` until killed (``users``: name →
    password for digest, None: no authentication; ``workers``: processes sharing the port, steered
    by source port as ours are, sipcore/reuseport.py). Prints one line when listening."""
    from twisted.internet import reactor

    from sipharness.sipcore.reuseport import ReusePortUdp

    registrar = importlib.import_module(YARDSTICKS[name]).protocol(users, reactor.seconds)
    ReusePortUdp(port, registrar, "127.0.0.1", 65535, reactor, workers).startListening()
    print(f"registrar_{name}: listening on udp 127.0.0.1:{port}", flush=True)
    reactor.run()


STARTERS = {"ours": start_ours, "kamailio": start_kamailio, **{name: _yardstick(name) for name in YARDSTICKS}}

# --------------------------------------------------------------------------- load


def sipp_runs(port: int, mode: str, *, rate: float, count: int, instances: int,
              timeout: float) -> tuple[bool, int, int]:
    """(clean, successful, failed) of ``instances`` SIPp processes sharing ``rate`` and ``count``."""
    base = free_ports(instances)
    procs = []
    for i in range(instances):
        cmd = ["sipp", f"127.0.0.1:{port}", "-sf", SCENARIOS[mode], "-i", "127.0.0.1", "-p", str(base + i),
               "-r", str(max(1, round(rate / instances))), "-rp", "1000",
               "-m", str(max(1, count // instances)), "-l", str(max(100, int(rate / instances * 4))),
               "-timeout", f"{int(timeout)}s", "-timeout_error", "-nostdin", "-buff_size", "4194304",
               "-max_recv_loops", "5000", "-max_sched_loops", "5000"]
        cmd += ["-s", f"u{i}", "-au", f"u{i}", "-ap", PASSWORD] if mode == "digest" else ["-s", f"i{i}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/tmp"))
    clean, succ, fail = True, 0, 0
    for i, p in enumerate(procs):
        want = max(1, count // instances)
        try:
            out = p.communicate(timeout=timeout + 15)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            clean, fail = False, fail + want
            continue
        ok = re.findall(r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)", out)
        bad = re.findall(r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)", out)
        s = int(ok[-1]) if ok else 0
        f = int(bad[-1]) if bad else want - s
        succ, fail = succ + s, fail + f
        clean = clean and p.returncode == 0 and s == want and f == 0
    return clean, succ, fail


def one_run(name: str, n: int, mode: str, rate: int, seconds: float) -> Run:
    load = os.getloadavg()[0]
    server = STARTERS[name](n, mode)
    try:
        c0 = server.cpu()
        t0 = time.monotonic()
        clean, succ, fail = sipp_runs(server.port, mode, rate=rate, count=int(rate * seconds), instances=n,
                                      timeout=seconds * 3 + 5)
        took = time.monotonic() - t0
        cpu = server.cpu() - c0
    finally:
        server.stop()
    # keeping up is part of clean: SIPp throttles (-l) when answers lag, so a slow server
    # shows up as a run that takes longer than planned, not as failures
    clean = clean and took <= seconds * 1.2 + 0.5
    return Run(rate, succ, fail, took, clean, cpu / max(succ, 1) * 1e6, load)


def measure(name: str, n: int, mode: str, rate: int, seconds: float) -> Run:
    run = one_run(name, n, mode, rate, seconds)
    if not run.clean:  # the box is shared: an unclean run is tried once more before it counts
        again = one_run(name, n, mode, rate, seconds)
        again.retried = True
        run = again
    retry = " (clean on the second try)" if run.retried and run.clean else (
        " (unclean twice)" if run.retried else "")
    print(f"{name:<9} N={n} {mode:<6} {rate:>6}/s × {seconds:g} s: {run.ok} ok, {run.failed} failed, "
          f"{run.took:.1f} s, {'clean' if run.clean else 'NOT clean'}{retry}  "
          f"server CPU {run.cpu_us:.0f} µs/registration  (load average {run.load:.1f})", flush=True)
    return run


def ceiling(name: str, n: int, mode: str, args: argparse.Namespace) -> tuple[Run | None, bool]:
    """(the highest clean run, whether some rate was unclean: False means the ceiling is higher)."""
    best: Run | None = None
    if args.rates:
        for rate in args.rates:
            run = measure(name, n, mode, rate, args.seconds)
            if not run.clean:
                return best, True
            best = run
        return best, False
    lo, hi, rate = 0, None, args.start
    while rate <= args.max_rate:
        run = measure(name, n, mode, rate, args.seconds)
        if not run.clean:
            hi = rate
            break
        best, lo = run, rate
        rate = int(rate * 1.5)
    if hi is None:
        return best, False
    for _ in range(2):  # halve the gap twice: within ~10 %
        mid = (lo + hi) // 2
        if lo and (hi - lo) / lo < 0.12:
            break
        run = measure(name, n, mode, mid, args.seconds)
        if run.clean:
            best, lo = run, mid
        else:
            hi = mid
    return best, True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", default="1,2", help="worker process counts, each server the same (default 1,2)")
    ap.add_argument("--modes", default="digest,plain", help="digest and/or plain (default both)")
    ap.add_argument("--seconds", type=float, default=5.0, help="load per run (default 5)")
    ap.add_argument("--rates", default="", help="a ladder of rates instead of the search (registrations/s)")
    ap.add_argument("--start", type=int, default=1000, help="first rate of the search (default 1000/s)")
    ap.add_argument("--max-rate", type=int, default=60000, help="the search stops there (default 60000/s)")
    ap.add_argument("--servers", default="ours,kamailio,floor",
                    help="which to measure: ours, kamailio (always, the reference), floor, lane "
                         "(default ours,kamailio,floor)")
    # how this script starts a yardstick (bench/registrar_floor.py, bench/registrar_lane.py) as a server of its own
    ap.add_argument("--serve", nargs=2, metavar=("NAME", "PORT"), help=argparse.SUPPRESS)
    ap.add_argument("--serve-workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--serve-users", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve is not None:
        users = {f"u{i}": PASSWORD for i in range(args.serve_users)} if args.serve_users else None
        _serve(args.serve[0], int(args.serve[1]), users, args.serve_workers)
        return 0
    servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    for x in servers:
        if x not in STARTERS:
            ap.error(f"--servers: {x!r} is not ours, kamailio, floor or lane")
    if "kamailio" not in servers:
        servers.append("kamailio")  # every ratio is against it, in the same run
    args.rates = [int(r) for r in args.rates.split(",") if r.strip()]
    counts = [int(n) for n in args.processes.split(",") if n.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in SCENARIOS:
            ap.error(f"--modes: {m!r} is not digest or plain")
    for tool in ("sipp", "kamailio"):
        if not shutil.which(tool):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    print(f"# registrar_rps: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python "
          f"{sys.version.split()[0]}; rates in registrations/s (digest: two REGISTER transactions each)", flush=True)
    results = []
    for n in counts:
        for mode in modes:
            results.append((n, mode, {name: ceiling(name, n, mode, args) for name in servers}))
    print(flush=True)
    for n, mode, found in results:
        kam, kam_top = found["kamailio"]
        k = kam.rate if kam else 0
        for name in servers:
            if name != "kamailio":
                print(_summary(n, mode, name, *found[name], kam, kam_top), flush=True)
        if len(servers) == 1:
            print(f"processes={n} {mode}: highest clean rate kamailio {'' if kam_top else '>= '}{k}/s", flush=True)
    return 0


def _summary(n: int, mode: str, name: str, run: Run | None, top: bool, kam: Run | None, kam_top: bool) -> str:
    """One line: the highest clean rates of ``name`` and Kamailio, their ratio and CPU costs."""
    o, k = (run.rate if run else 0), (kam.rate if kam else 0)
    ratio = f"{o / k:.2f}" if k else "n/a"
    bound = "" if top and kam_top else " (a bound: a server never failed)"
    cpu = (f"; server CPU per registration {name} {run.cpu_us:.0f} µs, kamailio {kam.cpu_us:.0f} µs, "
           f"kamailio/{name} = {kam.cpu_us / run.cpu_us:.2f}") if run and kam else ""
    target = {"ours": " (target >= 0.5)" if mode == "digest" else "",
              "floor": " (the ceiling of a Python registrar on Twisted here)",
              "lane": " (the ceiling of one that checks and records what ours does)"}.get(name, "")
    return (f"processes={n} {mode}: highest clean rate {name} {'' if top else '>= '}{o}/s, kamailio "
            f"{'' if kam_top else '>= '}{k}/s, ratio {name}/kamailio = {ratio}{target}{bound}{cpu}")


if __name__ == "__main__":
    sys.exit(main())
