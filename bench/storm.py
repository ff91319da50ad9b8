#!/usr/bin/env python3
"""The registration storm: N bundled phones registered to a primary lose it; how fast do they reach the secondary?

    python3 bench/storm.py [--phones 1000,10000,50000] [--servers kamailio,fake] [--deaths killed,silent]
                           [--failback 0,1,2,3] [--rate 1000] [--expires auto|S] [--per-worker 12500]
                           [--gateway SPEC ...]

What a run does, for each combination (server kind × death × failback mode × N):

1. A fake DNS (``sipharness dns``) serves ``_sip._udp.pbx.test``: SRV priority 0 → the primary,
   priority 1 → the secondary, both on 127.0.0.1 (two ports); A records with ``--ttl``.
   The primary and the secondary are both Kamailio (bench/kamailio-registrar.cfg,
   ``-A MAX_EXPIRES``) or both our fake registrar (``sipharness registrar --max-expires``),
   one process each, granting ``--expires`` seconds: the phones refresh at 90 % of it. By
   default (``auto``) just long enough that no phone refreshes before the death: every
   phone registers once, the death comes, and each phone's next refresh falls where its
   registration did, ``--rate`` phones a second: the storm at the secondary is the fleet's
   registration rate, compressed into N / rate seconds (a real fleet's, with expires 3600,
   spreads over the hour; what matters is whether the secondary takes it).
2. N bundled phones (``account.1.sip_server.1.address = pbx.test``, port 0: SRV; expires
   30, the smallest legal value; the failback mode of the row) are spread over worker
   processes with **execnet**, the engine under pytest-xdist: ``popen`` gateways on this
   host, at most ``--per-worker`` phones each (one descriptor per phone: a worker's
   RLIMIT_NOFILE holds them), or the gateways given with ``--gateway`` (execnet specs:
   ``popen``, ``ssh=user@labhost//python=python3``; repeat a spec for several processes on a
   host). Each worker runs bench/storm_worker.py. The fleet starts at ``--rate`` phones/s in
   all and registers with the primary.
3. Once every phone is registered, the primary dies: ``killed`` (SIGKILL: its port is
   closed, the kernel answers ICMP port unreachable, SPEC §3 gives the target up at once) or
   ``silent`` (SIGSTOP: nothing answers, each phone gives it up after 7.5 s, SPEC §3). Each
   phone notices at its next refresh and fails over to the secondary.
4. The run watches until every phone is registered with the secondary, then one more
   refresh cycle (where the failback modes differ: 0 newRequests and 2 registration try the
   dead primary again first, 1 DNSTTL and 3 duration stay on the secondary), then stops.

Printed per row: the time from the death to 50 / 95 / 100 % of the phones re-registered
with the secondary (or how many never did), the secondary's peak REGISTER/s and the
REGISTERs it got, failures (non-2xx answers from the secondary and "register failed"
events), REGISTER retransmissions (all targets), REGISTERs sent to the dead primary after
its death, and ICMP errors the phones learned. Counted at the phones (the same for either
server kind): a REGISTER sent to a server on loopback is one it receives.

Clocks (SPEC §9): a storm is real time. The servers are real processes (Kamailio cannot run
on our clock), so the phones run on the real clock (scale 1) and every time printed is
wall-clock seconds from the death (``time.time()`` of the workers, the reactor's clock, and
of this process: one host, one clock; with ``ssh`` gateways the hosts' clocks must agree,
NTP, to the precision wanted). The virtual clock would jump over the very contention a
storm is about, and a scaled clock would multiply the load by its factor.

Where it saturates here (2 cores shared by the fleet, both servers and the DNS): the CPU.
``--phones`` beyond what the box holds ends with phones never re-registered within the
deadline; the row says so. The kernel's ICMP rate limit (net.ipv4.icmp_msgs_per_sec, 1000/s
with a burst of 50) also bounds how many phones of a killed primary hear "port
unreachable": the others give it up after 7.5 s as if it were silent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
KAMAILIO_CFG = os.path.join(HERE, "kamailio-registrar.cfg")
HOST = "127.0.0.1"
ZONE = """$ORIGIN pbx.test.
$TTL {ttl}
@          IN SOA  ns.pbx.test. hostmaster.pbx.test. 1 3600 600 86400 60
@          IN NS   ns.pbx.test.
ns         IN A    {host}
_sip._udp  IN SRV  0 1 {p1} server1.pbx.test.
_sip._udp  IN SRV  1 1 {p2} server2.pbx.test.
server1    IN A    {host}
server2    IN A    {host}
"""
PHONE_EXPIRES = 30  # the smallest the phone accepts (SPEC §9: the smallest legal values on the real clock)


@dataclass
class Row:
    server: str
    death: str
    failback: int
    phones: int
    workers: int
    reregistered: list[float]  # seconds from the death, one per phone that made it
    peak: int
    to_secondary: int
    failures: int
    retransmissions: int
    to_dead_primary: int
    icmp: int
    registered_primary: int
    expires: int
    note: str = ""


# --------------------------------------------------------------------------- processes


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop(proc: subprocess.Popen) -> None:
    """Gone for good, whatever its state: SIGCONT (a stopped one), SIGKILL, wait."""
    kill_group(proc, signal.SIGCONT)
    kill_group(proc, signal.SIGKILL)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        pass


def start_dns(zone_text: str, tmp: str) -> tuple[subprocess.Popen, tuple[str, int]]:
    path = os.path.join(tmp, "pbx.test.zone")
    with open(path, "w") as f:
        f.write(zone_text)
    proc = subprocess.Popen([sys.executable, "-m", "sipharness.fakes.dns.cli", "--zone", path, "--listen",
                             f"{HOST}:0", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                            cwd=ROOT, start_new_session=True, text=True)
    line = proc.stdout.readline()
    try:
        listening = json.loads(line)  # the first JSON line (fakes/jsonlines.py)
        assert listening["kind"] == "listening"
    except (ValueError, KeyError, TypeError, AssertionError):
        stop(proc)
        raise RuntimeError(f"the fake DNS did not start: {line!r} {proc.stderr.read()[-500:]!r}") from None
    return proc, (listening["host"], int(listening["port"]))


def start_server(kind: str, name: str, port: int, expires: int) -> subprocess.Popen:
    if kind == "kamailio":
        proc = subprocess.Popen(["kamailio", "-f", KAMAILIO_CFG, "-DD", "-E", "-n", "1", "-m", "1024", "-M", "16",
                                 "-l", f"udp:{HOST}:{port}", "-A", f"MAX_EXPIRES={expires}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not _answers(port):
            stop(proc)
            raise RuntimeError(f"kamailio ({name}) did not come up on port {port}")
        return proc
    proc = subprocess.Popen([sys.executable, "-m", "sipharness.fakes.sip.cli", "--listen", f"udp:{HOST}:{port}",
                             "--quiet", "--name", name, "--max-expires", str(expires)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT, start_new_session=True)
    line = proc.stdout.readline().decode()
    if '"kind": "listening"' not in line:  # the first JSON line (fakes/jsonlines.py)
        stop(proc)
        raise RuntimeError(f"our registrar ({name}) did not start: {line!r}")
    return proc


def _answers(port: int, timeout: float = 10.0) -> bool:
    """Whether a server on ``port`` answers an OPTIONS (405 or 200: alive) within ``timeout``."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        s.settimeout(0.3)
        me = s.getsockname()[1]
        while time.monotonic() < deadline:
            probe = (f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{me};branch=z9hG4bKprobe"
                     f"{time.monotonic_ns()}\r\nFrom: <sip:probe@{HOST}>;tag=1\r\nTo: <sip:probe@{HOST}>\r\n"
                     f"Call-ID: probe{me}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            s.sendto(probe.encode(), (HOST, port))
            try:
                if s.recv(65535).startswith(b"SIP/2.0 "):
                    return True
            except (socket.timeout, ConnectionRefusedError):
                time.sleep(0.1)
    return False


# --------------------------------------------------------------------------- the fleet (execnet)


def gateway_specs(args: argparse.Namespace, n: int) -> list[str]:
    if args.gateway:
        return list(args.gateway)
    k = max(1, math.ceil(n / args.per_worker))
    return [f"popen//python={sys.executable}"] * k


def grant(args: argparse.Namespace, n: int) -> int:
    """Seconds the servers grant for a fleet of ``n`` (see --expires)."""
    if args.expires != "auto":
        return int(args.expires)
    return max(10, math.ceil((n / max(args.rate, 1.0) + 5) / 0.9))


def run_storm(kind: str, death: str, modes: list[int], n: int, args: argparse.Namespace) -> list[Row]:
    """One storm: a fleet of ``n`` (failback ``modes`` dealt round-robin among the phones: one
    mode, or a mixed fleet), one row per mode."""
    import execnet

    import storm_worker

    tmp = tempfile.mkdtemp(prefix="storm-")
    p1, p2 = free_port(), free_port()
    procs: list[subprocess.Popen] = []
    group = execnet.Group()
    try:
        dns_proc, dns = start_dns(ZONE.format(ttl=args.ttl, host=HOST, p1=p1, p2=p2), tmp)
        procs.append(dns_proc)
        expires = grant(args, n)
        primary = start_server(kind, "primary", p1, expires)
        procs.append(primary)
        procs.append(start_server(kind, "secondary", p2, expires))
        specs = gateway_specs(args, n)
        shares = [n // len(specs) + (1 if i < n % len(specs) else 0) for i in range(len(specs))]
        config = {"account.1.enable": 1, "account.1.sip_server.1.address": "pbx.test",
                  "account.1.sip_server.1.port": 0, "account.1.sip_server.1.expires": max(PHONE_EXPIRES, expires),
                  "account.1.sip_server.1.failback_timeout": args.failback_timeout}
        channels = []
        first = 0
        for spec, share in zip(specs, shares):
            gw = group.makegateway(spec)
            ch = gw.remote_exec(storm_worker)
            ch.send({"phones": share, "first": first, "dns": list(dns), "rate": args.rate / len(specs),
                     "config": config, "modes": modes, "root": ROOT})
            channels.append(ch)
            first += share
        for ch in channels:
            kind_, _ = ch.receive(timeout=600)
            assert kind_ == "built"
        primary_key, secondary_key = f"{HOST}:{p1}", f"{HOST}:{p2}"
        progress: dict[int, dict] = {}

        def poll(until, what: str, deadline: float) -> bool:
            while time.monotonic() < deadline:
                for i, ch in enumerate(channels):
                    try:
                        while True:
                            msg = ch.receive(timeout=0.05)
                            if msg[0] == "progress":
                                progress[i] = msg[1]
                    except ch.TimeoutError:
                        pass
                if until():
                    return True
            return False

        def total(key: str) -> int:
            return sum(p["registered"].get(key, 0) for p in progress.values())

        start_deadline = time.monotonic() + 60 + n / max(args.rate, 1) * 3
        all_primary = poll(lambda: len(progress) == len(channels) and total(primary_key) >= n, "primary",
                           start_deadline)
        time.sleep(args.settle)
        t_death = time.time()
        kill_group(primary, signal.SIGKILL if death == "killed" else signal.SIGSTOP)
        # every phone refreshes within 0.9 × the grant after its registration, gives up a silent
        # primary after 7.5 s; a saturated box stretches both
        storm_deadline = time.monotonic() + expires + 8 + n / max(args.rate, 1) * 2 + args.grace
        poll(lambda: total(secondary_key) >= n, "secondary", storm_deadline)
        # one more refresh cycle, where the failback modes differ (a silent primary costs 7.5 s again)
        watch = args.watch if args.watch is not None else expires * 0.9 + (8.5 if death == "silent" else 1.5)
        poll(lambda: False, "one more refresh cycle", time.monotonic() + watch)
        for ch in channels:
            ch.send("stop")
        results = []
        for ch in channels:
            while True:
                msg = ch.receive(timeout=300)
                if msg[0] == "result":
                    results.append(msg[1])
                    break
    finally:
        try:
            group.terminate(timeout=10)
        except Exception:  # noqa: BLE001 - the workers leave with os._exit: nothing to wait for
            pass
        for p in procs:
            stop(p)
    note = "" if all_primary else "not every phone registered with the primary before the death"
    return [_row(kind, death, mode, modes, n, len(specs), results, t_death, primary_key, secondary_key, expires, note)
            for mode in modes]


def _row(kind: str, death: str, mode: int, modes: list[int], n: int, workers: int, results: list[dict],
         t_death: float, primary: str, secondary: str, expires: int, note: str) -> Row:
    """The figures of the phones with failback ``mode`` (all of them unless the fleet is mixed)."""
    rereg: list[float] = []
    registered_primary = 0
    per_second: dict[int, int] = {}
    to_secondary = to_dead = failures = retx = icmp = 0
    members = 0
    for r in results:
        mine = [(r["first"] + i) % len(modes) == modes.index(mode) for i in range(r["phones"])]
        members += sum(mine)
        for t, m in zip(r["registered"].get(primary, []), mine):
            if m and t is not None and t < t_death:
                registered_primary += 1
        for t, m in zip(r["registered"].get(secondary, []), mine):
            if m and t is not None and t >= t_death:
                rereg.append(t - t_death)
        for host, second, m, count in r["sends"]:
            if m != mode:
                continue
            if host == secondary:
                per_second[second] = per_second.get(second, 0) + count
                to_secondary += count
            elif host == primary and second >= int(t_death) + 1:
                to_dead += count
        failures += sum(count for host, cls, m, count in r["responses"] if m == mode and host == secondary
                        and cls != "2xx")
        failures += r["register_failed"].get(mode, 0)
        retx += sum(count for host, m, count in r["retransmissions"] if m == mode)
        icmp += r["icmp"].get(mode, 0)
    size = members or (n if len(modes) == 1 else n // len(modes))
    if len(modes) > 1:
        note = "; ".join(x for x in (f"mixed fleet of {n}: modes {','.join(map(str, modes))}", note) if x)
    return Row(kind, death, mode, size, workers, sorted(rereg), max(per_second.values(), default=0), to_secondary,
               failures, retx, to_dead, icmp, registered_primary, expires, note)


def _pct(values: list[float], q: float, n: int) -> str:
    need = math.ceil(q * n)
    if need == 0:
        return "0.0"
    if len(values) < need:
        return "never"
    return f"{values[need - 1]:.1f}"


HEADER = (f"{'server':<9} {'death':<7} {'fb':>2} {'phones':>6} {'wk':>2} {'grant':>5}  {'50%':>6} {'95%':>6} {'100%':>6}  "
          f"{'peak REG/s':>10} {'REG→2nd':>8} {'failures':>8} {'retrans':>8} {'→dead 1st':>9} {'ICMP':>6}")


def report(row: Row) -> None:
    missing = row.phones - len(row.reregistered)
    tail = f"  ({missing} never re-registered)" if missing else ""
    if row.registered_primary < row.phones:
        tail += f"  ({row.phones - row.registered_primary} never registered with the primary)"
    if row.note:
        tail += f"  [{row.note}]"
    print(f"{row.server:<9} {row.death:<7} {row.failback:>2} {row.phones:>6} {row.workers:>2} {row.expires:>5}  "
          f"{_pct(row.reregistered, .5, row.phones):>6} {_pct(row.reregistered, .95, row.phones):>6} "
          f"{_pct(row.reregistered, 1.0, row.phones):>6}  {row.peak:>10} {row.to_secondary:>8} {row.failures:>8} "
          f"{row.retransmissions:>8} {row.to_dead_primary:>9} {row.icmp:>6}{tail}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phones", default="1000,10000,50000", help="fleet sizes (default 1000,10000,50000)")
    ap.add_argument("--servers", default="kamailio,fake", help="kamailio and/or fake (default both)")
    ap.add_argument("--deaths", default="killed,silent", help="killed and/or silent (default both)")
    ap.add_argument("--failback", default="0,1,2,3", help="failback modes (default 0,1,2,3)")
    ap.add_argument("--rate", type=float, default=1000.0, help="phones started per second, all workers (default 1000)")
    ap.add_argument("--expires", default="auto",
                    help="seconds the servers grant (max_expires; the phones ask 30 at least, refresh at 90 %%); "
                         "default auto: (N / rate + 5) / 0.9, at least 10")
    ap.add_argument("--ttl", type=int, default=300, help="TTL of the zone's records (failback mode 1); default 300")
    ap.add_argument("--failback-timeout", type=int, default=3600, help="failback mode 3's timeout (default 3600)")
    ap.add_argument("--per-worker", type=int, default=12500, help="phones per popen worker at most (default 12500)")
    ap.add_argument("--gateway", action="append", default=[], metavar="SPEC",
                    help="an execnet gateway for a worker (repeatable), e.g. popen or ssh=labhost//python=python3; "
                         "default: popen workers of --per-worker phones")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between the last registration and the death")
    ap.add_argument("--grace", type=float, default=60.0, help="extra seconds a storm may take before it is cut")
    ap.add_argument("--mix", action="store_true",
                    help="one fleet per row carrying every --failback mode (dealt round-robin among the phones), "
                         "a row per mode from its phones: the modes meet the same storm, in a quarter of the time")
    ap.add_argument("--watch", type=float, default=None,
                    help="seconds watched once every phone re-registered (default: one more refresh cycle)")
    args = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    try:
        import execnet  # noqa: F401
    except ImportError:
        print("storm: execnet is not installed (pip install execnet; pytest-xdist brings it)", file=sys.stderr)
        return 2
    sizes = [int(x) for x in args.phones.split(",") if x.strip()]
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    deaths = [d.strip() for d in args.deaths.split(",") if d.strip()]
    modes = [int(m) for m in args.failback.split(",") if m.strip()]
    for k in kinds:
        if k not in ("kamailio", "fake"):
            ap.error(f"--servers: {k!r} is not kamailio or fake")
    for d in deaths:
        if d not in ("killed", "silent"):
            ap.error(f"--deaths: {d!r} is not killed or silent")
    print(f"# storm: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; real clock; the servers grant "
          f"the seconds in column 'grant' (the phones refresh at 90 %); phones start at {args.rate:g}/s; times in s from the primary's "
          f"death; counted at the phones", flush=True)
    print(HEADER, flush=True)
    for n in sizes:
        for kind in kinds:
            for death in deaths:
                for group in ([modes] if args.mix else [[m] for m in modes]):
                    try:
                        for row in run_storm(kind, death, group, n, args):
                            report(row)
                    except Exception as e:  # noqa: BLE001 - one row failing leaves the others
                        print(f"{kind:<9} {death:<7} {','.join(map(str, group)):>2} {n:>6}  NO RESULT: "
                              f"{type(e).__name__}: {e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
