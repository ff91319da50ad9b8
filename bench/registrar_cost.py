#!/usr/bin/env python3
"""What one digest registration costs our fake registrar, in process: CPU µs, or instructions.

    python3 bench/registrar_cost.py [--registrations N] [--rounds 5] [--floor] [--lane] [--instructions | --breakdown]

Why beside ``bench/registrar_rps.py``: the rate search against Kamailio is the figure issue 16
asks for, but on a shared two-core box its runs swing by a fifth, so a change worth a tenth
of the cost cannot be seen in it. Here the registrar the CLI runs (``FakeSipServer``, digest
with MD5 only as for SIPp, every record made and counted by the CLI's ``Tally``) is fed
REGISTER → 401 → REGISTER with credentials → 200 through its own UDP protocol object, a
datagram at a time, answers read from a real loopback socket: what is measured is our code
per registration, without SIPp, the reactor's turns or the scheduler.

- default: the CPU time (``time.process_time``) of the server's part of each registration
  (the two ``datagramReceived`` calls, the ``sendto`` of the answers included), the lowest of
  ``--rounds`` rounds of ``--registrations``;
- ``--floor``: the same for bench/registrar_floor.py's protocol (the least a Python registrar
  on Twisted does per REGISTER) on a UDP port of its own, the two taking turns round by round,
  and ours / floor: how many floors our path costs, a ratio one run gives within a few per cent
  where the SIPp rate search swings by a fifth (what a change to the path is judged by);
  ``--lane`` likewise for bench/registrar_lane.py (the least a registrar that checks and records
  what ours does costs: the ceiling of a redesign), and lane / floor;
- ``--instructions``: runs itself twice under valgrind's callgrind (``--registrations``, 300
  by default, and twice as many; ~100 times slower than running free) and prints the
  instructions per registration from the difference (start-up cancels out): runs of one
  checkout agree within about ±1 % (random nonces and tags, memory layout) where timings on
  this box swing by a fifth. The driver's share is in it: reading the nonce and three MD5s
  per registration (~1 % of the figure).

- ``--breakdown``: where the time of a registration goes, by stage of the path, each timed
  around the function the server itself calls (wall µs, in process): ``parse`` (the UDP
  adapter's ``sipcore.parser.parse``), ``logic`` (the role's ``handle_request``: the digest
  check, the bindings, building the answer), of which ``digest`` (the gate's ``check``),
  ``records`` (the core's ``make_record``), ``recorder`` (handing records to the ``Tally``),
  ``send`` (the listener's ``send_raw``, ``sendto`` included) and ``the rest`` (the total less
  those: the adapters, the core, the script check, transactions and retransmission memories).
  The timers add a little to each stage; the shares are what to read. This is the budget any
  change to the path is measured against (bench/registrar_floor.py is the same work without
  the rest, the records and the checks).

Prints ``registrar_cost: cpu=… µs per registration`` (with ``--floor`` also ``registrar_cost:
floor cpu=… µs per registration; ours / floor = …``, with ``--lane`` ``registrar_cost: lane cpu=… µs
per registration; ours / lane = …`` and, with both, ``lane / floor = …``) or ``registrar_cost: instructions=… per
registration``, or one ``registrar_cost: <stage> … µs (… %)`` line per stage. Compare two
checkouts by running each (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER, PASSWORD = "u0", "secret"
WARM_UP = 100  # registrations before the measured ones
_NONCE = re.compile(rb'nonce="([^"]+)"')
_OPAQUE = re.compile(rb'opaque="([^"]+)"')
_REALM = re.compile(rb'realm="([^"]+)"')
# the registrars ours is measured against (their modules, beside this script, each with protocol(users,
# seconds)): in process here, under SIPp by bench/registrar_rps.py
YARDSTICKS = {"floor": "registrar_floor", "lane": "registrar_lane"}


class Driver:
    """One registrar and one client socket; :meth:`register` does one digest registration.
    ``server``: "ours" (the CLI's ``FakeSipServer``), or one of :data:`YARDSTICKS` (its
    protocol on a Twisted UDP port of its own, fed the same way)."""

    def __init__(self, server: str = "ours") -> None:
        from twisted.internet import reactor

        if server in YARDSTICKS:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            yardstick = importlib.import_module(YARDSTICKS[server])
            self.udp = yardstick.protocol({USER: PASSWORD}, reactor.seconds)
            self.port = reactor.listenUDP(0, self.udp, interface="127.0.0.1").getHost().port
        else:
            from sipharness.fakes.jsonlines import StreamingRecorder
            from sipharness.fakes.sip.server import FakeSipServer
            from sipharness.fakes.tally import Tally
            from sipharness.sipcore.clock import make_clock

            clock = make_clock("real", reactor)
            recorder = StreamingRecorder(clock)
            recorder.subscribe(Tally().add)  # as `sipharness registrar --quiet` counts what it saw
            self.server = FakeSipServer("registrar", clock=clock, recorder=recorder, reactor=reactor,
                                        host="127.0.0.1", users={USER: PASSWORD})
            self.server.logic.registrar.auth.algorithms = ("MD5",)
            self.server.listen("udp", 0)
            self.port = self.server.addresses["udp"][1]
            self.udp = self.server._listeners["udp"]._udp  # the protocol object a datagram reaches
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        self.peer = self.client.getsockname()
        self.uri = f"sip:127.0.0.1:{self.port}"
        self.cpu = 0.0

    def _register(self, i: int, cseq: int, authorization: str | None) -> bytes:
        auth = f"Authorization: {authorization}\r\n" if authorization else ""
        p = self.peer[1]
        return (f"REGISTER {self.uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-{i}-{cseq}\r\n"
                f"From: <sip:{USER}@127.0.0.1>;tag={i}SIPpTag00{i}\r\n"
                f"To: <sip:{USER}@127.0.0.1>\r\n"
                f"Call-ID: {i}-bench@127.0.0.1\r\n"
                f"CSeq: {cseq} REGISTER\r\n"
                f"Contact: <sip:{USER}@127.0.0.1:{p};transport=UDP>\r\n{auth}"
                f"Max-Forwards: 70\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n").encode()

    def _answer(self, challenge: bytes) -> str:
        """The client's credentials, written directly (the driver's own cost kept small)."""
        nonce, opaque, realm = (m.group(1).decode() if m else None
                                for m in (p.search(challenge) for p in (_NONCE, _OPAQUE, _REALM)))
        md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
        response = md5(f"{md5(f'{USER}:{realm}:{PASSWORD}')}:{nonce}:00000001:c0ffee:auth:{md5(f'REGISTER:{self.uri}')}")
        return (f'Digest username="{USER}", realm="{realm}", nonce="{nonce}", uri="{self.uri}", '
                f'response="{response}", algorithm=MD5, cnonce="c0ffee", qop=auth, nc=00000001'
                + (f', opaque="{opaque}"' if opaque is not None else ""))

    def _feed(self, datagram: bytes, status: bytes) -> bytes:
        """The server's part (timed): ``datagram`` in, its answer out; the answer must be ``status``."""
        t0 = time.process_time()
        self.udp.datagramReceived(datagram, self.peer)
        self.cpu += time.process_time() - t0
        answer = self.client.recv(65535)
        if not answer.startswith(b"SIP/2.0 " + status):
            raise SystemExit(f"registrar_cost: expected a {status.decode()}, got {answer[:60]!r}")
        return answer

    def register(self, i: int) -> None:
        challenge = self._feed(self._register(i, 1, None), b"401")
        self._feed(self._register(i, 2, self._answer(challenge)), b"200")


