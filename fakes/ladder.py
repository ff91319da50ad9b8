"""Ladder diagrams of what the fakes recorded: plain text for a pytest report, HTML/SVG for a browser.

Why hand-written: the evidence a failing test shows must read at a glance in a 100-120
column terminal (who sent what to whom, at what phone time, what a scripted fault did),
from the shared :class:`fakes.record.Recorder` only. Tools that draw SIP ladders (sngrep,
the SIPp trace viewers) read pcaps or their own traces, and draw with curses or images;
a few dozen lines of text layout do the job here.

Columns: the phone(s) first (every peer address that is not a fake, in order of first
appearance), then ``dns`` when DNS was recorded, then each fake SIP server by name in
order of first appearance. One line per record. A message between two fakes is drawn
once, from the receiver's record (which carries the receiver's notes). A serving error of a
fake (an :class:`~fakes.record.ErrorRecord`, a harness error) is a ``✱`` on that fake's
line at the time it happened, with the exception and the input it was handling.
"""

from __future__ import annotations

import html
from typing import Iterable, Sequence

from sipharness.fakes.record import DnsRecord, ErrorRecord, Record, SipRecord

__all__ = ["render_ladder", "render_ladder_html"]

_WIDTH = 118  # the whole line, notes aside, fits a 120-column terminal


def _label(r: Record) -> str:
    if isinstance(r, SipRecord):
        if r.status is not None:
            text = r.summary or f"{r.status}"
        else:
            text = r.method or r.summary.split(" ", 1)[0]
        if r.retransmission:
            text += " (retx)"
        return text
    if isinstance(r, ErrorRecord):
        return f"✱ {type(r.error).__name__}" if r.error is not None else "✱ error"
    return r.summary


def _dropped(r: Record) -> bool:
    return r.direction == "in" and r.note.startswith("dropped")


def _column(r: Record) -> str:
    """The ladder column of the fake that made ``r``: "dns" for the DNS, else its name."""
    if isinstance(r, DnsRecord) or (isinstance(r, ErrorRecord) and r.protocol == "dns"):
        return "dns"
    return r.server


