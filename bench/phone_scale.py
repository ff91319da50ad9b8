"""How many bundled phones fit in one process: N phones register through a DNS failover.

    python bench/phone_scale.py [--phones 100,1000,10000] [--tracemalloc N] [--primary silent|refused]
                                [--settle S]

Each round (one N) runs in a fresh process, so its RSS is not polluted by earlier rounds:

- a *fakes* process: fakes.dns.FakeDNS serving SRV ``_sip._udp.pbx.test`` → primary
  (127.0.0.10, priority 0) then secondary (127.0.0.20, priority 1), and two
  fakes.sip.FakeSipServer registrars; the primary's script drops everything (silent). Its
  recorder counts and keeps nothing. It runs in its own process so the phones' RSS is only
  the phones', and the fakes get the other core (``--primary refused``: the primary's port is
  closed instead, ICMP port unreachable, and the phones move on at once, SPEC §3);
- a *phones* process: N :class:`phone.phone.Phone` objects (user ``u<i>``, server
  ``pbx.test`` port 0 → SRV), all started at once on the real clock (the reactor itself:
  time scale 1). Each resolves, REGISTERs 1 + 3 times to the silent primary, gives it up
  after 7.5 s (SPEC §3) and registers with the secondary, so a round takes at least 7.5 s.

Printed per round: wall time until the last phone registered, registrations/s and REGISTER
sends/s (the fakes' counts), and RSS per phone: (VmRSS once all are registered − VmRSS
before the first phone was built) / N, with ru_maxrss too. ``--tracemalloc N`` runs one more
round of N phones under tracemalloc and prints where the memory goes (top lines).

RLIMIT_NOFILE is raised first (each phone holds one UDP socket, whatever its targets, see
phone/wire.py, plus one for each DNS query in flight): to the hard limit, or above it when this
process may (CAP_SYS_RESOURCE), to N + 1000. A round that cannot fit is skipped with the
reason (``--force`` runs it anyway).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ZONE = """$ORIGIN pbx.test.
$TTL 3600
@          IN SOA  ns.pbx.test. hostmaster.pbx.test. 1 3600 600 86400 60
@          IN NS   ns.pbx.test.
ns         IN A    127.0.0.1
_sip._udp  IN SRV  0 1 {p1} server1.pbx.test.
_sip._udp  IN SRV  1 1 {p2} server2.pbx.test.
server1    IN A    127.0.0.10
server2    IN A    127.0.0.20
"""
FD_PER_PHONE = 1  # one UDP socket per phone (phone/wire.py: IP_RECVERR instead of a connected socket per target)
FD_MARGIN = 1000  # descriptors besides the phones' sockets: stdio, epoll, DNS queries in flight (one socket each)
BATCH_S = 0.05  # a paced start starts rate × 50 ms phones at a time
SETTLE = 6.0  # wall seconds between "all registered" and the steady-state RSS
RCVBUF = 16 * 1024 * 1024  # fakes' receive buffers: 10 000 phones booting at once send in bursts


_STATUS = open("/proc/self/status", "rb", buffering=0)  # opened once: at the limit, open() fails (EMFILE)


def vm_rss_kib() -> int:
    _STATUS.seek(0)
    for line in _STATUS.read(65536).splitlines():
        if line.startswith(b"VmRSS:"):
            return int(line.split()[1])
    return 0


def max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def raise_nofile(want: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(hard, want), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _big_buffers(port_obj) -> None:
    sock = getattr(port_obj, "socket", None)
    if sock is None:  # a fake's internals moved: say so, the round still runs
        print(f"# note: no socket found on {port_obj!r}; its receive buffer keeps its default", file=sys.stderr)
        return
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
            return
        except OSError:
            continue


# --------------------------------------------------------------------------- the fakes process


def serve_fakes(primary_mode: str = "silent") -> int:
    from twisted.internet import reactor

    from sipharness.fakes.dns import FakeDNS, Zone
    from sipharness.fakes.record import Recorder
    from sipharness.fakes.sip import FakeSipServer

    counts: dict[str, int] = {}

    class Counting(Recorder):
        """Counts (server, direction, method) and keeps nothing: memory stays flat."""

        def append(self, entry):
            if entry.kind == "sip" and entry.method == "REGISTER" and entry.status is None:
                k = f"{entry.server} {entry.direction} REGISTER"
                counts[k] = counts.get(k, 0) + 1
            elif entry.kind == "sip" and entry.status is not None and entry.direction == "out":
                k = f"{entry.server} out {entry.status}"
                counts[k] = counts.get(k, 0) + 1
            elif entry.kind == "dns" and entry.direction == "in":
                counts["dns queries"] = counts.get("dns queries", 0) + 1
            return entry

    rec = Counting(reactor)
    primary = FakeSipServer("primary", role="registrar", recorder=rec, host="127.0.0.10")
    secondary = FakeSipServer("secondary", role="registrar", recorder=rec, host="127.0.0.20")
    primary.listen("udp")
    secondary.listen("udp")
    if primary_mode == "refused":
        primary.down("refused")  # ICMP port unreachable: given up at once (SPEC §3)
    else:
        primary.script.silent()  # SPEC §3: a silent primary is given up after 7.5 s
    dns = FakeDNS(Zone.from_text(ZONE.format(p1=primary.address[1], p2=secondary.address[1])), recorder=rec)
    dns.start()
    # the SIP fakes ask for UDP_BUFFER themselves (fakes.sip.server); the DNS does not
    _big_buffers(dns._udp)
    print(json.dumps({"dns": list(dns.address), "primary": list(primary.address),
                      "secondary": list(secondary.address)}), flush=True)

    def stop(signum, frame):
        print(json.dumps(counts), flush=True)
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reactor.run(installSignalHandlers=False)
    return 0


# --------------------------------------------------------------------------- the phones process


def phones_round(n: int, dns_host: str, dns_port: int, trace: bool, deadline: float, rate: float,
                 settle: float = SETTLE) -> int:
    if trace:
        import tracemalloc

        tracemalloc.start(1)
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    import sipharness.phone.dnsclient  # noqa: F401 - imported before the baseline (a phone imports it on first use)
    from sipharness.phone.config import loads_config
    from sipharness.phone.phone import Phone

    # Twisted keeps up to 65 536 log events in memory until logging begins (and with them the
    # objects they name: every DNS query's UDP port "starting"/"stopping"); a real process logs
    # somewhere, this one discards.
    globalLogBeginner.beginLoggingTo([lambda event: None], discardBuffer=True, redirectStandardIO=False)
    gc.collect()
    rss0 = vm_rss_kib()
    snap0 = tracemalloc.take_snapshot() if trace else None
    phones = []
    state = {"registered": 0, "failed": 0, "first": None, "last": None}

    def on_event(ev):
        if ev.kind == "registered":
            state["registered"] += 1
            if state["registered"] == n:
                state["last"] = time.monotonic()
                state["rss_registered"] = vm_rss_kib()
                # steady state: the secondary's completed transactions go after Timer K (T4 = 5 s)
                reactor.callLater(settle, finish)
        elif ev.kind == "register_failed":
            state["failed"] += 1

    def finish():
        # measured with the reactor still running: its shutdown closes every socket, which
        # allocates (closed ports' attributes) and is not what a running phone costs
        if state.get("finished"):
            return
        state["finished"] = True
        try:
            gc.collect()
            state["rss1"] = vm_rss_kib()
            if trace:
                state["snap1"] = tracemalloc.take_snapshot()
        finally:
            reactor.stop()

    for i in range(n):
        cfg = loads_config("#!version:1.0.0.1\naccount.1.enable = 1\n"
                           f"account.1.user_name = u{i}\naccount.1.sip_server.1.address = pbx.test\n"
                           "account.1.sip_server.1.port = 0\n", filename=f"phone{i}.cfg")
        p = Phone(cfg, clock=reactor, reactor=reactor, dns_server=(dns_host, dns_port), name=f"p{i}")
        p.events.subscribe(on_event)
        phones.append(p)
    gc.collect()
    rss_built = vm_rss_kib()

    def start_batch(i: int) -> None:
        # paced start: all at once (rate 0) makes 3 × N DNS queries in one burst; past ~3000
        # phones the answers wait in socket buffers longer than the 2 s DNS timeout (SPEC §2)
        # and the retries snowball; a paced start measures what the process sustains
        if state["first"] is None:
            state["first"] = time.monotonic()
        step = n if rate <= 0 else max(1, int(rate * BATCH_S))
        for p in phones[i:i + step]:
            p.start()
        if i + step < n:
            reactor.callLater(max(0.0, state["first"] + (i + step) / rate - time.monotonic()), start_batch, i + step)

    reactor.callWhenRunning(start_batch, 0)
    reactor.callLater(deadline, finish)
    reactor.run(installSignalHandlers=False)
    done = state["last"] is not None
    wall = (state["last"] if done else time.monotonic()) - state["first"]
    out = {"n": n, "registered": state["registered"], "register_failed": state["failed"], "wall": wall,
           "done": done, "rss0_kib": rss0, "rss_registered_kib": state.get("rss_registered", 0),
           "rss_built_kib": rss_built, "rss1_kib": state["rss1"], "maxrss_kib": max_rss_kib(),
           "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "settle": settle}
    if trace:
        stats = state["snap1"].compare_to(snap0, "lineno")
        by_file = state["snap1"].compare_to(snap0, "filename")
        out["files"] = [f"{s.traceback[0].filename.replace(ROOT + '/', '')}: {s.size_diff / n:.0f} B/phone"
                        for s in by_file[:15]]
        out["traced_kib"] = sum(s.size_diff for s in stats) / 1024
        out["top"] = [f"{s.traceback[0].filename.replace(ROOT + '/', '')}:{s.traceback[0].lineno}: "
                      f"{s.size_diff / n:.0f} B/phone in {s.count_diff / n:.1f} blocks/phone" for s in stats[:20]]
    print(json.dumps(out), flush=True)
    os._exit(0)  # no clean stop of N phones: the round is measured, the process goes away


# --------------------------------------------------------------------------- the orchestrator


def run_round(n: int, rate: float, trace: bool = False, primary: str = "silent", settle: float = SETTLE) -> dict:
    fakes = subprocess.Popen([sys.executable, __file__, "--serve-fakes", "--primary", primary], stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)
    try:
        addrs = json.loads(fakes.stdout.readline())
        deadline = 60 + n / 100 + (n / rate if rate > 0 else 0)
        child = subprocess.run(
            [sys.executable, __file__, "--round", str(n), "--dns", f"{addrs['dns'][0]}:{addrs['dns'][1]}",
             "--deadline", str(deadline), "--start-rate", str(rate), "--settle", str(settle)]
            + (["--trace"] if trace else []),
            stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=deadline + 120)
        lines = child.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(f"phones process for N={n} printed nothing (exit status {child.returncode})")
        result = json.loads(lines[-1])
    finally:
        fakes.send_signal(signal.SIGTERM)
        try:
            counts_line = fakes.stdout.readline()
            fakes.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fakes.kill()
            counts_line = "{}"
    result["fakes"] = json.loads(counts_line or "{}")
    return result


def report(r: dict) -> None:
    n = r["n"]
    c = r["fakes"]
    sends = c.get("primary in REGISTER", 0) + c.get("secondary in REGISTER", 0)
    per_phone = (r["rss1_kib"] - r["rss0_kib"]) / n
    at_registered = (f"{(r['rss_registered_kib'] - r['rss0_kib']) / n:.1f} KiB at it" if r["rss_registered_kib"]
                     else "the last never registered")
    built = (r["rss_built_kib"] - r["rss0_kib"]) / n
    status = "all registered" if r["done"] else f"DEADLINE: {r['registered']} of {n} registered"
    print(f"phones={n:>6}  {status}  wall={r['wall']:.2f} s  registrations/s={r['registered'] / r['wall']:.0f}  "
          f"REGISTER/s={sends / r['wall']:.0f} (primary {c.get('primary in REGISTER', 0)}, "
          f"secondary {c.get('secondary in REGISTER', 0)}, 200 OK {c.get('secondary out 200', 0)}, "
          f"DNS queries {c.get('dns queries', 0)})  register_failed={r['register_failed']}", flush=True)
    print(f"phones={n:>6}  RSS/phone={per_phone:.1f} KiB {r['settle']:g} s after the last registration ({at_registered}; built, not started: {built:.1f} KiB)  "
          f"VmRSS {r['rss0_kib'] / 1024:.1f} → {r['rss1_kib'] / 1024:.1f} MiB  ru_maxrss={r['maxrss_kib'] / 1024:.1f} MiB  "
          f"RLIMIT_NOFILE={r['nofile']}", flush=True)
    if "top" in r:
        print(f"phones={n:>6}  tracemalloc: {r['traced_kib'] / n:.1f} KiB/phone traced; top lines:")
        for line in r["top"]:
            print("    " + line)
        print(f"phones={n:>6}  tracemalloc by file:")
        for line in r["files"]:
            print("    " + line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phones", default="100,1000,10000", help="comma-separated phone counts (default 100,1000,10000)")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="N", help="one more round of N phones under tracemalloc")
    ap.add_argument("--start-rate", type=float, default=400.0, metavar="R",
                    help="phones started per second (0: all at once); default 400")
    ap.add_argument("--force", action="store_true", help="run a round even if it cannot fit RLIMIT_NOFILE")
    ap.add_argument("--primary", choices=("silent", "refused"), default="silent",
                    help="how the primary fails: silent (given up after 7.5 s) or refused (ICMP: at once)")
    ap.add_argument("--settle", type=float, default=SETTLE,
                    help=f"seconds between the last registration and the steady-state RSS (default {SETTLE:g})")
    ap.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dns", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=120.0, help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_fakes:
        raise_nofile(65536)
        return serve_fakes(args.primary)
    if args.round:
        raise_nofile(FD_PER_PHONE * args.round + FD_MARGIN)
        host, _, port = args.dns.rpartition(":")
        return phones_round(args.round, host, int(port), args.trace, args.deadline, args.start_rate, args.settle)
    counts = [int(x) for x in args.phones.split(",") if x.strip()]
    soft, hard = raise_nofile(FD_PER_PHONE * max(counts) + FD_MARGIN)
    print(f"# phone_scale: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, RLIMIT_NOFILE {soft}/{hard}, "
          f"fakes in a separate process, real clock (primary {args.primary} → secondary "
          f"{'after 7.5 s' if args.primary == 'silent' else 'at once'})", flush=True)
    print(f"# start rate: {'all at once' if args.start_rate <= 0 else f'{args.start_rate:g} phones/s'}", flush=True)
    for n in counts:
        need = FD_PER_PHONE * n + FD_MARGIN
        if need > soft and not args.force:
            print(f"phones={n:>6}  SKIPPED: needs {need} file descriptors (one UDP socket per phone "
                  f"+ DNS queries in flight) but RLIMIT_NOFILE is {soft} (hard {hard}; raising the hard "
                  f"limit needs CAP_SYS_RESOURCE); --force tries anyway", flush=True)
            continue
        try:
            report(run_round(n, args.start_rate, primary=args.primary, settle=args.settle))
        except subprocess.TimeoutExpired as e:
            print(f"phones={n:>6}  NO RESULT: the phones process was killed after {e.timeout:.0f} s", flush=True)
        except RuntimeError as e:
            print(f"phones={n:>6}  NO RESULT: {e}", flush=True)
    if args.tracemalloc:
        report(run_round(args.tracemalloc, args.start_rate, trace=True, primary=args.primary, settle=args.settle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