def cpu_per_registration(registrations: int, rounds: int, servers: tuple[str, ...] = ("ours",)) -> list[float]:
    """The lowest CPU µs per registration of each of ``servers`` over ``rounds`` rounds (after a
    warm-up); the servers take turns round by round, so a slow spell of the box hits each alike."""
    drivers = [Driver(server) for server in servers]
    serial = 0
    for driver in drivers:
        for _ in range(WARM_UP):  # memos, caches, the first nonces (the same in every run: callgrind subtracts it)
            driver.register(serial)
            serial += 1
    best = [float("inf")] * len(drivers)
    for _ in range(rounds):
        for i, driver in enumerate(drivers):
            driver.cpu = 0.0
            for _ in range(registrations):
                driver.register(serial)
                serial += 1
            best[i] = min(best[i], driver.cpu / registrations * 1e6)
    return best


def breakdown(registrations: int) -> list[tuple[str, float]]:
    """(stage, µs per registration) for ``registrations`` registrations after a warm-up, the
    stages timed around the functions the server calls (module docstring); last: the total."""
    import sipharness.sipcore.transport.udp as udp_module

    driver = Driver()
    spent: dict[str, int] = {}
    clock = time.perf_counter_ns

    def timed(stage: str, fn):
        def run(*args, **kwargs):
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] = spent.get(stage, 0) + clock() - t0
        return run

    server = driver.server
    gate = server.logic.registrar.auth
    udp_module.parse = timed("parse", udp_module.parse)
    server.logic.handle_request = timed("logic", server.logic.handle_request)
    gate.check = timed("digest", gate.check)
    server.core.make_record = timed("records", server.core.make_record)
    server.recorder.extend = timed("recorder", server.recorder.extend)
    listener = server._listeners["udp"]
    listener.send_raw = timed("send", listener.send_raw)
    driver.udp.datagramReceived = timed("total", driver.udp.datagramReceived)
    serial = 0
    for _ in range(WARM_UP):
        driver.register(serial)
        serial += 1
    spent.clear()
    for _ in range(registrations):
        driver.register(serial)
        serial += 1
    us = {stage: ns / registrations / 1000 for stage, ns in spent.items()}
    rest = us["total"] - sum(v for k, v in us.items() if k not in ("total", "digest"))
    return [(k, us.get(k, 0.0)) for k in ("parse", "logic", "digest", "records", "recorder", "send")] + [
        ("the rest", rest), ("total", us["total"])]


