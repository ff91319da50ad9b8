"""DNS throughput of the fake DNS against two Python baselines, measured by dnsperf in one run.

    python bench/dns_qps.py [--seconds 10] [--tcp]

Serves the guide's zone (suites/data/seed-example.zone) from three
servers, each in its own process on 127.0.0.1 and an ephemeral port:

1. ours: ``sipharness dns --quiet`` (fakes.dns.FakeDNS: decode, fault table, record, answer);
2. dnslib's own ``DNSServer`` with its ``ZoneResolver`` (logger silenced);
3. stock twisted.names: ``server.DNSServerFactory`` with a ``PySourceAuthority`` built from
   Python records (its BIND parser cannot read quoted NAPTR strings, PEERS.md).

Then runs ``dnsperf -s 127.0.0.1 -p PORT -d QUERYFILE -l SECONDS -c 4 -q 20`` with a
NAPTR/SRV/A/A query mix against each in turn and prints qps and the ratios
ours/dnslib (target >= 1.5) and ours/twisted.names (target >= 1.0). Same-box figures: the
load generator shares the cores, so only the ratios of one run compare.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = ROOT / "suites" / "data" / "seed-example.zone"
QUERIES = ["yealink.pbx.com NAPTR", "_sip._tcp.yealink.pbx.com SRV", "server1.yealink.pbx.com A",
           "server2.yealink.pbx.com A"]

DNSLIB_SERVER = r"""
import sys
from dnslib.server import DNSServer
from dnslib.zoneresolver import ZoneResolver

class Quiet:  # dnslib's DNSLogger prints every packet; silence all of it
    def __getattr__(self, name):
        return lambda *a, **k: None

server = DNSServer(ZoneResolver(open(sys.argv[1]).read(), glob=False), port=0, address="127.0.0.1",
                   tcp=len(sys.argv) > 2, logger=Quiet())
print("listening %s 127.0.0.1:%d" % ("tcp" if len(sys.argv) > 2 else "udp", server.server.server_address[1]), flush=True)
server.start()
"""

TWISTED_SERVER = r"""
import sys
from twisted.internet import reactor
from twisted.names import authority, dns, server

auth = authority.PySourceAuthority(sys.argv[1])
factory = server.DNSServerFactory(authorities=[auth])
udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(controller=factory), interface="127.0.0.1")
reactor.listenTCP(udp.getHost().port, factory, interface="127.0.0.1")
print("listening udp+tcp 127.0.0.1:%d" % udp.getHost().port, flush=True)
reactor.run()
"""


def _pysource(zone) -> str:
    """The zone as twisted.names PySourceAuthority source (``zone = [SOA(...), ...]``)."""
    from dnslib import QTYPE

    lines = []
    for rr in zone.records():
        name, t, d, ttl = str(rr.rname).rstrip("."), QTYPE[rr.rtype], rr.rdata, rr.ttl
        if t == "SOA":
            serial, refresh, retry, expire, minimum = d.times
            lines.append(f"SOA({name!r}, mname={str(d.mname).rstrip('.')!r}, rname={str(d.rname).rstrip('.')!r}, "
                         f"serial={serial}, refresh={refresh}, retry={retry}, expire={expire}, minimum={minimum}, ttl={ttl})")
        elif t in ("A", "AAAA"):
            lines.append(f"{t}({name!r}, {str(d)!r}, ttl={ttl})")
        elif t in ("NS", "CNAME", "PTR"):
            lines.append(f"{t}({name!r}, {str(d.label).rstrip('.')!r}, ttl={ttl})")
        elif t == "SRV":
            lines.append(f"SRV({name!r}, {d.priority}, {d.weight}, {d.port}, {str(d.target).rstrip('.')!r}, ttl={ttl})")
        elif t == "NAPTR":
            lines.append(f"NAPTR({name!r}, {d.order}, {d.preference}, {bytes(d.flags)!r}, {bytes(d.service)!r}, "
                         f"{bytes(d.regexp)!r}, {str(d.replacement).rstrip('.')!r}, ttl={ttl})")
        else:
            raise ValueError(f"bench zone: no twisted.names mapping for {t}")
    return "zone = [\n    " + ",\n    ".join(lines) + ",\n]\n"


def _start(cmd: list[str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    line = proc.stdout.readline()
    m = re.search(r'"port": (\d+)', line) or re.search(r":(\d+)\s*$", line)  # ours: a JSON line; others: HOST:PORT
    if not m:
        proc.kill()
        raise SystemExit(f"server {cmd[:3]} did not start: {line!r}")
    return proc, int(m.group(1))


def _check(port: int, tcp: bool) -> None:
    import dns.message
    import dns.query

    q = dns.message.make_query("yealink.pbx.com", "NAPTR")
    r = (dns.query.tcp if tcp else dns.query.udp)(q, "127.0.0.1", port=port, timeout=3)
    assert r.answer and len(r.answer[0]) == 2, f"server on port {port} answered {r}"


def _dnsperf(dnsperf: str, port: int, qfile: str, seconds: int, tcp: bool) -> tuple[float, str]:
    cmd = [dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", qfile, "-l", str(seconds), "-c", "4", "-q", "20"]
    if tcp:
        cmd += ["-m", "tcp"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    return (float(qps.group(1)) if qps else 0.0), (lost.group(1) if lost else "?")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="dnsperf duration per server (default 10)")
    ap.add_argument("--tcp", action="store_true", help="dnsperf -m tcp instead of UDP")
    args = ap.parse_args(argv)
    dnsperf = shutil.which("dnsperf")
    if not dnsperf:
        print("dnsperf is not installed (apt-get install dnsperf)", file=sys.stderr)
        return 2

    from sipharness.fakes.dns import Zone

    zone = Zone.from_file(str(SEED))
    tmp = Path(tempfile.mkdtemp(prefix="dns_qps_"))
    zfile, pyfile, qfile = tmp / "bench.zone", tmp / "bench_zone.py", tmp / "queries.txt"
    zfile.write_text(zone.to_text())
    pyfile.write_text(_pysource(zone))
    qfile.write_text("\n".join(QUERIES) + "\n")

    py = sys.executable
    servers = {
        "ours (fakes.dns)": [py, "-m", "sipharness.harness.cli", "dns", "--zone", str(zfile), "--quiet"],
        "dnslib DNSServer": [py, "-c", DNSLIB_SERVER, str(zfile)] + (["tcp"] if args.tcp else []),
        "twisted.names": [py, "-c", TWISTED_SERVER, str(pyfile)],
    }
    results: dict[str, tuple[float, str]] = {}
    procs = []
    try:
        ports = {}
        for name, cmd in servers.items():
            proc, port = _start(cmd)
            procs.append(proc)
            _check(port, args.tcp)
            ports[name] = port
        for name, port in ports.items():
            results[name] = _dnsperf(dnsperf, port, str(qfile), args.seconds, args.tcp)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    mode = "TCP" if args.tcp else "UDP"
    print(f"dnsperf {mode} -c 4 -q 20 -l {args.seconds}, NAPTR/SRV/A/A mix, 127.0.0.1")
    for name, (qps, lost) in results.items():
        print(f"  {name:<20} {qps:>10.0f} qps   (lost {lost})")
    ours = results["ours (fakes.dns)"][0]
    for base, target in (("dnslib DNSServer", 1.5), ("twisted.names", 1.0)):
        ratio = ours / results[base][0] if results[base][0] else float("inf")
        print(f"  ours / {base:<17} {ratio:6.2f}x   (target >= {target}x: {'met' if ratio >= target else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