def _fmt_addr(a) -> str:
    host, port = a[0], a[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _layout(records: Sequence[Record], columns: Sequence[str] | None):
    """→ (kept records, column names, column addresses, index of each record's two ends)."""
    server_addrs: dict[tuple, str] = {}
    servers: list[str] = []
    dns_seen = False
    for r in records:
        key = _column(r)
        if key == "dns":
            dns_seen = True
        elif key not in servers:
            servers.append(key)
        server_addrs.setdefault(tuple(r.local), key)
    kept = []
    for r in records:
        peer_server = server_addrs.get(tuple(r.peer))
        if peer_server is not None and r.direction == "out" and peer_server != _column(r):
            continue  # drawn from the receiving fake's "in" record
        kept.append(r)
    # A phone is a host, not a socket: it talks from several ports (DNS client, one connected
    # UDP socket or TCP connection per target), and one column per port would hide the story.
    phones: list[str] = []
    for r in kept:
        p = tuple(r.peer)
        if p not in server_addrs and p[0] not in phones:
            phones.append(p[0])
    names: list[str] = [f"phone {p}" if len(phones) > 1 else "phone" for p in phones]
    addrs: list[str] = list(phones)
    col_of: dict = {p: i for i, p in enumerate(phones)}
    order = (["dns"] if dns_seen else []) + servers
    if columns is not None:  # caller's order for the fakes; unknown ones appended
        order = [c for c in columns if c in order] + [c for c in order if c not in columns]
    for name in order:
        col_of[name] = len(names)
        names.append(name)
        local = next((r.local for r in records if _column(r) == name), None)
        addrs.append(_fmt_addr(local) if local else "")
    ends = []
    for r in kept:
        me = col_of[_column(r)]
        p = tuple(r.peer)
        other = col_of[server_addrs[p]] if p in server_addrs else col_of[p[0]]
        ends.append((me, other))
    return kept, names, addrs, ends


def render_ladder(records: Iterable[Record], *, columns: Sequence[str] | None = None,
                  title: str | None = None) -> str:
    """The records as a text ladder, one line per record::

        REGISTER failover
          t (s)  | phone               primary             secondary
                 | 127.0.0.1:40000     127.0.0.10:5060     127.0.0.20:5060
          0.000 |  ├─ REGISTER ───────►✗                   │    dropped: rule 1 drop REGISTER first=4

    ``columns`` orders the fakes (by server name; "dns" for the DNS); phones stay first.
    """
    recs = list(records)
    kept, names, addrs, ends = _layout(recs, columns)
    n = max(1, len(names))
    gap = max(14, min(34, (_WIDTH - 12) // max(1, n - 1) if n > 1 else 20))
    x = [2 + i * gap for i in range(n)]
    width = x[-1] + 2
    out: list[str] = []
    if title:
        out.append(title)

    def header(cells: list[str]) -> str:
        line = [" "] * (width + 30)
        for i, text in enumerate(cells):
            start = max(0, x[i] - 0)
            text = text[: gap - 1] if i < n - 1 else text
            for j, ch in enumerate(text):
                if start + j < len(line):
                    line[start + j] = ch
        return "".join(line).rstrip()

    out.append("   t (s) |" + header(names))
    out.append("         |" + header(addrs))
    if not kept:
        out.append("         |" + header(["│"] * n) + "   (nothing recorded)")
        return "\n".join(out)
    for r, (me, other) in zip(kept, ends):
        line = [" "] * width
        for xi in x:
            line[xi] = "│"
        if r.direction == "in":
            src, dst = other, me
        else:
            src, dst = me, other
        label = " " + _label(r) + " "
        if isinstance(r, ErrorRecord):  # a mark on the fake's own line, whoever sent the input
            text = "".join(line)
            at = x[me]
            text = (text[:at] + "✱" + text[at + 1:]).rstrip()
            out.append(f"{r.time:8.3f} |{text}   {r.note} [{r.summary}]")
            continue
        if src == dst:  # a fake talking to itself: just mark it
            text = f"{x[src] * ' '}↺{label}"
            line = list(text.ljust(width))
        else:
            lo, hi = sorted((x[src], x[dst]))
            span = hi - lo - 1
            if len(label) > span - 2:
                label = label[: max(0, span - 3)] + "…" if span > 4 else ""
            body = ["─"] * span
            start = (span - len(label)) // 2
            body[start:start + len(label)] = list(label)
            for k, ch in enumerate(body):
                line[lo + 1 + k] = ch
            head = "✗" if _dropped(r) else None
            if dst > src:
                line[hi - 1] = head or "►"
                line[hi] = "│" if not head else "│"
                line[lo] = "├"
            else:
                line[lo + 1] = head or "◄"
                line[hi] = "┤"
        text = "".join(line).rstrip()
        note = ""
        if r.note:
            note = ("   ✗ " if _dropped(r) else "   ") + r.note
        out.append(f"{r.time:8.3f} |{text}{note}")
    return "\n".join(out)


def render_ladder_html(records: Iterable[Record], *, columns: Sequence[str] | None = None,
                       title: str | None = None) -> str:
    """A self-contained HTML page with the ladder as inline SVG (no scripts, no external files).

    Each arrow (and its label) is a link to the message's raw text (``#raw-K``), shown on click
    in a panel on the right by CSS ``:target`` alone (sngrep's "message detail"): a SIP message
    as it was on the wire, a DNS message decoded as dig prints it (dnslib) after its hex bytes."""
    recs = list(records)
    kept, names, addrs, ends = _layout(recs, columns)
    n = max(1, len(names))
    gap, left, top, row = 220, 90, 70, 26
    w = left + gap * (n - 1) + 320
    h = top + row * (len(kept) + 1)
    e = html.escape
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="monospace" font-size="12">',
           '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
           '<path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>']
    raws: list[str] = []
    for i, (name, addr) in enumerate(zip(names, addrs)):
        cx = left + gap * i
        svg.append(f'<text x="{cx}" y="20" text-anchor="middle" font-weight="bold">{e(name)}</text>')
        svg.append(f'<text x="{cx}" y="36" text-anchor="middle" fill="#666">{e(addr)}</text>')
        svg.append(f'<line x1="{cx}" y1="44" x2="{cx}" y2="{h}" stroke="#bbb"/>')
    for k, (r, (me, other)) in enumerate(zip(kept, ends)):
        y = top + row * k
        src, dst = (other, me) if r.direction == "in" else (me, other)
        x1, x2 = left + gap * src, left + gap * dst
        dropped = _dropped(r)
        status = r.status if isinstance(r, SipRecord) else None
        colour = "#c00" if dropped or (status or 0) >= 400 else ("#070" if status else "#024")
        svg.append(f'<text x="4" y="{y + 4}" fill="#666">{r.time:.3f}</text>')
        if isinstance(r, ErrorRecord):
            cx = left + gap * me
            svg.append(f'<circle cx="{cx}" cy="{y}" r="7" fill="#c00"><title>{e(r.summary)}</title></circle>')
            svg.append(f'<text x="{cx + 12}" y="{y + 4}" fill="#c00">{e(_label(r))}</text>')
            svg.append(f'<text x="{left + gap * (n - 1) + 12}" y="{y + 4}" fill="#c00">{e(r.note)}</text>')
            continue
        raw = _raw_text(r)
        if raw is not None:
            raws.append(f'<section class="raw" id="raw-{k}"><a class="close" href="#">close ✕</a>'
                        f'<h3>{r.time:.3f} s  {e(_fmt_addr(r.peer if r.direction == "in" else r.local))} → '
                        f'{e(_fmt_addr(r.local if r.direction == "in" else r.peer))}  {e(r.transport.upper())}</h3>'
                        + (f'<p class="note">{e(r.note)}</p>' if r.note else "") + f"<pre>{e(raw)}</pre></section>")
            svg.append(f'<a href="#raw-{k}" class="msg" id="msg-{k}"><title>{e(r.summary)}: click for the message'
                       f'</title><rect x="{min(x1, x2)}" y="{y - 16}" width="{max(abs(x2 - x1), 24)}" height="{row - 4}" '
                       f'fill="transparent"/>')
        if dropped:
            xe = x2 - (12 if x2 > x1 else -12)
            svg.append(f'<line x1="{x1}" y1="{y}" x2="{xe}" y2="{y}" stroke="{colour}" stroke-dasharray="4 3"/>')
            svg.append(f'<text x="{xe}" y="{y + 4}" text-anchor="middle" fill="{colour}">✗</text>')
        else:
            svg.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" marker-end="url(#a)"/>')
        svg.append(f'<text x="{(x1 + x2) / 2}" y="{y - 4}" text-anchor="middle" fill="{colour}">'
                   f'<title>{e(r.summary)}</title>{e(_label(r))}</text>')
        if raw is not None:
            svg.append("</a>")
        if r.note:
            svg.append(f'<text x="{left + gap * (n - 1) + 12}" y="{y + 4}" fill="#a60">{e(r.note)}</text>')
    svg.append("</svg>")
    heading = f"<h1>{e(title)}</h1>" if title else ""
    hint = "<p class=\"hint\">Click a message for its raw text.</p>" if raws else ""
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{e(title or 'SIP ladder')}</title><style>{_CSS}</style></head><body>{heading}{hint}\n" + "\n".join(svg)
            + "\n<div id=\"raws\">" + "\n".join(raws) + "</div>\n</body></html>\n")


_CSS = (".raw{display:none}.raw:target{display:block;position:fixed;top:0;right:0;width:45%;height:100%;"
        "overflow:auto;background:#fffff8;border-left:3px solid #024;padding:0 12px;box-sizing:border-box}"
        ".raw pre{white-space:pre-wrap;word-break:break-all;font-size:12px}.raw h3{font:bold 13px monospace}"
        ".raw .close{float:right;margin-top:10px}.raw .note{color:#a60;font-family:monospace}"
        "a.msg{cursor:pointer}a.msg:hover text{font-weight:bold}.hint{font-family:sans-serif;color:#666}")
_MAX_RAW = 65536  # characters of one message on the page


def _raw_text(r: Record) -> str | None:
    """The message as text for the page: SIP as it was on the wire, DNS as dig prints it; None when none."""
    data = bytes(r.raw or b"")
    if not data:
        return None
    if isinstance(r, DnsRecord):
        hexed = data.hex(" ")
        try:
            from dnslib import DNSRecord

            text = str(DNSRecord.parse(data))
        except Exception:  # noqa: BLE001 - garbage is shown as its bytes only
            return hexed[:_MAX_RAW]
        return (text + "\n\n;; " + f"{len(data)} bytes: " + hexed)[:_MAX_RAW]
    text = data.decode("utf-8", errors="replace")
    if len(text) > _MAX_RAW:
        text = text[:_MAX_RAW] + f"\n... ({len(data)} bytes in all)"
    return text
