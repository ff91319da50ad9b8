"""One worker of bench/storm.py: a share of the phone fleet in one process, driven over an execnet channel.

bench/storm.py sends this module's source to each execnet gateway (``gateway.remote_exec``):
a ``popen`` gateway is a local Python process, an ``ssh=`` gateway one on another lab host
(its interpreter must import ``sipharness``: the same checkout or an installed copy). The
worker talks only through its channel, never to another worker:

    orchestrator → worker   {"phones": n, "first": i, "dns": [host, port], "rate": phones/s,
                             "config": {key: value}, "modes": [m, ...], "root": path}
                                                                      (the first message)
                            "stop"                                    (send results, exit)
    worker → orchestrator   ("built", n)                      phones built, starting them
                            ("progress", {...})               every second: counts so far
                            ("result", {...})                 per-phone times and counters

Everything runs on the real clock (SPEC §9: scale 1): the servers are real processes on
real time, so a phone second is a wall second. Times sent back are the reactor's
(``time.time()``, comparable between the processes of one host; across hosts the hosts'
clocks must agree, e.g. NTP, to the precision wanted).

What the worker counts, at the phones (the same for a Kamailio secondary and ours):
REGISTER sends per target host and second, which of them were retransmissions, responses
per status class, ICMP errors the phones learned, and per phone the first registration
with each server address; all by the phone's failback mode (phone ``first + i`` has
``modes[(first + i) % len(modes)]``: one fleet can carry several modes, each counted apart).
"""

from __future__ import annotations

#: phones per source address: each phone's one UDP socket takes a kernel-chosen port of its address,
#: and one address has only the ephemeral range (32768-60999 here: 28 232 ports) for the whole box
PHONES_PER_ADDRESS = 20000


def _source_address(k: int) -> str:
    """The loopback address phone ``k`` sends from (127.1.0.1 for the first 20 000, then .2, ...)."""
    return f"127.1.{k // PHONES_PER_ADDRESS // 250}.{1 + k // PHONES_PER_ADDRESS % 250}"


def run(channel) -> None:  # noqa: C901 - one linear story: set up, count, report
    import collections
    import gc
    import os
    import resource
    import sys
    import time

    job = channel.receive()
    if job["root"] not in sys.path:
        sys.path.insert(0, job["root"])
    n, first = int(job["phones"]), int(job["first"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n + 2000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from sipharness.phone import wire as _wire
    from sipharness.phone.agent import UserAgent
    from sipharness.phone.config import loads_config
    from sipharness.phone.phone import Phone

    globalLogBeginner.beginLoggingTo([lambda event: None], discardBuffer=True, redirectStandardIO=False)

    modes = [int(m) for m in job["modes"]]
    sends = collections.Counter()  # ("host:port", second, mode) → REGISTER sends
    retx = collections.Counter()  # ("host:port", mode) → REGISTER retransmissions
    responses = collections.Counter()  # ("host:port", status class, mode) → responses received
    branches: set[str] = set()
    icmp = collections.Counter()  # mode → ICMP errors learned
    registered: dict[str, list] = collections.defaultdict(lambda: [None] * n)  # "host:port" → per-phone first time
    register_failed = collections.Counter()  # mode → "register failed" events
    started = [None, None]

    original_send = _wire._UdpFlow.send

    def counting_send(flow, message):  # REGISTER sends by target, retransmissions by branch
        if getattr(message, "method", None) == "REGISTER" and message.is_request:
            now = time.time()
            host = f"{flow.peer[0]}:{flow.peer[1]}"
            mode = flow.endpoint.handler.storm_mode  # the SocketWire of the phone that sends
            sends[(host, int(now), mode)] += 1
            branch = message.top_via.branch
            if branch in branches:
                retx[(host, mode)] += 1
            else:
                branches.add(branch)
        return original_send(flow, message)

    _wire._UdpFlow.send = counting_send

    original_received = UserAgent.sip_received

    def counting_received(ua, message, reply):
        if not message.is_request and message.cseq[1] == "REGISTER":
            responses[(f"{reply.peer[0]}:{reply.peer[1]}", f"{message.status // 100}xx", ua.wire.storm_mode)] += 1
        return original_received(ua, message, reply)

    UserAgent.sip_received = counting_received
    original_error = UserAgent.transport_error

    def counting_error(ua, peer, transport, reason):
        if reason.startswith("ICMP"):
            icmp[ua.wire.storm_mode] += 1
        return original_error(ua, peer, transport, reason)

    UserAgent.transport_error = counting_error

    cfg_lines = "".join(f"{k} = {v}\n" for k, v in job["config"].items())
    phones = []

    def subscriber(i, mode):
        def on_event(ev):
            if ev.kind == "registered" and ev.target:
                host = ev.target.split(":", 1)[1]  # "udp:127.0.0.1:5060" → "127.0.0.1:5060"
                times = registered[host]
                if times[i] is None:
                    times[i] = ev.time
            elif ev.kind == "register_failed":
                register_failed[mode] += 1
        return on_event

    for i in range(n):
        mode = modes[(first + i) % len(modes)]
        cfg = loads_config("#!version:1.0.0.1\n" + cfg_lines + f"account.1.user_name = s{first + i}\n"
                           f"account.1.sip_server.1.failback_mode = {mode}\n", filename=f"storm{first + i}.cfg")
        p = Phone(cfg, clock=reactor, reactor=reactor, dns_server=tuple(job["dns"]), name=f"s{first + i}",
                  local_host=_source_address(first + i))
        p.wire.storm_mode = mode  # (the counters above read it)
        p.events.subscribe(subscriber(i, mode))
        phones.append(p)
    gc.collect()
    gc.freeze()  # the fleet lives for the run: later collections need not walk it
    channel.send(("built", n))

    rate = float(job["rate"])
    batch_s = 0.05

    def start_batch(i):
        if started[0] is None:
            started[0] = time.time()
        step = n if rate <= 0 else max(1, int(rate * batch_s))
        for p in phones[i:i + step]:
            p.start()
        if i + step < n:
            reactor.callLater(max(0.0, started[0] + (i + step) / rate - time.time()), start_batch, i + step)
        else:
            started[1] = time.time()

    def progress():
        counts = {host: sum(1 for t in times if t is not None) for host, times in registered.items()}
        channel.send(("progress", {"registered": counts}))
        reactor.callLater(1.0, progress)

    def finish():
        channel.send(("result", {
            "first": first, "phones": n, "modes": modes,
            "registered": {host: times for host, times in registered.items()},
            "sends": [[host, second, mode, count] for (host, second, mode), count in sends.items()],
            "retransmissions": [[host, mode, count] for (host, mode), count in retx.items()],
            "responses": [[host, cls, mode, count] for (host, cls, mode), count in responses.items()],
            "register_failed": dict(register_failed), "icmp": dict(icmp), "started": started,
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        }))
        reactor.stop()

    def on_message(msg):
        if msg == "stop":
            reactor.callFromThread(finish)

    channel.setcallback(on_message)
    reactor.callWhenRunning(start_batch, 0)
    reactor.callWhenRunning(progress)
    reactor.run(installSignalHandlers=False)
    os._exit(0)  # no clean stop of thousands of phones: the run is measured, the process goes away


if __name__ == "__channelexec__":
    run(channel)  # noqa: F821 - execnet provides it
