"""fakes/ladder.py on hand-made records: columns, arrows, drops, retransmissions, HTML."""

from sipharness.fakes.ladder import render_ladder, render_ladder_html
from sipharness.fakes.record import DnsRecord, ErrorRecord, SipRecord

P, A, B, D = ("127.0.0.1", 40000), ("127.0.0.10", 5060), ("127.0.0.20", 5060), ("127.0.0.53", 53)


def _records():
    recs = [DnsRecord(time=0.0, direction="in", server="dns", transport="udp", local=D, peer=P,
                      summary="Q SRV _sip._udp.example.com", qtype="SRV", name="_sip._udp.example.com")]
    for i, t in enumerate((0.0, 0.5, 1.5, 3.5)):
        recs.append(SipRecord(time=t, direction="in", server="primary", transport="udp", local=A, peer=P,
                              summary="REGISTER sip:example.com", method="REGISTER", retransmission=i > 0,
                              note="dropped: rule 1 drop REGISTER first=4"))
    recs.append(SipRecord(time=7.5, direction="in", server="secondary", transport="udp", local=B, peer=P,
                          summary="REGISTER sip:example.com", method="REGISTER"))
    recs.append(SipRecord(time=7.5, direction="out", server="secondary", transport="udp", local=B, peer=P,
                          summary="200 OK", method="REGISTER", status=200))
    return recs


def test_text_ladder_columns_and_marks():
    lines = render_ladder(_records(), title="REG-FO").splitlines()
    head = lines[1]
    assert head.index("phone") < head.index("dns") < head.index("primary") < head.index("secondary")
    body = lines[3:]
    assert len(body) == 7 and body[0].startswith("   0.000 |")
    assert all("✗" in ln and ln.endswith("dropped: rule 1 drop REGISTER first=4") for ln in body[1:5])
    assert [("(retx)" in ln) for ln in body[1:5]] == [False, True, True, True]
    assert "►" in body[5] and "◄" in body[6] and "200 OK" in body[6]
    assert render_ladder(_records(), columns=["secondary", "primary"]).splitlines()[0].index("secondary") < \
        render_ladder(_records(), columns=["secondary", "primary"]).splitlines()[0].index("primary")


def test_html_ladder_is_self_contained():
    page = render_ladder_html(_records(), title="REG-FO <x>")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "REG-FO &lt;x&gt;" in page
    assert page.count("✗") == 4 and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_a_serving_error_is_a_mark_on_the_fake_that_failed_at_its_time():
    error = KeyError("binding")
    error.add_note("secondary: while handling REGISTER from 127.0.0.1:40000 over udp")
    recs = _records() + [ErrorRecord(time=9.0, server="secondary", transport="udp", local=B, peer=P,
                                     summary="KeyError: 'binding'", error=error,
                                     note="harness error: secondary: while handling REGISTER from 127.0.0.1:40000 over udp")]
    lines = render_ladder(recs).splitlines()
    head, last = lines[0], lines[-1]
    assert last.startswith("   9.000 |") and "harness error: secondary: while handling REGISTER" in last
    assert last.index("✱") == head.index("secondary")  # on the secondary's line, not an arrow
    assert "►" not in last and "◄" not in last
    page = render_ladder_html(recs)
    assert "<circle" in page and "KeyError" in page