def _instructions(n: int) -> int:
    """Instructions (callgrind ``Collected``) of this script doing ``n`` registrations, start-up included."""
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts on every run
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, os.path.abspath(__file__),
           "--registrations", str(n), "--rounds", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"registrar_cost: valgrind failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registrations", type=int, default=None,
                    help="per round (default 4000; with --instructions 300, then 600)")
    ap.add_argument("--rounds", type=int, default=5, help="CPU: the lowest of this many rounds (default 5)")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions under valgrind's callgrind instead (deterministic; slow: ~100x)")
    ap.add_argument("--floor", action="store_true",
                    help="also the floor's CPU per registration (bench/registrar_floor.py), rounds taking turns, "
                         "and ours / floor")
    ap.add_argument("--lane", action="store_true",
                    help="also the lane's CPU per registration (bench/registrar_lane.py), rounds taking turns, "
                         "and ours / lane")
    ap.add_argument("--breakdown", action="store_true",
                    help="µs per registration by stage of the path (parse, logic, digest, records, ...)")
    args = ap.parse_args(argv)
    if (args.floor or args.lane) and (args.instructions or args.breakdown):
        ap.error("--floor and --lane go with the CPU figure only, not with --instructions or --breakdown")
    if args.breakdown:
        stages = breakdown(args.registrations or 4000)
        total = stages[-1][1]
        for stage, us in stages:
            note = " (part of logic)" if stage == "digest" else ""
            print(f"registrar_cost: {stage:<9} {us:7.1f} µs ({us / total * 100:4.1f} %){note}", flush=True)
        return 0
    if args.registrations is None:
        args.registrations = 300 if args.instructions else 4000
    if args.registrations < 1 or args.rounds < 1:
        ap.error("--registrations and --rounds must be >= 1")
    if args.instructions:
        if not shutil.which("valgrind"):
            print("registrar_cost: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
            return 2
        n = args.registrations
        a, b = _instructions(n), _instructions(2 * n)
        print(f"registrar_cost: instructions={(b - a) // n} per registration "
              f"(callgrind, {n} and {2 * n} registrations, driver included)", flush=True)
        return 0
    servers = ("ours",) + tuple(name for name in YARDSTICKS if getattr(args, name))
    cpu = dict(zip(servers, cpu_per_registration(args.registrations, args.rounds, servers)))
    print(f"registrar_cost: cpu={cpu['ours']:.1f} µs per registration (lowest of {args.rounds} rounds of "
          f"{args.registrations}; Python {sys.version.split()[0]})", flush=True)
    for name in servers[1:]:
        also = f"; lane / floor = {cpu['lane'] / cpu['floor']:.2f}" if name == "lane" and "floor" in cpu else ""
        print(f"registrar_cost: {name} cpu={cpu[name]:.1f} µs per registration; ours / {name} = "
              f"{cpu['ours'] / cpu[name]:.2f}{also}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
